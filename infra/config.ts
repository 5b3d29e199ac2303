/**
 * Deployment settings, each from CDK context (`-c key=value`, cdk.json) or else from an
 * environment variable. Nothing here names an account, a region or a physical resource: stacks
 * are environment-agnostic unless CDK_DEFAULT_ACCOUNT/REGION are set, and CloudFormation names
 * every resource.
 */
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { Node } from 'constructs';
import type { ScheduleRate } from '../functions/tasks/registry.ts';

export type AuthMode = 'jwt' | 'keystone' | 'tokens';

export interface JwtSettings {
  /** OIDC issuer URL; undefined: the stateful stack creates a Cognito user pool as the issuer. */
  readonly issuer: string | undefined;
  readonly audience: readonly string[];
  /** Header the token is read from; X-Auth-Token is what Glance clients send. */
  readonly tokenHeader: string;
  readonly projectClaim: string;
  readonly rolesClaim: string;
  readonly userClaim: string;
}

export interface KeystoneSettings {
  readonly url: string | undefined;
  /** Hangar's service account, which validates users' tokens. */
  readonly user: string | undefined;
  readonly project: string | undefined;
  readonly userDomain: string;
  readonly projectDomain: string;
  /** Secrets Manager secret (name or ARN) whose SecretString is the service account's password. */
  readonly passwordSecret: string | undefined;
  /** How long API Gateway caches an authorizer answer per token. */
  readonly cacheSeconds: number;
}

export interface DeployConfig {
  /** Prefix of the two stack names (not of any resource name). */
  readonly stackPrefix: string;
  readonly authMode: AuthMode;
  readonly jwt: JwtSettings;
  readonly keystone: KeystoneSettings;
  /** authMode=tokens: a local token file whose keys are all `sha256:<hex>` digests. */
  readonly tokensFile: string | undefined;
  /** Glance's property_protection_file (roles format), read at synth; undefined: no protections. */
  readonly propertyProtectionFile: string | undefined;
  /**
   * Glance's [image_format] settings, passed to every function as HANGAR_REQUIRE_IMAGE_FORMAT_MATCH,
   * HANGAR_DISK_FORMATS and HANGAR_CONTAINER_FORMATS; undefined: the service's defaults (Glance's).
   */
  readonly imageFormats: {
    readonly requireMatch: boolean | undefined;
    readonly disk: readonly string[] | undefined;
    readonly container: readonly string[] | undefined;
  };
  readonly alarmEmail: string | undefined;
  readonly logRetention: RetentionDays;
  /** Stage-wide API throttling (requests per second, burst). */
  readonly throttle: { readonly rate: number; readonly burst: number };
  /** Days a replaced or deleted image object version is kept before lifecycle removes it. */
  readonly noncurrentVersionDays: number;
  /** Period in minutes of each scheduled function (SCHEDULES in functions/tasks/registry.ts). */
  readonly schedules: Readonly<Record<ScheduleRate, number>>;
  /** The built web console (a directory with index.html), relative to the repository; undefined: none. */
  readonly consoleDir: string | undefined;
}

interface Setting {
  readonly context: string;
  readonly env: string;
}

