/**
 * The whole backend on one machine: the AWS stand-ins, the table and buckets, and the HTTP
 * gateway in front of the Lambda handlers. Used by `npm start` (local/main.ts) and by the
 * integration tests (test/helpers/backend.ts).
 *
 * The runner hands the service its settings as values (useServiceSettings) and its collaborators
 * (the in-process Step Functions runner, SDK clients on the stand-ins' endpoints and key pair) to
 * the composition root (useCollaborators), not through process.env. The handlers share the
 * process's services, so one process runs one backend at a time.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import {
  CreateBucketCommand,
  HeadBucketCommand,
  PutBucketCorsCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { type TokenFile, TokenFileSchema } from '#adapters/auth/token-file';
import {
  type AwsClientSettings,
  type AwsClients,
  createAwsClients,
  destroyAwsClients,
} from '#adapters/aws-clients';
import { createTableInput, TABLE_DEFINITION } from '#adapters/dynamo/table-definition';
import { UPLOAD_CORS_RULE } from '#adapters/s3/upload-cors';
import { services, useCollaborators } from '#edge/compose';
import { givenServiceSettings, localConfig, serviceConfig, useServiceSettings } from '#platform/config';
import { logger } from '#platform/logger';
import { handler as leaseSweep } from '../functions/triggers/lease-sweep.ts';
import { handler as multipartSweep } from '../functions/triggers/multipart-sweep.ts';
import { handler as retentionSweep } from '../functions/triggers/retention-sweep.ts';
import { AgentSocketHub } from './agent-sockets.ts';
import { GatewayCluster } from './cluster.ts';
import { type Gateway, startGateway } from './gateway.ts';
import { connectUploadTrigger } from './s3-events.ts';
import { startSchedule } from './schedule.ts';
import { LOCAL_REGION, type S3EventRecord, type StandIns, startStandIns } from './stand-ins.ts';
import { LocalStepFunctions } from './step-functions.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface BackendOptions {
  /** 0 picks a free port. Default 9292, Glance's port. */
  port?: number;
  host?: string;
  /** Disk storage only: where DynamoDB, S3 and the development token file live. Default `.hangar`. */
  dataDir?: string;
  /** memory: nothing survives stop(); all state goes to a temporary directory that stop() removes. */
  storage: 'disk' | 'memory';
  /**
   * A token file (see functions/adapters/auth/token-file.ts); without one a development file is made.
   * Not read in keystone mode, and no development file is made then: Keystone alone issues tokens.
   */
  tokensFile?: string;
  /** keystone: tokens are checked by the Keystone named by HANGAR_KEYSTONE_* (keystone-auth.ts). */
  authMode?: 'tokens' | 'keystone';
  logLevel?: LogLevel;
  /**
   * Gateway processes (HANGAR_WORKERS for `npm start`). 1, the default here: the gateway runs in
   * this process (tests swap handlers and settings in-process). More: see local/cluster.ts.
   */
  workers?: number;
  /**
   * Service settings by their HANGAR_* names (e.g. HANGAR_IMAGE_SIZE_CAP), over the environment's;
   * the runner's own (auth mode, token file, local workflows) win over these.
   */
  settings?: Readonly<Record<string, string>>;
}

export interface Backend {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Where state lives: the data directory, or the temporary directory in memory mode. */
  readonly stateDir: string;
  /** The token file in use; none in keystone mode. */
  readonly tokensFile?: string;
  /** Set when the backend manages the development token file and it holds a plain admin token. */
  readonly adminToken?: string;
  readonly endpoints: { readonly dynamodb: string; readonly s3: string };
  /**
   * How the service's SDK clients reach the stand-ins (endpoints, region, key pair): for tests and
   * tools of this process that make their own. Nothing of it is written into process.env.
   */
  readonly clientSettings: AwsClientSettings & {
    readonly region: string;
    readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
    readonly endpoints: { readonly dynamodb: string; readonly s3: string };
  };
  /** The service's own SDK clients (closed on stop()). */
  readonly clients: AwsClients;
  /** The stand-ins' key pair (AWS shared-credentials file, profile `hangar`, mode 0600). */
  readonly credentialsFile: string;
  readonly pids: { readonly dynamodb: number; readonly s3: number };
  /** Gateway processes serving the port: 1 is this process; more are workers (local/cluster.ts). */
  readonly workers: number;
  /** The worker processes' pids now (empty when the gateway runs in this process). */
  gatewayPids(): number[];
  onS3Event(listener: (record: S3EventRecord) => void): () => void;
  onUnexpectedExit(listener: (name: string, code: number | null, signal: string | null) => void): () => void;
  /** Resolves when no S3-trigger invocation and no state machine execution is running. */
  idle(): Promise<void>;
  /** Idempotent. */
  stop(): Promise<void>;
}

