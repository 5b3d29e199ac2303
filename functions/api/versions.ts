/**
 * The unauthenticated version documents: `GET /` answers 300 Multiple Choices (as does any
 * unknown-version path, routed here by the gateway), `GET /versions` answers 200. Also
 * `GET /healthcheck`: 200 `OK` in plain text, as oslo.middleware's healthcheck answers.
 */
import { httpHandler } from '#edge/http';

const CURRENT = 17;

/** `GET /` also answers any path of an unknown version: the gateway routes those here. */
export const ROUTE_KEYS: readonly string[] = ['GET /', 'GET /versions', 'GET /healthcheck'];

export const handler = httpHandler(
  async (request) => {
    if (request.event.routeKey === 'GET /healthcheck') return { status: 200, text: 'OK' };
    // Newest first, as Glance lists them; every version is served by the same /v2/ endpoint.
    const versions = Array.from({ length: CURRENT + 1 }, (_, i) => CURRENT - i).map((minor) => ({
      id: `v2.${minor}`,
      status: minor === CURRENT ? 'CURRENT' : 'SUPPORTED',
      links: [{ rel: 'self', href: `${request.origin}/v2/` }],
    }));
    return { status: request.event.routeKey === 'GET /versions' ? 200 : 300, json: { versions } };
  },
  { auth: false },
);
