import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import {
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  GetItemCommand,
  PutItemCommand,
} from '@aws-sdk/client-dynamodb';
import { ListBucketsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TABLE_DEFINITION } from '#adapters/dynamo/table-definition';
import { attachResponseBody, requestBodyStream } from '#edge/streams';
import { serviceConfig } from '#platform/config';
import { startBackend } from '../../local/backend.ts';
import { type Gateway, startGateway } from '../../local/gateway.ts';
import { PRIMARY_NODE_FLAGS } from '../../local/node-flags.ts';
import { type S3EventRecord, startStandIns } from '../../local/stand-ins.ts';
import { standInDynamo, standInS3 } from '../helpers/aws.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { ensureKeystone, keystoneToken, serviceKeystoneEnv } from '../helpers/keystone.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A zombie (killed, not yet reaped by init) counts as gone. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Pids of this process's children, from /proc (no ps needed). */
function liveChildPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid && fields[0] !== 'Z') pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function waitUntilGone(pids: number[], timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    alive = alive.filter(isAlive);
  }
  return alive;
}

describe('local runner: gateway, versions and stand-ins', () => {
  let t: TestBackend;
  const events: S3EventRecord[] = [];

  beforeAll(async () => {
    t = await startTestBackend();
    t.backend.onS3Event((record) => events.push(record));
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('answers GET / without a token with the versions document (300)', async () => {
    // Act
    const response = await t.request('GET', '/');
    // Assess
    expect(response.status).toBe(300);
    expect(response.headers.get('content-type')).toContain('application/json');
    expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-/);
    const body = (await response.json()) as { versions: { id: string; status: string; links: unknown[] }[] };
    expect(body.versions[0]).toEqual({
      id: 'v2.17',
      status: 'CURRENT',
      links: [{ rel: 'self', href: `${t.url}/v2/` }],
    });
    expect(body.versions.filter((v) => v.status === 'SUPPORTED').map((v) => v.id)).toContain('v2.0');
  });

  it('answers GET /versions with 200 and an unknown version prefix with 300', async () => {
    expect((await t.request('GET', '/versions')).status).toBe(200);
    const unknown = await t.request('GET', '/v9/images');
    expect(unknown.status).toBe(300);
    expect(await unknown.json()).toHaveProperty('versions');
  });

  it('answers an unknown route with Glance’s 404 HTML and a request id', async () => {
    for (const path of ['/v2/nope', '/v2', '/v2/']) {
      const response = await t.request('GET', path, { token: t.tokens.alice });
      expect(response.status, path).toBe(404);
      expect(response.headers.get('content-type')).toBe('text/html; charset=UTF-8');
      expect(response.headers.get('x-openstack-request-id')).toMatch(/^req-/);
      expect(await response.text()).toContain('<h1>404 Not Found</h1>');
    }
  });

  it('answers a known path with another method with 405 and Allow', async () => {
    const put = await t.request('PUT', '/v2/images', { token: t.tokens.alice, body: {} });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, POST');
    expect(await put.text()).toContain('The method PUT is not allowed for this resource.');

    const head = await t.request('HEAD', '/v2/images/3f1d7e1c-0000-4000-8000-000000000000/file', {
      token: t.tokens.alice,
    });
    expect(head.status).toBe(405);
    expect(head.headers.get('allow')).toBe('GET, PUT');
    expect(head.headers.get('x-openstack-request-id')).toMatch(/^req-/);
  });

  it('serves concurrent requests', async () => {
    const responses = await Promise.all(Array.from({ length: 20 }, () => t.request('GET', '/versions')));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(200));
    const ids = new Set(responses.map((r) => r.headers.get('x-openstack-request-id')));
    expect(ids.size).toBe(20);
  });

  it('has made the table and buckets, reachable with the real SDK as the backend reports them', async () => {
    // Prepare: plain clients, configured only by the backend's clientSettings (endpoints, key pair).
    const ddb = standInDynamo(t.backend);
    const s3 = standInS3(t.backend);
    const config = serviceConfig();
    try {
      // Act
      const table = await ddb.send(new DescribeTableCommand({ TableName: config.tableName }));
      const ttl = await ddb.send(new DescribeTimeToLiveCommand({ TableName: config.tableName }));
      const buckets = await s3.send(new ListBucketsCommand({}));
      // Assess
      expect(table.Table?.KeySchema).toEqual([
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ]);
      expect(table.Table?.GlobalSecondaryIndexes?.map((i) => i.IndexName).sort()).toEqual(
        TABLE_DEFINITION.globalSecondaryIndexes.map((i) => i.indexName).sort(),
      );
      const byName = table.Table?.GlobalSecondaryIndexes?.find((i) => i.IndexName === 'by_name');
      expect(byName?.KeySchema).toEqual([
        { AttributeName: 'scope', KeyType: 'HASH' },
        { AttributeName: 'ord_name', KeyType: 'RANGE' },
      ]);
      expect(byName?.Projection?.ProjectionType).toBe('ALL');
      expect(ttl.TimeToLiveDescription).toMatchObject({
        TimeToLiveStatus: 'ENABLED',
        AttributeName: 'expiration',
      });
      expect(buckets.Buckets?.map((b) => b.Name).sort()).toEqual(Object.values(config.buckets).sort());
      expect(t.backend.endpoints.s3).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    } finally {
      ddb.destroy();
      s3.destroy();
    }
  });

  it('reports a PutObject into the uploads bucket as an S3 event record', async () => {
    // Prepare
    const s3 = standInS3(t.backend);
    const bucket = serviceConfig().buckets.uploads;
    const key = `test/${Date.now()}.bin`;
    const seen = new Promise<S3EventRecord>((resolve) => {
      const off = t.backend.onS3Event((record) => {
        if (record.s3.object.key === key) {
          off();
          resolve(record);
        }
      });
    });
    try {
      // Act
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('hello') }));
      const record = await seen;
      // Assess
      expect(record).toMatchObject({
        eventSource: 'aws:s3',
        eventName: 'ObjectCreated:Put',
        s3: { bucket: { name: bucket }, object: { key, size: 5 } },
      });
      expect(events.some((e) => e.s3.object.key === key)).toBe(true);
    } finally {
      s3.destroy();
    }
  });
});

