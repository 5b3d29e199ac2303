/**
 * One gateway worker of local/cluster.ts: the HTTP handlers and the agent sockets it accepted,
 * nothing else. The primary's settings arrive in the environment (gatewayWorkerSettings); the
 * collaborators that must exist once (workflows, task tokens, job notifications) are calls to
 * the primary over the cluster's IPC channel.
 */
import { createAwsClients, destroyAwsClients } from '#adapters/aws-clients';
import { useCollaborators } from '#edge/compose';
import { gatewayWorkerSettings, useServiceSettings } from '#platform/config';
import { logger } from '#platform/logger';
import { AgentSocketHub } from './agent-sockets.ts';
import type { CallTarget, PrimaryMessage, WorkerMessage } from './cluster.ts';
import { startGateway } from './gateway.ts';

const given = gatewayWorkerSettings();
if (!given || !process.send) {
  process.stderr.write('local/gateway-worker.ts runs only as a worker of local/cluster.ts\n');
  process.exit(2);
}
const send = (message: WorkerMessage) => process.send?.(message);
useServiceSettings(given.settings);

let nextId = 1;
const pending = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

function call(target: CallTarget, ...args: unknown[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    send({ type: 'call', id, target, args });
  });
}

const hub = new AgentSocketHub();
// Its own connections to the primary's stand-ins (a worker never reads AWS_* variables).
const clients = createAwsClients(given.clients);
useCollaborators({
  workflows: {
    start: (workflow, executionName, input) => call('workflows.start', workflow, executionName, input),
  },
  taskTokens: {
    succeed: (token, output) => call('taskTokens.succeed', token, output),
    fail: (token, error, cause) => call('taskTokens.fail', token, error, cause),
  },
  // The primary tells every worker, this one included (see the 'jobs' message below).
  jobNotifier: { jobsQueued: (hostId) => call('jobs.queued', hostId) },
  clients,
});

const s3 = given.clients.endpoints?.s3;
const gateway = await startGateway({
  host: given.host,
  port: given.port,
  agentSockets: hub,
  // The console's multipart parts go to the embedded S3 (see local/console-static.ts).
  ...(s3 ? { consoleConnect: [new URL(s3).origin] } : {}),
});

let closing: Promise<void> | undefined;
/** Once: the requests in flight finish (for up to graceMs), then the SDK clients' sockets close. */
function shutDown(graceMs: number): Promise<void> {
  closing ??= gateway
    .close(graceMs)
    .finally(() => destroyAwsClients(clients))
    .finally(() => process.exit(0));
  return closing;
}

process.on('message', (message: PrimaryMessage) => {
  if (message.type === 'reply') {
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (!waiting) return;
    if (message.ok) waiting.resolve();
    else waiting.reject(Object.assign(new Error(message.error.message), { name: message.error.name }));
  } else if (message.type === 'jobs') {
    void hub.jobsQueued(message.hostId);
  } else if (message.type === 'close') {
    void shutDown(message.graceMs);
  }
});
// The primary is gone (killed, or its IPC channel closed): a worker never outlives it.
process.on('disconnect', () => {
  void shutDown(0);
});
// Ctrl+C reaches the whole process group: the primary decides when workers stop.
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);

logger.debug('gateway worker listening', { pid: process.pid, port: gateway.port });
send({ type: 'listening', host: gateway.host, port: gateway.port });
