/**
 * `npm run bench`: every benchmark in one run, printed as JSON and as a short summary.
 * Ratios are against baselines measured in the same run, on the same machine.
 */

import { benchClaimLatency } from './agent-notify.ts';
import {
  benchLatencies,
  benchListScaling,
  hashingLimit,
  pipelineToNull,
  singleThreadHashing,
} from './api.ts';
import { benchBytes, bytesSummary } from './bytes.ts';
import { benchCli, cliBenchBytes, cliSummary } from './cli.ts';
import { GiB, round, startBenchBackend } from './lib.ts';
import { benchMetadata, metadataSummary } from './metadata.ts';

const size = Number(process.env.HANGAR_BENCH_UPLOAD_BYTES ?? GiB);

// First, on backends of its own (one per gateway worker count): one process runs one backend at a time.
const metadata = await benchMetadata();
const backend = await startBenchBackend();
try {
  const latencies = await benchLatencies(backend);
  const limit = await hashingLimit(size);
  const single = singleThreadHashing(Math.min(size, 512 * 1024 * 1024));
  const pipeline = await pipelineToNull(size);
  const listing = await benchListScaling(backend);
  const claims = await benchClaimLatency(backend);
  // Last: upload, download and S3-drop import against the hashing limit measured alongside.
  const bytes = await benchBytes(backend, size);
  // The CLIs' transfers (hangar against glance), over the same backend.
  const cli = await benchCli(backend, cliBenchBytes());
  const result = {
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    latenciesMs: latencies,
    metadata,
    listScaling: listing,
    hashing: {
      twoThreadLimitMiBps: round(limit, 0),
      singleThreadMiBps: round(single, 0),
      pipelineToNullMiBps: round(pipeline, 0),
      pipelineRatio: round(pipeline / limit),
    },
    bytes,
    cli,
    claimLatencyMs: claims,
  };
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `\nlatency median/p99 ms: create ${latencies.create?.medianMs}/${latencies.create?.p99Ms}, show ${latencies.show?.medianMs}/${latencies.show?.p99Ms}, patch ${latencies.patch?.medianMs}/${latencies.patch?.p99Ms}, list ${latencies.list?.medianMs}/${latencies.list?.p99Ms}`,
  );
  console.log(metadataSummary(metadata));
  console.log(
    `list page median: 1k images ${listing.images1k.medianMs} ms, 20k images ${listing.images20k.medianMs} ms, ratio ${listing.ratioMedian}`,
  );
  console.log(
    `hashing limit (2 threads) ${round(limit, 0)} MiB/s; pipeline to null ${round(pipeline, 0)} MiB/s (${round(pipeline / limit)})`,
  );
  console.log(bytesSummary(bytes));
  console.log(cliSummary(cli));
  console.log(
    `claim latency POST /v1/instances -> agent claim, p50/p95 ms: with the socket ${claims.withSocket.p50Ms}/${claims.withSocket.p95Ms}, polling every 2 s ${claims.polling2s.p50Ms}/${claims.polling2s.p95Ms} (mean ${claims.polling2s.meanMs})`,
  );
} finally {
  // A benchmark must end: stop the backend, but don't wait on stragglers (keep-alive sockets).
  await Promise.race([backend.stop(), new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  process.exit(process.exitCode ?? 0);
}
