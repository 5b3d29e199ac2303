/**
 * The embedded gateway with a worker per core (local/cluster.ts, HANGAR_WORKERS): several
 * processes serve one 127.0.0.1 port while the stand-ins, the ASL interpreter and the sweeps stay
 * single in the primary. What is shared state must work whichever worker a request lands on:
 * workflows started from a worker run (once) in the primary; an agent's socket is told of a job
 * whichever worker holds the socket and whichever worker took the POST; the token file's changes
 * reach every worker; a worker that dies is replaced and the port keeps answering.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { TokenFile } from '#adapters/auth/token-file';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOST = 'h-workers';
const WORKERS = 2;

/** Each request on a connection of its own, so the primary hands them out to the workers in turn. */
async function fresh(t: TestBackend, method: string, path: string, token: string, body?: unknown) {
  const response = await fetch(`${t.url}${path}`, {
    method,
    headers: {
      'x-auth-token': token,
      connection: 'close',
      accept: 'application/json',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe('gateway workers', () => {
  let t: TestBackend;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [HOST], workers: WORKERS });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('serves one loopback port from the worker processes', async () => {
    // Assess
    expect(t.backend.workers).toBe(WORKERS);
    expect(t.backend.host).toBe('127.0.0.1');
    const pids = t.backend.gatewayPids();
    expect(pids).toHaveLength(WORKERS);
    expect(pids).not.toContain(process.pid);
    for (let i = 0; i < 6; i++)
      expect((await fresh(t, 'GET', '/v2/images', t.tokens.alice)).status).toBe(200);
  });

  it('runs a workflow a worker started in the primary (glance-direct import)', async () => {
    // Prepare
    const created = await fresh(t, 'POST', '/v2/images', t.tokens.alice, {
      name: 'via-worker',
      disk_format: 'raw',
      container_format: 'bare',
    });
    const id = String(created.json.id);
    const staged = await fetch(`${t.url}/v2/images/${id}/stage`, {
      method: 'PUT',
      headers: { 'x-auth-token': t.tokens.alice, 'content-type': 'application/octet-stream' },
      body: randomBytes(64 * 1024),
    });
    expect(staged.status).toBe(204);

    // Act
    const imported = await fresh(t, 'POST', `/v2/images/${id}/import`, t.tokens.alice, {
      method: { name: 'glance-direct' },
    });
    expect(imported.status).toBe(202);
    // The execution was registered in the primary before the 202: idle() waits for it.
    await t.backend.idle();

    // Assess
    const image = await fresh(t, 'GET', `/v2/images/${id}`, t.tokens.alice);
    expect(image.json.status).toBe('active');
    expect(image.json.size).toBe(64 * 1024);
  });

  it("tells every agent socket of its host's job, whichever workers hold them and took the POST", async () => {
    // Prepare: the host, an image it can run, and four sockets (spread over the workers in turn)
    const hostToken = t.hostTokens[HOST] ?? '';
    const registered = await fresh(t, 'PUT', `/v1/hosts/${HOST}`, hostToken, {
      vcpus: 8,
      ram_mb: 16384,
      disk_gb: 100,
      architecture: 'arch-workers',
      hypervisor_type: 'qemu',
      hypervisor_version: 9_000_000,
    });
    expect(registered.status).toBe(200);
    const created = await fresh(t, 'POST', '/v2/images', t.tokens.alice, {
      name: 'guest',
      disk_format: 'raw',
      container_format: 'bare',
      architecture: 'arch-workers',
    });
    const imageId = String(created.json.id);
    const upload = await fetch(`${t.url}/v2/images/${imageId}/file`, {
      method: 'PUT',
      headers: { 'x-auth-token': t.tokens.alice, 'content-type': 'application/octet-stream' },
      body: new TextEncoder().encode('not really a disk'),
    });
    expect(upload.status).toBe(204);
    const socketUrl = `${t.url.replace(/^http/, 'ws')}/v1/agent-socket?host_id=${HOST}`;
    const sockets: WebSocket[] = [];
    for (let i = 0; i < 4; i++) {
      const ws = new WebSocket(socketUrl, { headers: { 'x-auth-token': hostToken } });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      sockets.push(ws);
    }
    try {
      const told = sockets.map(
        (ws) =>
          new Promise<string>((resolve) =>
            ws.once('message', (data: WebSocket.RawData) => resolve(String(data))),
          ),
      );

      // Act: two instances, each POST on a connection of its own (so on both workers)
      for (let i = 0; i < 2; i++) {
        const instance = await fresh(t, 'POST', '/v1/instances', t.tokens.alice, {
          name: `told-${i}`,
          image: imageId,
          vcpus: 1,
          ram_mb: 128,
          disk_gb: 1,
        });
        expect(instance.status, JSON.stringify(instance.json)).toBe(202);
      }

      // Assess: every socket heard of it
      const messages = await Promise.race([
        Promise.all(told),
        sleep(5000).then(() => {
          throw new Error('not every agent socket was told');
        }),
      ]);
      expect(messages).toEqual(Array(4).fill(JSON.stringify({ type: 'jobs' })));
    } finally {
      for (const ws of sockets) ws.terminate();
    }
  });

  it('gives every worker the token file: an added token works at once, a removed one is refused within 1 s', async () => {
    // Prepare
    const path = t.backend.tokensFile ?? '';
    const file = JSON.parse(readFileSync(path, 'utf8')) as TokenFile;
    const token = `added-${randomBytes(8).toString('hex')}`;

    // Act: added
    writeFileSync(
      path,
      JSON.stringify({ tokens: { ...file.tokens, [token]: { project: 'projN', user: 'n' } } }),
    );
    const accepted = [];
    for (let i = 0; i < 4; i++) accepted.push((await fresh(t, 'GET', '/v2/images', token)).status);
    // ...and removed again
    writeFileSync(path, JSON.stringify(file));
    await sleep(1100);
    const refused = [];
    for (let i = 0; i < 4; i++) refused.push((await fresh(t, 'GET', '/v2/images', token)).status);

    // Assess
    expect(accepted).toEqual([200, 200, 200, 200]);
    expect(refused).toEqual([401, 401, 401, 401]);
  });

  it('replaces a worker that dies, and the port keeps answering', async () => {
    // Prepare
    const [victim] = t.backend.gatewayPids();
    expect(victim).toBeGreaterThan(0);

    // Act
    process.kill(victim as number, 'SIGKILL');

    // Assess
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const pids = t.backend.gatewayPids();
      if (pids.length === WORKERS && !pids.includes(victim as number)) break;
      await sleep(100);
    }
    const pids = t.backend.gatewayPids();
    expect(pids).toHaveLength(WORKERS);
    expect(pids).not.toContain(victim);
    for (let i = 0; i < 6; i++) expect((await fresh(t, 'GET', '/v2/images', t.tokens.bob)).status).toBe(200);
  });
});
