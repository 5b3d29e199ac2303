/**
 * AgentConnections, the AWS side of the agents' notification sockets, with a fake store and a
 * fake poster: connections are recorded under their host with an expiry past API Gateway's
 * 2-hour limit, forgotten on $disconnect and on 410, and every connection of a host is told with
 * the embedded gateway's own message; one failing connection neither stops the others nor gets
 * forgotten.
 */
import { describe, expect, it } from 'vitest';
import {
  type AgentConnectionStore,
  AgentConnections,
  type ConnectionPoster,
  JOBS_MESSAGE,
  MAX_CONNECTION_SECONDS,
} from '#core/instances/agent-connections';
import { JOBS_MESSAGE as EDGE_JOBS_MESSAGE } from '#edge/agent-socket';

const NOW = new Date('2026-01-02T03:04:05.000Z');

class FakeStore implements AgentConnectionStore {
  readonly items = new Map<string, { hostId: string; expiresAt: Date }>();
  failList = false;
  async add(hostId: string, connectionId: string, expiresAt: Date): Promise<void> {
    this.items.set(connectionId, { hostId, expiresAt });
  }
  async list(hostId: string): Promise<string[]> {
    if (this.failList) throw new Error('table unavailable');
    return [...this.items].filter(([, item]) => item.hostId === hostId).map(([id]) => id);
  }
  async remove(hostId: string, connectionId: string): Promise<void> {
    if (this.items.get(connectionId)?.hostId === hostId) this.items.delete(connectionId);
  }
  async hostOf(connectionId: string): Promise<string | null> {
    return this.items.get(connectionId)?.hostId ?? null;
  }
}

class FakePoster implements ConnectionPoster {
  readonly posted: Array<{ connectionId: string; message: string }> = [];
  readonly gone = new Set<string>();
  readonly broken = new Set<string>();
  async post(connectionId: string, message: string): Promise<'sent' | 'gone'> {
    if (this.broken.has(connectionId)) throw new Error('throttled');
    if (this.gone.has(connectionId)) return 'gone';
    this.posted.push({ connectionId, message });
    return 'sent';
  }
}

function setup() {
  const store = new FakeStore();
  const poster = new FakePoster();
  return { store, poster, connections: new AgentConnections(store, poster, () => NOW) };
}

describe('AgentConnections', () => {
  it('sends the same message as the embedded gateway', () => {
    expect(JOBS_MESSAGE).toBe(EDGE_JOBS_MESSAGE);
    expect(JSON.parse(JOBS_MESSAGE)).toEqual({ type: 'jobs' });
  });

  it('records a connection under its host until after the 2-hour connection limit', async () => {
    // Prepare
    const { store, connections } = setup();

    // Act
    await connections.connect('h1', 'c1');

    // Assess
    const item = store.items.get('c1');
    expect(item?.hostId).toBe('h1');
    const seconds = ((item?.expiresAt.getTime() ?? 0) - NOW.getTime()) / 1000;
    expect(seconds).toBeGreaterThan(MAX_CONNECTION_SECONDS);
    expect(seconds).toBeLessThanOrEqual(MAX_CONNECTION_SECONDS + 3600);
  });

  it('tells every connection of the host, and only of that host, once per host', async () => {
    // Prepare
    const { poster, connections } = setup();
    await connections.connect('h1', 'c1');
    await connections.connect('h1', 'c2');
    await connections.connect('h2', 'c3');

    // Act
    const summary = await connections.notify(['h1', 'h1', 'h9']);

    // Assess
    expect(poster.posted.map((p) => p.connectionId).sort()).toEqual(['c1', 'c2']);
    expect(poster.posted.every((p) => p.message === JOBS_MESSAGE)).toBe(true);
    expect(summary).toEqual({ sent: 2, gone: 0, failed: [] });
  });

  it('forgets a connection that is gone (410) and keeps one that failed otherwise', async () => {
    // Prepare
    const { store, poster, connections } = setup();
    await connections.connect('h1', 'gone');
    await connections.connect('h1', 'broken');
    await connections.connect('h1', 'fine');
    poster.gone.add('gone');
    poster.broken.add('broken');

    // Act
    const summary = await connections.notify(['h1']);

    // Assess
    expect(summary.sent).toBe(1);
    expect(summary.gone).toBe(1);
    expect(summary.failed.map((f) => f.connectionId)).toEqual(['broken']);
    expect([...store.items.keys()].sort()).toEqual(['broken', 'fine']);
  });

  it('reports a host whose connections cannot be read and still tells the others', async () => {
    // Prepare
    const { store, poster, connections } = setup();
    await connections.connect('h1', 'c1');
    const list = store.list.bind(store);
    store.list = async (hostId) => (hostId === 'h2' ? Promise.reject(new Error('throttled')) : list(hostId));

    // Act
    const summary = await connections.notify(['h2', 'h1']);

    // Assess
    expect(poster.posted.map((p) => p.connectionId)).toEqual(['c1']);
    expect(summary.failed.map((f) => f.hostId)).toEqual(['h2']);
  });

  it('as a JobNotifier, throws what failed so the caller can log it', async () => {
    // Prepare
    const { store, connections } = setup();
    store.failList = true;

    // Act / Assess
    await expect(connections.jobsQueued('h1')).rejects.toThrow('table unavailable');
  });

  it('forgets a connection on disconnect, and ignores one it never recorded', async () => {
    // Prepare
    const { store, connections } = setup();
    await connections.connect('h1', 'c1');
    await connections.connect('h1', 'c2');

    // Act
    await connections.disconnect('c1');
    await connections.disconnect('unknown');

    // Assess
    expect([...store.items.keys()]).toEqual(['c2']);
  });
});
