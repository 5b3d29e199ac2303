/**
 * The embedded gateway on every core: HANGAR_WORKERS processes (node:cluster, one port, the
 * primary hands each accepted connection to a worker) that run only the HTTP handlers.
 *
 * Everything that must exist once stays in the primary, the process that called startBackend:
 * the stand-ins (DynamoDB Local, s3rver), the local Step Functions interpreter, the S3 trigger,
 * the sweeps (lease, retention, multipart). A worker's services reach the primary over the
 * cluster's IPC channel for the three collaborators that live there (edge/compose.ts):
 * - workflows.start and the task tokens: answered by the primary's LocalStepFunctions, and the
 *   request waits for the answer, so an execution exists once the HTTP answer is sent (as with
 *   StartExecution on AWS; backend.idle() in the primary sees it);
 * - jobsQueued: an agent's socket is open on whichever worker accepted it, so the primary
 *   broadcasts every notification (a worker's or its own services') to all workers, and each tells
 *   the sockets it holds. An agent not connected anywhere polls, as before.
 * What else a worker keeps is per process by design and safe to have several of: the token file is
 * re-read by each (mtime), an upload's lease is renewed by the worker that holds it (a worker that
 * dies leaves a lease that expires, and the primary's lease sweep recovers it), digest threads.
 */
import cluster, { type Worker } from 'node:cluster';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { AwsClientSettings } from '#adapters/aws-clients';
import type { JobNotifier } from '#core/instances/ports';
import type { TaskTokenNotifier, WorkflowStarter } from '#core/tasks/ports';
import { logger } from '#platform/logger';
import type { Gateway } from './gateway.ts';
import { WORKER_NODE_FLAGS } from './node-flags.ts';

/** What the primary answers for its workers. */
export interface PrimaryCollaborators {
  workflows: WorkflowStarter;
  taskTokens: TaskTokenNotifier;
}

export type CallTarget = 'workflows.start' | 'taskTokens.succeed' | 'taskTokens.fail' | 'jobs.queued';

/** Worker to primary. */
export type WorkerMessage =
  | { type: 'call'; id: number; target: CallTarget; args: unknown[] }
  | { type: 'listening'; host: string; port: number };

/** Primary to worker. */
export type PrimaryMessage =
  | { type: 'reply'; id: number; ok: true }
  | { type: 'reply'; id: number; ok: false; error: { name: string; message: string } }
  | { type: 'jobs'; hostId: string }
  | { type: 'close'; graceMs: number };

const StartArgs = z.tuple([
  z.enum(['import', 'export', 'publish']),
  z.string(),
  z.record(z.string(), z.unknown()),
]);
const SucceedArgs = z.tuple([z.string(), z.record(z.string(), z.unknown())]);
const FailArgs = z.tuple([z.string(), z.string(), z.string()]);
const JobsArgs = z.tuple([z.string()]);

export interface GatewayClusterOptions {
  workers: number;
  host: string;
  port: number;
  /** The service settings (HANGAR_* names) the primary runs with; each worker runs with the same. */
  settings: Readonly<Record<string, string>>;
  /** Where the primary's stand-ins are, and its key pair: each worker makes its own SDK clients. */
  clients: AwsClientSettings;
}

const WORKER_ENTRY = fileURLToPath(new URL('./gateway-worker.ts', import.meta.url));

