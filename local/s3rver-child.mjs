/**
 * s3rver in its own process, started by local/stand-ins.ts with an IPC channel. Its own process
 * because it needs NODE_OPTIONS=--openssl-legacy-provider (paged ListObjectsV2 fails without it)
 * and so its request handling never competes with the gateway's event loop.
 * Plain JavaScript so it starts without a TypeScript loader.
 *
 * What this adds to s3rver 3.7.1 (which it pins: the middleware layout is checked below):
 * - Only requests signed (SigV4) with the data directory's key pair are served (but CORS
 *   preflights, which carry no signature); s3rver itself accepts anonymous requests and any V4 signature.
 * - AbortMultipartUpload removes the upload's parts (s3rver answers 405 and keeps them), and
 *   ListMultipartUploads lists the uploads in progress (s3rver: NotImplemented), so aborts are
 *   real and an orphan sweep can find what was left.
 * - UploadPart and CompleteMultipartUpload on an unknown (aborted) upload id answer NoSuchUpload,
 *   instead of recreating its directory (UploadPart) or failing with a 500 (Complete).
 * - PutObject and CompleteMultipartUpload answer once the object is on disk (fsync'd with its
 *   metadata), as S3 answers once it is durable; s3rver answered before its write had finished.
 * - GetObject bodies are read in 1 MiB pieces into reused buffers (see sendFileBodies).
 *
 * argv: <directory> <silent: "true"|"false">
 * env: HANGAR_S3_ACCESS_KEY_ID, HANGAR_S3_SECRET_ACCESS_KEY (env, not argv: argv is world-readable)
 * Messages to the parent: {type: 'ready', port}, {type: 's3-event', record}.
 */
import { createHash } from 'node:crypto';
import { constants, createWriteStream, ReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import S3rver from 's3rver';
import { SigV4Error, verifySigV4 } from './s3-sigv4.mjs';

const require = createRequire(import.meta.url);
// s3rver's own modules (the same instances s3rver uses): its key registry and its error type.
const AWSAccount = require('s3rver/lib/models/account.js');
const S3Error = require('s3rver/lib/models/error.js');

const [directory, silent] = process.argv.slice(2);
const credentials = {
  accessKeyId: process.env.HANGAR_S3_ACCESS_KEY_ID ?? '',
  secretAccessKey: process.env.HANGAR_S3_SECRET_ACCESS_KEY ?? '',
};
delete process.env.HANGAR_S3_ACCESS_KEY_ID;
delete process.env.HANGAR_S3_SECRET_ACCESS_KEY;

if (!process.send || !directory || !credentials.accessKeyId || !credentials.secretAccessKey) {
  process.stderr.write(
    's3rver-child: must be started by local/stand-ins.ts with an IPC channel and a key pair\n',
  );
  process.exit(2);
}

// s3rver checks key ids against this registry after our check; its fixed S3RVER key must go.
AWSAccount.DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
AWSAccount.DUMMY_ACCOUNT.createKeyPair(credentials.accessKeyId, credentials.secretAccessKey);

const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  directory,
  silent: silent !== 'false',
  // Clients use path-style URLs on 127.0.0.1; virtual-hosted buckets would only add ambiguity.
  vhostBuckets: false,
  allowMismatchedSignatures: false,
});

async function syncFile(path, flags = constants.O_RDONLY) {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * s3rver's putObject resolved before its write stream had finished (the md5 pass's 'finish'),
 * and nothing was fsync'd: an acknowledged upload could be read short, or lost in a crash, and
 * its writeback ran during whatever came next (an S3-drop import reading it). This one resolves
 * once the object, its metadata and the directory entry are on disk.
 */
server.store.putObject = async function putObject(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await mkdir(dirname(objectPath), { recursive: true });
  const md5 = createHash('md5');
  let size = 0;
  const content = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
  await pipeline(
    content,
    new Transform({
      transform(chunk, _encoding, callback) {
        md5.update(chunk);
        size += chunk.length;
        callback(null, chunk);
      },
    }),
    // flush: fsync'd before the stream closes.
    createWriteStream(objectPath, { flush: true }),
  );
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  await Promise.all([
    syncFile(this.getResourcePath(object.bucket, object.key, 'metadata.json')),
    syncFile(this.getResourcePath(object.bucket, object.key, 'object.md5')),
  ]);
  await syncFile(dirname(objectPath), constants.O_RDONLY | constants.O_DIRECTORY);
  return { size, md5: digest };
};

