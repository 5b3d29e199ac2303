/**
 * A bounded fuzz of the whole HTTP API against a real backend: a few hundred generated requests
 * (every route, with ids, markers, query strings, headers and bodies drawn by fast-check, most
 * of them malformed) and some raw malformed HTTP over node:net. Not one may answer 5xx.
 * The seed is printed on failure; HANGAR_FUZZ_SEED replays a run, HANGAR_FUZZ_REQUESTS makes it longer.
 */
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from '#api/routes';
import { junkText, listQueryKey } from '../helpers/arbitraries.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { ImagesApi } from '../helpers/images.ts';

const HTTP_REQUESTS = Number(process.env.HANGAR_FUZZ_REQUESTS ?? 500);
const RAW_REQUESTS = 100;
const PARALLEL = 4;
const SEED = Number(process.env.HANGAR_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

let t: TestBackend;
let queuedId: string;
let activeId: string;

beforeAll(async () => {
  // Warnings (every malformed request logs one) would bury the output; errors still show.
  t = await startTestBackend({ hosts: ['fuzz-host'], logLevel: 'error' });
  const api = new ImagesApi(t);
  queuedId = (await api.create('alice', { name: 'fuzz-q', disk_format: 'raw', container_format: 'bare' })).id;
  activeId = (await api.createActive('alice', new Uint8Array(1024), { name: 'fuzz-a' })).id;
  const made = await t.request('POST', '/v1/references', {
    token: t.tokens.alice,
    body: { reference: 'fuzz:latest', image_id: activeId },
  });
  expect(made.status).toBe(201);
});
afterAll(async () => {
  await t?.stop();
});

/** Header-safe text (fetch refuses CR, LF and non-Latin-1 in header values). */
const headerText = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 60,
});

const junk = junkText({
  maxLength: 30,
  graphemes: 20,
  specials: [
    '',
    '%',
    '%zz',
    '%E0%A4%A',
    '%00',
    '..',
    '.',
    'null',
    '-1',
    '0',
    '9'.repeat(40),
    'a'.repeat(2045),
    'b'.repeat(5000),
    '00000000-0000-0000-0000-000000000000',
    '__proto__',
    'fuzz:latest',
    'in:a,b',
  ],
});

function pathFor(template: string, params: string[]): string {
  let i = 0;
  return template.replace(/\{[^}]+\}/g, () => {
    const value = params[i++] ?? '';
    // Junk is sent percent-encoded, except what is already an escape (kept raw on purpose).
    return value.startsWith('%') || value.length > 1000 ? value : encodeURIComponent(value);
  });
}

const paramValue = fc.oneof(
  { weight: 3, arbitrary: fc.constant('@queued') },
  { weight: 3, arbitrary: fc.constant('@active') },
  { weight: 4, arbitrary: junk },
);

const queryString = fc
  .oneof(
    fc.constant(''),
    fc
      .array(fc.tuple(listQueryKey(junk), fc.oneof(junk, fc.constant('@active'))), { maxLength: 5 })
      .map((pairs) =>
        pairs.map(([k, v]) => `${encodeURIComponent(k)}=${v.startsWith('%') ? v : encodeURIComponent(v)}`),
      ),
  )
  .map((parts) => (Array.isArray(parts) ? parts.join('&') : parts));

