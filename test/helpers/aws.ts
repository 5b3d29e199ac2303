/**
 * A test's own SDK clients for a backend's stand-ins, made as the service's are (the same
 * factories, adapters/aws-clients.ts) from what the backend reports: nothing is read from
 * process.env. The caller destroys what it makes.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { type AwsClientSettings, createDynamoClient, createS3Client } from '#adapters/aws-clients';
import type { Backend } from '../../local/backend.ts';
import { currentBackend } from './backend.ts';

export function standInS3(
  backend: Backend = currentBackend(),
  options: Pick<AwsClientSettings, 'maxAttempts'> = {},
): S3Client {
  return createS3Client({ ...backend.clientSettings, ...options });
}

export function standInDynamo(backend: Backend = currentBackend()): DynamoDBClient {
  return createDynamoClient(backend.clientSettings);
}
