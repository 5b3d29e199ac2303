/**
 * The local stand-ins for AWS, each a child process: DynamoDB Local (the jar shipped inside
 * amplify-dynamodb-simulator) and s3rver. See /work/shared/reference/local-aws.md for why these two.
 *
 * No child may outlive us: they are killed on stop(), on our 'exit', and (through
 * `setpriv --pdeathsig KILL`, where available) by the kernel if we are SIGKILLed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3EventRecord } from 'aws-lambda';
import { logger } from '#shared/logger';

export type { S3EventRecord };

/** s3rver's and DynamoDB Local's fixed development credentials (DynamoDB Local accepts any). */
export const LOCAL_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;
export const LOCAL_REGION = 'us-east-1';

export interface StandInsOptions {
  /** Where state lives: `<directory>/dynamodb` (disk only) and `<directory>/s3`. */
  directory: string;
  /** memory: DynamoDB runs with -inMemory (s3rver always writes files, under `directory`). */
  storage: 'disk' | 'memory';
  /** Bound on each stand-in's start-up. */
  readyTimeoutMs?: number;
  /** Pass the children's own request logs through (as debug lines). */
  verbose?: boolean;
}

export interface StandInProcess {
  readonly name: 'dynamodb' | 's3';
  readonly pid: number;
  readonly port: number;
  /** http://127.0.0.1:PORT: 127.0.0.1, not localhost, or the S3 SDK goes virtual-hosted. */
  readonly endpoint: string;
}

export interface StandIns {
  readonly dynamodb: StandInProcess;
  readonly s3: StandInProcess;
  /** Every S3 event record s3rver emits (ObjectCreated:*, ObjectRemoved:*). Returns an unsubscribe. */
  onS3Event(listener: (record: S3EventRecord) => void): () => void;
  /** A child that exits while we did not ask it to. Returns an unsubscribe. */
  onUnexpectedExit(listener: (name: string, code: number | null, signal: string | null) => void): () => void;
  /** Stops both children (SIGTERM, then SIGKILL after a grace period). Idempotent. */
  stop(): Promise<void>;
}

export class StandInError extends Error {
  override name = 'StandInError';
}

const requireHere = createRequire(import.meta.url);
const HERE = dirname(fileURLToPath(import.meta.url));

/** The DynamoDB Local distribution inside the npm package (its JS entry throws, so never import it). */
export function dynamoDbLocalDir(): string {
  return join(dirname(requireHere.resolve('amplify-dynamodb-simulator/package.json')), 'emulator');
}

function findExecutable(name: string, extraDirs: string[] = []): string | undefined {
  for (const dir of [...extraDirs, ...(process.env.PATH ?? '').split(delimiter)]) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

let setprivPath: string | null | undefined;
/** util-linux setpriv: makes the kernel SIGKILL the child when we die, even by SIGKILL. */
function deathSignalPrefix(): string[] {
  if (setprivPath === undefined) setprivPath = findExecutable('setpriv', ['/usr/bin', '/bin']) ?? null;
  return setprivPath ? [setprivPath, '--pdeathsig', 'KILL', '--'] : [];
}

// Last line of defence on any normal exit of this process (including process.exit()).
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

/** A free TCP port on all interfaces (DynamoDB Local has no bind-address flag). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

class ManagedChild {
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private readonly tail: string[] = [];
  private stopping = false;
  /** Exits only count as unexpected once start-up is over; start-up failures are reported by the starter. */
  private armed = false;
  private exitInfo: { code: number | null; signal: string | null } | undefined;

  constructor(
    readonly name: 'dynamodb' | 's3',
    readonly child: ChildProcess,
    verbose: boolean,
    onUnexpectedExit: (code: number | null, signal: string | null) => void,
  ) {
    track(child);
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8');
      stream?.on('data', (text: string) => {
        for (const line of text.split('\n')) {
          if (!line.trim()) continue;
          this.tail.push(line);
          if (this.tail.length > 40) this.tail.shift();
          if (verbose) logger.debug('stand-in output', { standIn: name, line });
        }
      });
    }
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        if (this.armed && !this.stopping) onUnexpectedExit(code, signal);
        resolve({ code, signal });
      });
      // spawn failures (ENOENT, EACCES) arrive as 'error' without 'exit'.
      child.once('error', (error) => {
        this.tail.push(String(error));
        if (!this.exitInfo) {
          this.exitInfo = { code: null, signal: null };
          resolve(this.exitInfo);
        }
      });
    });
  }

  arm(): void {
    this.armed = true;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  output(): string {
    return this.tail.join('\n');
  }

  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    if (this.hasExited) return;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        resolve();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    clearTimeout(timer);
    await this.exited;
  }
}