const body = fc.oneof(
  fc.constant(undefined),
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc
    .array(
      fc.record(
        {
          op: fc.constantFrom('add', 'remove', 'replace', 'test', 'bogus'),
          path: junk,
          value: fc.jsonValue({ maxDepth: 2 }),
        },
        { requiredKeys: [] },
      ),
      { maxLength: 4 },
    )
    .map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 200 }),
  fc.integer({ min: 1, max: 3000 }).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`),
  fc.constantFrom('{', '[1,', '{"name": "\\ud800"}', 'null', '"x"', '{"__proto__": {"x": 1}}'),
);

/** The routes whose parsers take the most client input get drawn more often. */
const FOCUS = ROUTES.filter((r) =>
  [
    'PATCH /v2/images/{image_id}',
    'GET /v2/images',
    'POST /v2/images',
    'GET /v2/images/{image_id}/file',
    'POST /v2/images/{image_id}/members',
    'PUT /v2/images/{image_id}/members/{member_id}',
    'POST /v2/images/{image_id}/import',
    'POST /v1/instances',
    'POST /v1/references',
    'POST /v1/references/{ref}/move',
  ].includes(`${r.method} ${r.path}`),
);

const request = fc.record({
  route: fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom(...ROUTES) },
    { weight: 1, arbitrary: fc.constantFrom(...FOCUS) },
  ),
  method: fc.oneof(
    { weight: 8, arbitrary: fc.constant('') },
    { weight: 1, arbitrary: fc.constantFrom('OPTIONS', 'PUT', 'POST', 'PATCH', 'DELETE') },
  ),
  params: fc.array(paramValue, { minLength: 3, maxLength: 3 }),
  query: queryString,
  persona: fc.oneof(
    { weight: 4, arbitrary: fc.constant('alice' as const) },
    { weight: 3, arbitrary: fc.constant('admin' as const) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('bob' as const, 'host' as const, 'none' as const, 'bogus' as const),
    },
  ),
  contentType: fc.oneof(
    { weight: 3, arbitrary: fc.constant('@route') },
    fc.constantFrom(
      'application/json',
      'application/openstack-images-v2.1-json-patch',
      'application/octet-stream',
      undefined,
    ),
    headerText,
  ),
  accept: fc.oneof(fc.constantFrom('application/json', 'text/plain', undefined), headerText),
  extra: fc.dictionary(
    fc.constantFrom(
      'range',
      'content-range',
      'x-openstack-image-size',
      'x-image-meta-name',
      'x-openstack-request-id',
      'if-match',
    ),
    headerText,
    { maxKeys: 2 },
  ),
  body,
});

type Generated = typeof request extends fc.Arbitrary<infer T> ? T : never;

function tokenOf(persona: Generated['persona']): string | undefined {
  if (persona === 'none') return undefined;
  if (persona === 'bogus') return 'not-a-token';
  if (persona === 'host') return t.hostTokens['fuzz-host'];
  return t.tokens[persona];
}

async function send(g: Generated): Promise<{ status: number; what: string }> {
  const params = g.params.map((p) => (p === '@queued' ? queuedId : p === '@active' ? activeId : p));
  const query = g.query.replaceAll('%40active', activeId);
  const path = pathFor(g.route.path, params) + (query ? `?${query}` : '');
  const method = g.method || g.route.method;
  const headers: Record<string, string> = { ...g.extra };
  const token = tokenOf(g.persona);
  if (token) headers['x-auth-token'] = token;
  if (g.contentType === '@route')
    headers['content-type'] =
      method === 'PATCH'
        ? 'application/openstack-images-v2.1-json-patch'
        : /\/(file|stage)$/.test(g.route.path)
          ? 'application/octet-stream'
          : 'application/json';
  else if (g.contentType !== undefined) headers['content-type'] = g.contentType;
  if (g.accept !== undefined) headers.accept = g.accept;
  const sendsBody = method !== 'GET' && method !== 'HEAD' && g.body !== undefined;
  const what = `${method} ${path.slice(0, 120)} ${JSON.stringify(headers).slice(0, 200)} body=${String(g.body).slice(0, 80)}`;
  try {
    const response = await fetch(`${t.url}${path}`, {
      method,
      headers,
      ...(sendsBody ? { body: g.body } : {}),
      signal: AbortSignal.timeout(20_000),
    });
    await response.arrayBuffer().catch(() => undefined);
    return { status: response.status, what };
  } catch (error) {
    return { status: -1, what: `${what}: no answer (${(error as Error).message})` };
  }
}

/** Sends raw bytes; resolves with the status of the first answer, or -1 for none. */
function sendRaw(text: string): Promise<number> {
  const url = new URL(t.url);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.end(text));
    let answer = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    const done = () => resolve(Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? -1));
    socket.on('close', done);
    socket.on('error', done);
    setTimeout(() => socket.destroy(), 5_000).unref();
  });
}

const rawRequest = fc
  .record({
    method: fc.oneof(
      fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'CONNECT', 'OPTIONS', 'DELETE'),
      headerText,
    ),
    target: fc.oneof(
      fc.constantFrom(
        '/',
        '*',
        '/v2/images',
        'http://h/v2/images',
        'example.com:443',
        '//x',
        '/v2/images/%zz',
      ),
      headerText,
    ),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9', ''),
    headers: fc.array(fc.tuple(headerText, headerText), { maxLength: 4 }),
    chunked: fc.boolean(),
    body: fc.string({ maxLength: 40 }),
  })
  .map((r) => {
    const head = [`${r.method} ${r.target} ${r.version}`, 'Host: fuzz', 'Connection: close'];
    for (const [name, value] of r.headers) head.push(`${name}: ${value}`);
    if (r.chunked) head.push('Transfer-Encoding: chunked');
    else head.push(`Content-Length: ${Buffer.byteLength(r.body)}`);
    return `${head.join('\r\n')}\r\n\r\n${r.chunked ? `${r.body.length.toString(16)}\r\n${r.body}\r\nZZ\r\n\r\n` : r.body}`;
  });

describe(`fuzz: generated requests against a real backend (seed ${SEED})`, () => {
  it(`answers ${HTTP_REQUESTS} generated HTTP requests without a single 5xx`, async () => {
    const generated = fc.sample(request, { numRuns: HTTP_REQUESTS, seed: SEED });
    const results: Array<{ status: number; what: string }> = [];
    for (let i = 0; i < generated.length; i += PARALLEL)
      results.push(...(await Promise.all(generated.slice(i, i + PARALLEL).map(send))));
    if (process.env.HANGAR_FUZZ_HISTOGRAM) {
      const histogram = new Map<number, number>();
      for (const { status } of results) histogram.set(status, (histogram.get(status) ?? 0) + 1);
      console.log('statuses', JSON.stringify([...histogram].sort((a, b) => a[0] - b[0])));
    }
    const failures = results
      .filter((r) => r.status >= 500 || r.status < 0)
      .map((r) => `${r.status} ${r.what}`);
    expect(failures, `seed ${SEED}`).toEqual([]);
    // The fuzz reached past the edge: successes and refusals both happened.
    expect(results.some((r) => r.status < 300)).toBe(true);
    expect(results.some((r) => r.status >= 400)).toBe(true);
  }, 120_000);

  it(`answers each of ${RAW_REQUESTS} raw malformed HTTP requests, none with a 5xx`, async () => {
    const generated = fc.sample(rawRequest, { numRuns: RAW_REQUESTS, seed: SEED });
    const statuses = await Promise.all(generated.map(sendRaw));
    // Every one gets an answer (a dropped connection is no answer) and none is a 5xx.
    const failures = generated
      .map((text, i) => ({ text, status: statuses[i] ?? -1 }))
      .filter(({ status }) => status >= 500 || status < 0)
      .map(({ text, status }) => `${status} ${JSON.stringify(text)}`);
    expect(failures, `seed ${SEED}`).toEqual([]);
  }, 60_000);
});
