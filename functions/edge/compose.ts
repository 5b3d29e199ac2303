/**
 * The one composition root: every domain service wired to its adapters, built from a
 * ServiceConfig and the collaborators that differ between AWS and the embedded runner.
 *
 * On Lambda the handlers call services(), which composes once per process from serviceConfig(),
 * with SDK clients made here (the SDK's provider chain gives region and role). The embedded runner
 * (local/backend.ts) hands its own collaborators in with useCollaborators() (its in-process Step
 * Functions runner, SDK clients on the stand-ins' endpoints and key pair); nothing else holds a
 * service, an adapter or a client.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type AwsClients, createAwsClients } from '#adapters/aws-clients';
import { DigestJob } from '#adapters/digests';
import { DynamoBuildRepository } from '#adapters/dynamo/build-repository';
import { DynamoEventMarkers } from '#adapters/dynamo/event-markers';
import { DynamoImageRepository } from '#adapters/dynamo/image-repository';
import { DynamoInstanceStore } from '#adapters/dynamo/instance-store';
import { DynamoMetadefRepository } from '#adapters/dynamo/metadef-repository';
import { DynamoReferenceRepository } from '#adapters/dynamo/reference-repository';
import { DynamoTaskRepository } from '#adapters/dynamo/task-repository';
import { FsBlobStore } from '#adapters/fs/blob-store';
import { FsBucketObjects } from '#adapters/fs/bucket-objects';
import { QemuImageExporter } from '#adapters/qemu-export';
import { S3BlobStore } from '#adapters/s3/blob-store';
import { S3MultipartUploads, S3ObjectStore } from '#adapters/s3/objects';
import { SfnTaskTokens, SfnWorkflowStarter } from '#adapters/step-functions';
import { SafeWebFetcher } from '#adapters/web-fetch';
import { BuildsService } from '#core/builds/builds-service';
import { ImageDataService } from '#core/data/image-data';
import type { BlobStore, ObjectStore } from '#core/data/ports';
import { ImagesService } from '#core/images/images-service';
import { freeImageData, LeaseRecovery } from '#core/images/recovery';
import { HostsService, type InstancesDeps, InstancesService } from '#core/instances/instances-service';
import { NotifyingInstanceStore } from '#core/instances/notifying-store';
import { type JobNotifier, SILENT_NOTIFIER, type SnapshotImages } from '#core/instances/ports';
import { makePrincipal } from '#core/kernel/principal';
import { MetadefsService } from '#core/metadefs/metadefs';
import { HANGAR_METADEF_SEED } from '#core/metadefs/seeds';
import { PublishService } from '#core/references/publish';
import { ReferencesService } from '#core/references/references-service';
import { MembersService } from '#core/sharing/members';
import type { TaskTokenNotifier, WorkflowStarter } from '#core/tasks/ports';
import { TasksService } from '#core/tasks/tasks-service';
import { ExportService } from '#core/transfer/export';
import { ImportService } from '#core/transfer/import';
import { stagingKey } from '#core/transfer/import-model';
import { parseAllowList } from '#core/transfer/url-filter';
import { type ServiceConfig, serviceConfig } from '../platform/config.ts';
import { logger } from '../platform/logger.ts';
import { type AgentConnectionsFactory, agentConnectionsFactory } from './agent-connections.ts';

/** What the services are built on besides the configuration: each one may be passed in. */
export interface Collaborators {
  /** Starts the import, export and publish state machines. */
  workflows: WorkflowStarter;
  /** Answers the task tokens of waiting states (publish's boot gate). */
  taskTokens: TaskTokenNotifier;
  /** Tells a host's agent that its queue gained a job (the embedded gateway's agent sockets). */
  jobNotifier: JobNotifier;
  /** The SDK clients every DynamoDB, S3 and Step Functions adapter is built on. */
  clients: AwsClients;
  clock: () => Date;
}

export interface Services {
  readonly config: ServiceConfig;
  readonly images: ImagesService;
  readonly imageData: ImageDataService;
  readonly members: MembersService;
  readonly references: ReferencesService;
  readonly recovery: LeaseRecovery;
  readonly metadefs: MetadefsService;
  readonly imports: ImportService;
  readonly exports: ExportService;
  readonly tasks: TasksService;
  readonly publishing: PublishService;
  readonly builds: BuildsService;
  readonly instances: InstancesService;
  readonly hosts: HostsService;
  /** The images bucket, for the handlers that sign or stream its objects themselves. */
  readonly blobs: BlobStore;
  readonly objects: ObjectStore;
  /** Presigned multipart uploads, and the sweep of those nobody finished (triggers/multipart-sweep). */
  readonly multipart: S3MultipartUploads;
  /** The agents' WebSocket connections on AWS (the socket API's functions and the job notifier). */
  readonly agentConnections: AgentConnectionsFactory;
}

