/**
 * Image bytes through the embedded backend against this machine's two-thread hashing limit
 * (md5 ‖ sha512 on the service's own two worker threads), all measured in the same run:
 * - upload of `size` bytes with curl (PUT /file, both digests checked), with the gateway's RSS
 *   before and at its peak during the upload;
 * - download of the same image with curl discarding the body;
 * - S3-drop import of `size` bytes (bench/import.ts).
 *
 * Runs alone too: `npx tsx --initial-old-space-size=128 bench/bytes.ts [bytes]` (default 1 GiB); HANGAR_BLOB_STORE picks the store.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { serviceConfig } from '#platform/config';
import { hashingLimit, uploadThroughput } from './api.ts';
import { benchImport, heapFlagsNote, type ImportBenchResult } from './import.ts';
import { type BenchBackend, GiB, MiB, round, startBenchBackend } from './lib.ts';

const run = promisify(execFile);

export interface BytesBenchResult {
  bytes: number;
  blobStore: string;
  hashingLimitMiBps: number;
  upload: {
    mibps: number;
    ratioToLimit: number;
    checksumOk: boolean;
    rssBeforeMiB: number;
    rssPeakMiB: number;
    cpu: CpuBreakdown;
  };
  /**
   * Three downloads in a row: the first reads the file from disk (the upload wrote it with
   * O_DIRECT, past the page cache), the next two from the cache; `mibps` is their median.
   */
  download: { mibps: number; ratioToLimit: number; bytesOk: boolean; runsMiBps: number[] };
  s3DropImport: ImportBenchResult & { cpu: CpuBreakdown };
}

/** CPU seconds spent during one measurement, by where (from /proc; Linux only). */
export interface CpuBreakdown {
  wallSeconds: number;
  /** The gateway's main thread: HTTP parsing, the handler, regrouping into blocks. */
  gatewayMainThread: number;
  /**
   * The two busiest of its other threads: the md5 and sha512 workers (Node leaves threads
   * unnamed; each costs about size / hashing limit, which is how they are told apart).
   */
  hashWorkers: [number, number];
  /** The rest of its threads: file writes and the fsync in libuv's pool (kernel time), GC. */
  gatewayOtherThreads: number;
  /** The S3 stand-in (a child process). */
  s3rver: number;
}

