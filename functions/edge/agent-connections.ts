/**
 * The agents' connections on AWS (API Gateway's WebSocket API), composed from the configuration:
 * the connections table and the stage's management endpoint. Only the functions of that API and
 * the job notifier are given these settings (infra/app-stack.ts); others never build this.
 */
import { ManagementApiPoster } from '#adapters/aws/connection-poster';
import { DynamoAgentConnectionStore } from '#adapters/dynamo/agent-connection-store';
import { AgentConnections, type ConnectionPoster } from '#core/instances/agent-connections';
import { serviceConfig } from '#platform/config';

let built: { key: string; connections: AgentConnections } | undefined;

/** The process's AgentConnections; `needsPoster` false: $connect/$disconnect post nothing. */
export function agentConnections(needsPoster = true): AgentConnections {
  const { connectionsTable, managementEndpoint } = serviceConfig().agentSockets;
  if (!connectionsTable) throw new Error('HANGAR_AGENT_CONNECTIONS_TABLE must name the connections table');
  if (needsPoster && !managementEndpoint)
    throw new Error('HANGAR_AGENT_SOCKET_ENDPOINT must name the WebSocket stage to post to');
  const key = JSON.stringify([connectionsTable, managementEndpoint]);
  if (built?.key !== key) {
    const poster: ConnectionPoster = managementEndpoint
      ? new ManagementApiPoster(managementEndpoint)
      : {
          post: () => Promise.reject(new Error('internal: no WebSocket endpoint configured to post to')),
        };
    built = {
      key,
      connections: new AgentConnections(new DynamoAgentConnectionStore(connectionsTable), poster),
    };
  }
  return built.connections;
}
