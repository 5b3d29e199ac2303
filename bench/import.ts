/**
 * The S3-upload import path against the machine's hashing limit: an object put into the upload
 * bucket, timed from the moment S3 holds it until the image is active (trigger, state machine,
 * one streaming read with md5 + sha512 on two threads and format inspection, server-side copy,
 * activation). The limit is the two-thread md5 + sha512 rate on in-memory blocks, measured in
 * the same run just before and after; the ratio is against the higher of the two.
 *
 * Runs alone too: `npx tsx --initial-old-space-size=128 bench/import.ts [bytes]` (default 1 GiB;
 * the flag is local/node-flags.ts's, which npm start gives the process that runs imports).
 */
import { createHash, randomFillSync, randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoImageRepository } from '#adapters/dynamo/image-repository';
import { serviceConfig } from '#platform/config';
import { missingNodeFlags, PRIMARY_NODE_FLAGS } from '../local/node-flags.ts';
import { hashingLimit } from './api.ts';
import { type BenchBackend, GiB, MiB, round, startBenchBackend } from './lib.ts';

export interface ImportBenchResult {
  bytes: number;
  /** PutObject into s3rver (not part of the import time). */
  putMiBps: number;
  /** Two-thread md5 + sha512 on in-memory blocks, before and after the import. */
  limitMiBps: number;
  limitSamplesMiBps: [number, number];
  importMiBps: number;
  importSeconds: number;
  /** importMiBps / limitMiBps. */
  ratio: number;
  checksumOk: boolean;
  /** PRIMARY_NODE_FLAGS this process lacks (`npm run bench` passes them, as `npm start` does). */
  missingHeapFlags: string[];
}

/** `size` bytes of random data (a random 16 MiB block repeated: cheap to make, no easy compression). */
function sourceBytes(size: number): Buffer {
  const block = randomFillSync(Buffer.allocUnsafe(Math.min(size, 16 * MiB)));
  const out = Buffer.allocUnsafe(size);
  for (let offset = 0; offset < size; offset += block.length)
    block.copy(out, offset, 0, Math.min(block.length, size - offset));
  return out;
}

async function waitActive(
  client: DynamoDBDocumentClient,
  id: string,
  timeoutMs: number,
): Promise<{ checksum: string | null; status: string }> {
  const repo = new DynamoImageRepository(client, serviceConfig().tableName);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const image = await repo.get(id);
    if (image && (image.status === 'active' || image.properties.os_glance_failed_import)) return image;
    if (Date.now() > deadline) throw new Error(`image ${id} did not become active within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** An object put into the upload bucket and imported: the put's and the import's seconds. */
async function importObject(
  bench: BenchBackend,
  source: { bytes?: Buffer },
  measure: (importing: () => Promise<void>) => Promise<void>,
): Promise<{
  putSeconds: number;
  importSeconds: number;
  image: { checksum: string | null; status: string };
}> {
  // The image the upload names (the images/<id> key convention).
  const created = await fetch(`${bench.url}/v2/images`, {
    method: 'POST',
    headers: { 'x-auth-token': bench.tokens.admin, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: `bench-import-${randomUUID()}`,
      disk_format: 'raw',
      container_format: 'bare',
    }),
  });
  if (created.status !== 201) throw new Error(`create: ${created.status} ${await created.text()}`);
  const { id } = (await created.json()) as { id: string };

  // A client of its own, on the stand-in as the service's is configured.
  const { region, credentials, endpoints } = bench.backend.clientSettings;
  const s3 = new S3Client({
    region,
    credentials,
    endpoint: endpoints.s3,
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  try {
    const putStart = performance.now();
    await s3.send(
      new PutObjectCommand({
        Bucket: serviceConfig().buckets.uploads,
        Key: `images/${id}`,
        Body: source.bytes,
        ContentLength: source.bytes?.length,
      }),
    );
    const stored = performance.now();
    // Not kept alive through the import: the bench runs in the gateway's process, and a live 1 GiB
    // buffer there is external memory that V8's heuristics answer with a full GC every ~80 ms
    // while the import's socket reads allocate (--trace-gc: ~45 in one import).
    delete source.bytes;
    let activated: { checksum: string | null; status: string } | undefined;
    await measure(async () => {
      activated = await waitActive(bench.backend.clients.dynamo, id, 30 * 60 * 1000);
    });
    const importSeconds = (performance.now() - stored) / 1000;
    if (!activated) throw new Error('the import was not measured');
    await bench.backend.idle();
    return { putSeconds: (stored - putStart) / 1000, importSeconds, image: activated };
  } finally {
    s3.destroy();
  }
}

/**
 * `measure` wraps the import itself (from S3 holding the object to the image active), e.g. to
 * sample CPU around it (bench/bytes.ts).
 */
export async function benchImport(
  bench: BenchBackend,
  sizeBytes: number = GiB,
  measure: (importing: () => Promise<void>) => Promise<void> = (importing) => importing(),
): Promise<ImportBenchResult> {
  // A small import first, unmeasured: a process's first import also builds the import state
  // machine (aws-local-stepfunctions compiles its ASL schema with ajv: ~0.25 CPU-s, once).
  await importObject(bench, { bytes: sourceBytes(MiB) }, (importing) => importing());

  const source: { bytes?: Buffer } = { bytes: sourceBytes(sizeBytes) };
  const md5 = createHash('md5')
    .update(source.bytes as Buffer)
    .digest('hex');
  const before = await hashingLimit(sizeBytes);
  const { putSeconds, importSeconds, image } = await importObject(bench, source, measure);
  const after = await hashingLimit(sizeBytes);
  const limit = Math.max(before, after);
  const importMiBps = sizeBytes / MiB / importSeconds;
  return {
    bytes: sizeBytes,
    putMiBps: round(sizeBytes / MiB / putSeconds, 0),
    limitMiBps: round(limit, 0),
    limitSamplesMiBps: [round(before, 0), round(after, 0)],
    importMiBps: round(importMiBps, 0),
    importSeconds: round(importSeconds, 2),
    ratio: round(importMiBps / limit),
    checksumOk: image.status === 'active' && image.checksum === md5,
    missingHeapFlags: missingNodeFlags(PRIMARY_NODE_FLAGS),
  };
}

/** A warning when the import ran without the heap flags `npm start` gives the process that runs it. */
export function heapFlagsNote(result: ImportBenchResult): string {
  return result.missingHeapFlags.length > 0
    ? `; WITHOUT ${result.missingHeapFlags.join(' ')} (not npm start's configuration: run through tsx with it)`
    : '';
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const size = Number(process.argv[2] ?? process.env.HANGAR_BENCH_UPLOAD_BYTES ?? GiB);
  const bench = await startBenchBackend();
  try {
    const result = await benchImport(bench, size);
    console.log(JSON.stringify(result, null, 2));
    console.log(
      `S3-upload import of ${round(size / MiB, 0)} MiB: ${result.importMiBps} MiB/s against a two-thread hashing limit of ${result.limitMiBps} MiB/s (${Math.round(result.ratio * 100)}%)${heapFlagsNote(result)}`,
    );
  } finally {
    await bench.stop();
  }
  // The hash workers' message ports can hold an idle process open for a minute after 1 GiB.
  process.exit(0);
}
