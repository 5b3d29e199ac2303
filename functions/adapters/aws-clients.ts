/**
 * The SDK clients every AWS adapter is built on: compose() makes one of each kind for its
 * configuration and hands them to the adapters' constructors, or is handed them (the embedded
 * runner's point at its stand-ins). Nothing keeps a client in a module variable.
 *
 * Without an explicit endpoint, region or key pair the SDK's own provider chain applies: on
 * Lambda, the function's region and role.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
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
  /** The SDK's attempts per request (its default: 3). */
  readonly maxAttempts?: number;
}

/**
 * Connections kept open and reused, said here rather than left to the SDK's defaults (which are
 * the same today): a request to DynamoDB (Local) on a fresh connection pays a TCP handshake, and
 * on the embedded backend an accept in DynamoDB Local's Jetty, every time. maxSockets bounds the
 * connections per client; keepAliveMsecs is TCP keep-alive on the idle ones.
 */
function keepAlive() {
  const options = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: 64 };
  return { httpAgent: new HttpAgent(options), httpsAgent: new HttpsAgent(options) };
}

/**
 * The SDK's logger middleware builds a redacted copy of every input and output for its logger
 * even when that logger does nothing (it calls the no-op logger's info with the copy): for a
 * page of 100 images that is a walk of every attribute of every item, about 4% of the gateway's
 * CPU under a list load. Hangar logs requests itself and never gives the SDK a logger.
 */
function withoutResponseLogging(client: DynamoDBClient): DynamoDBClient {
  client.middlewareStack.remove('loggerMiddleware');
  return client;
}

export function createAwsClients(settings: AwsClientSettings): AwsClients {
  return {
    dynamo: DynamoDBDocumentClient.from(createDynamoClient(settings), {
      marshallOptions: { removeUndefinedValues: true },
    }),
    s3: createS3Client(settings),
    sfn: new SFNClient({ ...common(settings), ...endpoint(settings.endpoints?.stepfunctions) }),
  };
}

/** The plain DynamoDB client under createAwsClients' document client (tests send raw commands). */
export function createDynamoClient(settings: AwsClientSettings): DynamoDBClient {
  return withoutResponseLogging(
    new DynamoDBClient({
      ...common(settings),
      ...endpoint(settings.endpoints?.dynamodb),
      requestHandler: keepAlive(),
    }),
  );
}

export function createS3Client(settings: AwsClientSettings): S3Client {
  return new S3Client({
    ...common(settings),
    ...endpoint(settings.endpoints?.s3),
    requestHandler: keepAlive(),
    forcePathStyle: settings.s3ForcePathStyle,
    // Image bodies are hashed by Hangar itself; the SDK's own checksums would re-read every
    // byte (and s3rver would store streamed uploads with the aws-chunked framing inside).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

function common(settings: AwsClientSettings) {
  return {
    ...(settings.region !== undefined ? { region: settings.region } : {}),
    ...(settings.credentials !== undefined ? { credentials: { ...settings.credentials } } : {}),
    ...(settings.maxAttempts !== undefined ? { maxAttempts: settings.maxAttempts } : {}),
  };
}

const endpoint = (url: string | undefined) => (url !== undefined ? { endpoint: url } : {});

/** Closes the clients' sockets (the embedded runner's, when it stops). */
export function destroyAwsClients(clients: AwsClients): void {
  clients.dynamo.destroy();
  clients.s3.destroy();
  clients.sfn.destroy();
}
