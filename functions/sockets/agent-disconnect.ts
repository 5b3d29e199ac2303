/**
 * $disconnect of the agents' WebSocket API (AWS): forgets the connection. API Gateway calls it
 * on a best-effort basis; a connection it misses is forgotten when a post to it answers 410, or
 * by the table's TTL.
 */
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { z } from 'zod';
import { services } from '#edge/compose';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { logger } from '#platform/logger';

const DisconnectEventSchema = z.object({ requestContext: z.object({ connectionId: z.string().min(1) }) });

async function disconnect(event: unknown): Promise<APIGatewayProxyResultV2> {
  const parsed = DisconnectEventSchema.safeParse(event);
  if (!parsed.success) return { statusCode: 400 };
  const { connectionId } = parsed.data.requestContext;
  await services().agentConnections(false).disconnect(connectionId);
  logger.info('agent socket closed', { connectionId });
  return { statusCode: 200 };
}

export const handler = serviceHandler({ service: 'apigateway' }, [], disconnect);
