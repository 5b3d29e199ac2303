/**
 * The one-machine setup (HANGAR_LOCAL_AGENT=1, like testcloud): `npm start` also runs the host agent
 * (agent/src/main.ts) as a child process against the backend it started, so `hangar push` then
 * `hangar run` boots a VM here with nothing else to configure.
 *
 * Everything the agent needs is made once under `<data dir>/agent/` and reused on the next start:
 * its host id (`local-<random>`: reconcile removes the hangar domains of its host id that the
 * service does not know, so two data directories on one libvirt must never share one), its host
 * token (its sha256 digest is added to the token file, the plain token only kept in
 * `identity.json`, mode 0600), its config file and its data dir (image cache, instance disks).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { TokenFileSchema } from '#adapters/auth/token-file';
import { logger } from '#platform/logger';

const REPO_ROOT = resolve(import.meta.dirname, '..');

const IdentitySchema = z.object({ host_id: z.string().min(1), token: z.string().min(1) });

export interface LocalAgentOptions {
  serviceUrl: string;
  /** The backend's state directory: the agent's files go under `<stateDir>/agent`. */
  stateDir: string;
  tokensFile: string;
  libvirtUri: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export interface LocalAgent {
  readonly hostId: string;
  readonly dataDir: string;
  readonly configFile: string;
  /** Resolves with the agent's exit code when it ends (on its own, or after stop()). */
  readonly exited: Promise<number | null>;
  /** Resolves once the agent has registered the host and listens for work; rejects if it exits first. */
  readonly ready: Promise<void>;
  stop(): Promise<void>;
}

function writePrivate(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
}

/** The agent's host id and token: made on the first start, the same ones afterwards. */
function identity(dir: string): z.infer<typeof IdentitySchema> {
  const path = join(dir, 'identity.json');
  if (existsSync(path)) return IdentitySchema.parse(JSON.parse(readFileSync(path, 'utf8')));
  const made = {
    host_id: `local-${randomBytes(4).toString('hex')}`,
    token: randomBytes(24).toString('base64url'),
  };
  writePrivate(path, `${JSON.stringify(made, null, 2)}\n`);
  return made;
}

/** Adds the host token (by digest) to the token file unless it is there; the service re-reads it. */
function grantHostToken(tokensFile: string, hostId: string, token: string): void {
  const file = TokenFileSchema.parse(JSON.parse(readFileSync(tokensFile, 'utf8')));
  const key = `sha256:${createHash('sha256').update(token).digest('hex')}`;
  const entry = file.tokens[key];
  if (entry && entry.user === hostId && entry.roles.includes('host')) return;
  file.tokens[key] = { project: 'hosts', user: hostId, roles: ['host'] };
  writePrivate(tokensFile, `${JSON.stringify(file, null, 2)}\n`);
}

export function startLocalAgent(options: LocalAgentOptions): LocalAgent {
  const dir = join(options.stateDir, 'agent');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // qemu runs as libvirt-qemu under qemu:///system and opens the instance disks under the agent's
  // data dir: every directory on the way must be traversable (x) by others, never listable. The
  // files that matter (token file, identity, DynamoDB's and S3's dirs) keep their own 0600/0700.
  for (const path of [options.stateDir, dir]) chmodSync(path, (statSync(path).mode & 0o777) | 0o711);
  const { host_id: hostId, token } = identity(dir);
  grantHostToken(options.tokensFile, hostId, token);

  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  chmodSync(dataDir, 0o755);
  const configFile = join(dir, 'agent.json');
  writePrivate(
    configFile,
    `${JSON.stringify(
      {
        service_url: options.serviceUrl,
        host_id: hostId,
        token,
        libvirt_uri: options.libvirtUri,
        data_dir: dataDir,
        log_level: options.logLevel,
      },
      null,
      2,
    )}\n`,
  );

  const child: ChildProcess = spawn(
    join(REPO_ROOT, 'node_modules/.bin/tsx'),
    [join(REPO_ROOT, 'agent/src/main.ts'), '--config', configFile],
    {
      cwd: REPO_ROOT,
      // Its JSON logs go where the service's go (stderr), read on the way for its "agent ready".
      stdio: ['ignore', 'inherit', 'pipe'],
      // Its own process group, so that a stop reaches the node process tsx starts too.
      detached: true,
    },
  );
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // Already gone.
    }
  };
  const onExit = () => killGroup('SIGKILL');
  process.once('exit', onExit);
  const exited = new Promise<number | null>((resolvePromise) =>
    child.once('exit', (code) => {
      process.removeListener('exit', onExit);
      resolvePromise(code);
    }),
  );
  const ready = new Promise<void>((resolveReady, rejectReady) => {
    let partial = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      partial += chunk.toString('utf8');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      // The agent logs it after registering the host (PUT /v1/hosts/{id}) and reconciling.
      if (lines.some((line) => line.includes('"message":"agent ready"'))) resolveReady();
    });
    void exited.then((code) => rejectReady(new Error(`the local host agent exited (code ${code})`)));
  });
  // Nobody may be waiting for it (a stop before it was ready).
  ready.catch(() => {});
  logger.info('local host agent started', {
    hostId,
    pid: child.pid,
    configFile,
    libvirt: options.libvirtUri,
  });

  let stopping: Promise<void> | undefined;
  return {
    hostId,
    dataDir,
    configFile,
    exited,
    ready,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        killGroup('SIGTERM');
        const timer = setTimeout(() => killGroup('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