/** Polls `probe` until it succeeds, the child exits, or the deadline passes. */
async function waitUntilReady(
  managed: ManagedChild,
  probe: () => Promise<unknown>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (managed.hasExited) {
      throw new StandInError(`${what} exited during start-up:\n${managed.output()}`);
    }
    try {
      await probe();
      return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new StandInError(
    `${what} did not answer within ${timeoutMs} ms (last error: ${String(lastError)}):\n${managed.output()}`,
    { cause: lastError },
  );
}

const probeClientOptions = (endpoint: string) => ({
  endpoint,
  region: LOCAL_REGION,
  credentials: LOCAL_CREDENTIALS,
  maxAttempts: 1,
  requestHandler: { connectionTimeout: 1000, requestTimeout: 3000 },
});

async function startDynamoDb(
  options: Required<StandInsOptions>,
  onUnexpectedExit: (code: number | null, signal: string | null) => void,
): Promise<{ managed: ManagedChild; port: number }> {
  const javaHome = process.env.JAVA_HOME;
  const java = findExecutable('java', javaHome ? [join(javaHome, 'bin')] : []);
  if (!java) {
    throw new StandInError(
      'java was not found on PATH (or in $JAVA_HOME/bin): DynamoDB Local needs a Java 17+ runtime, ' +
        'e.g. `apt-get install openjdk-17-jre-headless`.',
    );
  }
  const dir = dynamoDbLocalDir();
  const storageArgs =
    options.storage === 'memory' ? ['-inMemory'] : ['-dbPath', join(options.directory, 'dynamodb')];
  if (options.storage === 'disk') mkdirSync(join(options.directory, 'dynamodb'), { recursive: true });

  // The port is chosen before java binds it, so another process may take it first: retry.
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const args = [
      // Start-up in about 2 s instead of 5: no C2 compiler, the cheapest GC.
      '-XX:TieredStopAtLevel=1',
      '-XX:+UseSerialGC',
      `-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`,
      '-jar',
      join(dir, 'DynamoDBLocal.jar'),
      '-sharedDb',
      '-disableTelemetry',
      '-port',
      String(port),
      ...storageArgs,
    ];
    const [command, ...prefix] = [...deathSignalPrefix(), java];
    const child = spawn(command as string, [...prefix, ...args], {
      cwd: options.directory,
      // Own process group: a terminal's Ctrl+C goes to us, and we stop the children in order.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const managed = new ManagedChild('dynamodb', child, options.verbose, onUnexpectedExit);
    const client = new DynamoDBClient(probeClientOptions(`http://127.0.0.1:${port}`));
    try {
      await waitUntilReady(
        managed,
        () => client.send(new ListTablesCommand({ Limit: 1 })),
        options.readyTimeoutMs,
        'DynamoDB Local',
      );
      return { managed, port };
    } catch (error) {
      lastError = error;
      await managed.stop(1000);
      if (!/address already in use|BindException/i.test(managed.output())) throw error;
      logger.warn('DynamoDB Local port was taken, retrying', { port, attempt });
    } finally {
      client.destroy();
    }
  }
  throw lastError;
}

async function startS3rver(
  options: Required<StandInsOptions>,
  emitter: EventEmitter,
  onUnexpectedExit: (code: number | null, signal: string | null) => void,
): Promise<{ managed: ManagedChild; port: number }> {
  const directory = join(options.directory, 's3');
  mkdirSync(directory, { recursive: true });
  const [command, ...prefix] = [...deathSignalPrefix(), process.execPath];
  const child = spawn(
    command as string,
    [...prefix, join(HERE, 's3rver-child.mjs'), directory, String(!options.verbose)],
    {
      cwd: options.directory,
      detached: true,
      // Only the legacy provider: inherited options (a TypeScript loader, --inspect) do not belong here.
      env: { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    },
  );
  const managed = new ManagedChild('s3', child, options.verbose, onUnexpectedExit);

  let resolvePort: (port: number) => void = () => {};
  const announced = new Promise<number>((resolve) => {
    resolvePort = resolve;
  });
  child.on('message', (message: unknown) => {
    if (!message || typeof message !== 'object') return;
    const m = message as { type?: string; port?: number; record?: S3EventRecord };
    if (m.type === 'ready' && typeof m.port === 'number') resolvePort(m.port);
    else if (m.type === 's3-event' && m.record) emitter.emit('s3-event', m.record);
  });

  const timeout = options.readyTimeoutMs;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new StandInError(`s3rver did not start within ${timeout} ms:\n${managed.output()}`)),
      timeout,
    );
    announced.then((p) => {
      clearTimeout(timer);
      resolve(p);
    });
    void managed.exited.then(() => {
      clearTimeout(timer);
      reject(new StandInError(`s3rver exited during start-up:\n${managed.output()}`));
    });
  });

  const client = new S3Client({ ...probeClientOptions(`http://127.0.0.1:${port}`), forcePathStyle: true });
  try {
    await waitUntilReady(managed, () => client.send(new ListBucketsCommand({})), timeout, 's3rver');
  } finally {
    client.destroy();
  }
  return { managed, port };
}

