/**
 * Builds (POST /v1/builds) against the real local backend and the build state machine run by the
 * local ASL interpreter, with the real host agent's jobs (test/helpers/memory-agent.ts: image
 * cache, qemu-img overlays, the snapshot's convert and upload, its observe loop) over the
 * in-memory hypervisor, whose guests run a `#!/bin/sh ... poweroff` recipe by powering off.
 * Covers: a build that is tested (boot gate) and published with its provenance and history; a
 * recipe that never powers off and an image that fails its gate, each leaving the target where it
 * was and no instance or image behind; two builds of one target; every refusal, nothing changed.
 */
import { appendFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCalls, createRawImage, putImageFile, type Reply } from '../helpers/api.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { type MemoryAgent, startMemoryAgent } from '../helpers/memory-agent.ts';

const HOST = 'h-build';
const RECIPE = '#!/bin/sh\necho built > /mnt/disk/hangar-marker.txt\nsync; umount /mnt/disk; poweroff -f\n';
const NEVER_OFF = '#!/bin/sh\necho still running\n';
const GATE = { marker: 'booting', timeout_seconds: 30 };
const FINISHED = ['succeeded', 'failed'];

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

describe('builds: build -> test -> publish', { timeout: 180_000 }, () => {
  let t: TestBackend;
  let agent: MemoryAgent;
  let base: string;
  let previous: string;
  const { as } = apiCalls(() => t);

  /** A raw image of alice's whose guest prints `firstLine`, active. */
  async function rawImage(
    name: string,
    firstLine: string,
    persona: 'alice' | 'bob' = 'alice',
  ): Promise<string> {
    const created = await createRawImage(t, persona, { name, architecture: `arch-${HOST}` });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const bytes = Buffer.alloc(64 * 1024);
    bytes.write(`${firstLine}\n`);
    const put = await putImageFile(t, t.tokens[persona], created.body.id, bytes);
    expect(put.status).toBe(204);
    return created.body.id;
  }

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [HOST], env: { HANGAR_BUILD_POLL_SECONDS: '1' } });
    agent = await startMemoryAgent({
      serviceUrl: t.url,
      hostId: HOST,
      token: t.hostTokens[HOST] ?? '',
      registration: {
        vcpus: 8,
        ram_mb: 16384,
        disk_gb: 100,
        architecture: `arch-${HOST}`,
        hypervisor_type: 'qemu',
        hypervisor_version: 9_000_000,
      },
    });
    base = await rawImage('build-base', 'guest content=base');
    previous = await rawImage('app-previous', 'guest content=previous');
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'base:1', image_id: base })).status,
    ).toBe(201);
    expect(
      (await as('alice', 'POST', '/v1/references', { reference: 'app:1', image_id: previous })).status,
    ).toBe(201);
  }, 120_000);
  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
  });

  async function finished(id: string): Promise<Json> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const build = (await as('alice', 'GET', `/v1/builds/${id}`)).body;
      if (FINISHED.includes(build.stage)) return build;
      if (Date.now() > deadline) throw new Error(`build ${id} still ${build.stage}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  /** The instance, once gone (its destroy job done): Inexistent, or no longer found. */
  async function gone(id: string): Promise<string> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const shown = await as('alice', 'GET', `/v1/instances/${id}`);
      if (shown.status === 404 || shown.body.stage === 'Inexistent') return 'gone';
      if (Date.now() > deadline) return `${shown.body.stage} (${shown.body.pending_action})`;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  /** The files of the images store (the fs blob store under the backend's state dir) that belong to `imageId`. */
  const blobsOf = async (imageId: string) =>
    (await readdir(join(t.backend.stateDir, 'blobs'), { recursive: true })).filter((f) =>
      f.includes(imageId),
    );
  const pointsTo = async (ref: string) => (await as('alice', 'GET', `/v1/references/${ref}`)).body.image_id;
  const build = (body: object, persona: 'alice' | 'bob' | 'dave' | 'admin' = 'alice'): Promise<Reply> =>
    as(persona, 'POST', '/v1/builds', body);

  it('builds from a reference, boots the image behind the gate, publishes it with provenance and a `build` history entry', async () => {
    // Act
    const asked = await build({ base: 'base:1', recipe: { user_data: RECIPE }, target: 'app:1', boot: GATE });

    // Assert: 202 with the build, then every stage in order to succeeded
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    expect(asked.body).toMatchObject({ stage: 'provisioning', target: 'app:1', expect: previous });
    expect(asked.body.base).toMatchObject({ requested: 'base:1', image_id: base });
    expect(asked.body).not.toHaveProperty('recipe');
    const done = await finished(asked.body.id);
    expect(done.stage, done.reason).toBe('succeeded');
    expect(done.stages.map((s: Json) => s.stage)).toEqual([
      'provisioning',
      'running recipe',
      'snapshotting',
      'testing',
      'publishing',
    ]);
    for (const stage of done.stages) expect(stage.seconds).toBeGreaterThanOrEqual(0);
    expect(done.console_tail).toContain('HANGAR-RECIPE-EXIT 0');

    // The target moved to the built image, which records where it came from and what made it
    expect(await pointsTo('app:1')).toBe(done.image_id);
    const image = (await as('alice', 'GET', `/v2/images/${done.image_id}`)).body;
    const baseImage = (await as('alice', 'GET', `/v2/images/${base}`)).body;
    const { createHash } = await import('node:crypto');
    expect(image).toMatchObject({
      status: 'active',
      image_type: 'snapshot',
      instance_uuid: done.id,
      base_image_ref: base,
      // The base's placement properties stay: the image boots where the base could
      architecture: `arch-${HOST}`,
      hangar_build_id: done.id,
      hangar_base_image: base,
      hangar_base_sha512: baseImage.os_hash_value,
      hangar_recipe_sha256: createHash('sha256').update(RECIPE).digest('hex'),
    });
    expect(done.recipe_sha256).toBe(image.hangar_recipe_sha256);
    expect(await blobsOf(done.image_id)).not.toEqual([]);
    const history = (await as('alice', 'GET', '/v1/references/app:1/history')).body.history;
    // Newest first.
    expect(history[0]).toMatchObject({
      action: 'build',
      build_id: done.id,
      from: previous,
      to: done.image_id,
    });

    // The gate booted it (the publication says so), and no instance is left: neither build nor gate
    const publication = (await as('alice', 'GET', `/v1/publications/${done.publication_id}`)).body;
    expect(publication).toMatchObject({ status: 'success', result: { boot_checked: true } });
    expect(await gone(done.id)).toBe('gone');
    expect(await gone(done.publication_id)).toBe('gone');

    // Listed under its target (a Query), and readable by a reader of the project, not by others
    const listed = (await as('alice', 'GET', '/v1/builds?target=app:1')).body.builds;
    expect(listed.map((b: Json) => b.id)).toContain(done.id);
    expect((await as('dave', 'GET', `/v1/builds/${done.id}`)).status).toBe(200);
    expect((await as('bob', 'GET', `/v1/builds/${done.id}`)).status).toBe(404);
    expect((await as('bob', 'GET', '/v1/builds?target=app:1&namespace=projA')).body.builds).toEqual([]);
  });

  it('a recipe that never powers off times out: failed with the reason, no instance, no image, the target where it was', async () => {
    // Arrange
    const before = await pointsTo('app:1');

    // Act
    const asked = await build({
      base,
      recipe: { user_data: NEVER_OFF },
      target: 'app:1',
      timeout_seconds: 10,
    });
    expect(asked.status, JSON.stringify(asked.body)).toBe(202);
    // The guest prints while the recipe hangs, after the build job's result was sent.
    const deadline = Date.now() + 60_000;
    while ((await as('alice', 'GET', `/v1/builds/${asked.body.id}`)).body.stage !== 'running recipe') {
      if (Date.now() > deadline) throw new Error('the build never reached running recipe');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await appendFile(agent.files.paths(asked.body.id).consoleLog, 'recipe stuck at step 3\n');
    const done = await finished(asked.body.id);

    // Assert
    expect(done.stage).toBe('failed');
    expect(done.reason).toMatch(
      /^Build failed while running recipe: The recipe did not power the guest off within/,
    );
    expect(done.reason).toMatch(/The target app:1 was left where it was\.$/);
    expect(done.image_id).toBeNull();
    expect(await pointsTo('app:1')).toBe(before);
    expect(await gone(done.id)).toBe('gone');
    // The console the destroy job reported, where the recipe hung, is the build's console_tail.
    const after = (await as('alice', 'GET', `/v1/builds/${done.id}`)).body;
    expect(after.console_tail).toContain('recipe stuck at step 3');
    expect(after.stage).toBe('failed');
    expect(after.reason).toBe(done.reason);
  });

  it('an image that fails the boot gate: the snapshot image is discarded with its data, the target untouched', async () => {
    // Arrange
    const before = await pointsTo('app:1');

    // Act
    const asked = await build({
      base,
      recipe: { user_data: RECIPE },
      target: 'app:1',
      boot: { marker: 'NEVER-PRINTED', timeout_seconds: 10 },
    });
    expect(asked.status).toBe(202);
    const done = await finished(asked.body.id);

    // Assert: failed while testing, why; the image (made) is gone, so are both instances
    expect(done.stage).toBe('failed');
    expect(done.reason).toMatch(/^Build failed while testing: .*did not boot/);
    expect(done.image_id).not.toBeNull();
    expect((await as('alice', 'GET', `/v2/images/${done.image_id}`)).status).toBe(404);
    const download = await t.request('GET', `/v2/images/${done.image_id}/file`, { token: t.tokens.alice });
    expect(download.status).toBe(404);
    expect(await blobsOf(done.image_id)).toEqual([]);
    expect(await pointsTo('app:1')).toBe(before);
    expect((await as('alice', 'GET', `/v1/publications/${done.publication_id}`)).body.status).toBe('failure');
    expect(await gone(done.id)).toBe('gone');
    expect(await gone(done.publication_id)).toBe('gone');
  });

  it('two builds of one target never interleave: the first to publish moves it, the other fails on the compare-and-swap', async () => {
    // Arrange
    const before = await pointsTo('app:1');
    const body = { base, recipe: { user_data: RECIPE }, target: 'app:1' };

    // Act
    const [one, two] = await Promise.all([build(body), build(body)]);
    expect([one.status, two.status]).toEqual([202, 202]);
    const results = await Promise.all([finished(one.body.id), finished(two.body.id)]);

    // Assert: exactly one succeeded and the target points to its image; the other says why and left nothing
    const won = results.filter((b) => b.stage === 'succeeded');
    const lost = results.filter((b) => b.stage === 'failed');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect(lost[0].reason).toMatch(/points to|moved|created by someone/);
    expect(await pointsTo('app:1')).toBe(won[0].image_id);
    expect(won[0].expect).toBe(before);
    if (lost[0].image_id) {
      expect((await as('alice', 'GET', `/v2/images/${lost[0].image_id}`)).status).toBe(404);
      expect(await blobsOf(lost[0].image_id)).toEqual([]);
    }
    expect(await gone(lost[0].id)).toBe('gone');
  });

  describe('refusals: a clear 4xx and nothing made', () => {
    async function nothingMade(check: () => Promise<Reply>, status: number, message: RegExp): Promise<void> {
      const images = (await as('alice', 'GET', '/v2/images?limit=1000')).body.images.length;
      const instances = (await as('alice', 'GET', '/v1/instances?limit=1000')).body.instances.length;
      const builds = (await as('alice', 'GET', '/v1/builds?target=refused:1')).body.builds.length;
      const reply = await check();
      expect(reply.status, JSON.stringify(reply.body)).toBe(status);
      expect(JSON.stringify(reply.body)).toMatch(message);
      expect((await as('alice', 'GET', '/v2/images?limit=1000')).body.images.length).toBe(images);
      expect((await as('alice', 'GET', '/v1/instances?limit=1000')).body.instances.length).toBe(instances);
      expect((await as('alice', 'GET', '/v1/builds?target=refused:1')).body.builds.length).toBe(builds);
    }
    const good = () => ({ base, recipe: { user_data: RECIPE }, target: 'refused:1' });

    it('an unknown base (id or reference)', async () => {
      await nothingMade(
        () => build({ ...good(), base: '00000000-0000-4000-8000-000000000000' }),
        400,
        /Invalid build base/,
      );
      await nothingMade(() => build({ ...good(), base: 'nosuch:1' }), 400, /Invalid build base/);
    });

    it('a base the caller cannot see (another project private image)', async () => {
      const bobs = await rawImage('bobs-private', 'guest content=bob', 'bob');
      await nothingMade(() => build({ ...good(), base: bobs }), 400, /Invalid build base/);
    });

    it('a target in the public namespace, even for an admin (the built image is private)', async () => {
      await nothingMade(() => build({ ...good(), namespace: 'public' }), 403, /namespace 'public'/);
      await nothingMade(
        () => build({ ...good(), namespace: 'public' }, 'admin'),
        400,
        /Invalid build target/,
      );
    });

    it("a target in another project's namespace, and a reader's build", async () => {
      await nothingMade(() => build({ ...good(), namespace: 'projB' }), 403, /namespace 'projB'/);
      await nothingMade(() => build(good(), 'dave'), 403, /Only members of project projA/);
    });

    it('a bad body (zod): missing recipe, unknown field, bad target, timeout out of range', async () => {
      await nothingMade(() => build({ base, target: 'refused:1' }), 400, /recipe/);
      await nothingMade(() => build({ ...good(), colour: 'blue' }), 400, /colour/);
      await nothingMade(() => build({ ...good(), target: 'Not A Ref' }), 400, /reference/i);
      await nothingMade(() => build({ ...good(), timeout_seconds: 1 }), 400, /timeout_seconds/);
      await nothingMade(() => as('alice', 'GET', '/v1/builds'), 400, /target=name:tag/);
    });
  });
});
