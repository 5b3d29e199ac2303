/** The agent's configuration file (JSON), parsed and defaulted with zod. Paths resolve against the file's dir. */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { parseImageTarget } from './image-reference.ts';

/** Ids end up in domain names and directory names: no slashes, no dot-dot, nothing a shell or XML minds. */
export const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const GiB = 1024 ** 3;

export const AgentConfigSchema = z.strictObject({
  service_url: z.url({ protocol: /^https?$/ }),
  host_id: z.string().regex(SAFE_ID),
  token: z.string().min(1),
  libvirt_uri: z.string().min(1).default('qemu:///system'),
  data_dir: z.string().min(1),
  cache_max_bytes: z
    .number()
    .int()
    .positive()
    .default(20 * GiB),
  /** Wait between claims that found nothing while no notification socket is open. */
  poll_interval_ms: z.number().int().min(10).default(2_000),
  /** Keep a WebSocket open on which the service says when the queue has work (false: poll only). */
  notifications: z.boolean().default(true),
  /** The socket's URL; default: the service's own (ws(s)://<service_url host>/v1/agent-socket). */
  notify_url: z.url({ protocol: /^wss?$/ }).optional(),
  /** While the socket is open, claim anyway this often (jittered, never longer): a lost notification waits this. */
  fallback_poll_interval_ms: z.number().int().min(10).default(60_000),
  /** While the socket is open, send a keepalive this often (API Gateway drops sockets idle 10 min); 0: never. */
  notify_keepalive_ms: z.number().int().min(0).default(300_000),
  lease_seconds: z.number().int().min(2).max(3_600).default(60),
  heartbeat_interval_ms: z.number().int().min(100).default(30_000),
  /** How often the domains' states are compared with the service's (a guest that powered itself off). */
  observe_interval_ms: z.number().int().min(100).default(5_000),
  /** Overrides for what the host reports (otherwise from `virsh nodeinfo` and the data_dir filesystem). */
  capacity: z
    .strictObject({
      vcpus: z.number().int().positive().optional(),
      ram_mb: z.number().int().positive().optional(),
      disk_gb: z.number().int().positive().optional(),
    })
    .default({}),
  /** auto: KVM only if a probe guest runs under it (see hypervisor/kvm-probe.ts), else TCG ('qemu'). */
  domain_type: z.enum(['auto', 'kvm', 'qemu']).default('auto'),
  kvm_probe_timeout_ms: z.number().int().positive().default(5_000),
  qemu_binary: z.string().min(1).default('qemu-system-x86_64'),
  max_concurrent_jobs: z.number().int().min(1).max(16).default(2),
  /** Graceful (ACPI) shutdown: resend every retry interval, force off at the deadline. */
  shutdown_timeout_ms: z.number().int().positive().default(60_000),
  shutdown_retry_interval_ms: z.number().int().positive().default(5_000),
  /** If set, a build/start/reboot completes only once the console log matches this regex (else BootTimeout). */
  boot_marker: z
    .string()
    .refine((source) => {
      try {
        new RegExp(source);
        return true;
      } catch {
        return false;
      }
    }, 'not a valid regular expression')
    .optional(),
  boot_timeout_ms: z.number().int().positive().default(160_000),
  network: z.enum(['user', 'none']).default('user'),
  seed_device: z.enum(['disk', 'cdrom']).default('disk'),
  /** stamp: re-hash a cached image only when its size/mtime differ from the stamp; always: before every use. */
  verify_cached_images: z.enum(['stamp', 'always']).default('stamp'),
  download_timeout_ms: z
    .number()
    .int()
    .positive()
    .default(30 * 60_000),
  http_timeout_ms: z.number().int().positive().default(30_000),
  log_level: z.enum(['debug', 'info', 'warn', 'error']).default('info'),
  /** Images kept warm in the cache: image ids (UUIDs) or `name:tag` references (a bare name is `name:latest`). */
  prefetch: z
    .array(
      z.string().refine((text) => parseImageTarget(text) !== undefined, {
        error: (issue) =>
          `${JSON.stringify(issue.input)} is neither an image id (UUID) nor a name:tag reference (name: lowercase letters and digits with single '.', '_' or '-' between them; tag: letters, digits, '_', '.', '-', not starting with '.' or '-')`,
      }),
    )
    .default([]),
  prefetch_interval_ms: z
    .number()
    .int()
    .min(1_000)
    .default(10 * 60_000),
});

export type AgentConfig = z.infer<typeof AgentConfigSchema>;

export function parseConfig(raw: unknown, baseDir: string): AgentConfig {
  const parsed = AgentConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(`invalid agent config: ${z.prettifyError(parsed.error)}`);
  }
  const config = parsed.data;
  // libvirt needs absolute paths in domain XML; relative ones are taken from the config file's directory.
  return {
    ...config,
    data_dir: resolve(baseDir, config.data_dir),
    service_url: config.service_url.replace(/\/+$/, ''),
  };
}

/** Where the notification socket is: notify_url, or the embedded gateway's path on service_url. */
export function notificationUrl(config: Pick<AgentConfig, 'service_url' | 'notify_url'>): string {
  if (config.notify_url) return config.notify_url;
  const url = new URL(config.service_url);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/agent-socket`;
  return url.href;
}

export async function loadConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}`, { cause: error });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON`, { cause: error });
  }
  return parseConfig(raw, dirname(resolve(path)));
}
