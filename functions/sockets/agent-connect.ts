/**
 * $connect of the agents' WebSocket API (AWS). The authorizer (auth/agent-socket-authorizer.ts)
 * has already decided that the caller acts for the host and handed over its id; this records the
 * connection under that host, so a job enqueued for it reaches this socket.
 */
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { z } from 'zod';
import { services } from '#edge/compose';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { logger } from '#platform/logger';

const ConnectEventSchema = z.object({
  requestContext: z.object({
    connectionId: z.string().min(1),
    authorizer: z.object({ hostId: z.string().min(1) }),
  }),
});

async function connect(event: unknown): Promise<APIGatewayProxyResultV2> {
  const parsed = ConnectEventSchema.safeParse(event);
  // Only reachable without the authorizer (a wiring mistake): refuse rather than record nobody.
  if (!parsed.success) return { statusCode: 403 };
  const { connectionId, authorizer } = parsed.data.requestContext;
  await services().agentConnections(false).connect(authorizer.hostId, connectionId);
  logger.info('agent socket open', { hostId: authorizer.hostId, connectionId });
  return { statusCode: 200 };
}

export const handler = serviceHandler({ service: 'apigateway' }, [], connect);
