/**
 * s3rver in its own process, started by local/stand-ins.ts with an IPC channel. Its own process
 * because it needs NODE_OPTIONS=--openssl-legacy-provider (paged ListObjectsV2 fails without it)
 * and so its request handling never competes with the gateway's event loop.
 * Plain JavaScript so it starts without a TypeScript loader.
 *
 * argv: <directory> <silent: "true"|"false">
 * Messages to the parent: {type: 'ready', port}, {type: 's3-event', record}.
 */
import S3rver from 's3rver';

const [directory, silent] = process.argv.slice(2);

if (!process.send || !directory) {
  process.stderr.write('s3rver-child: must be started by local/stand-ins.ts with an IPC channel\n');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory,
  silent: silent !== 'false',
  // Clients use path-style URLs on 127.0.0.1; virtual-hosted buckets would only add ambiguity.
  vhostBuckets: false,
});

server.on('event', (event) => {
  for (const record of event.Records ?? []) process.send?.({ type: 's3-event', record });
});

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  try {
    await server.close();
  } catch {
    // Not running yet, or already closed: either way there is nothing left to close.
  }
  process.exit(code);
}

// The parent stops us with SIGTERM; a lost IPC channel means the parent is gone.
process.on('SIGTERM', () => void shutdown(0));
process.on('SIGINT', () => void shutdown(0));
process.on('disconnect', () => void shutdown(0));

try {
  const address = await server.run();
  process.send({ type: 'ready', port: address.port });
} catch (error) {
  process.stderr.write(`s3rver-child: failed to start: ${error?.stack ?? error}\n`);
  process.exit(1);
}
