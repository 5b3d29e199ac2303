/**
 * Agents told, not polling (issue 13, item 3), against the real local backend: the agent's own
 * service client, worker and notification socket (agent/src), with job handlers that do nothing
 * (no libvirt here). A notified agent claims within moments although its fallback poll is a
 * minute away; a dropped socket falls back to polling and loses no job; a notification lost on a
 * socket that stays open delays its job by at most the fallback interval. The socket refuses
 * callers that do not act for the host, as the host's HTTPS calls do.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createRawImage, putImageFile, registerHost } from '../helpers/api.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { type ClaimingAgent, startClaimingAgent } from '../helpers/claiming-agent.ts';

const HOSTS = ['h-told', 'h-muted', 'h-auth'];
const SOCKET_PATH = '/v1/agent-socket';

/** A TCP relay in front of the gateway for the socket only: the test cuts it, or mutes what the server says. */
class Relay {
  private server: Server | undefined;
  private readonly pairs = new Set<Socket>();
  muted = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(): Promise<void> {
    this.server = createServer((client) => this.relay(client));
    await new Promise<void>((resolve) => this.server?.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  private relay(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    this.pairs.add(client).add(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => {
      // Muted (after the handshake): notifications vanish on a socket that stays open.
      if (!this.muted) client.write(chunk);
    });
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on('close', () => {
        this.pairs.delete(a);
        b.destroy();
      });
      a.on('error', () => a.destroy());
    }
  }

  /** Stops listening and drops every relayed connection: the agent can neither keep nor reopen its socket. */
  async cut(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()));
    for (const socket of this.pairs) socket.destroy();
    await closed;
  }
}

