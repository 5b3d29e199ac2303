/**
 * The local stand-ins for AWS, each a child process: DynamoDB Local (the jar shipped inside
 * amplify-dynamodb-simulator) and s3rver. See /work/shared/reference/local-aws.md for why these two.
 *
 * No child may outlive us: they are killed on stop(), on our 'exit', and (through
 * `setpriv --pdeathsig KILL`, where available) by the kernel if we are SIGKILLed.
 *
 * Neither is reachable with data access from another machine or another local user: both listen on
 * 127.0.0.1 only (DynamoDB Local through local/dynamodb/LoopbackDynamoDbLocal.java, since it has no
 * bind flag), and both answer only the data directory's own key pair (`<directory>/aws-credentials`,
 * mode 0600): s3rver checks SigV4 signatures (local/s3-sigv4.mjs), and DynamoDB Local, which checks
 * no signature, keeps one database per access key id (no -sharedDb), so another key sees an empty one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import type { S3EventRecord } from 'aws-lambda';
import { logger } from '#platform/logger';

export type { S3EventRecord };

export const LOCAL_REGION = 'us-east-1';
/** The stand-ins' key pair, in the AWS shared-credentials format, profile `hangar` (see README). */
export const CREDENTIALS_FILE = 'aws-credentials';
export const CREDENTIALS_PROFILE = 'hangar';

export interface LocalCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

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
  /** The only key pair both stand-ins answer; kept in `credentialsFile`. */
  readonly credentials: LocalCredentials;
  readonly credentialsFile: string;
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

/** A free TCP port on loopback, where DynamoDB Local will listen. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
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

/** `AKIA`-like: upper case letters and digits only, since DynamoDB Local names its file after it. */
function newAccessKeyId(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  return `HANGAR${Array.from(randomBytes(14), (b) => alphabet[b % 32]).join('')}`;
}

/**
 * The data directory's key pair: read from `<directory>/aws-credentials`, or made and written there
 * (mode 0600, never clobbered) the first time. A file others may read is narrowed to 0600.
 */
export function loadOrCreateCredentials(directory: string): { credentials: LocalCredentials; path: string } {
  const path = join(directory, CREDENTIALS_FILE);
  if (!existsSync(path)) {
    const credentials = {
      accessKeyId: newAccessKeyId(),
      secretAccessKey: randomBytes(30).toString('base64url'),
    };
    const text = [
      "# Hangar's embedded DynamoDB Local and s3rver accept only this key pair (see README.md).",
      `[${CREDENTIALS_PROFILE}]`,
      `aws_access_key_id = ${credentials.accessKeyId}`,
      `aws_secret_access_key = ${credentials.secretAccessKey}`,
      '',
    ].join('\n');
    try {
      writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
    } catch (error) {
      // Another start won the race: use its key.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      return loadOrCreateCredentials(directory);
    }
    return { credentials, path };
  }
  if ((statSync(path).mode & 0o077) !== 0) {
    chmodSync(path, 0o600);
    logger.warn('stand-in credentials file was readable by others; narrowed to 0600', { path });
  }
  const text = readFileSync(path, 'utf8');
  const accessKeyId = /^\s*aws_access_key_id\s*=\s*([A-Z0-9]{16,128})\s*$/m.exec(text)?.[1];
  const secretAccessKey = /^\s*aws_secret_access_key\s*=\s*([A-Za-z0-9_+/=-]{16,128})\s*$/m.exec(text)?.[1];
  if (!accessKeyId || !secretAccessKey) {
    throw new StandInError(`${path} holds no usable aws_access_key_id / aws_secret_access_key`);
  }
  return { credentials: { accessKeyId, secretAccessKey }, path };
}

/** Our state, ours alone: the object files and the database file (named after the key id). */
function privateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
}

/**
 * Data directories from before the per-key database ran DynamoDB Local with -sharedDb, whose
 * file is `shared-local-instance.db`; without -sharedDb the file is `<key id>_<region>.db`.
 * The format is the same, so the old file is renamed to the new key's name once.
 */
function migrateSharedDb(dbDir: string, credentials: LocalCredentials): void {
  const shared = join(dbDir, 'shared-local-instance.db');
  const own = join(dbDir, `${credentials.accessKeyId}_${LOCAL_REGION}.db`);
  if (existsSync(shared) && !existsSync(own)) {
    renameSync(shared, own);
    logger.info('moved the -sharedDb database to the data directory key', { from: shared, to: own });
  }
}

const probeClientOptions = (endpoint: string, credentials: LocalCredentials) => ({
  endpoint,
  region: LOCAL_REGION,
  credentials,
  maxAttempts: 1,
  requestHandler: { connectionTimeout: 1000, requestTimeout: 3000 },
});

