/** Small helpers shared by the benchmarks: timing, percentiles, a throw-away backend. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoImageRepository } from '#adapters/dynamo/image-repository';
import { parseCreateRequest } from '#core/images/create';
import { makePrincipal } from '#core/kernel/principal';
import { serviceConfig } from '#platform/config';
import { type Backend, startBackend } from '../local/backend.ts';

export interface Stats {
  n: number;
  medianMs: number;
  p99Ms: number;
}

export function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { n: sorted.length, medianMs: round(at(0.5)), p99Ms: round(at(0.99)) };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

export interface BenchBackend {
  backend: Backend;
  url: string;
  tokens: { admin: string; alice: string; bob: string; host: string };
  stop(): Promise<void>;
}

export const BENCH_HOST_ID = 'bench-host';

/** An in-memory backend with three users' tokens and a host agent's, for one benchmark run. */
export async function startBenchBackend(options: { workers?: number } = {}): Promise<BenchBackend> {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-bench-'));
  const tokens = {
    admin: randomBytes(16).toString('hex'),
    alice: randomBytes(16).toString('hex'),
    bob: randomBytes(16).toString('hex'),
    host: randomBytes(16).toString('hex'),
  };
  const file = join(dir, 'tokens.json');
  writeFileSync(
    file,
    JSON.stringify({
      tokens: {
        [tokens.admin]: { project: 'admin', user: 'admin', roles: ['admin', 'member'] },
        [tokens.alice]: { project: 'projA', user: 'alice', roles: ['member'] },
        [tokens.bob]: { project: 'projB', user: 'bob', roles: ['member'] },
        // The host agent of BENCH_HOST_ID (the claim-latency benchmark).
        [tokens.host]: { project: 'hosts', user: BENCH_HOST_ID, roles: ['host'] },
      },
    }),
  );
  const backend = await startBackend({
    port: 0,
    storage: 'memory',
    tokensFile: file,
    logLevel: 'error',
    ...(options.workers !== undefined ? { workers: options.workers } : {}),
  });
  return {
    backend,
    url: backend.url,
    tokens,
    async stop() {
      await backend.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/**
 * Images seeded straight through the repository (POST's write path minus HTTP), 32 at a time:
 * `${prefix}${i}` for i from `offset`, each a second newer than the one before.
 */
export async function seedImages(
  client: DynamoDBDocumentClient,
  project: string,
  count: number,
  { prefix = 'seed-', offset = 0 }: { prefix?: string; offset?: number } = {},
): Promise<void> {
  const repo = new DynamoImageRepository(client, serviceConfig().tableName);
  const principal = makePrincipal(project, 'seed', ['member']);
  const quotas = { properties: 128, tags: 128 };
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = offset + next++;
      await repo.create(
        parseCreateRequest(
          { name: `${prefix}${i}`, disk_format: 'qcow2', container_format: 'bare' },
          principal,
          quotas,
          new Date(Date.UTC(2026, 0, 1) + i * 1000),
        ),
      );
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}
