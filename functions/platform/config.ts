/**
 * The one place that reads configuration from the environment. Everything else asks here.
 * Parsed once, lazily, from the environment and the settings the local runner gives (useServiceSettings).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { CONTAINER_FORMATS, DISK_FORMATS } from '#core/images/image';
import { InvalidPropertyProtections, PropertyProtections } from '#core/images/property-protections';

const bytes = z.coerce.number().int().nonnegative();
/** A comma-separated list of format names (Glance's ListOpt), at least one. */
const formatList = (defaults: readonly string[]) =>
  z
    .string()
    .default(defaults.join(','))
    .transform((text) =>
      text
        .split(',')
        .map((entry) => entry.trim())
        .filter((entry) => entry !== ''),
    )
    .pipe(
      z.array(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'format names are letters, digits, _ . -')).min(1),
    );

const ServiceConfigSchema = z.object({
  HANGAR_TABLE: z.string().min(1).default('hangar'),
  HANGAR_IMAGE_BUCKET: z.string().min(1).default('hangar-images'),
  HANGAR_UPLOAD_BUCKET: z.string().min(1).default('hangar-uploads'),
  HANGAR_STAGING_BUCKET: z.string().min(1).default('hangar-staging'),
  HANGAR_EXPORT_BUCKET: z.string().min(1).default('hangar-exports'),
  HANGAR_AUTH_MODE: z.enum(['tokens', 'keystone', 'claims']).default('tokens'),
  HANGAR_TOKENS: z.string().optional(),
  /** keystone mode: Identity v3 (with or without the /v3) and Hangar's own service account. */
  HANGAR_KEYSTONE_URL: z.url().optional(),
  HANGAR_KEYSTONE_USER: z.string().min(1).optional(),
  HANGAR_KEYSTONE_PASSWORD: z.string().min(1).optional(),
  HANGAR_KEYSTONE_PROJECT: z.string().min(1).optional(),
  HANGAR_KEYSTONE_USER_DOMAIN: z.string().min(1).default('Default'),
  HANGAR_KEYSTONE_PROJECT_DOMAIN: z.string().min(1).default('Default'),
  /** Validated tokens kept (until they expire), least recently used first out. */
  HANGAR_KEYSTONE_CACHE_SIZE: z.coerce.number().int().positive().default(10000),
  /** ...and trusted for at most this long (keystonemiddleware's token_cache_time): revocation's delay. */
  HANGAR_KEYSTONE_CACHE_SECONDS: z.coerce.number().int().min(0).default(300),
  HANGAR_KEYSTONE_TIMEOUT_MS: z.coerce.number().int().positive().default(10000),
  /** claims mode: the authorizer's claim (or Lambda authorizer context key) names. */
  HANGAR_CLAIM_PROJECT: z.string().min(1).default('project'),
  HANGAR_CLAIM_ROLES: z.string().min(1).default('roles'),
  HANGAR_CLAIM_USER: z.string().min(1).default('sub'),
  /** Glance's image_size_cap: 1 TiB by default. */
  /**
   * The agents' WebSocket API on AWS (infra/app-stack.ts): the connections table, the stage's
   * management endpoint (https://<api>.execute-api.<region>.amazonaws.com/<stage>) the notifier
   * posts to, and in jwt mode the issuer and audiences its $connect authorizer verifies tokens
   * against (the HTTP API's JWT authorizer cannot serve a WebSocket API).
   */
  HANGAR_AGENT_CONNECTIONS_TABLE: z.string().min(1).optional(),
  HANGAR_AGENT_SOCKET_ENDPOINT: z.url({ protocol: /^https?$/ }).optional(),
  HANGAR_JWT_ISSUER: z.url({ protocol: /^https?$/ }).optional(),
  HANGAR_JWT_AUDIENCE: z.string().default(''),
  HANGAR_JWT_TOKEN_HEADER: z.string().min(1).default('X-Auth-Token'),
  HANGAR_IMAGE_SIZE_CAP: bytes.default(1099511627776),
  HANGAR_PROPERTY_QUOTA: z.coerce.number().int().positive().default(128),
  HANGAR_TAG_QUOTA: z.coerce.number().int().positive().default(128),
  HANGAR_MEMBER_QUOTA: z.coerce.number().int().positive().default(128),
  /**
   * Glance's [image_format] require_image_format_match: uploaded and imported content must be the
   * declared disk_format. Unsafe content is refused either way.
   */
  HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: z.stringbool().default(true),
  /** Glance's [image_format] disk_formats and container_formats: the values images may take. */
  HANGAR_DISK_FORMATS: formatList(DISK_FORMATS),
  HANGAR_CONTAINER_FORMATS: formatList(CONTAINER_FORMATS),
  /**
   * Glance's property_protection_file: a path, or (on AWS, where there is no such file) the file's
   * text itself in HANGAR_PROPERTY_PROTECTIONS. Neither (or empty): no protections.
   */
  HANGAR_PROPERTY_PROTECTION_FILE: z.string().optional(),
  HANGAR_PROPERTY_PROTECTIONS: z.string().optional(),
  /** Glance's property_protection_rule_format; only `roles` is supported. */
  HANGAR_PROPERTY_PROTECTION_RULE_FORMAT: z.string().default('roles'),
  /** stream: the handler returns image bytes itself (local gateway); redirect: a presigned S3 URL (Lambda). */
  HANGAR_BLOB_DELIVERY: z.enum(['stream', 'redirect']).default('stream'),
  /**
   * How clients should send image bytes, advertised by GET /v2/info/upload: put (PUT
   * /v2/images/{id}/file streams the body) or multipart (presigned, where the API cannot carry a
   * large body: API Gateway and Lambda). Default: multipart exactly when HANGAR_BLOB_DELIVERY=redirect.
   */
  HANGAR_UPLOAD_METHOD: z.enum(['put', 'multipart']).optional(),
  /** How host agents upload snapshots (put or multipart). Default: HANGAR_UPLOAD_METHOD's. */
  HANGAR_SNAPSHOT_UPLOAD: z.enum(['put', 'multipart']).optional(),
  /**
   * Where image bytes live: s3 (the images bucket; on AWS always) or fs (files under
   * HANGAR_BLOB_DIR; the embedded runner's default, see README "Performance").
   */
  HANGAR_BLOB_STORE: z.enum(['s3', 'fs']).default('s3'),
  HANGAR_BLOB_DIR: z.string().min(1).optional(),
  /** s3rver needs path-style URLs; real S3 does not. */
  HANGAR_S3_FORCE_PATH_STYLE: z.stringbool().default(false),
  HANGAR_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** stepfunctions: StartExecution on AWS; local: the runner local/backend.ts passes to compose. */
  HANGAR_WORKFLOWS: z.enum(['stepfunctions', 'local']).default('stepfunctions'),
  HANGAR_IMPORT_STATE_MACHINE_ARN: z.string().optional(),
  HANGAR_EXPORT_STATE_MACHINE_ARN: z.string().optional(),
  HANGAR_PUBLISH_STATE_MACHINE_ARN: z.string().optional(),
  HANGAR_BUILD_STATE_MACHINE_ARN: z.string().optional(),
  /** How often a build's state machine looks at its instance, snapshot and publish (Wait states). */
  HANGAR_BUILD_POLL_SECONDS: z.coerce.number().int().min(1).max(300).default(10),
  /** web-download: hosts, IPs or CIDRs that may be private/loopback (comma-separated). Empty: none. */
  HANGAR_WEB_DOWNLOAD_ALLOW: z.string().default(''),
  /** Glance's task_time_to_live: finished tasks expire this many hours later. */
  HANGAR_TASK_TTL_HOURS: z.coerce.number().positive().default(48),
  /** Lifetime of presigned multipart-upload part URLs. */
  HANGAR_UPLOAD_URL_SECONDS: z.coerce.number().int().min(60).max(604800).default(3600),
  /** Placement skips a host not heard from (registration or heartbeat) for this long. */
  HANGAR_HOST_TIMEOUT_SECONDS: z.coerce.number().int().positive().default(180),
  /**
   * The embedded runner's retention sweep period (0: off). On AWS an EventBridge rule runs the
   * sweep instead (CDK context retentionSweepMinutes). At most what one setTimeout can wait.
   */
  HANGAR_RETENTION_SWEEP_SECONDS: z.coerce.number().int().min(0).max(2_147_483).default(3600),
  /** The embedded runner's multipart sweep period (0: off). On AWS the buckets' lifecycle rule does it. */
  HANGAR_MULTIPART_SWEEP_SECONDS: z.coerce.number().int().min(0).max(2_147_483).default(3600),
  /** The sweep aborts multipart uploads initiated longer ago than this (keep it above the upload URL lifetime). */
  HANGAR_MULTIPART_MAX_AGE_SECONDS: z.coerce.number().int().min(0).default(86_400),
  /**
   * How long an upload's, stage's or import's lease on its image lasts without a heartbeat (the
   * holder renews it every third of this). A lease this old means its server died: the lease
   * sweep puts the image back to queued and removes the partial bytes.
   */
  HANGAR_LEASE_SECONDS: z.coerce.number().int().min(3).max(86_400).default(60),
  /** The embedded runner's lease sweep period (0: start-up only). On AWS: leaseSweepMinutes. */
  HANGAR_LEASE_SWEEP_SECONDS: z.coerce.number().int().min(0).max(2_147_483).default(60),
});

