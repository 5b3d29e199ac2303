/**
 * Benchmarks of the images API on the embedded backend:
 * - create/show/patch/list latencies (median, p99) through HTTP;
 * - list latency with 1,000 vs 20,000 images in the same project (index-driven: ratio near 1);
 * - upload of a 1 GiB image vs this machine's two-thread md5+sha512 limit, measured in the same run.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DigestJob } from '#adapters/digests';
import { BLOCK_SIZE, rechunk } from '#core/data/pipeline';
import { type BenchBackend, MiB, round, type Stats, seedImages, stats, timed } from './lib.ts';

const run = promisify(execFile);

async function call(
  b: BenchBackend,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
) {
  const response = await fetch(`${b.url}${path}`, {
    method,
    headers: { 'x-auth-token': b.tokens.alice, 'content-type': contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (response.status >= 300)
    throw new Error(`${method} ${path} -> ${response.status}: ${text.slice(0, 200)}`);
  return text ? JSON.parse(text) : undefined;
}

export async function benchLatencies(b: BenchBackend, n = 200): Promise<Record<string, Stats>> {
  const create: number[] = [];
  const show: number[] = [];
  const patch: number[] = [];
  const list: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const made = await timed(() =>
      call(b, 'POST', '/v2/images', {
        name: `lat-${i}`,
        disk_format: 'raw',
        container_format: 'bare',
        tags: ['lat'],
      }),
    );
    create.push(made.ms);
    ids.push(made.value.id);
  }
  for (const id of ids) show.push((await timed(() => call(b, 'GET', `/v2/images/${id}`))).ms);
  for (const [i, id] of ids.entries())
    patch.push(
      (
        await timed(() =>
          call(
            b,
            'PATCH',
            `/v2/images/${id}`,
            [{ op: 'add', path: '/note', value: `n${i}` }],
            'application/openstack-images-v2.1-json-patch',
          ),
        )
      ).ms,
    );
  for (let i = 0; i < n; i++) list.push((await timed(() => call(b, 'GET', '/v2/images?limit=25'))).ms);
  return { create: stats(create), show: stats(show), patch: stats(patch), list: stats(list) };
}

/**
 * The same list query for a project that owns 1,000 images and one that owns 20,000 (21,000 in
 * the table), sampled alternately so machine noise hits both alike. Index-driven pages should
 * cost the same: the ratio stays near 1.
 */
export async function benchListScaling(b: BenchBackend, samples = 200) {
  const seedStart = performance.now();
  await seedImages(b.backend.clients.dynamo, 'projA', 1000);
  await seedImages(b.backend.clients.dynamo, 'projB', 20_000, { offset: 1000 });
  const seedSeconds = (performance.now() - seedStart) / 1000;
  const as = (token: string) => ({ ...b, tokens: { ...b.tokens, alice: token } });
  const small: number[] = [];
  const large: number[] = [];
  const markers: Record<string, string> = {};
  for (const [name, token] of [
    ['small', b.tokens.alice],
    ['large', b.tokens.bob],
  ] as const) {
    const first = await call(as(token), 'GET', '/v2/images?limit=25');
    markers[name] = first.images[first.images.length - 1].id;
  }
  for (let i = 0; i < samples; i++) {
    // Every other sample continues from a marker, to cover that path too.
    const suffix = (name: string) => (i % 2 ? `&marker=${markers[name]}` : '');
    small.push(
      (await timed(() => call(as(b.tokens.alice), 'GET', `/v2/images?limit=25${suffix('small')}`))).ms,
    );
    large.push(
      (await timed(() => call(as(b.tokens.bob), 'GET', `/v2/images?limit=25${suffix('large')}`))).ms,
    );
  }
  const images1k = stats(small);
  const images20k = stats(large);
  return {
    images1k,
    images20k,
    ratioMedian: round(images20k.medianMs / images1k.medianMs),
    seedSeconds: round(seedSeconds, 1),
  };
}

