/**
 * The composition root for imports, exports and tasks (the API handlers, the S3 trigger and the
 * state-machine task handlers all use it). One set per process, rebuilt when the configuration is
 * reset, as getServices() does for the images API.
 */
import { DigestJob } from '#adapters/digests';
import { DynamoEventMarkers } from '#adapters/dynamo/event-markers';
import { DynamoImageRepository } from '#adapters/dynamo/image-repository';
import { DynamoTaskRepository } from '#adapters/dynamo/task-repository';
import { QemuImageExporter } from '#adapters/qemu-export';
import { S3BlobStore } from '#adapters/s3/blob-store';
import { S3MultipartUploads, S3ObjectStore } from '#adapters/s3/objects';
import { workflowStarter } from '#adapters/step-functions';
import { SafeWebFetcher } from '#adapters/web-fetch';
import { ImagesService } from '#core/images/images-service';
import { PublishService } from '#core/references/publish';
import { TasksService } from '#core/tasks/tasks-service';
import { ExportService } from '#core/transfer/export';
import { ImportService } from '#core/transfer/import';
import { parseAllowList } from '#core/transfer/url-filter';
import { type ServiceConfig, serviceConfig } from '../platform/config.ts';
import { getInstanceServices } from './instance-services.ts';
import { getServices } from './services.ts';

export interface TaskServices {
  imports: ImportService;
  exports: ExportService;
  tasks: TasksService;
  publishing: PublishService;
}

let services: TaskServices | undefined;
let builtFor: ServiceConfig | undefined;

export function getTaskServices(): TaskServices {
  const config = serviceConfig();
  if (services && builtFor === config) return services;
  const repo = new DynamoImageRepository();
  const taskRepo = new DynamoTaskRepository();
  const blobs = new S3BlobStore(config.buckets.images);
  const digester = () => new DigestJob();
  services = {
    imports: new ImportService({
      repo,
      // Imports create images too (legacy tasks, S3 uploads): the same property protections apply.
      images: new ImagesService(
        repo,
        config.quotas,
        () => new Date(),
        config.propertyProtections,
        config.imageFormats,
      ),
      tasks: taskRepo,
      workflows: workflowStarter,
      markers: new DynamoEventMarkers(),
      blobs,
      imagesBucket: config.buckets.images,
      staging: new S3BlobStore(config.buckets.staging),
      stagingBucket: config.buckets.staging,
      uploadsBucket: config.buckets.uploads,
      objects: new S3ObjectStore(),
      multipart: new S3MultipartUploads(),
      fetcher: new SafeWebFetcher(parseAllowList(config.webDownloadAllow)),
      digester,
      sharedBlock: DigestJob.sharedBlock,
      sizeCap: config.imageSizeCap,
      requireFormatMatch: config.imageFormats.requireMatch,
      taskTtlHours: config.taskTimeToLiveHours,
      uploadUrlSeconds: config.uploadUrlSeconds,
      leaseMs: config.leaseSeconds * 1000,
    }),
    exports: new ExportService({
      repo,
      tasks: taskRepo,
      workflows: workflowStarter,
      exporter: new QemuImageExporter({
        images: blobs,
        exportStore: (bucket) => new S3BlobStore(bucket),
        digester,
        sharedBlock: DigestJob.sharedBlock,
      }),
      exportBucket: config.buckets.exports,
      taskTtlHours: config.taskTimeToLiveHours,
    }),
    tasks: new TasksService(taskRepo, repo),
    publishing: new PublishService({
      repo,
      blobs,
      tasks: taskRepo,
      workflows: workflowStarter,
      references: getServices().references,
      instances: () => getInstanceServices().instances,
      digester,
      sharedBlock: DigestJob.sharedBlock,
      taskTtlHours: config.taskTimeToLiveHours,
      requireFormatMatch: config.imageFormats.requireMatch,
    }),
  };
  builtFor = config;
  return services;
}