export type ServiceConfig = {
  tableName: string;
  buckets: { images: string; uploads: string; staging: string; exports: string };
  authMode: 'tokens' | 'keystone' | 'claims';
  tokensFile: string | undefined;
  keystone: {
    url: string | undefined;
    user: string | undefined;
    password: string | undefined;
    project: string | undefined;
    userDomain: string;
    projectDomain: string;
    cacheSize: number;
    cacheSeconds: number;
    timeoutMs: number;
  };
  claims: { project: string; roles: string; user: string };
  agentSockets: { connectionsTable: string | undefined; managementEndpoint: string | undefined };
  jwt: { issuer: string | undefined; audience: string[]; tokenHeader: string };
  imageSizeCap: number;
  quotas: { properties: number; tags: number; members: number };
  imageFormats: {
    /** Glance's require_image_format_match. */
    requireMatch: boolean;
    disk: string[];
    container: string[];
  };
  /** PropertyProtections.NONE when no protections are configured. */
  propertyProtections: PropertyProtections;
  blobDelivery: 'stream' | 'redirect';
  /** What GET /v2/info/upload puts first: the way image bytes should come in. */
  uploadMethod: 'put' | 'multipart';
  snapshotUpload: 'put' | 'multipart';
  /** The images bucket, or a directory (fs: no presigned URLs, so downloads stream). */
  blobStore: { kind: 's3' } | { kind: 'fs'; directory: string };
  s3ForcePathStyle: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  workflows: {
    mode: 'stepfunctions' | 'local';
    importArn: string | undefined;
    exportArn: string | undefined;
    publishArn: string | undefined;
    buildArn: string | undefined;
  };
  buildPollSeconds: number;
  webDownloadAllow: string[];
  taskTimeToLiveHours: number;
  uploadUrlSeconds: number;
  hostTimeoutSeconds: number;
  retentionSweepSeconds: number;
  multipartSweepSeconds: number;
  multipartMaxAgeSeconds: number;
  leaseSeconds: number;
  leaseSweepSeconds: number;
};

