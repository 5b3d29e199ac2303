/**
 * What every deployed function may touch, declared in ONE place. Which functions exist comes
 * from ROUTES and functions/tasks/registry.ts; what each may do is declared only here. The CDK
 * app grants exactly this and nothing more, the stateful stack derives the image-writer roles
 * from it, and the infra tests compare the synthesized IAM policies against it. A module that is
 * not declared here fails the synth (apiAccess, taskAccess), so nothing ships with guessed
 * permissions.
 */
import { ROUTES } from '#api/routes';

/** The four buckets, by the name the functions know them under. */
export type BucketName = 'images' | 'uploads' | 'staging' | 'exports';

export interface BucketSpec {
  /** The variable functions/platform/config.ts reads the bucket name from. */
  readonly envVar: string;
  /** The keys functions may touch: grants are scoped to this, not to the whole bucket. */
  readonly objects: string;
  /** Days after which objects are expired by lifecycle; undefined keeps them. */
  readonly expireAfterDays?: number;
}

export const BUCKETS: Readonly<Record<BucketName, BucketSpec>> = {
  // Keys are images/<id>/<uuid> (functions/core/data/image-data.ts); immutable, see stateful-stack.ts.
  images: { envVar: 'HANGAR_IMAGE_BUCKET', objects: 'images/*' },
  // Client uploads (images/<id>, new/<name>) through presigned URLs; imported, then removed.
  uploads: { envVar: 'HANGAR_UPLOAD_BUCKET', objects: '*', expireAfterDays: 7 },
  staging: { envVar: 'HANGAR_STAGING_BUCKET', objects: '*', expireAfterDays: 7 },
  // Converted images under exports/<task>/ (functions/core/transfer/export.ts).
  exports: { envVar: 'HANGAR_EXPORT_BUCKET', objects: 'exports/*', expireAfterDays: 7 },
};

/**
 * read: GetObject (also what a presigned GET is checked against); read-versions: GetObjectVersion
 * (a copy pinned to the version that was read); write: PutObject including multipart (and
 * presigned UploadPart), AbortMultipartUpload; abort: AbortMultipartUpload alone (freeing a
 * partial upload someone else was writing); delete: DeleteObject; list: ListBucket on the
 * bucket, which also turns a HEAD on a missing key into 404 instead of 403.
 */
export type BucketMode = 'read' | 'read-versions' | 'write' | 'abort' | 'delete' | 'list';

export const BUCKET_ACTIONS: Readonly<Record<BucketMode, readonly string[]>> = {
  read: ['s3:GetObject'],
  'read-versions': ['s3:GetObjectVersion'],
  write: ['s3:PutObject', 's3:AbortMultipartUpload'],
  abort: ['s3:AbortMultipartUpload'],
  delete: ['s3:DeleteObject'],
  list: ['s3:ListBucket'],
};

/**
 * R: GetItem/BatchGetItem/Query; RW adds the writes TransactWriteItems is authorized against.
 * No Scan: nothing on a request path may scan the table.
 */
export type TableMode = 'R' | 'RW';

export const TABLE_ACTIONS: Readonly<Record<TableMode, readonly string[]>> = {
  R: ['dynamodb:GetItem', 'dynamodb:BatchGetItem', 'dynamodb:Query', 'dynamodb:ConditionCheckItem'],
  RW: [
    'dynamodb:GetItem',
    'dynamodb:BatchGetItem',
    'dynamodb:Query',
    'dynamodb:ConditionCheckItem',
    'dynamodb:PutItem',
    'dynamodb:UpdateItem',
    'dynamodb:DeleteItem',
    'dynamodb:BatchWriteItem',
  ],
};

/**
 * The agents' connections table (AWS WebSocket API, infra/app-stack.ts): put (a $connect),
 * query (a host's connections), query-by-connection (the index $disconnect looks its host up
 * in), delete (a $disconnect, or a post that answered 410).
 */
