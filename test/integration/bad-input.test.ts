/**
 * Bad input is the client's fault, never a 5xx: over-long and non-UUID ids and markers (which
 * DynamoDB would refuse as keys), JSON nested thousands of levels deep, and requests the HTTP
 * layer itself sees first (CONNECT, absolute-form request lines, malformed chunked bodies),
 * sent over raw sockets where fetch cannot send them.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { ImagesApi, type ImageView, PATCH_V21 } from '../helpers/images.ts';

let t: TestBackend;
let api: ImagesApi;
let image: ImageView;

beforeAll(async () => {
  t = await startTestBackend({ hosts: ['host-bad-input'] });
  api = new ImagesApi(t);
  image = await api.create('alice', { name: 'bad-input', disk_format: 'raw', container_format: 'bare' });
});
afterAll(async () => {
  await t?.stop();
});

/** Sends `text` as it is and returns everything the server answered before closing. */
function rawRequest(text: string, timeoutMs = 5_000): Promise<string> {
  const url = new URL(t.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(text));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
    });
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
    setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${timeoutMs} ms; got ${JSON.stringify(answer)}`));
    }, timeoutMs).unref();
  });
}

const statusOf = (answer: string) => Number(/^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1]);

/** Log lines the backend writes to stderr while `run` runs (it runs in this process). */
async function logsDuring(run: () => Promise<void>): Promise<Array<{ level: string; message: string }>> {
  const lines: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    lines.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof process.stderr.write;
  try {
    await run();
    // The handler of a broken request may still be finishing after the answer went out.
    await new Promise((resolve) => setTimeout(resolve, 300));
  } finally {
    process.stderr.write = write;
  }
  return lines
    .flatMap((chunk) => chunk.split('\n'))
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: string; message: string });
}

describe('ids and markers that cannot exist', () => {
  const ids = ['a'.repeat(2045), 'a'.repeat(2100), 'x'.repeat(5000), 'b'.repeat(1100), 'not-a-uuid'];

  it('answers 404 for image ids of every length and shape, on every image route', async () => {
    for (const id of ids) {
      const routes: Array<[string, string, object?]> = [
        ['GET', `/v2/images/${id}`],
        ['PATCH', `/v2/images/${id}`, []],
        ['DELETE', `/v2/images/${id}`],
        ['PUT', `/v2/images/${id}/tags/t`],
        ['DELETE', `/v2/images/${id}/tags/t`],
        ['GET', `/v2/images/${id}/file`],
        ['GET', `/v2/images/${id}/members`],
        ['GET', `/v2/images/${id}/tasks`],
        ['POST', `/v2/images/${id}/actions/deactivate`],
      ];
      for (const [method, path, body] of routes) {
        const response = await t.request(method, path, {
          token: t.tokens.alice,
          ...(body ? { body: JSON.stringify(body), headers: { 'content-type': PATCH_V21 } } : {}),
        });
        expect(`${method} ${path.slice(0, 40)}… (${id.length}): ${response.status}`).toBe(
          `${method} ${path.slice(0, 40)}… (${id.length}): 404`,
        );
      }
    }
  });

  it('answers 404 for a member id too long to be a key, on an image that exists', async () => {
    const response = await t.request('GET', `/v2/images/${image.id}/members/${'m'.repeat(2100)}`, {
      token: t.tokens.alice,
    });
    expect(response.status).toBe(404);
  });

  it("answers a marker that cannot exist as Glance does: 400 'No image found'", async () => {
    for (const id of ids) {
      const response = await t.request('GET', `/v2/images?marker=${id}`, { token: t.tokens.alice });
      expect(response.status).toBe(400);
      expect(await response.text()).toContain(`No image found with ID ${id}`);
    }
  });

  it('answers 404 (400 for markers) for task, instance, job and host ids that cannot exist', async () => {
    for (const id of ids) {
      const cases: Array<[string, string, string, number, object?]> = [
        ['GET', `/v2/tasks/${id}`, t.tokens.admin, 404],
        ['GET', `/v2/tasks?marker=${id}`, t.tokens.admin, 400],
        ['GET', `/v1/instances/${id}`, t.tokens.alice, 404],
        ['GET', `/v1/instances?marker=${id}`, t.tokens.alice, 400],
        ['POST', `/v1/instances/${id}/actions/stop`, t.tokens.alice, 404],
        ['GET', `/v1/publications/${id}`, t.tokens.alice, 404],
        ['GET', `/v1/hosts/${id}`, t.tokens.admin, 404],
        ['POST', `/v1/jobs/${id}/heartbeat`, t.hostTokens['host-bad-input'] ?? '', 404, { lease_token: 'x' }],
      ];
      for (const [method, path, token, expected, body] of cases) {
        const response = await t.request(method, path, { token, ...(body ? { body } : {}) });
        expect(`${method} ${path.slice(0, 30)}… (${id.length}): ${response.status}`).toBe(
          `${method} ${path.slice(0, 30)}… (${id.length}): ${expected}`,
        );
      }
    }
  });
});

describe('namespaces too long to be a project', () => {
  it('answers an admin naming a 3,000-character namespace with 400, on reads and writes', async () => {
    const ns = 'n'.repeat(3000);
    const cases: Array<[string, string, object?]> = [
      ['GET', `/v1/references?namespace=${ns}`],
      ['GET', `/v1/references/x:y?namespace=${ns}`],
      ['GET', `/v1/references/x:y/history?namespace=${ns}`],
      ['GET', `/v1/names/x/retention?namespace=${ns}`],
      ['PUT', `/v1/names/x/retention?namespace=${ns}`, { keep: 1, grace_seconds: 0 }],
      ['POST', '/v1/references', { reference: 'x:y', image_id: image.id, namespace: ns }],
    ];
    for (const [method, path, body] of cases) {
      const response = await t.request(method, path, { token: t.tokens.admin, ...(body ? { body } : {}) });
      expect(`${method} ${path.slice(0, 40)}: ${response.status}`).toBe(
        `${method} ${path.slice(0, 40)}: 400`,
      );
    }
  });
});

describe('deeply nested JSON', () => {
  const deepArray = `${'['.repeat(2500)}${']'.repeat(2500)}`;
  const deepObject = `${'{"a":'.repeat(2500)}1${'}'.repeat(2500)}`;

  it('refuses a body nested 2,500 levels deep with 400 on create, PATCH and other JSON routes', async () => {
    for (const body of [deepArray, deepObject]) {
      const create = await t.request('POST', '/v2/images', {
        token: t.tokens.alice,
        body,
        headers: { 'content-type': 'application/json' },
      });
      expect(create.status).toBe(400);
      expect(await create.text()).toContain('Malformed JSON in request body');
      const patch = await t.request('PATCH', `/v2/images/${image.id}`, {
        token: t.tokens.alice,
        body,
        headers: { 'content-type': PATCH_V21 },
      });
      expect(patch.status).toBe(400);
      const member = await t.request('POST', `/v2/images/${image.id}/members`, {
        token: t.tokens.alice,
        body,
        headers: { 'content-type': 'application/json' },
      });
      expect(member.status).toBe(400);
    }
  });

  it('still quotes a moderately nested value in the schema error, as Glance does', async () => {
    const response = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      body: JSON.stringify({ name: [[['x']]] }),
      headers: { accept: 'application/json' },
    });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain("[[['x']]] is not of type");
  });
});

describe('what the HTTP layer sees first', () => {
  it('answers CONNECT with 405 and a request id instead of dropping the connection', async () => {
    const answer = await rawRequest('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    expect(statusOf(answer)).toBe(405);
    expect(answer).toMatch(/\r\nx-openstack-request-id: req-/i);
    expect(answer).toContain('The method CONNECT is not allowed for this resource.');
  });

  it('routes an absolute-form request line by its path, not to the versions document', async () => {
    const answer = await rawRequest(
      `GET http://images.example/v2/images/${image.id} HTTP/1.1\r\nHost: images.example\r\n` +
        `X-Auth-Token: ${t.tokens.alice}\r\nConnection: close\r\n\r\n`,
    );
    expect(statusOf(answer)).toBe(200);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as ImageView;
    expect(body.id).toBe(image.id);
    const list = await rawRequest(
      `GET http://images.example/v2/images?limit=1 HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${t.tokens.alice}\r\nConnection: close\r\n\r\n`,
    );
    expect(statusOf(list)).toBe(200);
    expect(list).toContain('"images"');
  });

  it('answers a request target that is neither a path nor a URL with 400', async () => {
    const answer = await rawRequest('OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(statusOf(answer)).toBe(400);
  });

  it('answers a malformed chunked body with 400, logged as a warning, never as an error', async () => {
    const fresh = await api.create('alice', { name: 'chunky', disk_format: 'raw', container_format: 'bare' });
    const answers: string[] = [];
    const logs = await logsDuring(async () => {
      answers.push(
        await rawRequest(
          `PUT /v2/images/${fresh.id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${t.tokens.alice}\r\n` +
            'Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n\r\n',
        ),
      );
      answers.push(
        await rawRequest(
          `POST /v2/images HTTP/1.1\r\nHost: x\r\nX-Auth-Token: ${t.tokens.alice}\r\n` +
            'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\nZZZ\r\n\r\n',
        ),
      );
    });
    expect(answers.map(statusOf)).toEqual([400, 400]);
    expect(logs.filter((line) => line.level === 'error')).toEqual([]);
    expect(logs.filter((line) => line.level === 'warn').map((line) => line.message)).toContain(
      'malformed request',
    );
    expect((await api.show('alice', fresh.id)).status).toBe('queued');
  });
});