/** Every setting: its context key and its environment variable. Documented in infra/README.md. */
export const SETTINGS = {
  stackPrefix: { context: 'stackPrefix', env: 'HANGAR_STACK_PREFIX' },
  authMode: { context: 'authMode', env: 'HANGAR_DEPLOY_AUTH_MODE' },
  jwtIssuer: { context: 'jwtIssuer', env: 'HANGAR_JWT_ISSUER' },
  jwtAudience: { context: 'jwtAudience', env: 'HANGAR_JWT_AUDIENCE' },
  jwtTokenHeader: { context: 'jwtTokenHeader', env: 'HANGAR_JWT_TOKEN_HEADER' },
  jwtProjectClaim: { context: 'jwtProjectClaim', env: 'HANGAR_JWT_PROJECT_CLAIM' },
  jwtRolesClaim: { context: 'jwtRolesClaim', env: 'HANGAR_JWT_ROLES_CLAIM' },
  jwtUserClaim: { context: 'jwtUserClaim', env: 'HANGAR_JWT_USER_CLAIM' },
  keystoneUrl: { context: 'keystoneUrl', env: 'HANGAR_DEPLOY_KEYSTONE_URL' },
  keystoneUser: { context: 'keystoneUser', env: 'HANGAR_DEPLOY_KEYSTONE_USER' },
  keystoneProject: { context: 'keystoneProject', env: 'HANGAR_DEPLOY_KEYSTONE_PROJECT' },
  keystoneUserDomain: { context: 'keystoneUserDomain', env: 'HANGAR_DEPLOY_KEYSTONE_USER_DOMAIN' },
  keystoneProjectDomain: { context: 'keystoneProjectDomain', env: 'HANGAR_DEPLOY_KEYSTONE_PROJECT_DOMAIN' },
  keystonePasswordSecret: {
    context: 'keystonePasswordSecret',
    env: 'HANGAR_DEPLOY_KEYSTONE_PASSWORD_SECRET',
  },
  keystoneCacheSeconds: { context: 'keystoneCacheSeconds', env: 'HANGAR_KEYSTONE_CACHE_SECONDS' },
  tokensFile: { context: 'tokensFile', env: 'HANGAR_DEPLOY_TOKENS_FILE' },
  propertyProtectionFile: {
    context: 'propertyProtectionFile',
    env: 'HANGAR_DEPLOY_PROPERTY_PROTECTION_FILE',
  },
  requireImageFormatMatch: {
    context: 'requireImageFormatMatch',
    env: 'HANGAR_DEPLOY_REQUIRE_IMAGE_FORMAT_MATCH',
  },
  diskFormats: { context: 'diskFormats', env: 'HANGAR_DEPLOY_DISK_FORMATS' },
  containerFormats: { context: 'containerFormats', env: 'HANGAR_DEPLOY_CONTAINER_FORMATS' },
  alarmEmail: { context: 'alarmEmail', env: 'HANGAR_ALARM_EMAIL' },
  logRetentionDays: { context: 'logRetentionDays', env: 'HANGAR_LOG_RETENTION_DAYS' },
  throttleRate: { context: 'throttleRate', env: 'HANGAR_THROTTLE_RATE' },
  throttleBurst: { context: 'throttleBurst', env: 'HANGAR_THROTTLE_BURST' },
  noncurrentVersionDays: { context: 'noncurrentVersionDays', env: 'HANGAR_NONCURRENT_VERSION_DAYS' },
  retentionSweepMinutes: { context: 'retentionSweepMinutes', env: 'HANGAR_RETENTION_SWEEP_MINUTES' },
  leaseSweepMinutes: { context: 'leaseSweepMinutes', env: 'HANGAR_LEASE_SWEEP_MINUTES' },
  consoleDir: { context: 'consoleDir', env: 'HANGAR_DEPLOY_CONSOLE_DIR' },
} as const satisfies Record<string, Setting>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

function read(node: Node, setting: Setting, env: NodeJS.ProcessEnv): string | undefined {
  const fromContext: unknown = node.tryGetContext(setting.context);
  if (fromContext !== undefined && fromContext !== null && fromContext !== '') return String(fromContext);
  const fromEnv = env[setting.env];
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

function positiveInt(
  node: Node,
  setting: Setting,
  env: NodeJS.ProcessEnv,
  fallback: number,
  min = 1,
): number {
  const raw = read(node, setting, env);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min)
    throw new ConfigError(
      `${setting.context} (or ${setting.env}) must be an integer >= ${min}, not '${raw}'`,
    );
  return value;
}

function booleanSetting(node: Node, setting: Setting, env: NodeJS.ProcessEnv): boolean | undefined {
  const raw = read(node, setting, env);
  if (raw === undefined) return undefined;
  if (raw !== 'true' && raw !== 'false')
    throw new ConfigError(`${setting.context} (or ${setting.env}) must be true or false, not '${raw}'`);
  return raw === 'true';
}

/** A comma-separated list of format names, as the service reads HANGAR_DISK_FORMATS. */
function formatList(node: Node, setting: Setting, env: NodeJS.ProcessEnv): string[] | undefined {
  const raw = read(node, setting, env);
  if (raw === undefined) return undefined;
  const names = raw
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  if (names.length === 0 || names.some((name) => !/^[A-Za-z0-9_.-]{1,64}$/.test(name)))
    throw new ConfigError(
      `${setting.context} (or ${setting.env}) must list format names (letters, digits, _ . -), not '${raw}'`,
    );
  return names;
}