/** Compiled and run by the JDK's source launcher (no build step; needs the JDK's jdk.compiler). */
const LOOPBACK_LAUNCHER = join(HERE, 'dynamodb', 'LoopbackDynamoDbLocal.java');

async function startDynamoDb(
  options: Required<StandInsOptions>,
  credentials: LocalCredentials,
  onUnexpectedExit: (code: number | null, signal: string | null) => void,
): Promise<{ managed: ManagedChild; port: number }> {
  const javaHome = process.env.JAVA_HOME;
  const java = findExecutable('java', javaHome ? [join(javaHome, 'bin')] : []);
  if (!java) {
    throw new StandInError(
      'java was not found on PATH (or in $JAVA_HOME/bin): DynamoDB Local needs a Java 17+ runtime, ' +
        'e.g. `apt-get install openjdk-17-jdk-headless`.',
    );
  }
  const dir = dynamoDbLocalDir();
  const dbDir = join(options.directory, 'dynamodb');
  const storageArgs = options.storage === 'memory' ? ['-inMemory'] : ['-dbPath', dbDir];
  if (options.storage === 'disk') {
    privateDir(dbDir);
    migrateSharedDb(dbDir, credentials);
  }

  // The port is chosen before java binds it, so another process may take it first: retry.
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const args = [
      // Start-up in about 2 s instead of 5: no C2 compiler, the cheapest GC.
      '-XX:TieredStopAtLevel=1',
      '-XX:+UseSerialGC',
      `-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`,
      '-cp',
      `${join(dir, 'DynamoDBLocal.jar')}${delimiter}${join(dir, 'DynamoDBLocal_lib', '*')}`,
      LOOPBACK_LAUNCHER,
      // No -sharedDb: one database per access key id, so only our key sees our tables.
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
    const client = new DynamoDBClient(probeClientOptions(`http://127.0.0.1:${port}`, credentials));
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
      // A port taken between freePort() and java's bind: try another (checked first, since every
      // stack trace of the source launcher names jdk.compiler's frames).
      if (/address already in use|BindException|Failed to bind/i.test(managed.output())) {
        logger.warn('DynamoDB Local port was taken, retrying', { port, attempt });
        continue;
      }
      if (/Module jdk\.compiler not found|jdk\.compiler.*not found/.test(managed.output())) {
        throw new StandInError(
          'DynamoDB Local is started through a Java source launcher, which needs a JDK, not only a JRE: ' +
            'e.g. `apt-get install openjdk-17-jdk-headless`.',
          { cause: error },
        );
      }
      throw error;
    } finally {
      client.destroy();
    }
  }
  throw lastError;
}

async function startS3rver(
  options: Required<StandInsOptions>,
  credentials: LocalCredentials,
  emitter: EventEmitter,
  onUnexpectedExit: (code: number | null, signal: string | null) => void,
): Promise<{ managed: ManagedChild; port: number }> {
  const directory = join(options.directory, 's3');
  privateDir(directory);
  const [command, ...prefix] = [...deathSignalPrefix(), process.execPath];
  const child = spawn(
    command as string,
    [...prefix, join(HERE, 's3rver-child.mjs'), directory, String(!options.verbose)],
    {
      cwd: options.directory,
      detached: true,
      // Only the legacy provider: inherited options (a TypeScript loader, --inspect) do not belong here.
      env: {
        ...process.env,
        NODE_OPTIONS: '--openssl-legacy-provider',
        // In the environment, not argv: another user can read a process's argv, not its environment.
        HANGAR_S3_ACCESS_KEY_ID: credentials.accessKeyId,
        HANGAR_S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      },
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

  const client = new S3Client({
    ...probeClientOptions(`http://127.0.0.1:${port}`, credentials),
    forcePathStyle: true,
  });
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
  mkdirSync(resolved.directory, { recursive: true, mode: 0o700 });
  const { credentials, path: credentialsFile } = loadOrCreateCredentials(resolved.directory);
  const emitter = new EventEmitter();
  // s3 events may have no listener yet; that is fine, and many listeners are fine too.
  emitter.setMaxListeners(0);
  const unexpected = (name: string) => (code: number | null, signal: string | null) => {
    logger.error('stand-in exited unexpectedly', { standIn: name, code, signal });
    emitter.emit('unexpected-exit', name, code, signal);
  };

  const started = await Promise.allSettled([
    startDynamoDb(resolved, credentials, unexpected('dynamodb')),
    startS3rver(resolved, credentials, emitter, unexpected('s3')),
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
    credentials,
    credentialsFile,
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
