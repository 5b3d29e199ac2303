/** The composition root: domain services wired to their AWS adapters, one set per process. */
import { DigestJob } from '#adapters/digests';
import { DynamoImageRepository } from '#adapters/dynamo-image-repository';
import { DynamoInstanceRepository } from '#adapters/dynamo-instance-repository';
import { DynamoReferenceRepository } from '#adapters/dynamo-reference-repository';
import { DynamoTaskRepository } from '#adapters/dynamo-task-repository';
import { S3BlobStore } from '#adapters/s3-blob-store';
import { S3ObjectStore } from '#adapters/s3-objects';
import { ImageDataService } from '#core/image-data';
import { MembersService } from '#core/image-members';
import { LeaseRecovery } from '#core/image-recovery';
import { ImagesService } from '#core/images-service';
import { type ImageUsage, ReferencesService } from '#core/references-service';
import { serviceConfig } from './config.ts';

let services:
  | {
      images: ImagesService;
      imageData: ImageDataService;
      blobs: S3BlobStore;
      objects: S3ObjectStore;
      recovery: LeaseRecovery;
      references: ReferencesService;
      members: MembersService;
    }
  | undefined;

// Retention never retires an image an instance (not yet destroyed) was built from.
const imageUsage: ImageUsage = { inUse: (ids) => new DynamoInstanceRepository().imagesInUse(ids) };
let builtFor: object | undefined;

export function getServices() {
  const config = serviceConfig();
  // Rebuilt when the configuration is reset (tests and the local runner change the environment).
  if (services && builtFor === config) return services;
  const repo = new DynamoImageRepository();
  const blobs = new S3BlobStore(config.buckets.images);
  const objects = new S3ObjectStore();
  const images = new ImagesService(repo, config.quotas, () => new Date(), config.propertyProtections);
  services = {
    images,
    references: new ReferencesService(new DynamoReferenceRepository(), images, imageUsage),
    imageData: new ImageDataService(
      repo,
      blobs,
      () => new DigestJob(),
      DigestJob.sharedBlock,
      () => new Date(),
      config.leaseSeconds * 1000,
    ),
    members: new MembersService(repo, config.quotas),
    blobs,
    objects,
    recovery: new LeaseRecovery({
      repo,
      leases: repo,
      tasks: new DynamoTaskRepository(),
      blobs,
      objects,
      taskTtlHours: config.taskTimeToLiveHours,
    }),
  };
  builtFor = config;
  return services;
}
