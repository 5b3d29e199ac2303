/**
 * The agents' notification socket of the embedded gateway: the protocol API Gateway's WebSocket
 * API carries on AWS. An agent connects to AGENT_SOCKET_PATH with `?host_id=` and its host token
 * (X-Auth-Token); when its host's queue gains a job the server sends `{"type":"jobs"}` and the
 * agent claims over HTTPS as before. Nothing else travels on the socket: what an agent sends is
 * ignored.
 *
 * The hub is also the JobNotifier the services are composed with (edge/compose.ts), so the call
 * that enqueued a job tells the sockets in the same process once its write has committed.
 */
import { type IncomingMessage, type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { type WebSocket, WebSocketServer } from 'ws';
import type { JobNotifier } from '#core/instances/ports';
import { NotFoundError } from '#core/kernel/errors';
import { AGENT_SOCKET_PATH, authorizeAgentSocket, JOBS_MESSAGE } from '#edge/agent-socket';
import { errorToResult } from '#edge/http';
import { logger } from '#platform/logger';

export class AgentSocketHub implements JobNotifier {
  private readonly byHost = new Map<string, Set<WebSocket>>();

  async jobsQueued(hostId: string): Promise<void> {
    for (const socket of this.byHost.get(hostId) ?? []) {
      // A send that fails is a socket on its way out; its agent polls until it reconnects.
      socket.send(JOBS_MESSAGE, (error) => {
        if (error) logger.info('agent notification not delivered', { hostId, reason: error.message });
      });
    }
  }

  add(hostId: string, socket: WebSocket): void {
    const sockets = this.byHost.get(hostId) ?? new Set<WebSocket>();
    this.byHost.set(hostId, sockets);
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      if (sockets.size === 0 && this.byHost.get(hostId) === sockets) this.byHost.delete(hostId);
    });
  }

  /** The host ids with a socket open now. */
  hosts(): string[] {
    return [...this.byHost.keys()];
  }
}

/** Answers an upgrade that is refused with a plain HTTP response, as API Gateway does. */
function refuse(socket: Duplex, result: { statusCode?: number; body?: string; headers?: object }): void {
  const status = result.statusCode ?? 500;
  const body = Buffer.from(result.body ?? '', 'utf8');
  const headers = Object.entries({
    ...(result.headers ?? {}),
    'content-length': body.length,
    connection: 'close',
  })
    .map(([name, value]) => `${name}: ${String(value)}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${headers}\r\n${body.toString('utf8')}`,
  );
}

function headersOf(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, values] of Object.entries(req.headersDistinct)) if (values) out[name] = values.join(',');
  return out;
}

const PING_INTERVAL_MS = 30_000;

export interface AgentSockets {
  /** Closes every agent socket (going away: the agents reconnect elsewhere or poll). */
  close(): void;
}

/** Serves the agent socket on `server`'s upgrade requests; any other upgrade is a 404. */
export function serveAgentSockets(server: Server, hub: AgentSocketHub): AgentSockets {
  // Agents send nothing that matters: a small frame limit keeps a client from holding memory.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096, clientTracking: true });
  // An agent that vanished without a close (its host lost power) is pinged out within two rounds.
  const alive = new WeakMap<WebSocket, boolean>();
  const pings = setInterval(() => {
    for (const ws of wss.clients) {
      if (alive.get(ws) === false) ws.terminate();
      else {
        alive.set(ws, false);
        ws.ping();
      }
    }
  }, PING_INTERVAL_MS);
  pings.unref();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://gateway');
    const accept = req.headers.accept;
    if (url.pathname !== AGENT_SOCKET_PATH) {
      refuse(socket, errorToResult(new NotFoundError('The resource could not be found.'), accept, ''));
      return;
    }
    authorizeAgentSocket(headersOf(req), url.searchParams).then(
      ({ hostId }) => {
        wss.handleUpgrade(req, socket, head, (ws) => {
          alive.set(ws, true);
          ws.on('pong', () => alive.set(ws, true));
          hub.add(hostId, ws);
          logger.info('agent socket open', { hostId });
          ws.once('close', (code) => logger.info('agent socket closed', { hostId, code }));
          ws.on('error', (error) => logger.info('agent socket error', { hostId, reason: error.message }));
        });
      },
      (error: unknown) => refuse(socket, errorToResult(error, accept, '')),
    );
  });
  return {
    close() {
      clearInterval(pings);
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}