/**
 * GetObject bodies that sendFileBodies sends itself: s3rver's own read stream of the object (it
 * opens the file, so a missing one is answered as such), kept only for its path and range.
 */
const fileBodies = new WeakSet();
const storeGetObject = server.store.getObject.bind(server.store);
server.store.getObject = async (bucket, key, options) => {
  const object = await storeGetObject(bucket, key, options);
  // s3rver 3.7.1 reads an end of 0 as no end (`options.end || Infinity`), so `bytes=0-0` got the
  // whole object under a Content-Range of 0-(size-1); it asks for the first byte.
  if (options?.end === 0 && !options.start && object?.range && object.content) {
    object.range.end = 0;
    object.content.end = 0;
  }
  if (object?.content instanceof ReadStream) fileBodies.add(object.content);
  return object;
};

/** Reads of 1 MiB: s3rver's stream read 64 KiB at a time (GETs ran at ~180 MiB/s, waiting on libuv's pool). */
const READ_BYTES = 1024 * 1024;

/**
 * Sends a GetObject body from two reused 1 MiB buffers, each read again only once the socket
 * has taken it (the write's callback), instead of koa piping a read stream: that allocates a
 * fresh buffer per read, and the garbage collection of a GiB of them was most of s3rver's CPU
 * in an S3-drop import. Status and headers are s3rver's own (already on the response).
 */
async function sendFileBodies(ctx, next) {
  await next();
  const body = ctx.body;
  if (ctx.method !== 'GET' || !fileBodies.has(body)) return;
  const { path, start, end } = body;
  body.destroy();
  ctx.respond = false;
  const res = ctx.res;
  let file;
  try {
    file = await open(path, 'r');
    const closed = new Promise((_, reject) => res.once('close', () => reject(new Error('closed'))));
    closed.catch(() => undefined);
    const buffers = [Buffer.allocUnsafe(READ_BYTES), Buffer.allocUnsafe(READ_BYTES)];
    const sent = [Promise.resolve(), Promise.resolve()];
    // s3rver's Content-Length: the object's size or the range's (its `end` of an empty object is 0).
    const stop = start + Number(res.getHeader('content-length') ?? end + 1 - start);
    let position = start;
    for (let i = 0; position < stop; i ^= 1) {
      await Promise.race([sent[i], closed]);
      const { bytesRead } = await file.read(buffers[i], 0, Math.min(READ_BYTES, stop - position), position);
      if (bytesRead === 0) throw new Error(`${path} ended early`);
      position += bytesRead;
      const piece = buffers[i].subarray(0, bytesRead);
      sent[i] = new Promise((resolve, reject) =>
        res.write(piece, (error) => (error ? reject(error) : resolve())),
      );
      sent[i].catch(() => undefined);
    }
    await Promise.race([Promise.all(sent), closed]);
    res.end();
  } catch {
    // The client went away, or the file broke mid-body: the response cannot be completed.
    res.destroy();
  } finally {
    await file?.close();
  }
}

/** Where s3rver 3.7.1's filesystem store keeps a bucket's multipart uploads: one directory each. */
const uploadsDir = (bucket) => join(directory, bucket, '._S3rver_uploads');
const UPLOAD_ID = /^[0-9a-f]{32}$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** Part directories without a `key` file (a part that raced an abort) are removed after this. */
const HEADLESS_UPLOAD_MS = 10 * 60 * 1000;

async function uploadKey(bucket, uploadId) {
  if (!BUCKET.test(bucket) || !UPLOAD_ID.test(uploadId)) return undefined;
  try {
    return (await readFile(join(uploadsDir(bucket), uploadId, 'key'))).toString('utf8');
  } catch (error) {
    if (error?.code === 'ENOENT' || error?.code === 'ENOTDIR') return undefined;
    throw error;
  }
}

function noSuchUpload(uploadId) {
  return new S3Error(
    'NoSuchUpload',
    'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
    { UploadId: uploadId },
  );
}

/** Path-style /bucket/key..., decoded as s3rver's router decodes it. */
function target(ctx) {
  const [, bucket = '', ...rest] = ctx.path.split('/');
  try {
    return { bucket: decodeURIComponent(bucket), key: decodeURIComponent(rest.join('/')) };
  } catch {
    return { bucket: '', key: '' };
  }
}