/** Reuses `<dir>/tokens.json` or creates it with one admin token. */
function developmentTokens(dir: string): { path: string; adminToken?: string } {
  const path = join(dir, 'tokens.json');
  if (existsSync(path)) {
    const parsed = TokenFileSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
    // A sha256: key cannot be shown back to the user, only a plain one.
    const admin = Object.entries(parsed.tokens).find(
      ([key, entry]) =>
        !key.startsWith('sha256:') && entry.project === 'admin' && entry.roles.includes('admin'),
    );
    return admin ? { path, adminToken: admin[0] } : { path };
  }
  const adminToken = randomBytes(24).toString('base64url');
  const file: TokenFile = {
    tokens: { [adminToken]: { project: 'admin', user: 'admin', roles: ['admin', 'member'] } },
  };
  // 0600 and 'wx': a bearer token file, never world-readable, never clobbered.
  writeFileSync(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return { path, adminToken };
}

function checkTokensFile(path: string): void {
  try {
    TokenFileSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
  } catch (error) {
    throw new Error(`cannot use token file ${path}: ${error instanceof Error ? error.message : error}`, {
      cause: error,
    });
  }
}

async function ensureTable(client: DynamoDBDocumentClient, tableName: string): Promise<void> {
  try {
    await client.send(new CreateTableCommand(createTableInput(tableName)));
    logger.info('created table', { table: tableName });
  } catch (error) {
    if (!(error instanceof ResourceInUseException)) throw error;
    // A data directory made by an older key design keeps its old indexes: say so, do not migrate.
    const described = await client.send(new DescribeTableCommand({ TableName: tableName }));
    const have = new Set((described.Table?.GlobalSecondaryIndexes ?? []).map((i) => i.IndexName));
    const missing = TABLE_DEFINITION.globalSecondaryIndexes.filter((i) => !have.has(i.indexName));
    if (missing.length > 0) {
      logger.warn('existing table lacks indexes; delete the data directory to recreate it', {
        table: tableName,
        missing: missing.map((i) => i.indexName),
      });
    }
  }
  const ttl = await client.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
  if (ttl.TimeToLiveDescription?.TimeToLiveStatus !== 'ENABLED') {
    await client.send(
      new UpdateTimeToLiveCommand({
        TableName: tableName,
        TimeToLiveSpecification: { AttributeName: TABLE_DEFINITION.timeToLiveAttribute, Enabled: true },
      }),
    );
  }
}

async function ensureBucket(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return;
  } catch (error) {
    if (!(error instanceof S3ServiceException && error.$metadata.httpStatusCode === 404)) throw error;
  }
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  logger.info('created bucket', { bucket });
}

