/**
 * Compatibility: the real `glance` CLI (Debian's python3-glanceclient) drives the running service
 * through a whole image life cycle, as a user would with `--os-image-url` and a token.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { freshHome, parseListTable, parsePropertyTable, runCli } from '../helpers/cli.ts';

describe('glance CLI against Hangar', () => {
  let backend: TestBackend;
  let work: string;
  let home: string;
  const data = randomBytes(9 * 1024 * 1024 + 123); // more than one 8 MiB block
  const md5 = createHash('md5').update(data).digest('hex');
  const sha512 = createHash('sha512').update(data).digest('hex');
  let imageId = '';

  const glance = (token: string, ...args: string[]) =>
    runCli('glance', ['--os-image-url', backend.url, '--os-auth-token', token, ...args], { home });

  beforeAll(async () => {
    backend = await startTestBackend();
    work = mkdtempSync(join(tmpdir(), 'hangar-glance-cli-'));
    // One HOME for the whole file, so the schema cache glanceclient keeps is exercised too.
    home = freshHome();
    writeFileSync(join(work, 'disk.raw'), data);
  });

  afterAll(async () => {
    await backend?.stop();
    rmSync(work, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });

  it('image-create --file uploads the data and shows checksums', async () => {
    const result = await glance(
      backend.tokens.alice,
      'image-create',
      '--name',
      'cli-1',
      '--disk-format',
      'raw',
      '--container-format',
      'bare',
      '--property',
      'foo=bar',
      '--file',
      join(work, 'disk.raw'),
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const shown = parsePropertyTable(result.stdout);
    expect(shown.status).toBe('active');
    expect(shown.checksum).toBe(md5);
    expect(shown.os_hash_algo).toBe('sha512');
    expect(shown.os_hash_value).toBe(sha512);
    expect(shown.size).toBe(String(data.length));
    expect(shown.foo).toBe('bar');
    expect(shown.owner).toBe('projA');
    imageId = shown.id ?? '';
    expect(imageId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('image-show returns what was stored', async () => {
    const result = await glance(backend.tokens.alice, 'image-show', imageId);
    expect(result.code).toBe(0);
    const shown = parsePropertyTable(result.stdout);
    expect(shown).toMatchObject({
      id: imageId,
      name: 'cli-1',
      disk_format: 'raw',
      container_format: 'bare',
      visibility: 'shared',
    });
  });

  it('image-list filters and sorts, following pages', async () => {
    for (const [name, format] of [
      ['lst-c', 'qcow2'],
      ['lst-a', 'raw'],
      ['lst-b', 'qcow2'],
    ] as const) {
      const made = await glance(
        backend.tokens.alice,
        'image-create',
        '--name',
        name,
        '--disk-format',
        format,
        '--container-format',
        'bare',
        '--tags',
        'lst',
      );
      expect(made.code).toBe(0);
    }
    const byName = await glance(
      backend.tokens.alice,
      'image-list',
      '--sort-key',
      'name',
      '--sort-dir',
      'asc',
      '--page-size',
      '2',
    );
    expect(byName.code).toBe(0);
    expect(parseListTable(byName.stdout).map((row) => row[1])).toEqual(['cli-1', 'lst-a', 'lst-b', 'lst-c']);

    const newSyntax = await glance(
      backend.tokens.alice,
      'image-list',
      '--sort',
      'disk_format:desc,name:asc',
      '--tag',
      'lst',
    );
    expect(newSyntax.code).toBe(0);
    expect(parseListTable(newSyntax.stdout).map((row) => row[1])).toEqual(['lst-a', 'lst-b', 'lst-c']);

    const filtered = await glance(
      backend.tokens.alice,
      'image-list',
      '--property-filter',
      'disk_format=qcow2',
      '--tag',
      'lst',
    );
    expect(filtered.code).toBe(0);
    expect(
      parseListTable(filtered.stdout)
        .map((row) => row[1])
        .sort(),
    ).toEqual(['lst-b', 'lst-c']);

    // Another project sees none of them (they are `shared` with nobody).
    const other = await glance(backend.tokens.bob, 'image-list');
    expect(other.code).toBe(0);
    expect(parseListTable(other.stdout)).toEqual([]);
  });

  it('image-update renames and edits properties', async () => {
    const result = await glance(
      backend.tokens.alice,
      'image-update',
      imageId,
      '--name',
      'cli-1-renamed',
      '--property',
      'baz=qux',
      '--remove-property',
      'foo',
    );
    expect(result.code).toBe(0);
    const shown = parsePropertyTable(result.stdout);
    expect(shown.name).toBe('cli-1-renamed');
    expect(shown.baz).toBe('qux');
    expect(shown.foo).toBeUndefined();
  });

  it('image-tag-update and image-tag-delete', async () => {
    expect((await glance(backend.tokens.alice, 'image-tag-update', imageId, 'mytag')).code).toBe(0);
    let shown = parsePropertyTable((await glance(backend.tokens.alice, 'image-show', imageId)).stdout);
    expect(shown.tags).toContain('mytag');
    expect((await glance(backend.tokens.alice, 'image-tag-delete', imageId, 'mytag')).code).toBe(0);
    shown = parsePropertyTable((await glance(backend.tokens.alice, 'image-show', imageId)).stdout);
    expect(shown.tags).not.toContain('mytag');
  });

  it('image-download returns the same bytes (the client verifies the checksum too)', async () => {
    const out = join(work, 'download.raw');
    const result = await glance(backend.tokens.alice, 'image-download', imageId, '--file', out);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const downloaded = readFileSync(out);
    expect(createHash('sha512').update(downloaded).digest('hex')).toBe(sha512);
  });

  it('image-deactivate blocks downloads for the owner; image-reactivate restores them', async () => {
    expect((await glance(backend.tokens.alice, 'image-deactivate', imageId)).code).toBe(0);
    const shown = parsePropertyTable((await glance(backend.tokens.alice, 'image-show', imageId)).stdout);
    expect(shown.status).toBe('deactivated');
    const refused = await glance(
      backend.tokens.alice,
      'image-download',
      imageId,
      '--file',
      join(work, 'refused.raw'),
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/403|forbidden/i);
    expect((await glance(backend.tokens.alice, 'image-reactivate', imageId)).code).toBe(0);
    const again = parsePropertyTable((await glance(backend.tokens.alice, 'image-show', imageId)).stdout);
    expect(again.status).toBe('active');
  });

  it('image-delete refuses a protected image, then deletes it once unprotected', async () => {
    expect((await glance(backend.tokens.alice, 'image-update', imageId, '--protected', 'True')).code).toBe(0);
    const refused = await glance(backend.tokens.alice, 'image-delete', imageId);
    expect(refused.code).not.toBe(0);
    expect((await glance(backend.tokens.alice, 'image-show', imageId)).code).toBe(0);

    expect((await glance(backend.tokens.alice, 'image-update', imageId, '--protected', 'False')).code).toBe(
      0,
    );
    const deleted = await glance(backend.tokens.alice, 'image-delete', imageId);
    expect(deleted.code).toBe(0);
    const gone = await glance(backend.tokens.alice, 'image-show', imageId);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/No image with a name or ID|404|not found/i);
  });
});
