/**
 * One SDK client of each kind per process. Endpoints come from the SDK's own
 * AWS_ENDPOINT_URL_* variables, so the same code reaches AWS or the local stand-ins.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { serviceConfig } from '#platform/config';

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

let documentClient: DynamoDBDocumentClient | undefined;
let s3Client: S3Client | undefined;

export function dynamo(): DynamoDBDocumentClient {
  documentClient ??= DynamoDBDocumentClient.from(
    withoutResponseLogging(new DynamoDBClient({ requestHandler: keepAlive() })),
    {
      marshallOptions: { removeUndefinedValues: true },
    },
  );
  return documentClient;
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

export function s3(): S3Client {
  s3Client ??= new S3Client({
    forcePathStyle: serviceConfig().s3ForcePathStyle,
    requestHandler: keepAlive(),
    // Image bodies are hashed by Hangar itself; the SDK's own checksums would re-read every byte.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return s3Client;
}

/** For tests that restart the stand-ins on new ports. */
export function resetClients(): void {
  documentClient?.destroy();
  s3Client?.destroy();
  documentClient = undefined;
  s3Client = undefined;
}