let cached: ServiceConfig | undefined;
/** Settings handed to this process as values (the local runner's), over the environment's. */
let given: Readonly<Record<string, string>> = {};

/** The process's configuration: the environment, under any settings given by useServiceSettings. */
export function serviceConfig(): ServiceConfig {
  cached ??= parseServiceConfig({ ...process.env, ...given });
  return cached;
}

/** HANGAR_* settings (as in the environment) to a ServiceConfig; throws on an invalid one. */
export function parseServiceConfig(settings: Readonly<Record<string, string | undefined>>): ServiceConfig {
  const env = ServiceConfigSchema.parse(settings);
  const uploadMethod =
    env.HANGAR_UPLOAD_METHOD ?? (env.HANGAR_BLOB_DELIVERY === 'redirect' ? 'multipart' : 'put');
  return {
    tableName: env.HANGAR_TABLE,
    buckets: {
      images: env.HANGAR_IMAGE_BUCKET,
      uploads: env.HANGAR_UPLOAD_BUCKET,
      staging: env.HANGAR_STAGING_BUCKET,
      exports: env.HANGAR_EXPORT_BUCKET,
    },
    authMode: env.HANGAR_AUTH_MODE,
    tokensFile: env.HANGAR_TOKENS,
    keystone: {
      url: env.HANGAR_KEYSTONE_URL,
      user: env.HANGAR_KEYSTONE_USER,
      password: env.HANGAR_KEYSTONE_PASSWORD,
      project: env.HANGAR_KEYSTONE_PROJECT,
      userDomain: env.HANGAR_KEYSTONE_USER_DOMAIN,
      projectDomain: env.HANGAR_KEYSTONE_PROJECT_DOMAIN,
      cacheSize: env.HANGAR_KEYSTONE_CACHE_SIZE,
      cacheSeconds: env.HANGAR_KEYSTONE_CACHE_SECONDS,
      timeoutMs: env.HANGAR_KEYSTONE_TIMEOUT_MS,
    },
    claims: { project: env.HANGAR_CLAIM_PROJECT, roles: env.HANGAR_CLAIM_ROLES, user: env.HANGAR_CLAIM_USER },
    agentSockets: {
      connectionsTable: env.HANGAR_AGENT_CONNECTIONS_TABLE,
      managementEndpoint: env.HANGAR_AGENT_SOCKET_ENDPOINT,
    },
    jwt: {
      issuer: env.HANGAR_JWT_ISSUER,
      audience: env.HANGAR_JWT_AUDIENCE.split(',')
        .map((entry) => entry.trim())
        .filter((entry) => entry !== ''),
      tokenHeader: env.HANGAR_JWT_TOKEN_HEADER,
    },
    imageSizeCap: env.HANGAR_IMAGE_SIZE_CAP,
    quotas: {
      properties: env.HANGAR_PROPERTY_QUOTA,
      tags: env.HANGAR_TAG_QUOTA,
      members: env.HANGAR_MEMBER_QUOTA,
    },
    imageFormats: {
      requireMatch: env.HANGAR_REQUIRE_IMAGE_FORMAT_MATCH,
      disk: env.HANGAR_DISK_FORMATS,
      container: env.HANGAR_CONTAINER_FORMATS,
    },
    propertyProtections: loadPropertyProtections({
      file: env.HANGAR_PROPERTY_PROTECTION_FILE,
      text: env.HANGAR_PROPERTY_PROTECTIONS,
      format: env.HANGAR_PROPERTY_PROTECTION_RULE_FORMAT,
    }),
    blobDelivery: env.HANGAR_BLOB_DELIVERY,
    uploadMethod,
    snapshotUpload: env.HANGAR_SNAPSHOT_UPLOAD ?? uploadMethod,
    blobStore: blobStoreOf(env.HANGAR_BLOB_STORE, env.HANGAR_BLOB_DIR, env.HANGAR_BLOB_DELIVERY),
    s3ForcePathStyle: env.HANGAR_S3_FORCE_PATH_STYLE,
    logLevel: env.HANGAR_LOG_LEVEL,
    workflows: {
      mode: env.HANGAR_WORKFLOWS,
      importArn: env.HANGAR_IMPORT_STATE_MACHINE_ARN,
      exportArn: env.HANGAR_EXPORT_STATE_MACHINE_ARN,
      publishArn: env.HANGAR_PUBLISH_STATE_MACHINE_ARN,
      buildArn: env.HANGAR_BUILD_STATE_MACHINE_ARN,
    },
    buildPollSeconds: env.HANGAR_BUILD_POLL_SECONDS,
    webDownloadAllow: env.HANGAR_WEB_DOWNLOAD_ALLOW.split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== ''),
    taskTimeToLiveHours: env.HANGAR_TASK_TTL_HOURS,
    uploadUrlSeconds: env.HANGAR_UPLOAD_URL_SECONDS,
    hostTimeoutSeconds: env.HANGAR_HOST_TIMEOUT_SECONDS,
    retentionSweepSeconds: env.HANGAR_RETENTION_SWEEP_SECONDS,
    multipartSweepSeconds: env.HANGAR_MULTIPART_SWEEP_SECONDS,
    multipartMaxAgeSeconds: env.HANGAR_MULTIPART_MAX_AGE_SECONDS,
    leaseSeconds: env.HANGAR_LEASE_SECONDS,
    leaseSweepSeconds: env.HANGAR_LEASE_SWEEP_SECONDS,
  };
}

