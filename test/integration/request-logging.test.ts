/**
 * Every log line of a request carries its request id and its caller (issue 12): requests go
 * through the local gateway into the real handlers, stand-ins and workflows, with each AWS SDK
 * call logged from inside the adapters (a spy on the clients' send), so the lines come from
 * deep in core's and the adapters' await chains, not from the edge alone. The logger's sink
 * (stderr) is captured; every line must name a request this test sent, and that request's caller.
 * The gateway's own access line is at debug, below this backend's level: it stands for API
 * Gateway's access log, outside the function.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { logger } from '#platform/logger';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { type ImageView, peek } from '../helpers/images.ts';
import { patternBytes, waitForImport } from '../helpers/imports.ts';

let t: TestBackend;
let lines: Record<string, unknown>[] = [];

beforeAll(async () => {
  // No sweep runs meanwhile: their lines are their own invocations' (tested in the unit tests).
  t = await startTestBackend({
    logLevel: 'info',
    env: {
      HANGAR_RETENTION_SWEEP_SECONDS: '0',
      HANGAR_MULTIPART_SWEEP_SECONDS: '0',
      HANGAR_LEASE_SWEEP_SECONDS: '0',
    },
  });
  for (const client of [S3Client, DynamoDBClient, DynamoDBDocumentClient]) {
    const send = client.prototype.send as (...args: unknown[]) => Promise<unknown>;
    vi.spyOn(client.prototype, 'send').mockImplementation(function (this: unknown, ...args: unknown[]) {
      const command = (args[0] as { constructor: { name: string } }).constructor.name;
      logger.info('sdk call', { client: client.name, command });
      return send.apply(this, args);
    } as never);
  }
  const write = process.stderr.write.bind(process.stderr);
  vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: never[]) => {
    const text = String(chunk);
    if (text.startsWith('{"level"')) {
      for (const line of text.split('\n')) if (line.trim()) lines.push(JSON.parse(line));
      return true;
    }
    return write(chunk, ...rest);
  }) as never);
});

afterAll(async () => {
  vi.restoreAllMocks();
  await t?.stop();
});

const CALLERS: Record<string, { project: string; user: string }> = {
  alice: { project: 'projA', user: 'alice' },
  bob: { project: 'projB', user: 'bob' },
  admin: { project: 'admin', user: 'admin' },
};

/** Request ids this test sent, with their caller. */
const sent = new Map<string, Persona>();
let counter = 0;

async function send(
  persona: Persona,
  method: string,
  path: string,
  options: { body?: string | Uint8Array | object; headers?: Record<string, string> } = {},
): Promise<Response> {
  const requestId = `req-logging-${persona}-${++counter}`;
  sent.set(requestId, persona);
  const response = await t.request(method, path, {
    token: t.tokens[persona],
    body: options.body,
    headers: { 'x-openstack-request-id': requestId, ...options.headers },
  });
  expect(response.headers.get('x-openstack-request-id')).toBe(requestId);
  return response;
}

/** Every captured line names a request of `sent` (or, from a task step, its Step Functions run). */
function expectEveryLineAttributed(): void {
  expect(lines.length).toBeGreaterThan(0);
  for (const line of lines) {
    const { requestId, caller } = line as { requestId?: string; caller?: unknown };
    expect(typeof requestId, JSON.stringify(line)).toBe('string');
    if (line.step !== undefined) {
      expect(caller, JSON.stringify(line)).toEqual({ service: 'states' });
      continue;
    }
    const persona = sent.get(requestId as string);
    expect(persona, JSON.stringify(line)).toBeDefined();
    expect(caller, JSON.stringify(line)).toEqual(CALLERS[persona as string]);
  }
}

describe('request-scoped logging through the gateway', () => {
  it('carries the request id and caller on every line of create, upload, download and refusals', async () => {
    lines = [];
    const created = await send('alice', 'POST', '/v2/images', {
      body: { name: 'logged', disk_format: 'raw', container_format: 'bare' },
    });
    expect(created.status, await peek(created)).toBe(201);
    const image = (await created.json()) as ImageView;
    const bytes = patternBytes(256 * 1024, 3);
    const uploaded = await send('alice', 'PUT', `/v2/images/${image.id}/file`, {
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(uploaded.status, await peek(uploaded)).toBe(204);
    const downloaded = await send('alice', 'GET', `/v2/images/${image.id}/file`);
    expect(Buffer.from(await downloaded.arrayBuffer()).equals(bytes)).toBe(true);
    const refused = await send('bob', 'DELETE', `/v2/images/${image.id}`);
    expect(refused.status).toBe(404);
    await refused.text();
    const bad = await send('alice', 'PATCH', `/v2/images/${image.id}`, {
      body: '{"op":',
      headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
    });
    expect(bad.status).toBe(400);
    await bad.text();
    await new Promise((resolve) => setTimeout(resolve, 50));

    expectEveryLineAttributed();
    // Each request that reached the table or a bucket logged from inside the adapters, under its
    // own id (the malformed PATCH is refused before any).
    const byRequest = new Map<string, string[]>();
    for (const line of lines)
      byRequest.set(line.requestId as string, [
        ...(byRequest.get(line.requestId as string) ?? []),
        line.message as string,
      ]);
    for (const requestId of [...sent.keys()].slice(0, 4))
      expect(byRequest.get(requestId), requestId).toContain('sdk call');
    expect(lines.filter((line) => line.message === 'request refused').map((line) => line.caller)).toEqual([
      CALLERS.bob,
      CALLERS.alice,
    ]);
  });

  it('gives the steps of the workflow a request started their own ids, naming the task', async () => {
    lines = [];
    const created = await send('alice', 'POST', '/v2/images', {
      body: { name: 'imported', disk_format: 'raw', container_format: 'bare' },
    });
    const image = (await created.json()) as ImageView;
    const staged = await send('alice', 'PUT', `/v2/images/${image.id}/stage`, {
      body: patternBytes(64 * 1024, 5),
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(staged.status, await peek(staged)).toBe(204);
    const imported = await send('alice', 'POST', `/v2/images/${image.id}/import`, {
      body: { method: { name: 'glance-direct' } },
    });
    expect(imported.status, await peek(imported)).toBe(202);
    // waitForImport polls as admin without ids of its own: keep the lines of this test's requests.
    await waitForImport(t, image.id);
    lines = lines.filter(
      (line) => line.step !== undefined || sent.has(line.requestId as string) || line.caller === undefined,
    );
    expectEveryLineAttributed();
    const steps = lines.filter((line) => line.message === 'task step done');
    expect(steps.map((line) => line.step)).toEqual(['import-begin', 'import-copy', 'import-activate']);
    for (const line of steps) expect(line.imageId).toBe(image.id);
    // Each step's SDK calls carry that step's id, not the import request's.
    const stepIds = new Set(steps.map((line) => line.requestId));
    expect(stepIds.size).toBe(3);
    for (const id of stepIds)
      expect(lines.some((line) => line.requestId === id && line.message === 'sdk call')).toBe(true);
  });
});
