/** The agent's notification socket and claim pacing, with a fake socket: told, fallback, reconnects. */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { notificationUrl, parseConfig } from '../../../agent/src/config.ts';
import { silentLogger } from '../../../agent/src/log.ts';
import {
  JobNotifications,
  type JobNotificationsOptions,
  KEEPALIVE_MESSAGE,
  type OpenSocket,
  type SocketEvents,
} from '../../../agent/src/notifications.ts';
import type { Job, ServicePort } from '../../../agent/src/service-client.ts';
import { Worker } from '../../../agent/src/worker.ts';

/** Every socket the code under test opened, to be opened, fed and closed by the test. */
class FakeSockets {
  readonly opened: Array<{
    url: URL;
    headers: Record<string, string>;
    events: SocketEvents;
    closed: boolean;
    sent: string[];
  }> = [];
  readonly open: OpenSocket = (url, headers, events) => {
    const entry = { url, headers, events, closed: false, sent: [] as string[] };
    this.opened.push(entry);
    return {
      // Recorded even after close: a keepalive timer left running would show here.
      send: (text) => {
        entry.sent.push(text);
      },
      close: () => {
        if (entry.closed) return;
        entry.closed = true;
        events.onClose('closed by the agent');
      },
    };
  };

  get last() {
    const entry = this.opened.at(-1);
    if (!entry) throw new Error('no socket opened');
    return entry;
  }

  /** The server side drops (or refuses) the last socket. */
  drop(): void {
    const entry = this.last;
    entry.closed = true;
    entry.events.onClose('dropped');
  }
}

