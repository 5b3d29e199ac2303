/**
 * `npx tsx bench/versus.ts [REV]`: this tree's embedded backend against the one of an earlier
 * commit (default: the commit before the renovation), both running at once and measured by one
 * client whose requests alternate between them. Absolute figures on this shared machine move with
 * its load; requests interleaved in the same seconds see the same load, so their ratio is what
 * compares. The baseline against itself (A/A) is run too: its ratios are the noise.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stats } from './lib.ts';

const RENOVATION_BASE = '8ca88d8^';
const MEMBER_TOKEN = 'versus-bench-member-token';
const SEEDED = Number(process.env.HANGAR_BENCH_VERSUS_SEED ?? 1000);
const SAMPLES = Number(process.env.HANGAR_BENCH_VERSUS_SAMPLES ?? 400);
const WARMUP = 20;

interface Gateway {
  name: string;
  port: number;
  process: ChildProcess;
  /** An image read by show, and the marker a continued list page starts from. */
  shown: string;
  marker: string;
  created: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(port: number, method: string, path: string, body?: unknown, type = 'application/json') {
  return new Promise<unknown>((done, fail) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: http.OutgoingHttpHeaders = { 'x-auth-token': MEMBER_TOKEN };
    if (data) Object.assign(headers, { 'content-type': type, 'content-length': data.length });
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if ((res.statusCode ?? 500) >= 300) fail(new Error(`${method} ${path}: ${res.statusCode} ${text}`));
        else done(text ? JSON.parse(text) : undefined);
      });
    });
    req.on('error', fail);
    req.end(data);
  });
}

/** A worktree of REV with its own node_modules (made once, kept under the temp dir). */
function baselineTree(rev: string): string {
  const commit = execFileSync('git', ['rev-parse', '--short', rev], { encoding: 'utf8' }).trim();
  const dir = join(tmpdir(), `hangar-versus-${commit}`);
  if (!existsSync(dir))
    execFileSync('git', ['worktree', 'add', '--detach', dir, commit], { stdio: 'inherit' });
  if (!existsSync(join(dir, 'node_modules')))
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'inherit' });
  return dir;
}

/** Starts `local/main.ts` of a tree in memory mode on a free port; adds a member token to its token file. */
async function startGateway(name: string, tree: string): Promise<Gateway> {
  const child = spawn('npx', ['tsx', 'local/main.ts'], {
    cwd: tree,
    env: { ...process.env, HANGAR_PORT: '0', HANGAR_STORAGE: 'memory', HANGAR_WORKERS: '1' },
    // Its own process group, so stopping it stops tsx's node and the stand-ins it started.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const { port, tokenFile } = await new Promise<{ port: number; tokenFile: string }>((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`${name}: not listening after 180 s:\n${output}`)),
      180_000,
    );
    const read = (chunk: Buffer) => {
      output += chunk.toString();
      const listening = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      const tokens = /token file: (\S+)/.exec(output);
      if (listening && tokens) {
        clearTimeout(timer);
        done({ port: Number(listening[1]), tokenFile: tokens[1] as string });
      }
    };
    child.stdout?.on('data', read);
    child.stderr?.on('data', read);
    child.on('exit', (code) => fail(new Error(`${name}: exited ${code}:\n${output}`)));
  });
  child.stdout?.removeAllListeners('data');
  child.stderr?.removeAllListeners('data');
  child.stdout?.resume();
  child.stderr?.resume();
  const file = JSON.parse(readFileSync(tokenFile, 'utf8'));
  file.tokens[MEMBER_TOKEN] = { project: 'versus', user: 'versus', roles: ['member', 'reader'] };
  writeFileSync(tokenFile, JSON.stringify(file));
  return { name, port, process: child, shown: '', marker: '', created: '' };
}

async function seed(gateway: Gateway) {
  let next = 0;
  const worker = async () => {
    while (next < SEEDED) {
      const i = next++;
      await request(gateway.port, 'POST', '/v2/images', {
        name: `seed-${i}`,
        disk_format: 'qcow2',
        container_format: 'bare',
      });
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  const page = (await request(gateway.port, 'GET', '/v2/images?limit=25')) as { images: { id: string }[] };
  gateway.shown = page.images[3]?.id ?? '';
  gateway.marker = page.images.at(-1)?.id ?? '';
}

const operations: Record<string, (g: Gateway, i: number) => Promise<unknown>> = {
  create: async (g) => {
    const image = (await request(g.port, 'POST', '/v2/images', {
      name: 'versus',
      disk_format: 'raw',
      container_format: 'bare',
    })) as { id: string };
    g.created = image.id;
  },
  show: (g) => request(g.port, 'GET', `/v2/images/${g.shown}`),
  patch: (g, i) =>
    request(
      g.port,
      'PATCH',
      `/v2/images/${g.created}`,
      [{ op: 'replace', path: '/name', value: `versus-${i}` }],
      'application/openstack-images-v2.1-json-patch',
    ),
  // Every other page continues from a marker, as Glance clients page.
  list: (g, i) => request(g.port, 'GET', `/v2/images?limit=25${i % 2 ? `&marker=${g.marker}` : ''}`),
};

/** Each sample runs every operation once on each gateway, alternating which goes first. */
async function compare(a: Gateway, b: Gateway) {
  const samples = new Map<string, number[]>();
  for (let i = 0; i < SAMPLES + WARMUP; i++) {
    for (const [op, run] of Object.entries(operations)) {
      for (const g of i % 2 ? [a, b] : [b, a]) {
        const start = performance.now();
        await run(g, i);
        if (i >= WARMUP)
          samples.set(`${op}/${g.name}`, [
            ...(samples.get(`${op}/${g.name}`) ?? []),
            performance.now() - start,
          ]);
      }
    }
  }
  return Object.keys(operations).map((op) => {
    const first = stats(samples.get(`${op}/${a.name}`) ?? []);
    const second = stats(samples.get(`${op}/${b.name}`) ?? []);
    return {
      op,
      [a.name]: `${first.medianMs} / ${first.p99Ms} ms`,
      [b.name]: `${second.medianMs} / ${second.p99Ms} ms`,
      ratio: Math.round((second.medianMs / first.medianMs) * 100) / 100,
    };
  });
}

const rev = process.argv[2] ?? RENOVATION_BASE;
const baseline = await startGateway(`baseline`, baselineTree(rev));
const current = await startGateway('current', resolve(import.meta.dirname, '..'));
try {
  for (const g of [baseline, current]) await seed(g);
  // A/A first: the baseline against itself, so the table below has its noise beside it.
  const twin = { ...baseline, name: 'baseline again' };
  console.log(`A/A: ${rev} against itself (median / p99; ratio of medians)`);
  console.table(await compare(baseline, twin));
  console.log(`${rev} against this tree, interleaved (ratio = this tree / baseline)`);
  console.table(await compare(baseline, current));
} finally {
  for (const g of [baseline, current]) if (g.process.pid) process.kill(-g.process.pid, 'SIGINT');
}
