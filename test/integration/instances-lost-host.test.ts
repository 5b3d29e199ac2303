/**
 * Instances on a host that stopped answering (no heartbeat for longer than the host timeout,
 * 2 s here): a destroy happens at once instead of waiting forever for a job nobody will run; the
 * pending job is ended, the host's capacity comes back, and a late report from the host changes
 * nothing. While the host is alive, the usual rules hold (409 while a job is pending).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callJson, createRawImage, putImageFile, registerHost } from '../helpers/api.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';

const HOST = 'h-lost';
const ARCH = 'arch-lost-host';
const HOST_TIMEOUT_SECONDS = 2;

describe('instances on a lost host', () => {
  let t: TestBackend;

  beforeAll(async () => {
    t = await startTestBackend({
      hosts: [HOST],
      env: { HANGAR_HOST_TIMEOUT_SECONDS: String(HOST_TIMEOUT_SECONDS) },
    });
  });
  afterAll(async () => {
    await t?.stop();
  });

  const call = (token: string, method: string, path: string, body?: unknown) =>
    callJson(t, token, method, path, body);
  const alice = (method: string, path: string, body?: unknown) => call(t.tokens.alice, method, path, body);
  const host = (method: string, path: string, body?: unknown) =>
    call(t.hostTokens[HOST] ?? '', method, path, body);

  it('destroys at once when the host is lost, ending its pending job and releasing its capacity', async () => {
    // Prepare: a host, an image only it can run, and an instance whose build it claimed
    const registered = await registerHost(t, HOST, {
      vcpus: 4,
      ram_mb: 4096,
      disk_gb: 50,
      architecture: ARCH,
    });
    expect(registered.status).toBe(200);
    const image = await createRawImage(t, 'alice', { name: 'lost', architecture: ARCH });
    await putImageFile(t, t.tokens.alice, image.body.id, new TextEncoder().encode('bytes'));
    const created = await alice('POST', '/v1/instances', {
      name: 'stuck',
      image: image.body.id,
      vcpus: 2,
      ram_mb: 1024,
      disk_gb: 10,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(202);
    const id: string = created.body.id;
    const claimed = await host('POST', `/v1/hosts/${HOST}/jobs/claim`, { lease_seconds: 60 });
    expect(claimed.body.job.kind).toBe('build');

    // While the host answers, a destroy waits for the build (the usual 409).
    expect((await alice('POST', `/v1/instances/${id}/actions/destroy`)).status).toBe(409);

    // Act: the host goes silent past the timeout, then alice destroys
    await sleep((HOST_TIMEOUT_SECONDS + 1) * 1000);
    const destroyed = await alice('POST', `/v1/instances/${id}/actions/destroy`);

    // Assess: done at once, with the reason; the host's room is back
    expect(destroyed.status, JSON.stringify(destroyed.body)).toBe(200);
    expect(destroyed.body).toMatchObject({ stage: 'Inexistent', pending_action: null });
    expect(destroyed.body.last_error).toMatch(/host h-lost was unreachable/);
    const shown = (await call(t.tokens.admin, 'GET', `/v1/hosts/${HOST}`)).body;
    expect(shown.used).toEqual({ vcpus: 0, ram_mb: 0, disk_gb: 0 });
    // The host, back, is told its build is over; its instance list no longer has the instance,
    // so its start-up reconcile removes the domain.
    const late = await host('POST', `/v1/jobs/${claimed.body.job.id}/complete`, {
      lease_token: claimed.body.job.lease_token,
      result: {},
    });
    expect(late.status).toBe(409);
    expect((await alice('GET', `/v1/instances/${id}`)).body.stage).toBe('Inexistent');
    expect((await host('GET', `/v1/hosts/${HOST}/instances`)).body.instances).toEqual([]);
    // A second destroy is refused: there is nothing left to destroy.
    expect((await alice('POST', `/v1/instances/${id}/actions/destroy`)).status).toBe(409);
  });
});
