/**
 * A test's own SDK clients for a backend's stand-ins, configured as the service's are (endpoint,
 * region, the data directory's key pair), from what the backend reports: nothing is read from
 * process.env. The caller destroys what it makes.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { Backend } from '../../local/backend.ts';
import { currentBackend } from './backend.ts';

export function standInS3(backend: Backend = currentBackend(), options: S3ClientConfig = {}): S3Client {
  const { region, credentials, endpoints } = backend.clientSettings;
  return new S3Client({
    region,
    credentials,
    endpoint: endpoints.s3,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...options,
  });
}

export function standInDynamo(backend: Backend = currentBackend()): DynamoDBClient {
  const { region, credentials, endpoints } = backend.clientSettings;
  return new DynamoDBClient({ region, credentials, endpoint: endpoints.dynamodb });
}