/** md5 + sha512 of in-memory blocks on the same two worker threads the service uses. */
export async function hashingLimit(totalBytes: number): Promise<number> {
  const source = randomBytes(64 * MiB);
  const blocks: Buffer[] = [];
  for (let offset = 0; offset < source.length; offset += BLOCK_SIZE) {
    const block = DigestJob.sharedBlock(BLOCK_SIZE);
    source.copy(block, 0, offset, offset + BLOCK_SIZE);
    blocks.push(block);
  }
  // Warm the workers up before timing.
  const warm = new DigestJob();
  await warm.update(blocks[0] as Buffer);
  await warm.finish();
  const { ms } = await timed(async () => {
    const job = new DigestJob();
    for (let sent = 0; sent < totalBytes; sent += BLOCK_SIZE)
      await job.update(blocks[(sent / BLOCK_SIZE) % blocks.length] as Buffer);
    await job.finish();
  });
  return totalBytes / MiB / (ms / 1000);
}

/** md5 then sha512 on one thread: what a naive single-pass implementation would reach. */
export function singleThreadHashing(totalBytes: number): number {
  const source = randomBytes(64 * MiB);
  const start = performance.now();
  const md5 = createHash('md5');
  const sha = createHash('sha512');
  for (let sent = 0; sent < totalBytes; sent += source.length) {
    md5.update(source);
    sha.update(source);
  }
  md5.digest();
  sha.digest();
  return totalBytes / MiB / ((performance.now() - start) / 1000);
}

/** The upload pipeline without the network or S3: rechunk (the one copy) + both digests. */
export async function pipelineToNull(totalBytes: number): Promise<number> {
  const source = randomBytes(MiB);
  async function* chunks() {
    // 64 KiB chunks, the size a socket delivers.
    for (let sent = 0; sent < totalBytes; sent += 64 * 1024)
      yield source.subarray(sent % MiB, (sent % MiB) + 64 * 1024);
  }
  const { ms } = await timed(async () => {
    const job = new DigestJob();
    for await (const block of rechunk(chunks(), BLOCK_SIZE, DigestJob.sharedBlock)) await job.update(block);
    await job.finish();
  });
  return totalBytes / MiB / (ms / 1000);
}

/**
 * PUT /file of `totalBytes` with curl (a separate process, as a real client), timed end to end.
 * `around` wraps the transfer alone (not the making of the source file), for CPU and RSS samplers.
 */
export async function uploadThroughput(
  b: BenchBackend,
  totalBytes: number,
  around: <T>(transfer: () => Promise<T>) => Promise<T> = (transfer) => transfer(),
): Promise<{ mibps: number; checksumOk: boolean }> {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-bench-upload-'));
  try {
    const path = join(dir, 'image.raw');
    const block = randomBytes(64 * MiB);
    const md5 = createHash('md5');
    await new Promise<void>((resolve, reject) => {
      // flush: fsync'd before the upload starts, so the kernel's writeback of this 1 GiB source
      // does not run during the measurements (it cost the downloads after it half their speed).
      const out = createWriteStream(path, { flush: true });
      out.on('error', reject);
      let written = 0;
      const write = () => {
        while (written < totalBytes) {
          const piece = block.subarray(0, Math.min(block.length, totalBytes - written));
          md5.update(piece);
          written += piece.length;
          if (!out.write(piece)) return void out.once('drain', write);
        }
        out.end(resolve);
      };
      write();
    });
    const image = await call(b, 'POST', '/v2/images', {
      name: 'bench-1g',
      disk_format: 'raw',
      container_format: 'bare',
    });
    // Warm the page cache so the client reads memory, not disk.
    await run('cat', [path], { maxBuffer: 1 }).catch(() => undefined);
    const { ms } = await around(() =>
      timed(() =>
        run('curl', [
          '-sS',
          '--fail',
          '-T',
          path,
          '-H',
          'Content-Type: application/octet-stream',
          '-H',
          `X-Auth-Token: ${b.tokens.alice}`,
          `${b.url}/v2/images/${image.id}/file`,
        ]),
      ),
    );
    const stored = await call(b, 'GET', `/v2/images/${image.id}`);
    return {
      mibps: totalBytes / MiB / (ms / 1000),
      checksumOk: stored.checksum === md5.digest('hex') && stored.size === totalBytes,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
