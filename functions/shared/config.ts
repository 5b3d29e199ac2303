/**
 * The one place that reads configuration from the environment. Everything else asks here.
 * Parsed once, lazily, so the local runner can set the environment before the first handler runs.
 */
import { z } from 'zod';

const bytes = z.coerce.number().int().nonnegative();

const ServiceConfigSchema = z.object({
  HANGAR_TABLE: z.string().min(1).default('hangar'),
  HANGAR_IMAGE_BUCKET: z.string().min(1).default('hangar-images'),
  HANGAR_UPLOAD_BUCKET: z.string().min(1).default('hangar-uploads'),
  HANGAR_STAGING_BUCKET: z.string().min(1).default('hangar-staging'),
  HANGAR_EXPORT_BUCKET: z.string().min(1).default('hangar-exports'),
  HANGAR_AUTH_MODE: z.enum(['tokens', 'keystone', 'claims']).default('tokens'),
  HANGAR_TOKENS: z.string().optional(),
  /** Glance's image_size_cap: 1 TiB by default. */
  HANGAR_IMAGE_SIZE_CAP: bytes.default(1099511627776),
  HANGAR_PROPERTY_QUOTA: z.coerce.number().int().positive().default(128),
  HANGAR_TAG_QUOTA: z.coerce.number().int().positive().default(128),
  HANGAR_MEMBER_QUOTA: z.coerce.number().int().positive().default(128),
  /** stream: the handler returns image bytes itself (local gateway); redirect: a presigned S3 URL (Lambda). */
  HANGAR_BLOB_DELIVERY: z.enum(['stream', 'redirect']).default('stream'),
  /** s3rver needs path-style URLs; real S3 does not. */
  HANGAR_S3_FORCE_PATH_STYLE: z.stringbool().default(false),
  HANGAR_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
});

export type ServiceConfig = {
  tableName: string;
  buckets: { images: string; uploads: string; staging: string; exports: string };
  authMode: 'tokens' | 'keystone' | 'claims';
  tokensFile: string | undefined;
  imageSizeCap: number;
  quotas: { properties: number; tags: number; members: number };
  blobDelivery: 'stream' | 'redirect';
  s3ForcePathStyle: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
};

let cached: ServiceConfig | undefined;

export function serviceConfig(): ServiceConfig {
  if (cached) return cached;
  const env = ServiceConfigSchema.parse(process.env);
  cached = {
    tableName: env.HANGAR_TABLE,
    buckets: {
      images: env.HANGAR_IMAGE_BUCKET,
      uploads: env.HANGAR_UPLOAD_BUCKET,
      staging: env.HANGAR_STAGING_BUCKET,
      exports: env.HANGAR_EXPORT_BUCKET,
    },
    authMode: env.HANGAR_AUTH_MODE,
    tokensFile: env.HANGAR_TOKENS,
    imageSizeCap: env.HANGAR_IMAGE_SIZE_CAP,
    quotas: {
      properties: env.HANGAR_PROPERTY_QUOTA,
      tags: env.HANGAR_TAG_QUOTA,
      members: env.HANGAR_MEMBER_QUOTA,
    },
    blobDelivery: env.HANGAR_BLOB_DELIVERY,
    s3ForcePathStyle: env.HANGAR_S3_FORCE_PATH_STYLE,
    logLevel: env.HANGAR_LOG_LEVEL,
  };
  return cached;
}

/** Tests and the local runner change the environment and then call this. */
export function resetServiceConfig(): void {
  cached = undefined;
}

const LocalConfigSchema = z.object({
  HANGAR_PORT: z.coerce.number().int().min(0).max(65535).default(9292),
  HANGAR_HOST: z.string().default('127.0.0.1'),
  HANGAR_DATA_DIR: z.string().default('.hangar'),
  /** memory: nothing is written to disk (tests). */
  HANGAR_STORAGE: z.enum(['disk', 'memory']).default('disk'),
  HANGAR_TOKENS: z.string().optional(),
  HANGAR_LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
});

export type LocalConfig = z.infer<typeof LocalConfigSchema>;

/** Settings of the embedded runner (local/), read from the same environment. */
export function localConfig(): LocalConfig {
  return LocalConfigSchema.parse(process.env);
}

/** The embedded runner sets the service's environment through here, before any handler runs. */
export function setServiceEnvironment(values: Record<string, string>): void {
  for (const [key, value] of Object.entries(values)) process.env[key] = value;
  resetServiceConfig();
}
