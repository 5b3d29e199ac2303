/**
 * The SDK clients every AWS adapter is built on: compose() makes one of each kind for its
 * configuration and hands them to the adapters' constructors, or is handed them (the embedded
 * runner's point at its stand-ins). Nothing keeps a client in a module variable.
 *
 * Without an explicit endpoint, region or key pair the SDK's own provider chain applies: on
 * Lambda, the function's region and role.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

export interface AwsClients {
  readonly dynamo: DynamoDBDocumentClient;
  readonly s3: S3Client;
  readonly sfn: SFNClient;
}

export interface AwsClientSettings {
  /** s3rver needs path-style URLs; real S3 does not. */
  readonly s3ForcePathStyle: boolean;
  readonly region?: string;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
  readonly endpoints?: { readonly dynamodb?: string; readonly s3?: string; readonly stepfunctions?: string };
}

export function createAwsClients(settings: AwsClientSettings): AwsClients {
  const common = {
    ...(settings.region !== undefined ? { region: settings.region } : {}),
    ...(settings.credentials !== undefined ? { credentials: { ...settings.credentials } } : {}),
  };
  const endpoint = (url: string | undefined) => (url !== undefined ? { endpoint: url } : {});
  return {
    dynamo: DynamoDBDocumentClient.from(
      new DynamoDBClient({ ...common, ...endpoint(settings.endpoints?.dynamodb) }),
      { marshallOptions: { removeUndefinedValues: true } },
    ),
    s3: new S3Client({
      ...common,
      ...endpoint(settings.endpoints?.s3),
      forcePathStyle: settings.s3ForcePathStyle,
      // Image bodies are hashed by Hangar itself; the SDK's own checksums would re-read every
      // byte (and s3rver would store streamed uploads with the aws-chunked framing inside).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    }),
    sfn: new SFNClient({ ...common, ...endpoint(settings.endpoints?.stepfunctions) }),
  };
}

/** Closes the clients' sockets (the embedded runner's, when it stops). */
export function destroyAwsClients(clients: AwsClients): void {
  clients.dynamo.destroy();
  clients.s3.destroy();
  clients.sfn.destroy();
}