export type ConnectionsMode = 'put' | 'query' | 'query-by-connection' | 'delete';

export const CONNECTIONS_ACTIONS: Readonly<Record<ConnectionsMode, readonly string[]>> = {
  put: ['dynamodb:PutItem'],
  query: ['dynamodb:Query'],
  'query-by-connection': ['dynamodb:Query'],
  delete: ['dynamodb:DeleteItem'],
};

/** What Lambda's poller reads a DynamoDB stream with (ListStreams takes no resource: `*`). */
export const STREAM_ACTIONS = ['dynamodb:DescribeStream', 'dynamodb:GetRecords', 'dynamodb:GetShardIterator'];
export const STREAM_LIST_ACTION = 'dynamodb:ListStreams';

export interface Access {
  readonly table?: TableMode;
  /** The agents' connections table, by mode. */
  readonly agentConnections?: readonly ConnectionsMode[];
  /** execute-api:ManageConnections (POST @connections) on the agents' WebSocket stage. */
  readonly postsToAgentSockets?: boolean;
  /** Invoked by the service table's stream (job inserts): the stream read actions. */
  readonly readsJobStream?: boolean;
  readonly buckets?: Readonly<Partial<Record<BucketName, readonly BucketMode[]>>>;
  /** Workflows (STATE_MACHINES keys, functions/tasks/registry.ts) started: StartExecution + ARN env var. */
  readonly startsWorkflows?: readonly string[];
  /** Workflows whose `.waitForTaskToken` states it answers: SendTaskSuccess/SendTaskFailure. */
  readonly answersWorkflows?: readonly string[];
}

/**
 * What freeing an image's data takes (freeImageData, functions/core/images/recovery.ts): its
 * blob, a partial one (aborting its multipart upload), every object under its prefix (list), its
 * staged object, an import's uploaded source.
 */
const FREES_IMAGE_DATA: Access['buckets'] = {
  images: ['abort', 'delete', 'list'],
  staging: ['delete'],
  uploads: ['delete'],
};

/**
 * The API modules of functions/api (one Lambda each, named by ROUTES). Their timeout stays
 * under API Gateway's 30 s integration limit.
 */
export const API_ACCESS: Readonly<Record<string, Access & { memorySize?: number }>> = {
  versions: {},
  schemas: {},
  // DELETE tombstones the record, then frees all the image owns (functions/api/images.ts).
  images: { table: 'RW', buckets: FREES_IMAGE_DATA },
  // Upload writes images/<id>/<uuid> (multipart), removes it on failure; download presigns a GET.
  // Two hash threads (md5, sha512) want more than one vCPU's worth of memory share.
  'image-data': { table: 'RW', buckets: { images: ['read', 'write', 'delete'] }, memorySize: 1024 },
  // stage: replaces staging/<id>; multipart: creates, presigns, completes, aborts uploads/images/<id>.
  'image-import': {
    table: 'RW',
    buckets: { staging: ['write', 'delete'], uploads: ['write'] },
    startsWorkflows: ['import'],
  },
  // Export tasks and Glance's legacy import task start their workflows; listing reads the table.
  tasks: { table: 'RW', startsWorkflows: ['import', 'export'] },
  // name:tag references and their history; retention hides and deactivates images (records only);
  // publish starts the publish workflow.
  references: { table: 'RW', startsWorkflows: ['publish'] },
  // Instances and their job queue; agents download images via image-data. A snapshot whose job
  // cannot be queued, or whose host is lost, is discarded here: its data freed as images' DELETE
  // frees it (freeImageData).
  instances: { table: 'RW', buckets: FREES_IMAGE_DATA },
  // Builds: records only; POST starts the build workflow.
  builds: { table: 'RW', startsWorkflows: ['build'] },
  // A finished build job answers the publish boot gate waiting on it (core/instances/instances-service.ts),
  // in the publish machine or in the build machine, which runs the publish steps itself.
  // A failed snapshot job discards its image here, freeing its data as images' DELETE does.
  hosts: { table: 'RW', buckets: FREES_IMAGE_DATA, answersWorkflows: ['publish', 'build'] },
  // Image sharing: member records next to the image's.
  members: { table: 'RW' },
  // Metadata definitions catalogue (records only); writes its seed on first use.
  metadefs: { table: 'RW' },
};