describe('local runner: gateway event and streaming', () => {
  let gateway: Gateway;
  const seen: APIGatewayProxyEventV2[] = [];
  let endless: Readable | undefined;

  beforeAll(async () => {
    // Prepare: a gateway whose functions are fakes, to observe the events it builds.
    gateway = await startGateway({
      host: '127.0.0.1',
      port: 0,
      loadHandler: async (fn) => async (event) => {
        seen.push(event);
        if (fn === 'image-data' && event.requestContext.http.method === 'PUT') {
          // Echo the upload back as a stream, as the real upload/download handlers stream.
          return attachResponseBody({ statusCode: 200, headers: { 'x-fn': fn } }, requestBodyStream(event));
        }
        if (fn === 'image-data') {
          endless = new Readable({ read: () => endless?.push(Buffer.alloc(64 * 1024)) });
          return attachResponseBody({ statusCode: 200, headers: {} }, endless);
        }
        return {
          statusCode: 200,
          headers: { 'content-type': 'application/octet-stream' },
          body: Buffer.from('binary').toString('base64'),
          isBase64Encoded: true,
        };
      },
    });
  });
  afterAll(async () => {
    await gateway?.close(0);
  });

  it('builds a payload-2.0 event and streams the body both ways without buffering it in the event', async () => {
    // Prepare
    const payload = Buffer.alloc(3 * 1024 * 1024, 7);
    // Act
    const response = await new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>(
      (resolve, reject) => {
        const req = httpRequest(
          `${gateway.url}/v2/images/abc%20d/file?a=1&a=2&b=x%20y`,
          {
            method: 'PUT',
            headers: {
              'Content-Type': 'application/octet-stream',
              'X-Repeated': ['one', 'two'],
              Cookie: 'c1=v1; c2=v2',
              'Transfer-Encoding': 'chunked',
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
            );
          },
        );
        req.on('error', reject);
        Readable.from([payload.subarray(0, 1024 * 1024), payload.subarray(1024 * 1024)]).pipe(req);
      },
    );
    // Assess
    expect(response.status).toBe(200);
    expect(response.headers['x-fn']).toBe('image-data');
    expect(response.body.equals(payload)).toBe(true);
    const event = seen.at(-1);
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: 'PUT /v2/images/{image_id}/file',
      rawPath: '/v2/images/abc%20d/file',
      rawQueryString: 'a=1&a=2&b=x%20y',
      queryStringParameters: { a: '1,2', b: 'x y' },
      pathParameters: { image_id: 'abc%20d' },
      cookies: ['c1=v1', 'c2=v2'],
      isBase64Encoded: false,
      requestContext: {
        http: { method: 'PUT', path: '/v2/images/abc%20d/file', protocol: 'HTTP/1.1' },
        routeKey: 'PUT /v2/images/{image_id}/file',
        stage: '$default',
      },
    });
    expect(event?.body).toBeUndefined();
    expect(event?.headers['x-repeated']).toBe('one,two');
    expect(event?.headers['content-type']).toBe('application/octet-stream');
    expect(event?.headers.cookie).toBeUndefined();
  });

  it('decodes base64 bodies', async () => {
    const response = await fetch(`${gateway.url}/v2/images`, { headers: { 'x-auth-token': 'x' } });
    expect(Buffer.from(await response.arrayBuffer()).toString()).toBe('binary');
  });

  it('destroys the response stream when the client goes away', async () => {
    // Act: read a little of an endless download, then hang up.
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${gateway.url}/v2/images/abc/file`, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (error) => (req.destroyed ? undefined : reject(error)));
      req.end();
    });
    // Assess
    const deadline = Date.now() + 5000;
    while (!endless?.destroyed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(endless?.destroyed).toBe(true);
  });
});

describe('local runner: lifecycle', () => {
  it('stop() leaves no stand-in process and no scratch directory behind, and is idempotent', async () => {
    // Prepare
    const t = await startTestBackend();
    const { pids, stateDir } = t.backend;
    expect(isAlive(pids.dynamodb)).toBe(true);
    expect(isAlive(pids.s3)).toBe(true);
    // Act
    await Promise.all([t.stop(), t.stop()]);
    await t.stop();
    // Assess
    expect(await waitUntilGone([pids.dynamodb, pids.s3], 2000)).toEqual([]);
    expect(existsSync(stateDir)).toBe(false);
  });

  it('fails with a clear message, and leaves no s3rver behind, when java is missing', async () => {
    // Prepare
    const saved = { PATH: process.env.PATH, JAVA_HOME: process.env.JAVA_HOME };
    const directory = mkdtempSync(join(tmpdir(), 'hangar-nojava-'));
    process.env.PATH = '/nonexistent';
    delete process.env.JAVA_HOME;
    const before = liveChildPids();
    try {
      // Act / Assess
      await expect(startStandIns({ directory, storage: 'memory' })).rejects.toThrow(/java was not found/);
      expect(
        await waitUntilGone(
          liveChildPids().filter((pid) => !before.includes(pid)),
          5000,
        ),
      ).toEqual([]);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.JAVA_HOME !== undefined) process.env.JAVA_HOME = saved.JAVA_HOME;
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('disk storage keeps data and the development token across restarts', async () => {
    // Prepare
    const dataDir = mkdtempSync(join(tmpdir(), 'hangar-disk-'));
    try {
      const first = await startBackend({ port: 0, storage: 'disk', dataDir, logLevel: 'warn' });
      const token = first.adminToken;
      expect(token).toBeTruthy();
      expect(first.tokensFile).toBe(join(dataDir, 'tokens.json'));
      expect(statSync(first.tokensFile ?? '').mode & 0o777).toBe(0o600);
      const ddb = standInDynamo(first);
      const item = { pk: { S: 'TEST#1' }, sk: { S: 'META' } };
      await ddb.send(new PutItemCommand({ TableName: serviceConfig().tableName, Item: item }));
      ddb.destroy();
      await first.stop();

      // Act
      const second = await startBackend({ port: 0, storage: 'disk', dataDir, logLevel: 'warn' });
      const ddb2 = standInDynamo(second);
      const got = await ddb2.send(
        new GetItemCommand({ TableName: serviceConfig().tableName, Key: { pk: item.pk, sk: item.sk } }),
      );
      ddb2.destroy();
      await second.stop();

      // Assess
      expect(second.adminToken).toBe(token);
      expect(got.Item).toEqual(item);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('npm start (local/main.ts as a real process)', () => {
  interface Started {
    child: ChildProcess;
    stdout: () => string;
    stderr: () => string;
    url: string;
    pids: { dynamodb: number; s3: number };
    exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  }

  /** This process's environment minus what the in-process backends above set in it. */
  function cleanEnv(): NodeJS.ProcessEnv {
    return Object.fromEntries(
      Object.entries(process.env).filter(([key]) => !key.startsWith('HANGAR_') && !key.startsWith('AWS_')),
    );
  }

  async function startMain(env: Record<string, string>): Promise<Started> {
    // As package.json's `start` runs it (test/unit/local/node-flags.test.ts keeps the two the same).
    const child = spawn(join(ROOT, 'node_modules/.bin/tsx'), [...PRIMARY_NODE_FLAGS, 'local/main.ts'], {
      cwd: ROOT,
      env: { ...cleanEnv(), HANGAR_PORT: '0', HANGAR_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      err += s;
    });
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    const deadline = Date.now() + 90_000;
    let url: string | undefined;
    while (!url) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`main did not start:\n${out}\n${err}`);
      url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
      if (!url) await new Promise((r) => setTimeout(r, 100));
    }
    // The structured 'backend started' log line names the stand-ins' pids.
    const started = err
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map(
        (line) => JSON.parse(line) as { message: string; dynamodb?: { pid: number }; s3?: { pid: number } },
      )
      .find((line) => line.message === 'backend started');
    if (!started?.dynamodb || !started.s3) throw new Error(`no 'backend started' log line:\n${err}`);
    return {
      child,
      stdout: () => out,
      stderr: () => err,
      url,
      pids: { dynamodb: started.dynamodb.pid, s3: started.s3.pid },
      exit,
    };
  }

  const spawned: ChildProcess[] = [];
  afterAll(() => {
    for (const child of spawned)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  it('prints where it listens and the admin token, serves, and exits cleanly on SIGTERM', async () => {
    // Prepare
    const dataDir = mkdtempSync(join(tmpdir(), 'hangar-main-'));
    try {
      const main = await startMain({ HANGAR_DATA_DIR: dataDir, HANGAR_STORAGE: 'disk' });
      spawned.push(main.child);
      expect(main.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(main.url).not.toMatch(/:9292$/);
      const token = /development admin token: (\S+)/.exec(main.stdout())?.[1];
      expect(token).toBeTruthy();
      expect(main.stdout()).toContain(
        `glance --os-image-url ${main.url} --os-auth-token ${token} image-list`,
      );
      expect(main.stdout()).toContain(dataDir);
      expect((await fetch(`${main.url}/`)).status).toBe(300);
      // tsx passed the heap flags on to the process that runs the backend.
      expect(main.stderr()).not.toContain('started without the primary heap flags');

      // Act
      main.child.kill('SIGTERM');
      const exit = await main.exit;

      // Assess
      expect(exit).toEqual({ code: 0, signal: null });
      expect(await waitUntilGone([main.pids.dynamodb, main.pids.s3])).toEqual([]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('in keystone mode prints and writes no development token, and takes Keystone tokens', async () => {
    // Prepare
    const keystone = await ensureKeystone();
    const dataDir = mkdtempSync(join(tmpdir(), 'hangar-main-keystone-'));
    try {
      // Act
      const main = await startMain({
        HANGAR_DATA_DIR: dataDir,
        HANGAR_STORAGE: 'disk',
        HANGAR_AUTH_MODE: 'keystone',
        ...serviceKeystoneEnv(keystone),
      });
      spawned.push(main.child);

      // Assess: no token that Keystone mode would refuse, on screen or on disk.
      expect(main.stdout()).not.toMatch(/admin token|os-auth-token|token file/);
      expect(main.stdout()).toContain(`auth: keystone (tokens are validated by ${keystone.url})`);
      expect(existsSync(join(dataDir, 'tokens.json'))).toBe(false);
      const member = await keystoneToken(keystone, 'alice', 'projA');
      expect((await fetch(`${main.url}/v2/images`, { headers: { 'x-auth-token': member } })).status).toBe(
        200,
      );
      expect((await fetch(`${main.url}/v2/images`, { headers: { 'x-auth-token': 'made-up' } })).status).toBe(
        401,
      );
      main.child.kill('SIGTERM');
      expect(await main.exit).toEqual({ code: 0, signal: null });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 300_000);

  it('exits non-zero, without leftovers, when a stand-in dies', async () => {
    // Prepare
    const main = await startMain({ HANGAR_STORAGE: 'memory' });
    spawned.push(main.child);
    // Act
    process.kill(main.pids.dynamodb, 'SIGKILL');
    const exit = await main.exit;
    // Assess
    expect(exit.code).toBe(1);
    expect(await waitUntilGone([main.pids.dynamodb, main.pids.s3])).toEqual([]);
  });
});