describe('agent notifications', () => {
  let t: TestBackend;
  const images: Record<string, string> = {};

  beforeAll(async () => {
    t = await startTestBackend({ hosts: HOSTS });
    // One image per host, asking for that host's architecture: placement picks that host only.
    for (const hostId of HOSTS) {
      const created = await createRawImage(t, 'alice', { name: 'guest', architecture: `arch-${hostId}` });
      const id: string = created.body.id;
      const upload = await putImageFile(t, t.tokens.alice, id, new TextEncoder().encode('not really a disk'));
      expect(upload.status).toBe(204);
      images[hostId] = id;
    }
  });
  afterAll(async () => {
    await t?.stop();
  });

  async function register(hostId: string): Promise<void> {
    const reply = await registerHost(t, hostId, {
      vcpus: 16,
      ram_mb: 65536,
      disk_gb: 500,
      architecture: `arch-${hostId}`,
    });
    expect(reply.status).toBe(200);
  }

  /** POSTs an instance for the host; resolves with the time the request was sent. */
  async function createInstance(hostId: string): Promise<{ id: string; sentAt: number }> {
    const sentAt = Date.now();
    const reply = await t.request('POST', '/v1/instances', {
      token: t.tokens.alice,
      headers: { accept: 'application/json' },
      body: { name: 'told', image: images[hostId], vcpus: 1, ram_mb: 128, disk_gb: 1 },
    });
    const body = (await reply.json()) as { id: string };
    expect(reply.status, JSON.stringify(body)).toBe(202);
    return { id: body.id, sentAt };
  }

  function startAgent(
    hostId: string,
    socketUrl: string,
    timing: { fallbackMs: number; disconnectedPollMs: number },
  ): ClaimingAgent {
    return startClaimingAgent({
      serviceUrl: t.url,
      hostId,
      token: t.hostTokens[hostId] ?? '',
      socketUrl,
      ...timing,
    });
  }

  async function until(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(10);
    }
  }

  const claimOf = (agent: ClaimingAgent, instanceId: string) => agent.claimOf(instanceId);
  const connected = (agent: ClaimingAgent) => agent.notifications?.isConnected === true;

  it('claims at once when told, polls when the socket is dropped, and loses no job', async () => {
    // Arrange: the socket through a relay the test can cut; the fallback poll a minute away.
    await register('h-told');
    const gateway = new URL(t.url);
    const relay = new Relay({ host: gateway.hostname, port: Number(gateway.port) });
    await relay.listen();
    const agent = startAgent('h-told', `ws://127.0.0.1:${relay.port}${SOCKET_PATH}`, {
      fallbackMs: 60_000,
      disconnectedPollMs: 300,
    });
    try {
      await until('the socket', () => connected(agent), 5_000);
      // Let the claim that follows opening the socket find the empty queue first.
      await sleep(200);

      // Act 1: told over the socket.
      const told: number[] = [];
      for (let i = 0; i < 3; i++) {
        const { id, sentAt } = await createInstance('h-told');
        await until('the notified claim', () => claimOf(agent, id) !== undefined, 5_000);
        told.push((claimOf(agent, id)?.at ?? 0) - sentAt);
      }

      // Act 2: the socket dropped and not to be reopened; jobs enqueued meanwhile.
      await relay.cut();
      await until('the socket to drop', () => !connected(agent), 5_000);
      const whileCut = [await createInstance('h-told'), await createInstance('h-told')];
      await until('the polled claims', () => whileCut.every(({ id }) => claimOf(agent, id)), 5_000);

      // Act 3: the relay back: the agent reopens its socket and is told again.
      await relay.listen();
      await until('the socket to reopen', () => connected(agent), 5_000);
      await sleep(200);
      const after = await createInstance('h-told');
      await until('the claim after reopening', () => claimOf(agent, after.id) !== undefined, 5_000);
      const afterMs = (claimOf(agent, after.id)?.at ?? 0) - after.sentAt;

      // Assess: notified claims far inside the minute's fallback; every job claimed exactly once.
      for (const ms of [...told, afterMs]) expect(ms).toBeLessThan(1_000);
      const ids = agent.claims.map((c) => c.job.instance.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids).toHaveLength(6);
      expect(agent.claims.every((c) => c.job.kind === 'build')).toBe(true);
    } finally {
      await agent.stop();
      await relay.cut().catch(() => undefined);
    }
  });

  it('a notification lost on an open socket delays its job by at most the fallback interval', async () => {
    // Arrange: the relay keeps the socket open but swallows what the server sends after the handshake.
    await register('h-muted');
    const gateway = new URL(t.url);
    const relay = new Relay({ host: gateway.hostname, port: Number(gateway.port) });
    await relay.listen();
    const fallbackMs = 1_500;
    const agent = startAgent('h-muted', `ws://127.0.0.1:${relay.port}${SOCKET_PATH}`, {
      fallbackMs,
      disconnectedPollMs: 60_000,
    });
    try {
      await until('the socket', () => connected(agent), 5_000);
      await sleep(200);
      relay.muted = true;

      // Act
      const { id, sentAt } = await createInstance('h-muted');
      await until('the fallback claim', () => claimOf(agent, id) !== undefined, fallbackMs + 3_000);

      // Assess: still connected, so it was the fallback poll (bounded by its interval) that found it.
      const waited = (claimOf(agent, id)?.at ?? 0) - sentAt;
      expect(connected(agent)).toBe(true);
      expect(waited).toBeLessThanOrEqual(fallbackMs + 500);
    } finally {
      await agent.stop();
      await relay.cut().catch(() => undefined);
    }
  });

  it('opens only with a token acting for the host, like the HTTPS calls', async () => {
    const base = t.url.replace(/^http/, 'ws');
    const attempt = (query: string, token?: string) =>
      new Promise<number>((resolve, reject) => {
        const ws = new WebSocket(`${base}${SOCKET_PATH}${query}`, {
          headers: token ? { 'X-Auth-Token': token } : {},
        });
        ws.on('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          ws.terminate();
        });
        ws.on('open', () => {
          resolve(101);
          ws.close();
        });
        ws.on('error', (error) => reject(error));
      });

    // Act
    const own = await attempt('?host_id=h-auth', t.hostTokens['h-auth']);
    const otherHost = await attempt('?host_id=h-auth', t.hostTokens['h-told']);
    const project = await attempt('?host_id=h-auth', t.tokens.alice);
    const anonymous = await attempt('?host_id=h-auth');
    const noHost = await attempt('', t.hostTokens['h-auth']);
    const elsewhere = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${base}/v2/images`, { headers: { 'X-Auth-Token': t.tokens.alice } });
      ws.on('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.on('error', () => resolve(-1));
    });

    // Assess
    expect({ own, otherHost, project, anonymous, noHost, elsewhere }).toEqual({
      own: 101,
      otherHost: 403,
      project: 403,
      anonymous: 401,
      noHost: 400,
      elsewhere: 404,
    });
  });
});