/**
 * The Step Functions task modules (functions/tasks/registry.ts maps ASL placeholders to them),
 * by module path. Each runs with exactly this access.
 */
export const TASK_ACCESS: Readonly<Record<string, Access>> = {
  'functions/tasks/import-begin.ts': { table: 'RW' },
  // Reads the source once (pinned to its version), copies it under a fresh images/ key, and
  // removes that key again on failure; a web-download streams into images/ instead.
  'functions/tasks/import-copy.ts': {
    table: 'R',
    buckets: {
      uploads: ['read', 'read-versions'],
      staging: ['read', 'read-versions'],
      images: ['write', 'delete'],
    },
  },
  // Activates the image, then removes the source (an upload or a staged file).
  'functions/tasks/import-activate.ts': {
    table: 'RW',
    buckets: { uploads: ['delete'], staging: ['delete'] },
  },
  // Undoes an import: the new blob, the source, the image state.
  'functions/tasks/import-fail.ts': {
    table: 'RW',
    buckets: { images: ['delete'], uploads: ['delete'], staging: ['delete'] },
  },
  'functions/tasks/export-begin.ts': { table: 'RW' },
  // qemu-img convert from the image blob into exports/<task>/<image>.<format> (+ .sha512).
  'functions/tasks/export-convert.ts': {
    table: 'R',
    buckets: { images: ['read'], exports: ['write', 'delete'] },
  },
  'functions/tasks/export-finish.ts': { table: 'RW' },
  'functions/tasks/publish-begin.ts': { table: 'RW' },
  // Re-reads the candidate's blob once (hash + inspect); checks the reference (records only).
  'functions/tasks/publish-verify.ts': { table: 'R', buckets: { images: ['read'] } },
  // Creates the gate instance and its build job. Not granted SendTask*: granting it the machine's
  // ARN would make the machine, the function and its policy depend on each other; the one path
  // that answers a token here (a retried state whose build already ended) ends in the state's
  // timeout instead.
  'functions/tasks/publish-boot.ts': { table: 'RW' },
  // Destroys the gate instance (queues the job), moves the reference, finishes the task.
  'functions/tasks/publish-cleanup.ts': { table: 'RW' },
  'functions/tasks/publish-move.ts': { table: 'RW' },
  'functions/tasks/publish-fail.ts': { table: 'RW' },
  // The build's own steps (one function): records (the build instance and its jobs, the snapshot
  // image, the publish task, the reference), and Fail Build frees a discarded snapshot's data.
  'functions/tasks/build-step.ts': {
    table: 'RW',
    buckets: { images: ['abort', 'delete', 'list'], staging: ['delete'] },
  },
};

/**
 * Functions invoked by S3 event notifications (S3_TRIGGERS in functions/tasks/registry.ts), by
 * module path. Wired only when the module exists.
 */
export const TRIGGER_ACCESS: Readonly<
  Record<string, Access & { memorySize?: number; timeoutSeconds?: number }>
> = {
  // Claims the event, reads the upload's metadata (list: a vanished key is 404, not 403),
  // creates the image/task, starts the import, and removes uploads it refuses.
  'functions/triggers/s3-upload.ts': {
    table: 'RW',
    buckets: { uploads: ['read', 'delete', 'list'] },
    startsWorkflows: ['import'],
    timeoutSeconds: 60,
  },
};

/**
 * Functions an EventBridge schedule invokes (SCHEDULES in functions/tasks/registry.ts), by module
 * path. Each must be declared: a scheduled module without an entry fails the synth.
 */
