/**
 * Claim latency: from sending `POST /v1/instances` to the host agent's claim of its build job
 * coming back, with the notification socket (fallback poll a minute away, so every claim is a
 * told one) and without it (today's loop: a claim every 2 s). The agent is the real claim loop
 * (test/helpers/claiming-agent.ts) without libvirt. Each POST waits a random part of a poll
 * interval after the previous claim, so it lands at a random point of the polling agent's cycle.
 * Target: p50 ≤ 100 ms with the socket, against about 1 s (half the interval) with 2 s polling.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { startClaimingAgent } from '../test/helpers/claiming-agent.ts';
import { BENCH_HOST_ID, type BenchBackend, round, startBenchBackend } from './lib.ts';

const POLL_MS = 2_000;

export interface ClaimLatency {
  n: number;
  p50Ms: number;
  p95Ms: number;
  meanMs: number;
  maxMs: number;
}

function summarise(samples: number[]): ClaimLatency {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return {
    n: sorted.length,
    p50Ms: round(at(0.5), 1),
    p95Ms: round(at(0.95), 1),
    meanMs: round(sorted.reduce((sum, v) => sum + v, 0) / sorted.length, 1),
    maxMs: round(sorted.at(-1) ?? Number.NaN, 1),
  };
}

async function call(bench: BenchBackend, token: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${bench.url}${path}`, {
    method,
    headers: { 'x-auth-token': token, accept: 'application/json', 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? (JSON.parse(text) as { id: string }) : undefined;
}

/** The host and an image only it can boot (its own architecture). */
async function prepare(bench: BenchBackend): Promise<string> {
  const architecture = `arch-${BENCH_HOST_ID}`;
  await call(bench, bench.tokens.host, 'PUT', `/v1/hosts/${BENCH_HOST_ID}`, {
    vcpus: 100_000,
    ram_mb: 100_000_000,
    disk_gb: 100_000_000,
    architecture,
    hypervisor_type: 'qemu',
    hypervisor_version: 9_000_000,
  });
  const image = await call(bench, bench.tokens.alice, 'POST', '/v2/images', {
    name: 'claim-latency',
    disk_format: 'raw',
    container_format: 'bare',
    architecture,
  });
  const id = image?.id ?? '';
  const upload = await fetch(`${bench.url}/v2/images/${id}/file`, {
    method: 'PUT',
    headers: { 'x-auth-token': bench.tokens.alice, 'content-type': 'application/octet-stream' },
    body: new TextEncoder().encode('not really a disk'),
  });
  if (upload.status !== 204) throw new Error(`upload: ${upload.status}`);
  return id;
}

interface Sample {
  /** From sending the POST to the claim's answer. */
  claimMs: number;
  /** The POST's own round trip, which the claim cannot beat (the job exists once it has committed). */
  postMs: number;
}

async function measure(
  bench: BenchBackend,
  image: string,
  withSocket: boolean,
  n: number,
): Promise<Sample[]> {
  const agent = startClaimingAgent({
    serviceUrl: bench.url,
    hostId: BENCH_HOST_ID,
    token: bench.tokens.host,
    socketUrl: withSocket ? `${bench.url.replace(/^http/, 'ws')}/v1/agent-socket` : undefined,
    fallbackMs: 60_000,
    disconnectedPollMs: POLL_MS,
  });
  const samples: Sample[] = [];
  try {
    if (withSocket) {
      const deadline = Date.now() + 10_000;
      while (agent.notifications?.isConnected !== true) {
        if (Date.now() > deadline) throw new Error('the agent socket did not open');
        await sleep(10);
      }
    }
    for (let i = 0; i < n; i++) {
      await sleep(Math.random() * POLL_MS);
      const sentAt = Date.now();
      const created = await call(bench, bench.tokens.alice, 'POST', '/v1/instances', {
        name: `claim-${i}`,
        image,
        vcpus: 1,
        ram_mb: 128,
        disk_gb: 1,
      });
      const postMs = Date.now() - sentAt;
      const id = created?.id ?? '';
      const deadline = sentAt + 3 * POLL_MS + 10_000;
      while (agent.claimOf(id) === undefined) {
        if (Date.now() > deadline) throw new Error(`instance ${id}: its build was not claimed`);
        await sleep(1);
      }
      samples.push({ claimMs: (agent.claimOf(id)?.at ?? Number.NaN) - sentAt, postMs });
    }
  } finally {
    await agent.stop();
  }
  return samples;
}

export async function benchClaimLatency(
  bench: BenchBackend,
  n = Number(process.env.HANGAR_BENCH_CLAIM_N ?? 20),
): Promise<{ withSocket: ClaimLatency; polling2s: ClaimLatency; postAlone: ClaimLatency; ratioP50: number }> {
  const image = await prepare(bench);
  const toldSamples = await measure(bench, image, true, n);
  const polledSamples = await measure(bench, image, false, n);
  const told = summarise(toldSamples.map((s) => s.claimMs));
  const polled = summarise(polledSamples.map((s) => s.claimMs));
  return {
    withSocket: told,
    polling2s: polled,
    postAlone: summarise([...toldSamples, ...polledSamples].map((s) => s.postMs)),
    ratioP50: round(polled.p50Ms / told.p50Ms, 1),
  };
}

// `tsx bench/agent-notify.ts`: this benchmark alone, on a backend of its own.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const bench = await startBenchBackend();
  try {
    const result = await benchClaimLatency(bench);
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await Promise.race([bench.stop(), sleep(15_000)]);
    process.exit(process.exitCode ?? 0);
  }
}
