/**
 * The agents' notification sockets when they are held by someone else (API Gateway's WebSocket
 * API on AWS): which connections each host has open, and telling them that the host's queue
 * gained a job. The message is the one the embedded gateway's sockets send (JOBS_MESSAGE): one
 * protocol in both places. A notification is a hint, never the only way a job is found (agents
 * also poll, slowly), so nothing here retries: a connection that is gone is forgotten, any other
 * failure is reported and left to the agent's fallback poll.
 */
import type { JobNotifier } from './ports.ts';

/** What the server sends when the host's queue gained a job; the agent then claims over HTTPS. */
export const JOBS_MESSAGE = JSON.stringify({ type: 'jobs' });

/**
 * API Gateway ends every WebSocket connection after 2 hours, whatever happens on it; a record
 * outlives that only by a margin, then TTL removes it even if $disconnect never ran.
 */
export const MAX_CONNECTION_SECONDS = 2 * 60 * 60;
const RECORD_MARGIN_SECONDS = 10 * 60;

export interface AgentConnectionStore {
  /** Records an open connection of the host, forgotten at `expiresAt` at the latest. */
  add(hostId: string, connectionId: string, expiresAt: Date): Promise<void>;
  /** The connection ids the host has open (as far as the store knows). */
  list(hostId: string): Promise<string[]>;
  /** Forgets one connection of the host; nothing if it is not recorded. */
  remove(hostId: string, connectionId: string): Promise<void>;
  /** The host of a recorded connection, or null. */
  hostOf(connectionId: string): Promise<string | null>;
}

/** Sends a text frame down one connection: 'gone' when the connection no longer exists (410). */
export interface ConnectionPoster {
  post(connectionId: string, message: string): Promise<'sent' | 'gone'>;
}

export interface NotifySummary {
  sent: number;
  /** Connections that had closed without a $disconnect: now forgotten. */
  gone: number;
  failed: { hostId: string; connectionId: string; error: unknown }[];
}

export class AgentConnections implements JobNotifier {
  constructor(
    private readonly store: AgentConnectionStore,
    private readonly poster: ConnectionPoster,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** $connect, once the caller was authorised for `hostId`. */
  async connect(hostId: string, connectionId: string): Promise<void> {
    const expiresAt = new Date(
      this.now().getTime() + (MAX_CONNECTION_SECONDS + RECORD_MARGIN_SECONDS) * 1000,
    );
    await this.store.add(hostId, connectionId, expiresAt);
  }

  /** $disconnect: the connection's host is looked up, since the event does not carry it. */
  async disconnect(connectionId: string): Promise<void> {
    const hostId = await this.store.hostOf(connectionId);
    if (hostId !== null) await this.store.remove(hostId, connectionId);
  }

  async jobsQueued(hostId: string): Promise<void> {
    const summary = await this.notify([hostId]);
    const [first] = summary.failed;
    if (first) throw first.error;
  }

  /** Tells every open connection of each host (each host once, however often it is named). */
  async notify(hostIds: Iterable<string>): Promise<NotifySummary> {
    const summary: NotifySummary = { sent: 0, gone: 0, failed: [] };
    const hosts = [...new Set(hostIds)];
    await Promise.all(
      hosts.map(async (hostId) => {
        let connections: string[];
        try {
          connections = await this.store.list(hostId);
        } catch (error) {
          summary.failed.push({ hostId, connectionId: '', error });
          return;
        }
        await Promise.all(
          connections.map(async (connectionId) => {
            try {
              if ((await this.poster.post(connectionId, JOBS_MESSAGE)) === 'sent') summary.sent += 1;
              else {
                summary.gone += 1;
                await this.store.remove(hostId, connectionId);
              }
            } catch (error) {
              summary.failed.push({ hostId, connectionId, error });
            }
          }),
        );
      }),
    );
    return summary;
  }
}