function retention(days: number): RetentionDays {
  const allowed = Object.values(RetentionDays).filter((v): v is RetentionDays => typeof v === 'number');
  if (!allowed.includes(days as RetentionDays))
    throw new ConfigError(
      `logRetentionDays must be one of CloudWatch's retention periods (${allowed.join(', ')}), not ${days}`,
    );
  return days as RetentionDays;
}

/** `none` deploys no console; anything else must be a built console (checked when the stack is made). */
function consoleDir(raw: string | undefined): string | undefined {
  if (raw === undefined || raw.trim() === '') return 'console/dist';
  return raw.trim() === 'none' ? undefined : raw.trim();
}

export function readConfig(node: Node, env: NodeJS.ProcessEnv = process.env): DeployConfig {
  const authMode = read(node, SETTINGS.authMode, env) ?? 'jwt';
  if (authMode !== 'jwt' && authMode !== 'keystone' && authMode !== 'tokens')
    throw new ConfigError(`authMode must be jwt, keystone or tokens, not '${authMode}'`);
  const issuer = read(node, SETTINGS.jwtIssuer, env);
  const audience = (read(node, SETTINGS.jwtAudience, env) ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  if (authMode === 'jwt' && issuer !== undefined && audience.length === 0)
    throw new ConfigError('jwtIssuer needs jwtAudience (the client id(s) the issuer puts in `aud`)');
  if (issuer !== undefined && !issuer.startsWith('https://'))
    throw new ConfigError(`jwtIssuer must be an https:// URL, not '${issuer}'`);
  return {
    stackPrefix: read(node, SETTINGS.stackPrefix, env) ?? 'Hangar',
    authMode,
    jwt: {
      issuer,
      audience,
      tokenHeader: read(node, SETTINGS.jwtTokenHeader, env) ?? 'X-Auth-Token',
      // Cognito's names by default; another issuer typically uses `project` and `roles`.
      projectClaim: read(node, SETTINGS.jwtProjectClaim, env) ?? 'custom:project',
      rolesClaim: read(node, SETTINGS.jwtRolesClaim, env) ?? 'cognito:groups',
      userClaim: read(node, SETTINGS.jwtUserClaim, env) ?? 'sub',
    },
    keystone: {
      url: read(node, SETTINGS.keystoneUrl, env),
      user: read(node, SETTINGS.keystoneUser, env),
      project: read(node, SETTINGS.keystoneProject, env),
      userDomain: read(node, SETTINGS.keystoneUserDomain, env) ?? 'Default',
      projectDomain: read(node, SETTINGS.keystoneProjectDomain, env) ?? 'Default',
      passwordSecret: read(node, SETTINGS.keystonePasswordSecret, env),
      // 0 turns caching off: every request is checked with Keystone.
      cacheSeconds: positiveInt(node, SETTINGS.keystoneCacheSeconds, env, 60, 0),
    },
    tokensFile: read(node, SETTINGS.tokensFile, env),
    propertyProtectionFile: read(node, SETTINGS.propertyProtectionFile, env),
    imageFormats: {
      requireMatch: booleanSetting(node, SETTINGS.requireImageFormatMatch, env),
      disk: formatList(node, SETTINGS.diskFormats, env),
      container: formatList(node, SETTINGS.containerFormats, env),
    },
    alarmEmail: read(node, SETTINGS.alarmEmail, env),
    logRetention: retention(positiveInt(node, SETTINGS.logRetentionDays, env, 30)),
    throttle: {
      rate: positiveInt(node, SETTINGS.throttleRate, env, 100),
      burst: positiveInt(node, SETTINGS.throttleBurst, env, 200),
    },
    noncurrentVersionDays: positiveInt(node, SETTINGS.noncurrentVersionDays, env, 30),
    // EventBridge rates are whole minutes, at least one.
    schedules: {
      retentionSweepMinutes: positiveInt(node, SETTINGS.retentionSweepMinutes, env, 60),
      // Leases last HANGAR_LEASE_SECONDS (a minute): a dead upload is recovered within about this.
      leaseSweepMinutes: positiveInt(node, SETTINGS.leaseSweepMinutes, env, 5),
    },
    consoleDir: consoleDir(read(node, SETTINGS.consoleDir, env)),
  };
}
