/**
 * A small keep-alive HTTP/1.1 load client, run as its own process (bench/metadata.ts spawns it)
 * so that its CPU is not the gateway's event loop, as wrk was for the Glance figures. It writes
 * pre-built requests on raw sockets and reads answers by Content-Length: a fraction of the CPU
 * per request of node:http's client or fetch, which on two cores would otherwise be measured as
 * the server's cost. Answers without a Content-Length (chunked, streamed) are not supported.
 *
 * Input: a LoadSpec as JSON on stdin. Output: one JSON line (LoadResult) on stdout.
 */
import { connect, type Socket } from 'node:net';

export interface LoadRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

export interface LoadSpec {
  host: string;
  port: number;
  connections: number;
  /** Requests taken in turn (each connection starts at its own offset). */
  requests: LoadRequest[];
  /** Stop after this many answers in all (sequential runs), or */
  count?: number;
  /** after this long (concurrent runs); answers during warmupMs are not counted. */
  durationMs?: number;
  warmupMs?: number;
}

export interface LoadResult {
  answered: number;
  seconds: number;
  reqPerSec: number;
  medianMs: number;
  p99Ms: number;
  /** Answers by status code; anything but 2xx is a failed benchmark. */
  statuses: Record<string, number>;
}

function encode(request: LoadRequest, host: string, port: number): Buffer {
  const body = request.body === undefined ? undefined : Buffer.from(request.body);
  const lines = [`${request.method} ${request.path} HTTP/1.1`, `host: ${host}:${port}`];
  for (const [name, value] of Object.entries(request.headers)) lines.push(`${name}: ${value}`);
  if (body) lines.push(`content-length: ${body.length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`);
  return body ? Buffer.concat([head, body]) : head;
}

const HEADER_END = Buffer.from('\r\n\r\n');

/** Reads one answer after another off a socket; calls back with each status code. */
class AnswerReader {
  private buffered: Buffer = Buffer.alloc(0);
  private need = -1;
  private status = 0;

  constructor(private readonly onAnswer: (status: number) => void) {}

  push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    for (;;) {
      if (this.need < 0) {
        const end = this.buffered.indexOf(HEADER_END);
        if (end === -1) return;
        const head = this.buffered.subarray(0, end).toString('latin1');
        this.status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
        if (!length) {
          if (/\r\ntransfer-encoding:/i.test(head)) throw new Error(`unsupported answer framing:\n${head}`);
        }
        this.need = length ? Number(length[1]) : 0;
        this.buffered = this.buffered.subarray(end + HEADER_END.length);
      }
      if (this.buffered.length < this.need) return;
      this.buffered = this.buffered.subarray(this.need);
      this.need = -1;
      this.onAnswer(this.status);
    }
  }
}

function percentile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const encoded = spec.requests.map((r) => encode(r, spec.host, spec.port));
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  const started = performance.now();
  const countFrom = started + (spec.warmupMs ?? 0);
  const stopAt = spec.durationMs === undefined ? Number.POSITIVE_INFINITY : countFrom + spec.durationMs;
  let sent = 0;
  let measuredFrom = Number.NaN;
  let measuredTo = started;

  const connection = (index: number) =>
    new Promise<void>((resolve, reject) => {
      const socket: Socket = connect({ host: spec.host, port: spec.port, noDelay: true });
      let next = index;
      let sentAt = 0;
      const send = () => {
        if (performance.now() >= stopAt || (spec.count !== undefined && sent >= spec.count)) {
          socket.end();
          resolve();
          return;
        }
        sent++;
        sentAt = performance.now();
        socket.write(encoded[next++ % encoded.length] as Buffer);
      };
      const reader = new AnswerReader((status) => {
        const now = performance.now();
        if (sentAt >= countFrom) {
          if (Number.isNaN(measuredFrom)) measuredFrom = sentAt;
          latencies.push(now - sentAt);
          statuses[status] = (statuses[status] ?? 0) + 1;
          measuredTo = now;
        }
        send();
      });
      socket.on('data', (chunk: Buffer) => {
        try {
          reader.push(chunk);
        } catch (error) {
          socket.destroy();
          reject(error);
        }
      });
      socket.on('error', reject);
      socket.on('connect', send);
    });

  await Promise.all(Array.from({ length: spec.connections }, (_, i) => connection(i)));
  const sorted = Float64Array.from(latencies).sort();
  const seconds = (measuredTo - measuredFrom) / 1000;
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    answered: latencies.length,
    seconds: round(seconds),
    reqPerSec: round(latencies.length / seconds),
    medianMs: round(percentile(sorted, 0.5)),
    p99Ms: round(percentile(sorted, 0.99)),
    statuses,
  };
}

// Run as a process: `node --import tsx bench/http-load.ts < spec.json`.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  runLoad(JSON.parse(input) as LoadSpec).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (error: unknown) => {
      process.stderr.write(`http-load: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