export async function startBackend(options: BackendOptions): Promise<Backend> {
  // First, so that the logger honours the level from the first line on.
  const given = { ...options.settings, ...(options.logLevel ? { HANGAR_LOG_LEVEL: options.logLevel } : {}) };
  useServiceSettings(given);
  const memory = options.storage === 'memory';
  const stateDir = memory ? mkdtempSync(join(tmpdir(), 'hangar-')) : resolve(options.dataDir ?? '.hangar');
  mkdirSync(stateDir, { recursive: true });
  const removeScratch = () => {
    if (memory) rmSync(stateDir, { recursive: true, force: true });
  };
  // Also when the process exits without stop() (a second Ctrl+C): scratch files never outlive us.
  process.once('exit', removeScratch);
  const removeStateDir = () => {
    process.removeListener('exit', removeScratch);
    removeScratch();
  };

  let standIns: StandIns | undefined;
  let gateway: Gateway | undefined;
  let background: (() => Promise<void>) | undefined;
  let clients: AwsClients | undefined;
  try {
    let tokensFile: string | undefined;
    let adminToken: string | undefined;
    if (options.authMode === 'keystone') {
      // A token it would print or write here would only be refused: Keystone validates every one.
      if (options.tokensFile)
        logger.warn('keystone mode: the token file is not read', { file: options.tokensFile });
    } else if (options.tokensFile) {
      tokensFile = resolve(options.tokensFile);
      checkTokensFile(tokensFile);
    } else {
      ({ path: tokensFile, adminToken } = developmentTokens(stateDir));
    }

    standIns = await startStandIns({
      directory: stateDir,
      storage: options.storage,
      verbose: options.logLevel === 'debug',
    });

    useServiceSettings({
      // Image bytes as files under the state directory unless HANGAR_BLOB_STORE=s3 is given.
      HANGAR_BLOB_STORE: localConfig().HANGAR_BLOB_STORE,
      HANGAR_BLOB_DIR: join(stateDir, 'blobs'),
      ...given,
      HANGAR_S3_FORCE_PATH_STYLE: 'true',
      HANGAR_BLOB_DELIVERY: 'stream',
      HANGAR_AUTH_MODE: options.authMode ?? 'tokens',
      ...(tokensFile ? { HANGAR_TOKENS: tokensFile } : {}),
      // State machines run in-process (local/step-functions.ts) instead of on AWS Step Functions.
      HANGAR_WORKFLOWS: 'local',
    });
    const config = serviceConfig();
    // The service's clients, on this backend's stand-ins: handed to compose, never via AWS_* variables.
    const clientSettings = {
      region: LOCAL_REGION,
      credentials: standIns.credentials,
      endpoints: { dynamodb: standIns.dynamodb.endpoint, s3: standIns.s3.endpoint },
      s3ForcePathStyle: true,
    };
    const own = createAwsClients(clientSettings);
    clients = own;
    await ensureTable(own.dynamo, config.tableName);
    await Promise.all(Object.values(config.buckets).map((bucket) => ensureBucket(own.s3, bucket)));
    // As on AWS: the console PUTs multipart parts from its own origin (functions/adapters/s3/upload-cors.ts).
    await own.s3.send(
      new PutBucketCorsCommand({
        Bucket: config.buckets.uploads,
        CORSConfiguration: {
          CORSRules: [
            {
              AllowedMethods: [...UPLOAD_CORS_RULE.allowedMethods],
              AllowedOrigins: [...UPLOAD_CORS_RULE.allowedOrigins],
              AllowedHeaders: [...UPLOAD_CORS_RULE.allowedHeaders],
              ExposeHeaders: [...UPLOAD_CORS_RULE.exposedHeaders],
              MaxAgeSeconds: UPLOAD_CORS_RULE.maxAgeSeconds,
            },
          ],
        },
      }),
    );
    // State machines run in-process, as on AWS with Lambda: the services start and answer them here.
    const workflows = new LocalStepFunctions();
    // The agents' sockets on the gateway hear of every job the services enqueue: here, or, with
    // gateway workers, on whichever worker holds the socket (the cluster tells them all).
    const workerCount = Math.max(1, Math.floor(options.workers ?? 1));
    const cluster = workerCount > 1 ? new GatewayCluster() : undefined;
    const agentSockets = new AgentSocketHub();
    useCollaborators({
      workflows,
      taskTokens: workflows,
      jobNotifier: cluster ?? agentSockets,
      clients: own,
    });
    // The metadefs catalogue's seed, at first start (idempotent; Lambdas seed on first use).
    await services().metadefs.ensureSeeded();

    // s3rver's events drive the S3 trigger.
    const events = standIns;
    const trigger = connectUploadTrigger((listener) => events.onS3Event(listener), config.buckets.uploads);
    const stopWorkflows = async () => {
      await trigger.stop();
      await workflows.stop();
      useCollaborators(undefined);
    };
    background = stopWorkflows;

    // One process serves a data directory, and none of its work has started yet: every lease
    // still held belongs to a process that died (a crash mid-upload or mid-import). Recovered
    // before the first request, so a retry never meets the stale lease.
    const recovered = await leaseSweep({ everyLease: true });
    if (recovered.recovered.length > 0 || recovered.failed.length > 0)
      logger.warn('recovered interrupted uploads and imports', {
        recovered: recovered.recovered,
        failed: recovered.failed,
      });

    const listen = { host: options.host ?? '127.0.0.1', port: options.port ?? 9292 };
    gateway = cluster
      ? await cluster.start(
          { workers: workerCount, ...listen, settings: givenServiceSettings(), clients: clientSettings },
          { workflows, taskTokens: workflows },
        )
      : await startGateway({
          ...listen,
          agentSockets,
          consoleConnect: [new URL(standIns.s3.endpoint).origin],
        });
    // What the EventBridge rule does on AWS; last, so the first run finds everything started.
    const sweep = startSchedule({
      name: 'retention-sweep',
      everyMs: config.retentionSweepSeconds * 1000,
      run: retentionSweep,
    });
    // What the buckets' AbortIncompleteMultipartUpload lifecycle rule does on AWS.
    const partsSweep = startSchedule({
      name: 'multipart-sweep',
      everyMs: config.multipartSweepSeconds * 1000,
      run: multipartSweep,
    });
    // What the lease-sweep EventBridge rule does on AWS (a local handler that hangs is recovered here too).
    const leases = startSchedule({
      name: 'lease-sweep',
      everyMs: config.leaseSweepSeconds * 1000,
      run: () => leaseSweep(),
    });
    logger.info('backend started', {
      url: gateway.url,
      storage: options.storage,
      stateDir,
      dynamodb: { pid: standIns.dynamodb.pid, endpoint: standIns.dynamodb.endpoint },
      s3: { pid: standIns.s3.pid, endpoint: standIns.s3.endpoint },
      gatewayWorkers: cluster ? cluster.pids() : [],
      retentionSweepSeconds: config.retentionSweepSeconds,
      multipartSweepSeconds: config.multipartSweepSeconds,
      leaseSeconds: config.leaseSeconds,
      leaseSweepSeconds: config.leaseSweepSeconds,
    });

    const started = { standIns, gateway };
    let stopping: Promise<void> | undefined;
    return {
      url: gateway.url,
      host: gateway.host,
      port: gateway.port,
      stateDir,
      ...(tokensFile ? { tokensFile } : {}),
      ...(adminToken ? { adminToken } : {}),
      endpoints: clientSettings.endpoints,
      clientSettings,
      clients: own,
      credentialsFile: standIns.credentialsFile,
      pids: { dynamodb: standIns.dynamodb.pid, s3: standIns.s3.pid },
      workers: workerCount,
      gatewayPids: () => cluster?.pids() ?? [],
      onS3Event: (listener) => started.standIns.onS3Event(listener),
      onUnexpectedExit: (listener) => started.standIns.onUnexpectedExit(listener),
      async idle() {
        // A trigger may start an execution and an execution may write to S3: settle both ways.
        do {
          await trigger.idle();
          await workflows.idle();
        } while (trigger.pending() || workflows.pending());
      },
      stop() {
        stopping ??= (async () => {
          // Requests first, so none is cut off by a vanished stand-in.
          await started.gateway.close();
          // Before the stand-ins, so a sweep in progress finishes against a live table.
          await sweep.stop();
          await partsSweep.stop();
          await leases.stop();
          await stopWorkflows();
          destroyAwsClients(own);
          await started.standIns.stop();
          removeStateDir();
          logger.info('backend stopped', {});
          // The settings end with the backend; the log level stays for work still winding down.
          useServiceSettings(options.logLevel ? { HANGAR_LOG_LEVEL: options.logLevel } : undefined);
        })();
        return stopping;
      },
    };
  } catch (error) {
    await gateway?.close(0);
    await background?.();
    if (clients) destroyAwsClients(clients);
    await standIns?.stop();
    removeStateDir();
    useCollaborators(undefined);
    useServiceSettings(undefined);
    throw error;
  }
}
