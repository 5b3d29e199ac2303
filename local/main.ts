/**
 * `npm start`: the whole backend on this machine, no AWS account needed.
 * Settings come from HANGAR_* variables (functions/platform/config.ts, localConfig()).
 * stdout gets a short human-readable banner; the service's JSON logs go to stderr.
 */
import { localConfig, serviceConfig } from '#platform/config';
import { logger } from '#platform/logger';
import { startBackend } from './backend.ts';
import { type LocalAgent, startLocalAgent } from './local-agent.ts';
import { missingNodeFlags, PRIMARY_NODE_FLAGS } from './node-flags.ts';

const config = localConfig();
const missingFlags = missingNodeFlags(PRIMARY_NODE_FLAGS);
// `npm start` passes them; someone running `tsx local/main.ts` by hand gets slower imports, not an error.
if (missingFlags.length > 0)
  logger.warn('started without the primary heap flags: S3-drop imports will spend more CPU on GC', {
    missing: missingFlags,
  });

let backend: Awaited<ReturnType<typeof startBackend>>;
try {
  backend = await startBackend({
    port: config.HANGAR_PORT,
    host: config.HANGAR_HOST,
    dataDir: config.HANGAR_DATA_DIR,
    storage: config.HANGAR_STORAGE,
    ...(config.HANGAR_TOKENS ? { tokensFile: config.HANGAR_TOKENS } : {}),
    authMode: config.HANGAR_AUTH_MODE,
    logLevel: config.HANGAR_LOG_LEVEL,
    workers: config.HANGAR_WORKERS,
  });
} catch (error) {
  logger.error('could not start the backend', { error });
  process.stderr.write(`hangar: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}

let agent: LocalAgent | undefined;
if (config.HANGAR_LOCAL_AGENT) {
  if (!backend.tokensFile) {
    process.stderr.write(
      'hangar: HANGAR_LOCAL_AGENT needs the tokens auth mode (its host token goes into the token file)\n',
    );
    await backend.stop();
    process.exit(2);
  }
  agent = startLocalAgent({
    serviceUrl: backend.url,
    stateDir: backend.stateDir,
    tokensFile: backend.tokensFile,
    libvirtUri: config.HANGAR_LOCAL_AGENT_LIBVIRT_URI,
    logLevel: config.HANGAR_LOG_LEVEL === 'silent' ? 'error' : config.HANGAR_LOG_LEVEL,
  });
  // The banner says the machine is ready: `hangar run` right after it must find the host registered.
  // libvirt's first capability probe may take a while; a slower agent is reported, not waited for.
  const timeout = new Promise<'late'>((resolve) => setTimeout(resolve, 120_000, 'late').unref());
  const outcome = await Promise.race([agent.ready.then(() => 'ready' as const), timeout]).catch(
    (error: unknown) => (error instanceof Error ? error.message : String(error)),
  );
  if (outcome !== 'ready')
    process.stderr.write(
      `hangar: the local host agent is not ready (${outcome === 'late' ? 'not after 120s' : outcome}); see its log lines above\n`,
    );
}

const lines = [
  `Hangar is listening on ${backend.url}`,
  `  web console: ${backend.url}/console/`,
  config.HANGAR_STORAGE === 'memory'
    ? `  storage: in memory (scratch files in ${backend.stateDir}, removed on exit)`
    : `  data directory: ${backend.stateDir}`,
  backend.tokensFile
    ? `  token file: ${backend.tokensFile}`
    : `  auth: keystone (tokens are validated by ${serviceConfig().keystone.url ?? 'HANGAR_KEYSTONE_URL, unset'})`,
  `  gateway: ${backend.workers === 1 ? 'one process' : `${backend.workers} worker processes (HANGAR_WORKERS)`}`,
  `  embedded S3: ${backend.endpoints.s3}, key pair in ${backend.credentialsFile} (profile hangar)`,
];
if (agent)
  lines.push(
    `  local host agent: ${agent.hostId} on ${config.HANGAR_LOCAL_AGENT_LIBVIRT_URI} (data in ${agent.dataDir})`,
  );
if (backend.adminToken) {
  lines.push(
    `  development admin token: ${backend.adminToken}`,
    `  try: glance --os-image-url ${backend.url} --os-auth-token ${backend.adminToken} image-list`,
  );
}
lines.push('Press Ctrl+C to stop.');
process.stdout.write(`${lines.join('\n')}\n`);

let shuttingDownSince: number | undefined;
/** Within this, a second signal is the first one again (the terminal's process group and tsx both forward it). */
const REPEATED_SIGNAL_MS = 1_000;
async function shutdown(code: number): Promise<void> {
  if (shuttingDownSince !== undefined) {
    if (Date.now() - shuttingDownSince < REPEATED_SIGNAL_MS) return;
    // A second Ctrl+C: stop waiting. The 'exit' hooks still kill the children and remove scratch files.
    process.exit(code || 130);
  }
  shuttingDownSince = Date.now();
  try {
    // The agent first: it stops claiming while the service still answers it.
    await agent?.stop();
    await backend.stop();
  } catch (error) {
    logger.error('error while stopping', { error });
    code ||= 1;
  }
  process.exit(code);
}

process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
void agent?.exited.then((code) => {
  // The service goes on without it: images still work, instances wait for a host.
  if (shuttingDownSince === undefined)
    process.stderr.write(
      `hangar: the local host agent exited (code ${code}); instances cannot run here until a restart\n`,
    );
});
backend.onUnexpectedExit((name, exitCode, signal) => {
  process.stderr.write(`hangar: the ${name} stand-in died (code ${exitCode}, signal ${signal}); stopping\n`);
  void shutdown(1);
});
