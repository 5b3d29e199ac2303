/**
 * The `hangar` command, black-box: the real binary against the embedded backend. push → images →
 * pull (verified) → tag/history/rollback → share/accept as another project → rmi, with `-o json`
 * parsed; the exit codes for not found, conflict and bad usage; login and profiles; run, ps,
 * stop and rm with the test playing the host agent over the real hosts/jobs API.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { freshConfigDir, type HangarOptions, hangar, hangarAs, hangarJson } from '../helpers/hangar.ts';

const sha512 = (bytes: Buffer) => createHash('sha512').update(bytes).digest('hex');

describe('hangar', () => {
  let t: TestBackend;
  let dir: string;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: ['h-cli'] });
    dir = mkdtempSync(join(tmpdir(), 'hangar-cli-test-'));
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** `hangar ARGS` as `persona`, with the url and token from the environment. */
  const as = (persona: Persona, args: string[], options: HangarOptions = {}) =>
    hangarAs(t, persona, args, options);
  const json = <T = Record<string, unknown>>(persona: Persona, args: string[]) =>
    hangarJson<T>(t, persona, args);

  function imageFile(name: string, size: number): { path: string; bytes: Buffer } {
    const bytes = randomBytes(size);
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return { path, bytes };
  }

  it('pushes, lists, pulls (verified), tags, rolls back, shares and removes an image', async () => {
    const first = imageFile('first.raw', 300_000);
    const pushed = await json<{ reference: string; image_id: string; image: { os_hash_value: string } }>(
      'alice',
      ['push', first.path, 'fedora:40', '--visibility', 'shared', '--property', 'os_distro=fedora', '--wait'],
    );
    expect(pushed.reference).toBe('fedora:40');
    expect(pushed.image.os_hash_value).toBe(sha512(first.bytes));
    const firstId = pushed.image_id;

    const images = await json<{ id: string; references: string[]; os_hash_value: string; size: number }[]>(
      'alice',
      ['images'],
    );
    const listed = images.find((image) => image.id === firstId);
    expect(listed).toMatchObject({ references: ['fedora:40'], size: 300_000, os_distro: 'fedora' });
    const table = await as('alice', ['images']);
    expect(table.stdout).toMatch(/^ID\s+NAME\s+REFERENCES\s+STATUS/);
    expect(table.stdout).toContain(sha512(first.bytes).slice(0, 12));

    const target = join(dir, 'pulled.raw');
    const pulled = await json<{ verified: boolean; received: number; sha512: string }>('alice', [
      'pull',
      'fedora:40',
      '-O',
      target,
    ]);
    expect(pulled).toMatchObject({ verified: true, received: 300_000, sha512: sha512(first.bytes) });
    expect(readFileSync(target).equals(first.bytes)).toBe(true);

    // A second build, pushed to another tag, then tagged over the first: history and rollback.
    const second = imageFile('second.raw', 1000);
    const secondId = (await json<{ image_id: string }>('alice', ['push', second.path, 'fedora:41'])).image_id;
    expect((await json<{ image_id: string }>('alice', ['tag', 'fedora:41', 'fedora:40'])).image_id).toBe(
      secondId,
    );
    const history = await json<{ action: string; from: string | null; to: string }[]>('alice', [
      'history',
      'fedora:40',
    ]);
    expect(history.map((entry) => [entry.action, entry.to])).toEqual([
      ['move', secondId],
      ['create', firstId],
    ]);
    expect((await json<{ image_id: string }>('alice', ['rollback', 'fedora:40'])).image_id).toBe(firstId);
    expect(
      (await json<{ action: string; to: string }[]>('alice', ['history', 'fedora:40']))[0],
    ).toMatchObject({
      action: 'rollback',
      to: firstId,
    });
    expect((await as('alice', ['inspect', 'fedora:40', '-o', 'name'])).stdout.trim()).toBe(firstId);

    // bob's project gets it once alice shares and bob accepts (by id: references are per project).
    expect((await json<{ id: string }[]>('bob', ['images'])).map((image) => image.id)).not.toContain(firstId);
    expect(
      await json<{ member_id: string; status: string }[]>('alice', ['share', 'fedora:40', 'projB']),
    ).toEqual([expect.objectContaining({ member_id: 'projB', status: 'pending' })]);
    expect(await json('bob', ['accept', firstId])).toEqual([
      expect.objectContaining({ member_id: 'projB', status: 'accepted' }),
    ]);
    expect((await json<{ id: string }[]>('bob', ['images'])).map((image) => image.id)).toContain(firstId);
    expect(await json('alice', ['members', 'fedora:40'])).toEqual([
      expect.objectContaining({ member_id: 'projB', status: 'accepted' }),
    ]);
    const bobsCopy = join(dir, 'bob.raw');
    expect((await as('bob', ['pull', firstId, '-O', bobsCopy, '-q'])).code).toBe(0);
    expect(statSync(bobsCopy).size).toBe(300_000);

    // untag leaves the image; rmi removes the image and alice's references to it.
    expect((await as('alice', ['untag', 'fedora:41'])).code).toBe(0);
    expect((await as('alice', ['inspect', 'fedora:41'])).code).toBe(3);
    expect((await as('alice', ['inspect', secondId])).code).toBe(0);
    const removed = await as('alice', ['rmi', 'fedora:40', secondId]);
    expect(removed.code, removed.stderr).toBe(0);
    expect((await as('alice', ['inspect', firstId])).code).toBe(3);
    expect((await as('alice', ['inspect', 'fedora:40'])).code).toBe(3);
    expect((await json<{ id: string }[]>('alice', ['images'])).map((image) => image.id)).not.toContain(
      firstId,
    );
  });

  it('exits 3 for not found, 4 for a conflict, 2 for bad usage, 1 for a refused token', async () => {
    const missing = await as('alice', ['inspect', 'nothing:here']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/No reference nothing:here/);
    expect((await as('alice', ['pull', '00000000-0000-4000-8000-000000000000'])).code).toBe(3);

    // Only active images can be referenced: a queued one is a conflict.
    const queued = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      body: { name: 'queued', disk_format: 'raw', container_format: 'bare' },
    });
    const queuedId = ((await queued.json()) as { id: string }).id;
    const conflict = await as('alice', ['tag', queuedId, 'queued:1']);
    expect(conflict.code, conflict.stderr).toBe(4);
    expect(conflict.stderr).toMatch(/only active images/);

    for (const args of [
      ['frobnicate'],
      ['push', 'only-a-file'],
      ['images', '-o', 'xml'],
      ['--progress', 'loud', 'images'],
    ]) {
      const usage = await as('alice', args);
      expect(usage.code, args.join(' ')).toBe(2);
      expect(usage.stdout).toBe('');
    }
    expect((await as('alice', ['push', join(dir, 'no-such-file'), 'x:1'])).code).toBe(3);
    expect((await as('alice', ['images'], { env: { HANGAR_TOKEN: 'not-a-token' } })).code).toBe(1);
    expect((await as('alice', ['--help'])).code).toBe(0);
  });

  it('logs in with --token-stdin into a 0600 profile, and uses, lists and switches profiles', async () => {
    const config = freshConfigDir();
    const env = { HANGAR_CONFIG_DIR: config, HANGAR_URL: undefined, HANGAR_TOKEN: undefined };
    const refused = await hangar(['login', t.url, '--token-stdin', '--name', 'bad'], {
      env,
      input: 'wrong\n',
    });
    expect(refused.code).toBe(1);
    const login = await hangar(['login', t.url, '--token-stdin', '--name', 'local'], {
      env,
      input: `${t.tokens.carol}\n`,
    });
    expect(login.code, login.stderr).toBe(0);
    const file = join(config, 'config.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({
      current: 'local',
      profiles: { local: { url: t.url, token: t.tokens.carol } },
    });
    expect(JSON.parse(readFileSync(file, 'utf8')).profiles.bad).toBeUndefined();

    // The profile is enough: no url and no token on the command line.
    const small = imageFile('carol.raw', 10);
    const pushed = await hangar(['push', small.path, 'carols:1', '-o', 'json'], { env });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(JSON.parse(pushed.stdout)).toMatchObject({ reference: 'carols:1', namespace: 'projC' });

    const second = await hangar(['login', t.url, '--token', t.tokens.bob, '--name', 'bobs'], { env });
    expect(second.code, second.stderr).toBe(0);
    const profiles = await hangar(['profile', 'ls', '-o', 'json'], { env });
    expect(JSON.parse(profiles.stdout)).toEqual([
      { current: false, name: 'local', url: t.url },
      { current: true, name: 'bobs', url: t.url },
    ]);
    expect((await hangar(['inspect', 'carols:1'], { env })).code).toBe(3);
    expect((await hangar(['profile', 'use', 'local'], { env })).code).toBe(0);
    expect((await hangar(['inspect', 'carols:1'], { env })).code).toBe(0);
    expect((await hangar(['profile', 'use', 'nobody'], { env })).code).toBe(3);
  });

  /** Plays the host agent: claims h-cli's next job (waiting for one), checks its kind, completes it. */
  async function completeNextJob(kind: string): Promise<void> {
    const token = t.hostTokens['h-cli'] ?? '';
    const deadline = Date.now() + 30_000;
    for (;;) {
      const claimed = await t.request('POST', '/v1/hosts/h-cli/jobs/claim', {
        token,
        headers: { accept: 'application/json' },
        body: { lease_seconds: 60 },
      });
      const text = await claimed.text();
      const job =
        claimed.status === 200 && text
          ? (JSON.parse(text) as { job?: { id: string; kind: string; lease_token: string } }).job
          : undefined;
      if (job) {
        expect(job.kind).toBe(kind);
        const done = await t.request('POST', `/v1/jobs/${job.id}/complete`, {
          token,
          headers: { accept: 'application/json' },
          body: { lease_token: job.lease_token, result: {} },
        });
        expect(done.status).toBe(204);
        return;
      }
      if (Date.now() > deadline) throw new Error(`no ${kind} job came`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** `hangar run` of the smallest guest:1 instance, waiting for it. */
  const runSmall = (name: string) => [
    'run',
    'guest:1',
    '--name',
    name,
    '--memory',
    '256M',
    '--disk',
    '1G',
    '--wait',
  ];

  it('runs an instance, waits for it, lists, stops and removes it', async () => {
    const registered = await t.request('PUT', '/v1/hosts/h-cli', {
      token: t.hostTokens['h-cli'] ?? '',
      headers: { accept: 'application/json' },
      body: {
        vcpus: 4,
        ram_mb: 4096,
        disk_gb: 50,
        architecture: 'x86_64',
        hypervisor_type: 'qemu',
        hypervisor_version: 9_000_000,
      },
    });
    expect(registered.status).toBe(200);
    const disk = imageFile('guest.raw', 4096);
    expect((await as('alice', ['push', disk.path, 'guest:1', '-q'])).code).toBe(0);

    const running = as('alice', [...runSmall('web'), '--timeout', '30s', '-o', 'json']);
    await completeNextJob('build');
    const ran = await running;
    expect(ran.code, ran.stderr).toBe(0);
    const instance = JSON.parse(ran.stdout) as { id: string; stage: string; ram_mb: number; disk_gb: number };
    expect(instance).toMatchObject({
      name: 'web',
      stage: 'Running',
      ram_mb: 256,
      disk_gb: 1,
      host_id: 'h-cli',
    });

    expect(await json('alice', ['ps'])).toEqual([
      expect.objectContaining({ id: instance.id, stage: 'Running' }),
    ]);
    const stopping = as('alice', ['stop', 'web', '--wait', '--timeout', '30s', '-o', 'json']);
    await completeNextJob('stop');
    const stopped = await stopping;
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout)).toEqual([
      expect.objectContaining({ stage: 'Shutoff', pending_action: null }),
    ]);
    // An action that does not fit the stage is a conflict.
    expect((await as('alice', ['stop', instance.id])).code).toBe(4);

    // Without --wait, rm only queues the destroy: the instance is listed until the host has done it.
    const queued = await json<{ pending_action: string }[]>('alice', ['rm', instance.id]);
    expect(queued).toEqual([expect.objectContaining({ pending_action: 'destroy' })]);
    await completeNextJob('destroy');
    expect(await json('alice', ['ps'])).toEqual([]);
    expect(await json('alice', ['ps', '-a'])).toEqual([
      expect.objectContaining({ id: instance.id, stage: 'Inexistent' }),
    ]);
    expect((await as('alice', ['rm', 'web'])).code).toBe(3);
    // A --wait that the host never answers ends in exit 5.
    const again = as('alice', [...runSmall('slow'), '--timeout', '2s']);
    expect((await again).code).toBe(5);
  });
});