function blobStoreOf(
  kind: 's3' | 'fs',
  directory: string | undefined,
  delivery: 'stream' | 'redirect',
): ServiceConfig['blobStore'] {
  if (kind === 's3') return { kind };
  if (directory === undefined) throw new Error('HANGAR_BLOB_STORE=fs needs HANGAR_BLOB_DIR (a directory).');
  if (delivery === 'redirect')
    throw new Error('HANGAR_BLOB_STORE=fs has no presigned URLs: use HANGAR_BLOB_DELIVERY=stream.');
  return { kind, directory };
}

/**
 * The property-protection rules from a file or from the text itself. Anything wrong (unreadable
 * file, bad regular expression, missing operation, unknown format) throws here, when the
 * configuration is first read (the local runner reads it while starting), never at request time.
 */
export function loadPropertyProtections(settings: {
  file?: string | undefined;
  text?: string | undefined;
  format?: string | undefined;
}): PropertyProtections {
  const file = settings.file || undefined;
  const text = settings.text || undefined;
  if (file !== undefined && text !== undefined)
    throw new Error('Set HANGAR_PROPERTY_PROTECTION_FILE or HANGAR_PROPERTY_PROTECTIONS, not both.');
  if (file === undefined && text === undefined) return PropertyProtections.NONE;
  const source =
    file !== undefined ? `HANGAR_PROPERTY_PROTECTION_FILE (${file})` : 'HANGAR_PROPERTY_PROTECTIONS';
  let content = text ?? '';
  if (file !== undefined) {
    try {
      content = readFileSync(file, 'utf8');
    } catch (error) {
      throw new Error(
        `Invalid property protections in ${source}: cannot read the file: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  }
  try {
    return PropertyProtections.parse(content, settings.format ?? 'roles');
  } catch (error) {
    if (!(error instanceof InvalidPropertyProtections)) throw error;
    throw new Error(`Invalid property protections in ${source}: ${error.message}`, { cause: error });
  }
}

/** Tests change the environment and then call this. */
export function resetServiceConfig(): void {
  cached = undefined;
}

/**
 * The embedded runner gives its settings (HANGAR_* names) as values, which win over the
 * environment, instead of writing them into process.env; undefined takes them back.
 */
export function useServiceSettings(settings: Readonly<Record<string, string>> | undefined): void {
  given = { ...settings };
  resetServiceConfig();
}

const LocalConfigSchema = z.object({
  HANGAR_PORT: z.coerce.number().int().min(0).max(65535).default(9292),
  HANGAR_HOST: z.string().default('127.0.0.1'),
  HANGAR_DATA_DIR: z.string().default('.hangar'),
  /** memory: nothing is written to disk (tests). */
  HANGAR_STORAGE: z.enum(['disk', 'memory']).default('disk'),
  HANGAR_TOKENS: z.string().optional(),
  /** keystone: stand in for Glance in an OpenStack cloud (HANGAR_KEYSTONE_* name the Keystone). */
  HANGAR_AUTH_MODE: z.enum(['tokens', 'keystone']).default('tokens'),
  HANGAR_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** The embedded runner keeps image bytes as files (under the data directory) unless told s3. */
  HANGAR_BLOB_STORE: z.enum(['s3', 'fs']).default('fs'),
  /** Gateway processes behind the one port (local/cluster.ts): by default one per core. */
  HANGAR_WORKERS: z.coerce.number().int().min(1).max(256).default(availableParallelism()),
  /**
   * Also run a host agent on this machine (local/local-agent.ts), so that `hangar run` boots a VM
   * here with no further setup. Tokens mode only: the agent's host token goes into the token file.
   */
  HANGAR_LOCAL_AGENT: z.stringbool().default(false),
  /** The libvirt the local agent drives. */
  HANGAR_LOCAL_AGENT_LIBVIRT_URI: z.string().min(1).default('qemu:///system'),
});

export type LocalConfig = z.infer<typeof LocalConfigSchema>;

/** Settings of the embedded runner (local/), read from the same environment. */
export function localConfig(): LocalConfig {
  return LocalConfigSchema.parse(process.env);
}

/** The settings given with useServiceSettings (the embedded runner hands them to its gateway workers). */
export function givenServiceSettings(): Readonly<Record<string, string>> {
  return given;
}

const GatewayWorkerSettingsSchema = z.object({
  settings: z.record(z.string(), z.string()),
  // The primary's SDK client settings (adapters/aws-clients.ts AwsClientSettings).
  clients: z.object({
    s3ForcePathStyle: z.boolean(),
    region: z.string().optional(),
    credentials: z.object({ accessKeyId: z.string(), secretAccessKey: z.string() }).optional(),
    endpoints: z
      .object({
        dynamodb: z.string().optional(),
        s3: z.string().optional(),
        stepfunctions: z.string().optional(),
      })
      .optional(),
  }),
  host: z.string().min(1),
  port: z.number().int().min(0).max(65535),
});

/** In a gateway worker of local/cluster.ts: what its primary handed it; elsewhere undefined. */
export function gatewayWorkerSettings(): z.infer<typeof GatewayWorkerSettingsSchema> | undefined {
  const raw = process.env.HANGAR_GATEWAY_WORKER_SETTINGS;
  return raw === undefined ? undefined : GatewayWorkerSettingsSchema.parse(JSON.parse(raw));
}

/** Tests change a setting of a running backend through here: the environment's, over any given. */
export function setServiceEnvironment(values: Record<string, string>): void {
  const rest = { ...given };
  for (const [key, value] of Object.entries(values)) {
    process.env[key] = value;
    delete rest[key];
  }
  given = rest;
  resetServiceConfig();
}