/** utime + stime of a /proc stat file, in seconds (0 where it cannot be read). */
function cpuSeconds(statFile: string): number {
  try {
    const fields = readFileSync(statFile, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds of each thread of this process (the gateway runs in it), by thread id. */
function threadSeconds(): Map<string, number> {
  const seconds = new Map<string, number>();
  for (const tid of readdirSync('/proc/self/task'))
    seconds.set(tid, cpuSeconds(`/proc/self/task/${tid}/stat`));
  return seconds;
}

async function withCpu<T>(s3rverPid: number, fn: () => Promise<T>): Promise<{ value: T; cpu: CpuBreakdown }> {
  const sample = () => ({
    threads: threadSeconds(),
    s3: cpuSeconds(`/proc/${s3rverPid}/stat`),
    at: performance.now(),
  });
  const before = sample();
  const value = await fn();
  const after = sample();
  const spent = (tid: string) => (after.threads.get(tid) ?? 0) - (before.threads.get(tid) ?? 0);
  const main = spent(String(process.pid));
  const others = [...after.threads.keys()]
    .filter((tid) => tid !== String(process.pid))
    .map(spent)
    .sort((a, b) => b - a);
  const [first = 0, second = 0, ...rest] = others;
  return {
    value,
    cpu: {
      wallSeconds: round((after.at - before.at) / 1000),
      gatewayMainThread: round(main),
      hashWorkers: [round(first), round(second)],
      gatewayOtherThreads: round(rest.reduce((sum, s) => sum + s, 0)),
      s3rver: round(after.s3 - before.s3),
    },
  };
}

/** Samples this process's RSS (the gateway runs in it) every 50 ms while `fn` runs. */
async function withPeakRss<T>(
  fn: () => Promise<T>,
): Promise<{ value: T; beforeMiB: number; peakMiB: number }> {
  const before = process.memoryUsage.rss();
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 50);
  try {
    const value = await fn();
    return { value, beforeMiB: round(before / MiB, 0), peakMiB: round(peak / MiB, 0) };
  } finally {
    clearInterval(timer);
  }
}

/** GET /file of the newest image named bench-1g with curl writing to /dev/null, timed end to end. */
async function downloadThroughput(
  b: BenchBackend,
  totalBytes: number,
): Promise<{ mibps: number; bytesOk: boolean }> {
  const list = await fetch(`${b.url}/v2/images?name=bench-1g&sort_key=created_at&sort_dir=desc`, {
    headers: { 'x-auth-token': b.tokens.alice },
  });
  const { images } = (await list.json()) as { images: Array<{ id: string }> };
  const id = images[0]?.id;
  if (!id) throw new Error('no uploaded image to download');
  const start = performance.now();
  const { stdout } = await run('curl', [
    '-sS',
    '--fail',
    '-o',
    '/dev/null',
    '-w',
    '%{size_download}',
    '-H',
    `X-Auth-Token: ${b.tokens.alice}`,
    `${b.url}/v2/images/${id}/file`,
  ]);
  const seconds = (performance.now() - start) / 1000;
  return { mibps: totalBytes / MiB / seconds, bytesOk: Number(stdout.trim()) === totalBytes };
}

export async function benchBytes(b: BenchBackend, size: number): Promise<BytesBenchResult> {
  const limit = await hashingLimit(size);
  global.gc?.();
  let sampled: { beforeMiB: number; peakMiB: number; cpu: CpuBreakdown } | undefined;
  const uploaded = await uploadThroughput(b, size, async (transfer) => {
    const measured = await withPeakRss(() => withCpu(b.backend.pids.s3, transfer));
    sampled = { beforeMiB: measured.beforeMiB, peakMiB: measured.peakMiB, cpu: measured.value.cpu };
    return measured.value.value;
  });
  if (!sampled) throw new Error('the upload ran without its samplers');
  const upload = { ...sampled, value: uploaded };
  const downloads = [];
  for (let run = 0; run < 3; run++) downloads.push(await downloadThroughput(b, size));
  const runsMiBps = downloads.map((d) => d.mibps);
  const download = {
    mibps: [...runsMiBps].sort((x, y) => x - y)[1] ?? 0,
    bytesOk: downloads.every((d) => d.bytesOk),
  };
  let importCpu: CpuBreakdown | undefined;
  const imported = await benchImport(b, size, async (importing) => {
    importCpu = (await withCpu(b.backend.pids.s3, importing)).cpu;
  });
  if (!importCpu) throw new Error('the import ran without its sampler');
  const s3DropImport = { ...imported, cpu: importCpu };
  return {
    bytes: size,
    blobStore: serviceConfig().blobStore.kind,
    hashingLimitMiBps: round(limit, 0),
    upload: {
      mibps: round(upload.value.mibps, 0),
      ratioToLimit: round(upload.value.mibps / limit),
      checksumOk: upload.value.checksumOk,
      rssBeforeMiB: upload.beforeMiB,
      rssPeakMiB: upload.peakMiB,
      cpu: upload.cpu,
    },
    download: {
      mibps: round(download.mibps, 0),
      ratioToLimit: round(download.mibps / limit),
      bytesOk: download.bytesOk,
      runsMiBps: runsMiBps.map((m) => round(m, 0)),
    },
    s3DropImport,
  };
}

export function bytesSummary(r: BytesBenchResult): string {
  return [
    `blob store ${r.blobStore}; hashing limit (md5 ‖ sha512, 2 threads) ${r.hashingLimitMiBps} MiB/s`,
    `upload ${round(r.bytes / MiB, 0)} MiB: ${r.upload.mibps} MiB/s (${r.upload.ratioToLimit} of the limit), checksum ${r.upload.checksumOk ? 'ok' : 'WRONG'}, gateway RSS ${r.upload.rssBeforeMiB} -> peak ${r.upload.rssPeakMiB} MiB`,
    `upload CPU seconds in ${r.upload.cpu.wallSeconds} s: gateway main thread ${r.upload.cpu.gatewayMainThread}, hash workers ${r.upload.cpu.hashWorkers.join(' + ')}, its other threads (file writes and fsync, GC) ${r.upload.cpu.gatewayOtherThreads}, s3rver ${r.upload.cpu.s3rver}`,
    `download: median of 3 ${r.download.mibps} MiB/s (${r.download.ratioToLimit}x the limit; runs ${r.download.runsMiBps.join(', ')}, the first from disk), bytes ${r.download.bytesOk ? 'ok' : 'WRONG'}`,
    `S3-drop import: ${r.s3DropImport.importMiBps} MiB/s (${r.s3DropImport.ratio} of ${r.s3DropImport.limitMiBps} MiB/s around it), checksum ${r.s3DropImport.checksumOk ? 'ok' : 'WRONG'}${heapFlagsNote(r.s3DropImport)}`,
    `import CPU seconds in ${r.s3DropImport.cpu.wallSeconds} s: gateway main thread ${r.s3DropImport.cpu.gatewayMainThread}, hash workers ${r.s3DropImport.cpu.hashWorkers.join(' + ')}, its other threads ${r.s3DropImport.cpu.gatewayOtherThreads}, s3rver ${r.s3DropImport.cpu.s3rver}`,
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const size = Number(process.argv[2] ?? process.env.HANGAR_BENCH_UPLOAD_BYTES ?? GiB);
  const bench = await startBenchBackend();
  try {
    const result = await benchBytes(bench, size);
    console.log(JSON.stringify(result, null, 2));
    console.log(bytesSummary(result));
  } finally {
    await Promise.race([bench.stop(), new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  }
  process.exit(0);
}
