/** The composition root: domain services wired to their AWS adapters, one set per process. */
import { DigestJob } from '#adapters/digests';
import { DynamoImageRepository } from '#adapters/dynamo-image-repository';
import { S3BlobStore } from '#adapters/s3-blob-store';
import { ImageDataService } from '#core/image-data';
import { ImagesService } from '#core/images-service';
import { serviceConfig } from './config.ts';

let services: { images: ImagesService; imageData: ImageDataService; blobs: S3BlobStore } | undefined;
let builtFor: object | undefined;

export function getServices() {
  const config = serviceConfig();
  // Rebuilt when the configuration is reset (tests and the local runner change the environment).
  if (services && builtFor === config) return services;
  const repo = new DynamoImageRepository();
  const blobs = new S3BlobStore(config.buckets.images);
  services = {
    images: new ImagesService(repo, config.quotas),
    imageData: new ImageDataService(repo, blobs, () => new DigestJob(), DigestJob.sharedBlock),
    blobs,
  };
  builtFor = config;
  return services;
}