async function listUploads(bucket, query) {
  const prefix = typeof query.prefix === 'string' ? query.prefix : '';
  const keyMarker = typeof query['key-marker'] === 'string' ? query['key-marker'] : '';
  const idMarker = typeof query['upload-id-marker'] === 'string' ? query['upload-id-marker'] : '';
  const requested = Number(query['max-uploads'] ?? 1000);
  const max = Number.isInteger(requested) && requested > 0 ? Math.min(requested, 1000) : 1000;
  let ids = [];
  try {
    ids = (await readdir(uploadsDir(bucket))).filter((id) => UPLOAD_ID.test(id));
  } catch (error) {
    if (error?.code !== 'ENOENT') throw error;
  }
  const uploads = [];
  for (const id of ids) {
    const dir = join(uploadsDir(bucket), id);
    const key = await uploadKey(bucket, id);
    if (key === undefined) {
      const info = await stat(dir).catch(() => undefined);
      if (info && Date.now() - info.mtimeMs > HEADLESS_UPLOAD_MS)
        await rm(dir, { recursive: true, force: true });
      continue;
    }
    const info = await stat(join(dir, 'key')).catch(() => undefined);
    if (!info || !key.startsWith(prefix)) continue;
    if (keyMarker && (key < keyMarker || (key === keyMarker && (!idMarker || id <= idMarker)))) continue;
    uploads.push({ key, id, initiated: info.mtime });
  }
  uploads.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1));
  const page = uploads.slice(0, max);
  const truncated = uploads.length > max;
  const last = page.at(-1);
  const owner = {
    ID: String(AWSAccount.DUMMY_ACCOUNT.id),
    DisplayName: AWSAccount.DUMMY_ACCOUNT.displayName,
  };
  return {
    ListMultipartUploadsResult: {
      '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' },
      Bucket: bucket,
      KeyMarker: keyMarker,
      UploadIdMarker: idMarker,
      ...(truncated && last ? { NextKeyMarker: last.key, NextUploadIdMarker: last.id } : {}),
      Prefix: prefix,
      MaxUploads: max,
      IsTruncated: truncated,
      Upload: page.map((u) => ({
        Key: u.key,
        UploadId: u.id,
        Initiator: owner,
        Owner: owner,
        StorageClass: 'STANDARD',
        Initiated: u.initiated.toISOString(),
      })),
    },
  };
}

async function authenticate(ctx, next) {
  // A CORS preflight is never signed (browsers send it bare): s3rver's CORS middleware answers it
  // from the bucket's CORS rules alone, and refuses it for a bucket that has none.
  if (ctx.method === 'OPTIONS') return next();
  try {
    verifySigV4({ method: ctx.method, url: ctx.url, headers: ctx.headers }, credentials);
  } catch (error) {
    if (error instanceof SigV4Error) throw new S3Error(error.code, error.message);
    throw error;
  }
  return next();
}

async function multipart(ctx, next) {
  const { bucket, key } = target(ctx);
  const uploadId = ctx.query.uploadId;
  const listing = ctx.method === 'GET' && !key && 'uploads' in ctx.query;
  const onUpload = key && typeof uploadId === 'string' && ['DELETE', 'PUT', 'POST'].includes(ctx.method);
  if (!listing && !onUpload) return next();
  if (!BUCKET.test(bucket) || !(await server.store.getBucket(bucket))) {
    throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket });
  }
  if (listing) {
    ctx.body = await listUploads(bucket, ctx.query);
    return;
  }
  if ((await uploadKey(bucket, uploadId)) !== key) throw noSuchUpload(uploadId);
  if (ctx.method === 'DELETE') {
    await rm(join(uploadsDir(bucket), uploadId), { recursive: true, force: true });
    ctx.status = 204;
    return;
  }
  return next();
}

// s3rver 3.7.1's chain: logger, XML encoder, mount interop, vhost, router. Ours go after the XML
// encoder (so plain-object bodies become XML and errors are logged) and before everything else.
if (server.middleware.length !== 5) {
  process.stderr.write(`s3rver-child: unexpected s3rver middleware layout (${server.middleware.length})\n`);
  process.exit(2);
}
server.middleware.splice(2, 0, sendFileBodies, authenticate, multipart);

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