export const SCHEDULE_ACCESS: Readonly<
  Record<string, Access & { memorySize?: number; timeoutSeconds?: number }>
> = {
  // Every name's retention: reads policies, references and history, hides and deactivates image
  // records (records only; image data is never touched). Names run one after another, hence
  // more time than a request gets.
  'functions/triggers/retention-sweep.ts': { table: 'RW', timeoutSeconds: 300 },
  // Recovers images whose upload/stage/import lease expired: records and tasks, then the partial
  // blob and its multipart upload, the staged or uploaded source object. Never writes data.
  'functions/triggers/lease-sweep.ts': {
    table: 'RW',
    buckets: { images: ['abort', 'delete'], staging: ['delete'], uploads: ['delete'] },
    timeoutSeconds: 300,
  },
};

/** The Lambda authorizer for authMode=keystone (written separately; used if it exists). */
export const KEYSTONE_AUTHORIZER = {
  entry: 'functions/auth/keystone-authorizer.ts',
  access: {} as Access,
  timeoutSeconds: 10,
};

/**
 * The agents' WebSocket API on AWS (issue 13: agents told, not polling): its $connect
 * authorizer, its $connect and $disconnect routes, and the notifier the table's stream invokes
 * for every job insert. Each exists once, whatever ROUTES says; the embedded gateway serves the
 * same protocol itself (local/agent-sockets.ts).
 */
export type SocketRole = 'authorizer' | 'connect' | 'disconnect' | 'notifier';

export const AGENT_SOCKET_FUNCTIONS: Readonly<
  Record<SocketRole, { entry: string; id: string; access: Access; timeoutSeconds?: number }>
> = {
  // Checks the host token the way the deployment's auth mode does (a JWT against its issuer,
  // Keystone, or the token layer); touches nothing.
  authorizer: {
    entry: 'functions/auth/agent-socket-authorizer.ts',
    id: 'AgentSocketAuthorizerFunction',
    access: {},
    timeoutSeconds: 10,
  },
  connect: {
    entry: 'functions/sockets/agent-connect.ts',
    id: 'AgentConnectFunction',
    access: { agentConnections: ['put'] },
  },
  disconnect: {
    entry: 'functions/sockets/agent-disconnect.ts',
    id: 'AgentDisconnectFunction',
    access: { agentConnections: ['query-by-connection', 'delete'] },
  },
  // Reads the host's connections, posts to them, forgets the ones that answer 410.
  notifier: {
    entry: 'functions/triggers/job-notifier.ts',
    id: 'JobNotifierFunction',
    access: { agentConnections: ['query', 'delete'], postsToAgentSockets: true, readsJobStream: true },
    timeoutSeconds: 60,
  },
};

/** The API modules ROUTES names, in first-seen order. */
export function apiModules(): string[] {
  return [...new Set(ROUTES.map((route) => route.fn))];
}

export function apiAccess(fn: string): Access & { memorySize?: number } {
  const access = API_ACCESS[fn];
  if (!access)
    throw new Error(
      `functions/api/${fn}.ts serves a route in ROUTES but declares no access: add '${fn}' to ` +
        'API_ACCESS in infra/declarations.ts with exactly the table/bucket access it needs.',
    );
  return access;
}

export function taskAccess(module: string, declared: Readonly<Record<string, Access>> = TASK_ACCESS): Access {
  const access = declared[module];
  if (!access)
    throw new Error(
      `${module} is a state-machine task (functions/tasks/registry.ts) but declares no access: add it to ` +
        'TASK_ACCESS in infra/declarations.ts with exactly the table/bucket access it needs.',
    );
  return access;
}

/** Whether an access declaration writes or deletes image objects (what the bucket policy lets through). */
export function writesImages(access: Access): boolean {
  const modes = access.buckets?.images ?? [];
  return modes.includes('write') || modes.includes('delete');
}