async function until(condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

function setup(overrides: Partial<JobNotificationsOptions> = {}) {
  const sockets = new FakeSockets();
  const notifications = new JobNotifications({
    url: 'ws://service.test/v1/agent-socket',
    hostId: 'h-1',
    token: 'secret',
    fallbackMs: 60_000,
    disconnectedPollMs: 60_000,
    log: silentLogger,
    open: sockets.open,
    reconnectMinMs: 20,
    reconnectMaxMs: 80,
    ...overrides,
  });
  const controller = new AbortController();
  const running = notifications.run(controller.signal);
  return {
    sockets,
    notifications,
    signal: controller.signal,
    async stop() {
      controller.abort();
      await running;
    },
  };
}

/** How long `wait` took, in ms. */
async function timed(notifications: JobNotifications, signal: AbortSignal): Promise<number> {
  const started = Date.now();
  await notifications.wait(signal);
  return Date.now() - started;
}

describe('JobNotifications', () => {
  it('connects with the host id and token, and counts opening as a notification', async () => {
    // Arrange
    const { sockets, notifications, signal, stop } = setup();
    await until(() => sockets.opened.length === 1);

    // Act
    sockets.last.events.onOpen();
    const waited = await timed(notifications, signal);

    // Assess
    expect(sockets.last.url.href).toBe('ws://service.test/v1/agent-socket?host_id=h-1');
    expect(sockets.last.headers).toEqual({ 'X-Auth-Token': 'secret' });
    expect(notifications.isConnected).toBe(true);
    expect(waited).toBeLessThan(50);
    await stop();
  });

  it('wakes a waiting claim loop when told, and keeps a notification that came between waits', async () => {
    // Arrange
    const { sockets, notifications, signal, stop } = setup();
    await until(() => sockets.opened.length === 1);
    sockets.last.events.onOpen();
    await notifications.wait(signal);

    // Act
    const waiting = timed(notifications, signal);
    await sleep(30);
    sockets.last.events.onMessage('{"type":"jobs"}');
    const toldWhileWaiting = await waiting;
    sockets.last.events.onMessage('{"type":"jobs"}');
    const toldBefore = await timed(notifications, signal);

    // Assess: both far inside the minute's fallback.
    expect(toldWhileWaiting).toBeGreaterThanOrEqual(25);
    expect(toldWhileWaiting).toBeLessThan(500);
    expect(toldBefore).toBeLessThan(20);
    await stop();
  });

  it('ignores messages that are not a jobs notification', async () => {
    // Arrange
    const { sockets, notifications, signal, stop } = setup({ fallbackMs: 200 });
    await until(() => sockets.opened.length === 1);
    sockets.last.events.onOpen();
    await notifications.wait(signal);

    // Act
    const waiting = timed(notifications, signal);
    sockets.last.events.onMessage('not json');
    sockets.last.events.onMessage('{"type":"other"}');
    sockets.last.events.onMessage('[1,2]');
    const waited = await waiting;

    // Assess: only the fallback ended the wait (200 ms jittered down to no less than 150).
    expect(waited).toBeGreaterThanOrEqual(140);
    await stop();
  });

  it('polls at the fallback interval while connected, never longer, jittered down to three quarters', async () => {
    // Arrange: random 0 gives the shortest wait, random just below 1 the longest.
    let draw = 0;
    const { sockets, notifications, signal, stop } = setup({
      fallbackMs: 200,
      disconnectedPollMs: 5_000,
      random: () => draw,
    });
    await until(() => sockets.opened.length === 1);
    sockets.last.events.onOpen();
    await notifications.wait(signal);

    // Act
    const shortest = await timed(notifications, signal);
    draw = 0.999;
    const longest = await timed(notifications, signal);

    // Assess
    expect(shortest).toBeGreaterThanOrEqual(145);
    expect(shortest).toBeLessThan(190);
    expect(longest).toBeGreaterThanOrEqual(190);
    expect(longest).toBeLessThan(260);
    await stop();
  });

  it('polls at the disconnected pace while no socket opens, and reconnects with growing backoff', async () => {
    // Arrange: every attempt refused.
    const { sockets, notifications, signal, stop } = setup({
      disconnectedPollMs: 60,
      reconnectMinMs: 20,
      reconnectMaxMs: 80,
      random: () => 0.999,
    });
    const attempts: number[] = [];
    const refuseAll = (async () => {
      while (!signal.aborted && attempts.length < 4) {
        await until(() => sockets.opened.length > attempts.length && !sockets.last.closed);
        attempts.push(Date.now());
        sockets.drop();
      }
    })();

    // Act
    const waited = await timed(notifications, signal);
    await refuseAll;

    // Assess: 40, 80, 80 ms apart (min × 2^failures, capped), within the jitter and timer slack.
    const gaps = attempts.slice(1).map((at, i) => at - (attempts[i] ?? at));
    expect(notifications.isConnected).toBe(false);
    expect(waited).toBeGreaterThanOrEqual(55);
    expect(waited).toBeLessThan(200);
    expect(gaps[0]).toBeGreaterThanOrEqual(35);
    expect(gaps[1]).toBeGreaterThanOrEqual(75);
    expect(gaps[2]).toBeGreaterThanOrEqual(75);
    expect(gaps[2]).toBeLessThan(200);
    await stop();
  });

  it('a socket lost during a fallback wait wakes the loop and reopens, told again when it opens', async () => {
    // Arrange
    const { sockets, notifications, signal, stop } = setup({ disconnectedPollMs: 5_000 });
    await until(() => sockets.opened.length === 1);
    sockets.last.events.onOpen();
    await notifications.wait(signal);

    // Act
    const waiting = timed(notifications, signal);
    sockets.drop();
    const wokenByLoss = await waiting;
    await until(() => sockets.opened.length === 2);
    const reopening = timed(notifications, signal);
    sockets.last.events.onOpen();
    const wokenByReopen = await reopening;

    // Assess
    expect(wokenByLoss).toBeLessThan(100);
    expect(wokenByReopen).toBeLessThan(500);
    expect(notifications.isConnected).toBe(true);
    await stop();
  });

  it('sends a keepalive while open (API Gateway drops idle sockets), and stops with the socket', async () => {
    // Arrange
    const { sockets, stop } = setup({ keepaliveMs: 10 });
    await until(() => sockets.opened.length === 1);
    const first = sockets.last;

    // Act
    await sleep(30);
    const beforeOpen = first.sent.length;
    first.events.onOpen();
    await until(() => first.sent.length >= 2);
    sockets.drop();
    const atDrop = first.sent.length;
    await sleep(40);

    // Assess
    expect(beforeOpen).toBe(0);
    expect(first.sent.every((text) => text === KEEPALIVE_MESSAGE)).toBe(true);
    expect(JSON.parse(KEEPALIVE_MESSAGE)).toEqual({ type: 'ping' });
    expect(first.sent.length).toBe(atDrop);
    await stop();
  });

  it('closes its socket when stopped, and a wait ends with the signal', async () => {
    // Arrange
    const { sockets, notifications, signal, stop } = setup();
    await until(() => sockets.opened.length === 1);
    sockets.last.events.onOpen();
    await notifications.wait(signal);
    const waiting = timed(notifications, signal);

    // Act
    await stop();

    // Assess
    expect(await waiting).toBeLessThan(100);
    expect(sockets.last.closed).toBe(true);
    expect(sockets.opened).toHaveLength(1);
  });
});

describe('Worker with a pacer', () => {
  it('waits on the pacer, not the poll interval, after a claim that found nothing', async () => {
    // Arrange: a poll interval of an hour; only the pacer lets the loop claim again.
    const claims: number[] = [];
    const service = {
      claimJob: async () => {
        claims.push(Date.now());
        return null;
      },
    } as unknown as ServicePort;
    let releases = 0;
    const pacer = {
      wait: async (signal: AbortSignal) => {
        releases += 1;
        await sleep(20, undefined, { signal }).catch(() => undefined);
      },
    };
    const controller = new AbortController();
    const worker = new Worker({
      service,
      handlers: {} as Record<Job['kind'], never>,
      context: {} as never,
      log: silentLogger,
      leaseSeconds: 60,
      pollIntervalMs: 3_600_000,
      pacer,
      maxConcurrent: 1,
      shutdownGraceMs: 100,
    });

    // Act
    const running = worker.run(controller.signal);
    await until(() => claims.length >= 3);
    controller.abort();
    await running;

    // Assess
    expect(releases).toBeGreaterThanOrEqual(2);
  });
});

describe('agent config for notifications', () => {
  it('defaults to a socket on the service with a minute of fallback, and takes an explicit URL', () => {
    const base = { service_url: 'https://hangar.example/api/', host_id: 'h-1', token: 't', data_dir: '/d' };

    const defaults = parseConfig(base, '/');
    const explicit = parseConfig(
      { ...base, notify_url: 'wss://ws.example/prod', fallback_poll_interval_ms: 30_000 },
      '/',
    );

    expect(defaults).toMatchObject({
      notifications: true,
      fallback_poll_interval_ms: 60_000,
      notify_keepalive_ms: 300_000,
      poll_interval_ms: 2_000,
    });
    expect(notificationUrl(defaults)).toBe('wss://hangar.example/api/v1/agent-socket');
    expect(notificationUrl({ service_url: 'http://127.0.0.1:9292' })).toBe(
      'ws://127.0.0.1:9292/v1/agent-socket',
    );
    expect(notificationUrl(explicit)).toBe('wss://ws.example/prod');
    expect(() => parseConfig({ ...base, notify_url: 'http://not-a-socket' }, '/')).toThrow(/notify_url/);
  });
});
