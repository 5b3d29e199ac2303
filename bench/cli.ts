/**
 * `hangar push` and `hangar pull` of one file against `glance image-create --file` and
 * `glance image-download --file` of the same file, to the same embedded backend, in the same run:
 * whether the CLI is the bottleneck. Each figure is the whole command's wall time (process start,
 * auth, create, transfer, the client's own verification: hangar's sha512, glance's md5), as a
 * user waits for it. Both downloads fetch the same image. `tsx bench/cli.ts` runs it alone;
 * `HANGAR_BENCH_CLI_BYTES` shrinks the file (default 1 GiB).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { freshHome, parsePropertyTable, runCli } from '../test/helpers/cli.ts';
import { freshConfigDir, hangar } from '../test/helpers/hangar.ts';
import { type BenchBackend, GiB, MiB, round, startBenchBackend } from './lib.ts';

export interface CliBenchResult {
  bytes: number;
  push: { hangarMiBps: number; glanceMiBps: number; ratio: number };
  pull: { hangarMiBps: number; glanceMiBps: number; ratio: number };
  bytesOk: boolean;
}

const TIMEOUT_MS = 30 * 60_000;

async function writeRandomFile(path: string, size: number): Promise<string> {
  const hash = createHash('sha512');
  const out = createWriteStream(path);
  for (let left = size; left > 0; ) {
    const chunk = randomBytes(Math.min(left, 8 * MiB));
    hash.update(chunk);
    left -= chunk.length;
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  out.end();
  await finished(out);
  return hash.digest('hex');
}

async function sha512Of(path: string): Promise<string> {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

async function timedRun<T>(what: string, fn: () => Promise<{ code: number; stderr: string } & T>) {
  const start = performance.now();
  const result = await fn();
  const seconds = (performance.now() - start) / 1000;
  if (result.code !== 0) throw new Error(`${what} exited ${result.code}: ${result.stderr.slice(-2000)}`);
  return { seconds, result };
}

export async function benchCli(b: BenchBackend, size: number): Promise<CliBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-bench-cli-'));
  const home = freshHome();
  try {
    const file = join(dir, 'disk.raw');
    const sha512 = await writeRandomFile(file, size);
    const glance = (...args: string[]) =>
      runCli('glance', ['--os-image-url', b.url, '--os-auth-token', b.tokens.alice, ...args], {
        home,
        timeoutMs: TIMEOUT_MS,
      });
    const env = { HANGAR_URL: b.url, HANGAR_TOKEN: b.tokens.alice, HANGAR_CONFIG_DIR: freshConfigDir() };
    const cli = (...args: string[]) =>
      hangar([...args, '--progress', 'none'], { env, timeoutMs: TIMEOUT_MS });
    const mibps = (seconds: number) => round(size / MiB / seconds, 1);

    // Uploads: glance first, then hangar; downloads the other way round (ABBA), of hangar's image.
    const glancePush = await timedRun('glance image-create', () =>
      glance(
        'image-create',
        '--name',
        'bench-glance',
        '--disk-format',
        'raw',
        '--container-format',
        'bare',
        '--file',
        file,
      ),
    );
    const glanceImage = parsePropertyTable(glancePush.result.stdout);
    const hangarPush = await timedRun('hangar push', () => cli('push', file, 'bench-cli:1', '-o', 'json'));
    const pushed = JSON.parse(hangarPush.result.stdout) as { image_id: string };
    const hangarOut = join(dir, 'hangar.raw');
    const hangarPull = await timedRun('hangar pull', () => cli('pull', pushed.image_id, '-O', hangarOut));
    const glanceOut = join(dir, 'glance.raw');
    const glancePull = await timedRun('glance image-download', () =>
      glance('image-download', pushed.image_id, '--file', glanceOut),
    );

    const bytesOk =
      glanceImage.os_hash_value === sha512 &&
      (await sha512Of(hangarOut)) === sha512 &&
      (await sha512Of(glanceOut)) === sha512;
    const push = { hangarMiBps: mibps(hangarPush.seconds), glanceMiBps: mibps(glancePush.seconds) };
    const pull = { hangarMiBps: mibps(hangarPull.seconds), glanceMiBps: mibps(glancePull.seconds) };
    return {
      bytes: size,
      push: { ...push, ratio: round(push.hangarMiBps / push.glanceMiBps) },
      pull: { ...pull, ratio: round(pull.hangarMiBps / pull.glanceMiBps) },
      bytesOk,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
}

export function cliSummary(r: CliBenchResult): string {
  return [
    `CLI ${round(r.bytes / MiB, 0)} MiB, bytes ${r.bytesOk ? 'ok' : 'WRONG'}:`,
    `push: hangar ${r.push.hangarMiBps} MiB/s, glance image-create ${r.push.glanceMiBps} MiB/s, ratio ${r.push.ratio}`,
    `pull: hangar ${r.pull.hangarMiBps} MiB/s, glance image-download ${r.pull.glanceMiBps} MiB/s, ratio ${r.pull.ratio}`,
  ].join('\n');
}

export const cliBenchBytes = () => Number(process.env.HANGAR_BENCH_CLI_BYTES ?? GiB);

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const bench = await startBenchBackend();
  try {
    const result = await benchCli(bench, cliBenchBytes());
    console.log(JSON.stringify(result, null, 2));
    console.log(cliSummary(result));
  } catch (error) {
    console.error(error);
    process.exitCode = 1;
  } finally {
    await Promise.race([bench.stop(), sleep(15_000)]);
    process.exit(process.exitCode ?? 0);
  }
}
