/**
 * When to claim next: the service tells the agent over a WebSocket that its queue gained a job
 * (`{"type":"jobs"}`), and the agent claims over HTTPS as before. The socket is kept open and
 * reopened with backoff. Polling stays as the fallback: every `fallbackMs` (jittered, never longer)
 * while the socket is open, so a lost notification delays a job by at most that; every
 * `disconnectedPollMs` while no socket is open (today's poll interval, as without notifications).
 * Opening (or reopening) the socket counts as a notification, since nobody was told of the jobs
 * enqueued while it was closed. While open, the agent sends `{"type":"ping"}` every `keepaliveMs`:
 * API Gateway's WebSocket API closes a connection with no data frames for 10 minutes (control-frame
 * pings do not count there), and every server ignores what an agent sends.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { z } from 'zod';
import type { Logger } from './log.ts';

/** What the worker waits on between claims that found nothing. */
export interface ClaimPacer {
  /** Resolves when the agent should claim again (told, timed out, or `signal` aborted). */
  wait(signal: AbortSignal): Promise<void>;
}

/** A fixed wait between claims: the agent without notifications. */
export class FixedPoll implements ClaimPacer {
  constructor(private readonly intervalMs: number) {}

  wait(signal: AbortSignal): Promise<void> {
    return sleep(this.intervalMs, undefined, { signal }).catch(() => undefined);
  }
}

export interface SocketEvents {
  onOpen(): void;
  onMessage(text: string): void;
  /** Once per socket, whether it opened or not. */
  onClose(reason: string): void;
}

/** Opens a socket (the `ws` client in production, a fake in unit tests); close() ends it at once. */
export type OpenSocket = (
  url: URL,
  headers: Record<string, string>,
  events: SocketEvents,
) => { close(): void; send?(text: string): void };

/** What the agent sends to keep an idle socket open; servers ignore it. */
export const KEEPALIVE_MESSAGE = JSON.stringify({ type: 'ping' });

const NotificationSchema = z.object({ type: z.string() });

export const openWebSocket: OpenSocket = (url, headers, events) => {
  let closed = false;
  const closeOnce = (reason: string) => {
    if (closed) return;
    closed = true;
    events.onClose(reason);
  };
  // The server sends a few bytes per job; anything bigger is not ours.
  const ws = new WebSocket(url, { headers, handshakeTimeout: 10_000, maxPayload: 64 * 1024 });
  ws.on('open', () => events.onOpen());
  ws.on('message', (data) => events.onMessage(String(data)));
  ws.on('error', (error) => closeOnce(error.message));
  ws.on('close', (code, reason) => closeOnce(`closed (${code}${reason.length ? ` ${String(reason)}` : ''})`));
  return {
    close: () => ws.terminate(),
    send: (text) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(text);
    },
  };
};

export interface JobNotificationsOptions {
  /** The socket's URL; `host_id` is added to its query. */
  url: string;
  hostId: string;
  token: string;
  fallbackMs: number;
  disconnectedPollMs: number;
  /** A keepalive message this often while the socket is open; 0 or unset: none. */
  keepaliveMs?: number;
  log: Logger;
  open?: OpenSocket;
  /** Reconnect backoff: first wait and cap (jittered down to half). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  random?: () => number;
}

export class JobNotifications implements ClaimPacer {
  private connected = false;
  /** A notification (or a reconnect) not yet followed by a claim. */
  private told = false;
  private readonly waiters = new Set<() => void>();
  private readonly random: () => number;

  constructor(private readonly options: JobNotificationsOptions) {
    this.random = options.random ?? Math.random;
  }

  get isConnected(): boolean {
    return this.connected;
  }

  async wait(signal: AbortSignal): Promise<void> {
    if (!this.told && !signal.aborted) {
      // At most fallbackMs: the jitter only shortens it, so the bound on a lost notification holds.
      const ms = this.connected
        ? this.options.fallbackMs * (0.75 + 0.25 * this.random())
        : this.options.disconnectedPollMs;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal.addEventListener('abort', done, { once: true });
        this.waiters.add(done);
      });
    }
    this.told = false;
  }

  /** Keeps the socket open until `signal` aborts, reopening it with backoff. */
  async run(signal: AbortSignal): Promise<void> {
    const min = this.options.reconnectMinMs ?? 1_000;
    const max = this.options.reconnectMaxMs ?? 30_000;
    let failures = 0;
    while (!signal.aborted) {
      const opened = await this.connectOnce(signal, failures);
      if (signal.aborted) return;
      failures = opened ? 0 : failures + 1;
      // Even after a socket that opened: a server that accepts and drops at once must not spin us.
      const ceiling = Math.min(min * 2 ** failures, max);
      await sleep(ceiling * (0.5 + 0.5 * this.random()), undefined, { signal }).catch(() => undefined);
    }
  }

  private wake(): void {
    this.told = true;
    for (const waiter of [...this.waiters]) waiter();
  }

  /** One socket, from opening to its end; true if it opened. `failures`: attempts refused in a row before. */
  private connectOnce(signal: AbortSignal, failures: number): Promise<boolean> {
    const { log } = this.options;
    const url = new URL(this.options.url);
    url.searchParams.set('host_id', this.options.hostId);
    return new Promise<boolean>((resolve) => {
      let opened = false;
      let socket: ReturnType<OpenSocket> | undefined;
      let keepalive: ReturnType<typeof setInterval> | undefined;
      const stop = () => socket?.close();
      const events: SocketEvents = {
        onOpen: () => {
          opened = true;
          this.connected = true;
          const every = this.options.keepaliveMs ?? 0;
          if (every > 0) {
            keepalive = setInterval(() => socket?.send?.(KEEPALIVE_MESSAGE), every);
            keepalive.unref?.();
          }
          log.info('notification socket open', { url: this.options.url });
          this.wake();
        },
        onMessage: (text) => {
          let parsed: z.infer<typeof NotificationSchema> | undefined;
          try {
            parsed = NotificationSchema.parse(JSON.parse(text));
          } catch {
            parsed = undefined;
          }
          if (parsed?.type === 'jobs') this.wake();
          else log.debug('notification ignored', { message: text.slice(0, 200) });
        },
        onClose: (reason) => {
          clearInterval(keepalive);
          signal.removeEventListener('abort', stop);
          if (this.connected) {
            this.connected = false;
            // Waiters sleeping for the fallback interval go back to the disconnected pace.
            if (!signal.aborted) {
              log.warn('notification socket lost: polling until it reopens', { reason });
              this.wake();
            }
          } else if (!signal.aborted) {
            // Said once per outage (a service without the socket refuses every attempt), then quietly.
            const line = 'notification socket could not be opened: polling';
            if (failures === 0) log.warn(line, { reason });
            else log.debug(line, { reason, attempt: failures + 1 });
          }
          resolve(opened);
        },
      };
      signal.addEventListener('abort', stop, { once: true });
      try {
        socket = (this.options.open ?? openWebSocket)(url, { 'X-Auth-Token': this.options.token }, events);
      } catch (error) {
        events.onClose(error instanceof Error ? error.message : String(error));
      }
    });
  }
}
