/**
 * The agents' connections on AWS (API Gateway's WebSocket API), from the configuration: the
 * connections table and the stage's management endpoint, on compose's DynamoDB client. Only the
 * functions of that API and the job notifier are given these settings (infra/app-stack.ts); others
 * never ask for it (services().agentConnections()).
 */
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ManagementApiPoster } from '#adapters/aws/connection-poster';
import { DynamoAgentConnectionStore } from '#adapters/dynamo/agent-connection-store';
import { AgentConnections, type ConnectionPoster } from '#core/instances/agent-connections';
import type { ServiceConfig } from '#platform/config';

/** `needsPoster` false: $connect/$disconnect post nothing, and need no management endpoint. */
export type AgentConnectionsFactory = (needsPoster?: boolean) => AgentConnections;

export function agentConnectionsFactory(
  config: ServiceConfig,
  dynamo: DynamoDBDocumentClient,
): AgentConnectionsFactory {
  let built: AgentConnections | undefined;
  return (needsPoster = true) => {
    const { connectionsTable, managementEndpoint } = config.agentSockets;
    if (!connectionsTable) throw new Error('HANGAR_AGENT_CONNECTIONS_TABLE must name the connections table');
    if (needsPoster && !managementEndpoint)
      throw new Error('HANGAR_AGENT_SOCKET_ENDPOINT must name the WebSocket stage to post to');
    if (!built) {
      const poster: ConnectionPoster = managementEndpoint
        ? new ManagementApiPoster(managementEndpoint)
        : { post: () => Promise.reject(new Error('internal: no WebSocket endpoint configured to post to')) };
      built = new AgentConnections(new DynamoAgentConnectionStore(dynamo, connectionsTable), poster);
    }
    return built;
  };
}