const clock = () => new Date();

/**
 * The collaborators not passed in: SDK clients made from the configuration; Step Functions on AWS,
 * locally a refusal (no runner was given).
 */
function defaults(config: ServiceConfig, overrides: Partial<Collaborators>): Collaborators {
  const clients = overrides.clients ?? createAwsClients({ s3ForcePathStyle: config.s3ForcePathStyle });
  if (config.workflows.mode === 'local') {
    const missing = () =>
      Promise.reject(new Error('HANGAR_WORKFLOWS=local but no local runner was passed to compose'));
    return {
      workflows: { start: missing },
      taskTokens: { succeed: missing, fail: missing },
      jobNotifier: SILENT_NOTIFIER,
      clients,
      clock,
      ...overrides,
    };
  }
  const arns = {
    import: config.workflows.importArn,
    export: config.workflows.exportArn,
    publish: config.workflows.publishArn,
    build: config.workflows.buildArn,
  };
  return {
    workflows: new SfnWorkflowStarter(arns, clients.sfn),
    taskTokens: new SfnTaskTokens(clients.sfn),
    // No WebSocket API is deployed yet: agents on AWS find their jobs by polling.
    jobNotifier: SILENT_NOTIFIER,
    clients,
    clock,
    ...overrides,
  };
}

/** Builds every service and adapter once, for one configuration. */
export function compose(config: ServiceConfig, overrides: Partial<Collaborators> = {}): Services {
  const { workflows, taskTokens, jobNotifier, clients, clock } = defaults(config, overrides);
  const { dynamo, s3 } = clients;
  const table = config.tableName;
  const repo = new DynamoImageRepository(dynamo, table);
  const taskRepo = new DynamoTaskRepository(dynamo, table);
  const instanceStore = new DynamoInstanceStore(dynamo, table);
  // HANGAR_BLOB_STORE=fs (the embedded default): the images bucket is a directory; the other
  // buckets (uploads, staging, exports) stay in S3.
  const files = config.blobStore.kind === 'fs' ? new FsBlobStore(config.blobStore.directory) : undefined;
  const blobs: BlobStore = files ?? new S3BlobStore(s3, config.buckets.images);
  const objects: ObjectStore = files
    ? new FsBucketObjects(s3, new S3ObjectStore(s3), config.buckets.images, files)
    : new S3ObjectStore(s3);
  const multipart = new S3MultipartUploads(s3);
  const digester = () => new DigestJob();
  const taskTtlHours = config.taskTimeToLiveHours;
  const leaseMs = config.leaseSeconds * 1000;

  const images = new ImagesService(
    repo,
    config.quotas,
    clock,
    config.propertyProtections,
    config.imageFormats,
  );
  // Retention never retires an image an instance (not yet destroyed) was built from.
  const references = new ReferencesService(new DynamoReferenceRepository(dynamo, table), images, {
    inUse: (ids) => instanceStore.instances.imagesInUse(ids),
  });
  const snapshotImages: SnapshotImages = {
    create: (principal, body) => images.create(principal, body),
    get: async (id) => {
      const image = await repo.get(id);
      return image && image.status !== 'deleted' ? image : null;
    },
    // As the owner project (the host that reports the failure writes no image): the tombstone
    // first, then its blob and whatever an upload in flight left.
    discard: async (id, reason) => {
      const image = await repo.get(id);
      if (!image || image.status === 'deleted') return;
      const owner = makePrincipal(image.owner ?? '', 'hangar-snapshot', ['member']);
      const deleted = await images.delete(owner, id);
      logger.warn('snapshot image discarded', { image: id, reason });
      await freeImageData(
        { blobs, objects, stagingBucket: config.buckets.staging, stagingKey: stagingKey(id) },
        deleted.image,
        deleted.lease,
      );
    },
    referenceTarget: (principal, reference, namespace) =>
      references.snapshotTarget(principal, reference, namespace),
    moveReference: async (principal, reference, input) => {
      await references.snapshotMove(principal, reference, input);
    },
  };
  const instanceDeps: InstancesDeps = {
    // Every job enqueued through it is announced to its host once the write has committed.
    store: new NotifyingInstanceStore(instanceStore, jobNotifier),
    // Images are looked up through the images and references services, so image access rules apply.
    images: {
      show: (principal, id) => images.show(principal, id),
      resolve: async (principal, reference) => (await references.resolve(principal, reference)).image,
    },
    hostTimeoutSeconds: config.hostTimeoutSeconds,
    newId: () => randomUUID(),
    newToken: () => randomBytes(24).toString('base64url'),
    gates: taskTokens,
    snapshots: snapshotImages,
    // Where the API cannot carry a large body (Lambda's 6 MB), agents use presigned multipart.
    snapshotUpload: config.snapshotUpload,
    // A build keeps its instance's last console; a failure to keep it fails no job report.
    finalConsoles: {
      destroyed: (instanceId, consoleLog) =>
        builds.recordFinalConsole(instanceId, consoleLog).catch((error: unknown) => {
          logger.warn('could not keep a build instance console', { instance: instanceId, error });
        }),
    },
  };
  const instances = new InstancesService(instanceDeps);
  // Builds reuse the instances service, the snapshot action and the publish steps as they are.
  const builds: BuildsService = new BuildsService({
    repo: new DynamoBuildRepository(dynamo, table),
    workflows,
    images: instanceDeps.images,
    snapshots: snapshotImages,
    instances: () => instances,
    publishing: () => publishing,
    newId: () => randomUUID(),
    pollSeconds: config.buildPollSeconds,
    clock,
  });
  const publishing = new PublishService({
    repo,
    blobs,
    tasks: taskRepo,
    workflows,
    references,
    instances: () => instances,
    digester,
    sharedBlock: DigestJob.sharedBlock,
    releaseBlock: DigestJob.releaseBlock,
    taskTtlHours,
    requireFormatMatch: config.imageFormats.requireMatch,
  });

  return {
    config,
    agentConnections: agentConnectionsFactory(config, dynamo),
    images,
    imageData: new ImageDataService(repo, blobs, digester, DigestJob.sharedBlock, clock, leaseMs),
    members: new MembersService(repo, config.quotas),
    references,
    recovery: new LeaseRecovery({ repo, leases: repo, tasks: taskRepo, blobs, objects, taskTtlHours }),
    metadefs: new MetadefsService(new DynamoMetadefRepository(dynamo, table), HANGAR_METADEF_SEED),
    imports: new ImportService({
      repo,
      // Imports create images too (legacy tasks, S3 uploads): the same property protections apply.
      images,
      tasks: taskRepo,
      workflows,
      markers: new DynamoEventMarkers(dynamo, table),
      blobs,
      imagesBucket: config.buckets.images,
      staging: new S3BlobStore(s3, config.buckets.staging),
      stagingBucket: config.buckets.staging,
      uploadsBucket: config.buckets.uploads,
      objects,
      multipart,
      fetcher: new SafeWebFetcher(parseAllowList(config.webDownloadAllow)),
      digester,
      sharedBlock: DigestJob.sharedBlock,
      releaseBlock: DigestJob.releaseBlock,
      sizeCap: config.imageSizeCap,
      requireFormatMatch: config.imageFormats.requireMatch,
      taskTtlHours,
      uploadUrlSeconds: config.uploadUrlSeconds,
      leaseMs,
    }),
    exports: new ExportService({
      repo,
      tasks: taskRepo,
      workflows,
      exporter: new QemuImageExporter({
        images: blobs,
        exportStore: (bucket) => new S3BlobStore(s3, bucket),
        digester,
        sharedBlock: DigestJob.sharedBlock,
        releaseBlock: DigestJob.releaseBlock,
      }),
      exportBucket: config.buckets.exports,
      taskTtlHours,
    }),
    tasks: new TasksService(taskRepo, repo),
    publishing,
    builds,
    instances,
    hosts: new HostsService(instanceDeps),
    blobs,
    objects,
    multipart,
  };
}

let given: Partial<Collaborators> = {};
let composed: Services | undefined;

/**
 * The process's services: composed on first use, and again when the configuration is reset
 * (tests change a setting of a running backend) or other collaborators are handed in.
 */
export function services(): Services {
  const config = serviceConfig();
  if (composed?.config !== config) composed = compose(config, given);
  return composed;
}

/** The embedded runner hands its collaborators in before it serves (and takes them back on stop). */
export function useCollaborators(collaborators: Partial<Collaborators> | undefined): void {
  given = { ...collaborators };
  composed = undefined;
}
