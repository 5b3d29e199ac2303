/**
 * Sends to an agent's WebSocket through API Gateway's management API (PostToConnection on the
 * stage's https endpoint). A 410 (GoneException) is the connection having closed without a
 * $disconnect reaching us: reported as 'gone' so the caller forgets it; anything else throws.
 */
import {
  ApiGatewayManagementApiClient,
  GoneException,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';
import type { ConnectionPoster } from '#core/instances/agent-connections';

export class ManagementApiPoster implements ConnectionPoster {
  private readonly client: ApiGatewayManagementApiClient;

  /** `endpoint`: https://<api id>.execute-api.<region>.amazonaws.com/<stage>. */
  constructor(endpoint: string, client?: ApiGatewayManagementApiClient) {
    this.client = client ?? new ApiGatewayManagementApiClient({ endpoint });
  }

  async post(connectionId: string, message: string): Promise<'sent' | 'gone'> {
    try {
      await this.client.send(
        new PostToConnectionCommand({ ConnectionId: connectionId, Data: Buffer.from(message, 'utf8') }),
      );
      return 'sent';
    } catch (error) {
      if (error instanceof GoneException || (error as { name?: string })?.name === 'GoneException')
        return 'gone';
      throw error;
    }
  }
}
