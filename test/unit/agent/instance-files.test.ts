import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentError } from '../../../agent/src/errors.ts';
import { run } from '../../../agent/src/exec.ts';
import type { CachedImage } from '../../../agent/src/image-cache.ts';
import { DEFAULT_USER_DATA, InstanceFiles, metaDataFor } from '../../../agent/src/instance-files.ts';

const GiB = 1024 ** 3;

describe('InstanceFiles', { timeout: 30_000 }, () => {
  let dir: string;
  let files: InstanceFiles;
  let base: CachedImage;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-files-'));
    files = new InstanceFiles(join(dir, 'instances'));
    await files.init();
    const path = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', path, String(64 * 1024 * 1024)]);
    base = { id: 'img-1', path, format: 'qcow2', size: 0, virtualSize: 64 * 1024 * 1024, sha512: '' };
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const record = (instanceId: string, imageId = 'img-1') => ({
    instance_id: instanceId,
    image_id: imageId,
    domain_name: `hangar-${instanceId}`,
    domain_uuid: '6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d',
    created_at: new Date().toISOString(),
  });

  it('creates a traversable instance dir with its record', async () => {
    // Act
    const paths = await files.prepare(record('i-1'));

    // Assess
    expect(((await stat(paths.dir)).mode & 0o777).toString(8)).toBe('755');
    expect(((await stat(files.root)).mode & 0o777).toString(8)).toBe('755');
    expect(await files.readRecord('i-1')).toMatchObject({ instance_id: 'i-1', image_id: 'img-1' });
  });

  it('refuses instance ids that could escape the instances dir', () => {
    expect(() => files.paths('../etc')).toThrow(AgentError);
    expect(() => files.paths('a/b')).toThrow(AgentError);
  });

  it('makes a qcow2 overlay on the cached base, grown to disk_gb', async () => {
    // Prepare
    await files.prepare(record('i-1'));

    // Act
    const overlay = await files.createOverlay('i-1', base, 2);

    // Assess
    const info = JSON.parse(
      (await run('qemu-img', ['info', '-U', '--output=json', overlay])).stdout,
    ) as Record<string, unknown>;
    expect(info).toMatchObject({
      format: 'qcow2',
      'virtual-size': 2 * GiB,
      'backing-filename': base.path,
      'backing-filename-format': 'qcow2',
    });
    expect(((await stat(overlay)).mode & 0o777).toString(8)).toBe('644');
  });

  it('keeps the image size when disk_gb is smaller (never shrinks the guest filesystem)', async () => {
    // Prepare
    await files.prepare(record('i-1'));

    // Act
    const overlay = await files.createOverlay('i-1', base, 0);

    // Assess
    const info = JSON.parse(
      (await run('qemu-img', ['info', '-U', '--output=json', overlay])).stdout,
    ) as Record<string, unknown>;
    expect(info['virtual-size']).toBe(64 * 1024 * 1024);
  });

  it('builds a NoCloud seed labelled cidata with meta-data and the default user-data', async () => {
    // Prepare
    await files.prepare(record('i-1'));

    // Act
    const seed = await files.createSeed('i-1', { hostname: 'web-1', userData: null });

    // Assess
    const volume = (await run('isoinfo', ['-d', '-i', seed])).stdout;
    expect(volume).toMatch(/Volume id: cidata/);
    const metaData = (await run('isoinfo', ['-i', seed, '-R', '-x', '/meta-data'])).stdout;
    const userData = (await run('isoinfo', ['-i', seed, '-R', '-x', '/user-data'])).stdout;
    expect(metaData).toBe('instance-id: "i-1"\nlocal-hostname: "web-1"\n');
    expect(userData).toBe(DEFAULT_USER_DATA);
  });

  it('quotes meta-data values so odd hostnames cannot become YAML syntax', () => {
    expect(metaDataFor('i-1', 'x\ninjected: true')).toBe(
      'instance-id: "i-1"\nlocal-hostname: "x\\ninjected: true"\n',
    );
  });

  it('reads the console tail and the output since an offset', async () => {
    // Prepare
    const paths = await files.prepare(record('i-1'));
    await writeFile(paths.consoleLog, 'first boot\nMARKER\nsecond boot\n');

    // Act
    const tail = await files.consoleTail('i-1', 12);
    const since = await files.consoleSince('i-1', 'first boot\nMARKER\n'.length);

    // Assess
    expect(tail).toBe('second boot\n');
    expect(since).toBe('second boot\n');
    expect(await files.consoleTail('i-missing')).toBe('');
  });

  it('lists instance dirs and the images they use, and removes a dir', async () => {
    // Prepare
    await files.prepare(record('i-1', 'img-1'));
    await files.prepare(record('i-2', 'img-2'));

    // Act
    await files.remove('i-2');

    // Assess
    expect(await files.list()).toEqual(['i-1']);
    expect(await files.imagesInUse()).toEqual(new Set(['img-1']));
    expect(await readFile(join(files.root, 'i-1', 'instance.json'), 'utf8')).toContain('"image_id": "img-1"');
  });
});