/** The TypeScript loader the primary runs under, for the workers (they run .ts files too). */
function tsxLoader(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

export class GatewayCluster implements JobNotifier {
  private readonly workers = new Set<Worker>();
  private closing = false;
  private collaborators: PrimaryCollaborators | undefined;
  private options: GatewayClusterOptions | undefined;

  /** The primary's own services announce jobs through here too: every worker hears of them. */
  async jobsQueued(hostId: string): Promise<void> {
    const message: PrimaryMessage = { type: 'jobs', hostId };
    for (const worker of this.workers) if (worker.isConnected()) worker.send(message);
  }

  /** How many worker processes are serving now. */
  size(): number {
    return this.workers.size;
  }

  pids(): number[] {
    return [...this.workers].map((w) => w.process.pid ?? -1);
  }

  async start(options: GatewayClusterOptions, collaborators: PrimaryCollaborators): Promise<Gateway> {
    this.options = options;
    this.collaborators = collaborators;
    cluster.setupPrimary({
      exec: WORKER_ENTRY,
      // Only the loader and the workers' heap flags: whatever else this process was started with
      // (a test runner's flags, the primary's heap flags) is not theirs.
      execArgv: ['--import', tsxLoader(), ...WORKER_NODE_FLAGS],
      args: [],
    });
    // The primary binds once per (host, port) asked for and shares that socket: every worker asks
    // for the same port, 0 included (they all get the port the first one got).
    const first = await this.fork();
    await Promise.all(Array.from({ length: options.workers - 1 }, () => this.fork()));
    const reachable = first.host === '0.0.0.0' ? '127.0.0.1' : first.host === '::' ? '::1' : first.host;
    const hostForUrl = reachable.includes(':') ? `[${reachable}]` : reachable;
    let closed: Promise<void> | undefined;
    return {
      url: `http://${hostForUrl}:${first.port}`,
      host: first.host,
      port: first.port,
      close: (graceMs = 2000) => {
        closed ??= this.close(graceMs);
        return closed;
      },
    };
  }

  private fork(): Promise<{ host: string; port: number }> {
    const options = this.options;
    if (!options) throw new Error('the gateway cluster is not started');
    const worker = cluster.fork({
      // Read back by gatewayWorkerSettings() (platform/config.ts).
      HANGAR_GATEWAY_WORKER_SETTINGS: JSON.stringify({
        settings: options.settings,
        clients: options.clients,
        host: options.host,
        port: options.port,
      }),
    });
    this.workers.add(worker);
    return new Promise((resolve, reject) => {
      let listening = false;
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'listening') {
          listening = true;
          resolve({ host: message.host, port: message.port });
        } else if (message.type === 'call') void this.answer(worker, message);
      });
      worker.once('exit', (code, signal) => {
        this.workers.delete(worker);
        if (!listening) {
          reject(new Error(`a gateway worker exited before listening (code ${code}, signal ${signal})`));
          return;
        }
        if (this.closing) return;
        // A worker that died takes its requests with it; a new one serves the next ones.
        logger.error('gateway worker died; starting another', { pid: worker.process.pid, code, signal });
        this.fork().catch((error: unknown) => logger.error('could not replace a gateway worker', { error }));
      });
    });
  }

  private async answer(worker: Worker, call: Extract<WorkerMessage, { type: 'call' }>): Promise<void> {
    const collaborators = this.collaborators;
    let reply: PrimaryMessage;
    try {
      if (!collaborators) throw new Error('the gateway cluster has no collaborators');
      // Parsed, not trusted: a message is a process boundary like any other.
      if (call.target === 'workflows.start')
        await collaborators.workflows.start(...StartArgs.parse(call.args));
      else if (call.target === 'taskTokens.succeed')
        await collaborators.taskTokens.succeed(...SucceedArgs.parse(call.args));
      else if (call.target === 'taskTokens.fail')
        await collaborators.taskTokens.fail(...FailArgs.parse(call.args));
      else if (call.target === 'jobs.queued') await this.jobsQueued(...JobsArgs.parse(call.args));
      else throw new Error(`unknown call ${String(call.target)}`);
      reply = { type: 'reply', id: call.id, ok: true };
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      reply = { type: 'reply', id: call.id, ok: false, error: { name: e.name, message: e.message } };
    }
    if (worker.isConnected()) worker.send(reply);
  }

  /** Each worker stops accepting and finishes (or after graceMs cuts) its requests, then exits. */
  private async close(graceMs: number): Promise<void> {
    this.closing = true;
    const exits = [...this.workers].map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          worker.once('exit', () => resolve());
          const message: PrimaryMessage = { type: 'close', graceMs };
          if (worker.isConnected()) worker.send(message);
          // A worker that does not finish in time is not waited for.
          setTimeout(() => worker.process.kill('SIGKILL'), graceMs + 5000).unref();
        }),
    );
    await Promise.all(exits);
  }
}
