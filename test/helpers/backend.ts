/**
 * An in-memory backend on an ephemeral port for integration tests, with one token per test
 * persona. One per test file (the handlers share the process's services); start it in beforeAll
 * and stop it in afterAll.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TokenFile } from '#adapters/auth/token-file';
import { resetServiceConfig } from '#platform/config';
import { type Backend, type LogLevel, startBackend } from '../../local/backend.ts';

export type Persona = 'admin' | 'alice' | 'bob' | 'carol' | 'dave' | 'erin' | 'oscar';

const PERSONAS: Record<Persona, { project: string; roles: string[] }> = {
  admin: { project: 'admin', roles: ['admin', 'member'] },
  alice: { project: 'projA', roles: ['member'] },
  bob: { project: 'projB', roles: ['member'] },
  carol: { project: 'projC', roles: ['member'] },
  // Read-only users (Glance's `reader`): dave of alice's project, erin of bob's.
  dave: { project: 'projA', roles: ['reader'] },
  erin: { project: 'projB', roles: ['reader'] },
  // A token of alice's project with no role Hangar knows (neither reader, member nor admin).
  oscar: { project: 'projA', roles: ['observer'] },
};

export interface RequestOptions {
  /** Sent as X-Auth-Token. */
  token?: string;
  headers?: Record<string, string>;
  /** Strings and bytes are sent as they are; anything else as JSON (Content-Type defaults to JSON). */
  body?: string | Uint8Array | object;
}

export interface TestBackend {
  readonly url: string;
  readonly tokens: Readonly<Record<Persona, string>>;
  /** One token per host id asked for with `hosts` (role host, project hosts). */
  readonly hostTokens: Readonly<Record<string, string>>;
  readonly backend: Backend;
  request(method: string, path: string, options?: RequestOptions): Promise<Response>;
  /** Idempotent. */
  stop(): Promise<void>;
}

export interface TestBackendOptions {
  logLevel?: LogLevel;
  /**
   * Service settings (HANGAR_* variables, e.g. HANGAR_IMAGE_SIZE_CAP) for this backend, handed to
   * the runner as values, not through process.env; they end with it on stop(). A test changes one
   * mid-run with setServiceEnvironment.
   */
  env?: Record<string, string>;
  /** Host ids to make host-agent tokens for (`{project: 'hosts', user: <id>, roles: ['host']}`). */
  hosts?: readonly string[];
  /** Gateway worker processes (local/cluster.ts); default 1, the gateway in this process. */
  workers?: number;
}

/** The backend startTestBackend started and has not stopped yet (one at a time per process). */
let current: Backend | undefined;

/**
 * The running test backend, for helpers that reach its stand-ins with their own SDK clients
 * (the runner writes no AWS_* variables into process.env: see Backend.clientSettings).
 */
export function currentBackend(): Backend {
  if (!current) throw new Error('no test backend is running (startTestBackend in beforeAll)');
  return current;
}

export async function startTestBackend(options: TestBackendOptions = {}): Promise<TestBackend> {
  // A test may change these in process.env while it runs (setServiceEnvironment): put back on stop().
  const saved = Object.fromEntries(Object.keys(options.env ?? {}).map((key) => [key, process.env[key]]));
  const restoreEnv = () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    resetServiceConfig();
  };
  const dir = mkdtempSync(join(tmpdir(), 'hangar-test-tokens-'));
  const tokens = Object.fromEntries(
    Object.keys(PERSONAS).map((persona) => [persona, `${persona}-${randomBytes(12).toString('hex')}`]),
  ) as Record<Persona, string>;
  const file: TokenFile = { tokens: {} };
  for (const [persona, { project, roles }] of Object.entries(PERSONAS))
    file.tokens[tokens[persona as Persona]] = { project, user: persona, roles };
  const hostTokens = Object.fromEntries(
    (options.hosts ?? []).map((host) => [host, `host-${randomBytes(12).toString('hex')}`]),
  );
  for (const [host, token] of Object.entries(hostTokens))
    file.tokens[token] = { project: 'hosts', user: host, roles: ['host'] };
  const tokensFile = join(dir, 'tokens.json');
  writeFileSync(tokensFile, JSON.stringify(file), { mode: 0o600 });

  let backend: Backend;
  try {
    backend = await startBackend({
      port: 0,
      storage: 'memory',
      tokensFile,
      ...(options.env ? { settings: options.env } : {}),
      ...(options.workers ? { workers: options.workers } : {}),
      // Quiet unless asked: a failing test prints its own assertion.
      logLevel: options.logLevel ?? (process.env.HANGAR_TEST_LOG_LEVEL as LogLevel | undefined) ?? 'warn',
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    restoreEnv();
    throw error;
  }

  current = backend;
  let stopping: Promise<void> | undefined;
  return {
    url: backend.url,
    tokens,
    hostTokens,
    backend,
    async request(method, path, { token, headers = {}, body } = {}) {
      const sent: Record<string, string> = { ...headers };
      if (token !== undefined) sent['x-auth-token'] = token;
      let payload: string | Uint8Array | undefined;
      if (typeof body === 'string' || body instanceof Uint8Array) payload = body;
      else if (body !== undefined) {
        payload = JSON.stringify(body);
        if (!Object.keys(sent).some((h) => h.toLowerCase() === 'content-type'))
          sent['content-type'] = 'application/json';
      }
      return fetch(`${backend.url}${path}`, { method, headers: sent, body: payload });
    },
    stop() {
      stopping ??= backend.stop().finally(() => {
        if (current === backend) current = undefined;
        rmSync(dir, { recursive: true, force: true });
        restoreEnv();
      });
      return stopping;
    },
  };
}