/** Starts DynamoDB Local and s3rver side by side and resolves when both answer the real SDK. */
export async function startStandIns(options: StandInsOptions): Promise<StandIns> {
  const resolved: Required<StandInsOptions> = {
    readyTimeoutMs: 60_000,
    verbose: false,
    ...options,
  };
  mkdirSync(resolved.directory, { recursive: true });
  const emitter = new EventEmitter();
  // s3 events may have no listener yet; that is fine, and many listeners are fine too.
  emitter.setMaxListeners(0);
  const unexpected = (name: string) => (code: number | null, signal: string | null) => {
    logger.error('stand-in exited unexpectedly', { standIn: name, code, signal });
    emitter.emit('unexpected-exit', name, code, signal);
  };

  const started = await Promise.allSettled([
    startDynamoDb(resolved, unexpected('dynamodb')),
    startS3rver(resolved, emitter, unexpected('s3')),
  ]);
  const [ddb, s3] = started;
  if (ddb.status === 'rejected' || s3.status === 'rejected') {
    // Never leave the one that did start behind.
    await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.managed.stop() : undefined)));
    throw ddb.status === 'rejected' ? ddb.reason : (s3 as PromiseRejectedResult).reason;
  }

  const describe = (name: 'dynamodb' | 's3', r: { managed: ManagedChild; port: number }): StandInProcess => ({
    name,
    pid: r.managed.pid,
    port: r.port,
    endpoint: `http://127.0.0.1:${r.port}`,
  });

  ddb.value.managed.arm();
  s3.value.managed.arm();
  let stopping: Promise<void> | undefined;
  return {
    dynamodb: describe('dynamodb', ddb.value),
    s3: describe('s3', s3.value),
    onS3Event(listener) {
      emitter.on('s3-event', listener);
      return () => emitter.off('s3-event', listener);
    },
    onUnexpectedExit(listener) {
      emitter.on('unexpected-exit', listener);
      return () => emitter.off('unexpected-exit', listener);
    },
    stop() {
      stopping ??= Promise.all([ddb.value.managed.stop(), s3.value.managed.stop()]).then(() => {
        emitter.removeAllListeners();
      });
      return stopping;
    },
  };
}
