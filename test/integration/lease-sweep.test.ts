/**
 * The embedded runner's periodic lease sweep against the real table index (by_kind, LEASE#all):
 * an upload whose holder stopped renewing (a dead server) is recovered within a few seconds,
 * while a live slow upload next to it keeps its lease through its heartbeat and completes.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoImageRepository } from '#adapters/dynamo/image-repository';
import { serviceConfig } from '#platform/config';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { eventually, imageObjects, writeImageObject } from '../helpers/images.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let t: TestBackend;
beforeAll(async () => {
  // Leases of 3 s (renewed each second), swept every second.
  t = await startTestBackend({ env: { HANGAR_LEASE_SECONDS: '3', HANGAR_LEASE_SWEEP_SECONDS: '1' } });
});
afterAll(async () => {
  await t?.stop();
});

async function json(method: string, path: string, body?: object) {
  const response = await t.request(method, path, { token: t.tokens.alice, body });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

async function queuedImage(): Promise<string> {
  const created = await json('POST', '/v2/images', { disk_format: 'raw', container_format: 'bare' });
  expect(created.status).toBe(201);
  return created.body.id;
}

describe('the periodic lease sweep', () => {
  it('recovers an upload whose server stopped renewing, and leaves a live slow upload alone', async () => {
    // Prepare: image A as a dead server left it (saving, lease expiring in 2 s, a partial blob).
    const dead = await queuedImage();
    const repo = new DynamoImageRepository(t.backend.clients.dynamo, serviceConfig().tableName);
    const record = await repo.get(dead);
    if (!record) throw new Error('no record');
    const partial = `images/${dead}/partial-from-a-dead-server`;
    await repo.update(record, {
      ...record,
      status: 'saving',
      lease: {
        holder: 'dead',
        kind: 'upload',
        expires_at: new Date(Date.now() + 2000).toISOString(),
        blob_key: partial,
      },
      version: record.version + 1,
    });
    await writeImageObject(partial, Buffer.alloc(1024), { partial: true });
    // Image B: a live upload sending a chunk every 300 ms for 6 s, twice its lease.
    const live = await queuedImage();
    const req = httpRequest(`${t.url}/v2/images/${live}/file`, {
      method: 'PUT',
      headers: {
        'x-auth-token': t.tokens.alice,
        'content-type': 'application/octet-stream',
        'transfer-encoding': 'chunked',
      },
    });
    const answer = new Promise<number>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
    });

    // Act
    for (let i = 0; i < 20; i++) {
      req.write(Buffer.alloc(64 * 1024, i));
      await sleep(300);
    }
    req.end();

    // Assess
    expect(await answer).toBe(204);
    const liveImage = (await json('GET', `/v2/images/${live}`)).body;
    expect(liveImage.status).toBe('active');
    expect(liveImage.size).toBe(20 * 64 * 1024);
    await eventually(async () => (await json('GET', `/v2/images/${dead}`)).body.status === 'queued', 10_000);
    const deadImage = (await json('GET', `/v2/images/${dead}`)).body;
    expect(deadImage.os_glance_failed_upload).toMatch(/upload was interrupted/);
    expect(await imageObjects(`images/${dead}/`)).toEqual([]);
    expect((await repo.get(dead))?.lease).toBeUndefined();
    expect((await repo.get(live))?.lease).toBeUndefined();
  });
});
