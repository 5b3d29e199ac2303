/** The composition root: domain services wired to their AWS adapters, one set per process. */
import { DigestJob } from '#adapters/digests';
import { DynamoImageRepository } from '#adapters/dynamo/image-repository';
import { DynamoInstanceRepository } from '#adapters/dynamo/instance-repository';
import { DynamoMetadefRepository } from '#adapters/dynamo/metadef-repository';
import { DynamoReferenceRepository } from '#adapters/dynamo/reference-repository';
import { DynamoTaskRepository } from '#adapters/dynamo/task-repository';
import { S3BlobStore } from '#adapters/s3/blob-store';
import { S3ObjectStore } from '#adapters/s3/objects';
import { ImageDataService } from '#core/data/image-data';
import { ImagesService } from '#core/images/images-service';
import { LeaseRecovery } from '#core/images/recovery';
import { MetadefsService } from '#core/metadefs/metadefs';
import { HANGAR_METADEF_SEED } from '#core/metadefs/seeds';
import { type ImageUsage, ReferencesService } from '#core/references/references-service';
import { MembersService } from '#core/sharing/members';
import { serviceConfig } from '../platform/config.ts';

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
  const images = new ImagesService(
    repo,
    config.quotas,
    () => new Date(),
    config.propertyProtections,
    config.imageFormats,
  );
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

let metadefs: { service: MetadefsService; config: object } | undefined;

/** The metadata definitions catalogue; seeds itself on first use (MetadefsService.ensureSeeded). */
export function getMetadefs(): MetadefsService {
  const config = serviceConfig();
  if (!metadefs || metadefs.config !== config)
    metadefs = { service: new MetadefsService(new DynamoMetadefRepository(), HANGAR_METADEF_SEED), config };
  return metadefs.service;
}
