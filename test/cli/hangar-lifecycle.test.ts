/**
 * `hangar snapshot`, `upgrade`, `rollback-instance` and `build`, black-box: the real binary against the
 * embedded backend, with the real host agent's jobs (test/helpers/memory-agent.ts: image cache,
 * qemu-img overlays, the snapshot upload) over the in-memory hypervisor, whose guests print the
 * first line of their image. A second host, whose jobs nobody claims, holds an instance that stays
 * Building: the refusals and the timeout.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCalls, registerHost } from '../helpers/api.ts';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { type HangarResult, hangarAs } from '../helpers/hangar.ts';
import { type MemoryAgent, startMemoryAgent } from '../helpers/memory-agent.ts';

const AGENT_HOST = 'h-life';
const IDLE_HOST = 'h-life-idle';

// biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
type Json = any;

describe('hangar snapshot, upgrade, rollback-instance', { timeout: 180_000 }, () => {
  let t: TestBackend;
  let agent: MemoryAgent;
  let dir: string;

  beforeAll(async () => {
    // Builds look at their instance every second here (HANGAR_BUILD_POLL_SECONDS), not every 10.
    t = await startTestBackend({ hosts: [AGENT_HOST, IDLE_HOST], env: { HANGAR_BUILD_POLL_SECONDS: '1' } });
    dir = mkdtempSync(join(tmpdir(), 'hangar-cli-life-'));
    const resources = (host: string) => ({
      vcpus: 8,
      ram_mb: 16384,
      disk_gb: 100,
      architecture: `arch-${host}`,
    });
    agent = await startMemoryAgent({
      serviceUrl: t.url,
      hostId: AGENT_HOST,
      token: t.hostTokens[AGENT_HOST] ?? '',
      registration: { ...resources(AGENT_HOST), hypervisor_type: 'qemu', hypervisor_version: 9_000_000 },
    });
    expect((await registerHost(t, IDLE_HOST, resources(IDLE_HOST))).status).toBe(200);
  }, 120_000);
  afterAll(async () => {
    await agent?.stop();
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: string[], timeoutMs = 90_000): Promise<HangarResult> =>
    hangarAs(t, 'alice', args, { timeoutMs });
  async function json(args: string[]): Promise<Json> {
    const result = await run([...args, '-o', 'json']);
    expect(result.code, result.stderr).toBe(0);
    return JSON.parse(result.stdout);
  }
  const { host: hostCall } = apiCalls(() => t);

  /** Pushes a raw disk whose guest prints `firstLine`, for `host`, as `target`; its image id. */
  async function push(target: string, firstLine: string, host = AGENT_HOST): Promise<string> {
    const path = join(dir, `${target.replace(/\W/g, '-')}.raw`);
    const bytes = Buffer.alloc(64 * 1024);
    bytes.write(`${firstLine}\n`);
    writeFileSync(path, bytes);
    return (await json(['push', path, target, '--property', `architecture=arch-${host}`])).image_id;
  }

  it('upgrade --wait follows the reference, rollback-instance --wait swaps back; refusals exit 4 and 3', async () => {
    // Arrange: web:stable -> v1, an instance following it
    const v1 = await push('web:stable', 'guest content=v1');
    const built = await json([
      'run',
      'web:stable',
      '--name',
      'web',
      '--memory',
      '256M',
      '--disk',
      '1G',
      '--wait',
    ]);
    expect(built).toMatchObject({ stage: 'Running', image_id: v1 });

    // Refusals, each before anything is queued: nothing to upgrade to, no previous disk, no such instance
    const same = await run(['upgrade', built.id]);
    expect(same.code, same.stderr).toBe(4);
    expect(same.stderr).toMatch(/nothing to upgrade to/);
    const noPrevious = await run(['rollback-instance', built.id]);
    expect(noPrevious.code, noPrevious.stderr).toBe(4);
    expect(noPrevious.stderr).toMatch(/no previous disk to roll back to/);
    expect((await run(['upgrade', 'no-such-instance'])).code).toBe(3);
    expect((await run(['rollback-instance', '00000000-0000-4000-8000-000000000000'])).code).toBe(3);

    // Act: the reference moves to v2; upgrade with no --image follows it
    const v2 = await push('web:stable', 'guest content=v2');
    const upgraded = await json(['upgrade', 'web', '--wait']);

    // Assert: on v2, v1 kept as the previous disk, and the guest booted v2's disk
    expect(upgraded).toMatchObject({ id: built.id, stage: 'Running', image_id: v2, pending_action: null });
    expect(upgraded.previous_image).toMatchObject({ id: v1 });
    const logs = await run(['logs', built.id]);
    expect(logs.stdout.trimEnd().split('\n').at(-1)).toBe('guest content=v2');

    // Act: back by hand
    const back = await json(['rollback-instance', built.id, '--wait']);
    expect(back).toMatchObject({ stage: 'Running', image_id: v1, pending_action: null });
    expect(back.previous_image).toMatchObject({ id: v2 });
    expect((await run(['logs', built.id])).stdout.trimEnd().split('\n').at(-1)).toBe('guest content=v1');

    // --image names the target explicitly (an id: the instance keeps following web:stable)
    const explicit = await json(['upgrade', built.id, '--image', v2, '--wait']);
    expect(explicit).toMatchObject({ image_id: v2, reference: 'web:stable' });
  });

  it('upgrade --wait to a disk that fails the boot check is exit 4 with the reason, the instance rolled back', async () => {
    // Arrange: an instance whose boots must print the marker
    const good = await push('gated:1', 'HANGAR-LIFE-READY good');
    const broken = await push('gated:2', 'kernel panic: no init found');
    const instance = await json([
      'run',
      'gated:1',
      '--name',
      'gated',
      '--memory',
      '256M',
      '--disk',
      '1G',
      '--boot-marker',
      'HANGAR-LIFE-READY',
      '--timeout',
      '10s',
      '--wait',
    ]);
    expect(instance).toMatchObject({ stage: 'Running', image_id: good });

    // Act
    const upgrade = await run(['upgrade', 'gated', '--image', broken, '--wait']);

    // Assert: a refused gate, saying so; still on the good disk, running
    expect(upgrade.code, upgrade.stderr).toBe(4);
    expect(upgrade.stderr).toMatch(/upgrade failed: UpgradeRolledBackError: .*failed its boot check/);
    const shown = (await json(['ps'])).find((i: Json) => i.id === instance.id);
    expect(shown).toMatchObject({ stage: 'Running', image_id: good, pending_action: null });
  });

  it('snapshot NAME:TAG --property --wait prints the active image and points the reference at it', async () => {
    // Arrange
    const base = await push('snapbase:1', 'guest content=snap');
    const instance = await json([
      'run',
      'snapbase:1',
      '--name',
      'snapper',
      '--memory',
      '256M',
      '--disk',
      '1G',
      '--wait',
    ]);

    // Act
    const image = await json([
      'snapshot',
      'snapper',
      'snapped:1',
      '--property',
      'purpose=cli-test',
      '--wait',
    ]);

    // Assert: active, Nova's provenance, the property, and snapped:1 resolves to it
    expect(image).toMatchObject({
      status: 'active',
      name: 'snapped',
      disk_format: 'qcow2',
      image_type: 'snapshot',
      instance_uuid: instance.id,
      base_image_ref: base,
      purpose: 'cli-test',
      references: ['snapped:1'],
    });
    expect(image.os_hash_value).toMatch(/^[0-9a-f]{128}$/);
    expect((await json(['inspect', 'snapped:1'])).id).toBe(image.id);
    const after = await json(['ps']);
    expect(after.find((i: Json) => i.id === instance.id)).toMatchObject({
      stage: 'Running',
      pending_action: null,
    });

    // A bare NAME names the image and moves no reference
    const bare = await json(['snapshot', instance.id, 'plain-snap', '--wait']);
    expect(bare).toMatchObject({ status: 'active', name: 'plain-snap', references: [] });

    // Bad usage: NAME: with no tag
    expect((await run(['snapshot', instance.id, 'broken:'])).code).toBe(2);
  });

  it('refuses a snapshot or upgrade of a Building or destroyed instance (4) or of none (3); upgrade --wait times out with 5', async () => {
    // Arrange: an instance on the idle host stays Building (nobody claims its build job)
    await push('idle:1', 'guest content=idle', IDLE_HOST);
    const idle2 = await push('idle:2', 'guest content=idle2', IDLE_HOST);
    const building = await json(['run', 'idle:1', '--name', 'stuck', '--memory', '256M', '--disk', '1G']);
    expect(building).toMatchObject({ stage: 'Building', host_id: IDLE_HOST });

    // Act & Assert
    const snap = await run(['snapshot', building.id, 'stuck-snap:1']);
    expect(snap.code, snap.stderr).toBe(4);
    expect(snap.stderr).toMatch(/while it is Building/);
    expect((await run(['upgrade', building.id, '--image', 'idle:2'])).code).toBe(4);
    expect((await run(['snapshot', 'nobody', 'x:1'])).code).toBe(3);

    // The test plays the idle host once: the build is done, the instance Running
    const claimed = await hostCall(IDLE_HOST, 'POST', `/v1/hosts/${IDLE_HOST}/jobs/claim`, {});
    expect(claimed.status).toBe(200);
    expect(claimed.body.job.kind).toBe('build');
    const done = await hostCall(IDLE_HOST, 'POST', `/v1/jobs/${claimed.body.job.id}/complete`, {
      lease_token: claimed.body.job.lease_token,
    });
    expect(done.status).toBe(204);

    // The upgrade job is queued and nobody runs it: --wait gives up with exit 5, saying what is pending
    const waited = await run(['upgrade', 'stuck', '--image', 'idle:2', '--wait', '--timeout', '2s']);
    expect(waited.code, waited.stderr).toBe(5);
    expect(waited.stderr).toMatch(/upgrade pending/);
    const pending = await json(['ps']);
    expect(pending.find((i: Json) => i.id === building.id)).toMatchObject({
      pending_action: 'upgrade',
      upgrading_to: { id: idle2 },
    });
    // Any pending job refuses a snapshot
    expect((await run(['snapshot', 'stuck', 'stuck-snap:1'])).code).toBe(4);

    // A destroyed instance (on the agent's host) can be neither snapshotted nor upgraded
    await push('gone:1', 'guest content=gone');
    const doomed = await json([
      'run',
      'gone:1',
      '--name',
      'doomed',
      '--memory',
      '256M',
      '--disk',
      '1G',
      '--wait',
    ]);
    expect((await run(['rm', doomed.id, '--wait'])).code).toBe(0);
    const late = await run(['snapshot', doomed.id, 'late:1']);
    expect(late.code, late.stderr).toBe(4);
    expect((await run(['upgrade', doomed.id, '--image', 'gone:1'])).code).toBe(4);
  });

  it('build --recipe --boot-marker --wait publishes the built image (history `build`); a recipe that never powers off is exit 4', async () => {
    // Arrange: a base, and two recipes (the memory guest powers off when its `#!/bin/sh` recipe says poweroff)
    await push('buildbase:1', 'guest content=build base');
    const recipe = join(dir, 'recipe.sh');
    writeFileSync(
      recipe,
      '#!/bin/sh\necho built > /mnt/disk/hangar-marker.txt\nsync; umount /mnt/disk; poweroff -f\n',
    );
    const endless = join(dir, 'endless.sh');
    writeFileSync(endless, '#!/bin/sh\necho still here\n');

    // Act
    const built = await json([
      'build',
      'buildbase:1',
      'cli-built:1',
      '--recipe',
      recipe,
      '--boot-marker',
      'booting',
      '--wait',
    ]);

    // Assert: succeeded through every stage, the target points to its image, the history names the build
    expect(built).toMatchObject({ stage: 'succeeded', target: 'cli-built:1' });
    expect(built.stages.map((s: Json) => s.stage)).toEqual([
      'provisioning',
      'running recipe',
      'snapshotting',
      'testing',
      'publishing',
    ]);
    const history = await json(['history', 'cli-built:1']);
    expect(history[0]).toMatchObject({ action: 'build', build_id: built.id, to: built.image_id });
    expect((await json(['builds', 'cli-built:1'])).map((b: Json) => b.id)).toEqual([built.id]);

    // Act: a recipe that never powers the guest off
    const failed = await run([
      'build',
      'buildbase:1',
      'cli-built:1',
      '--recipe',
      endless,
      '--timeout',
      '10s',
      '--wait',
    ]);

    // Assert: exit 4 with the reason; the target still points to the first build's image
    expect(failed.code, failed.stderr).toBe(4);
    expect(failed.stderr).toMatch(/did not power the guest off within the build's 10 s/);
    expect((await json(['builds', 'cli-built:1']))[0]).toMatchObject({ stage: 'failed' });
    const resolved = await hostlessResolve('cli-built:1');
    expect(resolved).toBe(built.image_id);

    // Refusals: an unknown base (exit 1, the service's 400) and an unreadable recipe (usage, exit 2)
    const unknown = await run(['build', 'nosuch:1', 'cli-built:1', '--recipe', recipe]);
    expect(unknown.code, unknown.stderr).toBe(1);
    expect(unknown.stderr).toMatch(/Invalid build base/);
    expect((await run(['build', 'buildbase:1', 'cli-built:1', '--recipe', join(dir, 'none.sh')])).code).toBe(
      2,
    );
  });

  async function hostlessResolve(reference: string): Promise<string> {
    const reply = await t.request('GET', `/v1/references/${reference}`, { token: t.tokens.alice });
    return ((await reply.json()) as Json).image_id;
  }
});
