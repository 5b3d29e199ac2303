/**
 * A snapshot where the API cannot carry the body (HANGAR_SNAPSHOT_UPLOAD=multipart, implied on
 * Lambda by HANGAR_BLOB_DELIVERY=redirect): the service tells the agent `upload: multipart`, and
 * the agent's own client (agent/src/service-client.ts) uploads through the presigned multipart path with the job's grant; the
 * import activates the image with the digests the agent computed. Real backend (the uploads
 * bucket on s3rver), the test playing the rest of the agent through the hosts/jobs API.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServiceClient } from '../../agent/src/service-client.ts';
import { callJson, createRawImage, putImageFile, registerHost } from '../helpers/api.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOST = 'h-snap-mp';

describe('snapshot upload through presigned multipart', () => {
  let t: TestBackend;
  let dir: string;
  let diskPath: string;

  beforeAll(async () => {
    t = await startTestBackend({
      hosts: [HOST],
      // The local gateway streams bodies; this is the setting Lambda's (redirect) implies.
      env: { HANGAR_SNAPSHOT_UPLOAD: 'multipart' },
    });
    dir = mkdtempSync(join(tmpdir(), 'snap-mp-'));
    diskPath = join(dir, 'd.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', diskPath, '16M']);
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const call = (token: string, method: string, path: string, body?: unknown) =>
    callJson(t, token, method, path, body);
  const hostToken = () => t.hostTokens[HOST] ?? '';

  it('the agent uploads with its grant via multipart; the image is active with the digests it sent', async () => {
    // Arrange: a host, a base image, a Running instance
    expect(
      (await registerHost(t, HOST, { vcpus: 4, ram_mb: 4096, disk_gb: 100, architecture: 'arch-snap-mp' }))
        .status,
    ).toBe(200);
    const base = await createRawImage(t, 'alice', { name: 'mp-base', architecture: 'arch-snap-mp' });
    const put = await putImageFile(t, t.tokens.alice, base.body.id, new TextEncoder().encode('base'));
    expect(put.status).toBe(204);
    const created = await call(t.tokens.alice, 'POST', '/v1/instances', {
      name: 'mp',
      image: base.body.id,
      vcpus: 1,
      ram_mb: 128,
      disk_gb: 1,
    });
    const build = (await call(hostToken(), 'POST', `/v1/hosts/${HOST}/jobs/claim`, {})).body.job;
    await call(hostToken(), 'POST', `/v1/jobs/${build.id}/complete`, { lease_token: build.lease_token });

    // Act
    const asked = await call(t.tokens.alice, 'POST', `/v1/instances/${created.body.id}/actions/snapshot`, {
      name: 'mp snapshot',
    });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    const job = (await call(hostToken(), 'POST', `/v1/hosts/${HOST}/jobs/claim`, {})).body.job;
    expect(job.snapshot).toMatchObject({ image_id: asked.body.image_id, upload: 'multipart' });
    // Without the grant a host token starts no upload.
    const refused = await call(hostToken(), 'POST', `/v2/images/${asked.body.image_id}/multipart-upload`, {
      size: 10,
    });
    expect(refused.status).toBe(403);
    const client = new ServiceClient({ baseUrl: t.url, hostId: HOST, token: hostToken() });
    const sent = await client.uploadImageMultipart(
      asked.body.image_id,
      job.snapshot.upload_grant,
      diskPath,
      AbortSignal.timeout(120_000),
      120_000,
    );
    const done = await call(hostToken(), 'POST', `/v1/jobs/${job.id}/complete`, {
      lease_token: job.lease_token,
      result: {
        snapshot: { size: sent.size, checksum: sent.md5, os_hash_value: sent.sha512, paused_ms: 5 },
      },
    });

    // Assert
    const bytes = readFileSync(diskPath);
    expect(sent).toEqual({
      size: bytes.length,
      md5: createHash('md5').update(bytes).digest('hex'),
      sha512: createHash('sha512').update(bytes).digest('hex'),
    });
    expect(done.status, JSON.stringify(done.body)).toBe(204);
    const image = (await call(t.tokens.alice, 'GET', `/v2/images/${asked.body.image_id}`)).body;
    expect(image).toMatchObject({
      status: 'active',
      size: sent.size,
      checksum: sent.md5,
      os_hash_value: sent.sha512,
      image_type: 'snapshot',
    });
    const instance = (await call(t.tokens.alice, 'GET', `/v1/instances/${created.body.id}`)).body;
    expect(instance).toMatchObject({ stage: 'Running', pending_action: null, last_error: null });
  });
});
