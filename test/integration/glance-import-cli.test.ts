/**
 * The real `glance` CLI (python3-glanceclient 4.1) against the running service:
 * image-create-via-import with glance-direct and with web-download (a loopback server,
 * allow-listed for this backend), then the image must become active with the right checksum.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { parseListTable, parsePropertyTable, runCli } from '../helpers/cli.ts';
import {
  type LoopbackServer,
  loopbackServer,
  md5,
  patternBytes,
  sha512,
  waitForImport,
} from '../helpers/imports.ts';

const MiB = 1024 * 1024;
const bytes = patternBytes(10 * MiB + 17, 37);

let t: TestBackend;
let server: LoopbackServer;
let scratch: string;

/** Each run gets a fresh HOME (runCli): glanceclient caches the server's schemas there. */
function glance(token: string, ...args: string[]) {
  return runCli('glance', ['--os-image-url', t.url, '--os-auth-token', token, ...args], {
    timeoutMs: 120_000,
  });
}

beforeAll(async () => {
  t = await startTestBackend({ env: { HANGAR_WEB_DOWNLOAD_ALLOW: '127.0.0.1' } });
  scratch = mkdtempSync(join(tmpdir(), 'hangar-glance-import-'));
  writeFileSync(join(scratch, 'cli.img'), bytes);
  server = await loopbackServer((req, res) => {
    if (req.url === '/x.img') res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
    else res.writeHead(404).end();
  });
});

afterAll(async () => {
  await server?.close();
  await t?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('glance image-create-via-import', () => {
  it('imports with glance-direct (--file)', async () => {
    // Act
    const result = await glance(
      t.tokens.alice,
      'image-create-via-import',
      '--name',
      'cli-gd',
      '--disk-format',
      'raw',
      '--container-format',
      'bare',
      '--import-method',
      'glance-direct',
      '--file',
      join(scratch, 'cli.img'),
    );
    // Assess
    expect(result.code, result.stderr).toBe(0);
    const shown = parsePropertyTable(result.stdout);
    expect(shown.name).toBe('cli-gd');
    expect(shown.id).toMatch(/^[0-9a-f-]{36}$/);
    const done = await waitForImport(t, shown.id as string);
    expect(done).toMatchObject({
      status: 'active',
      size: bytes.length,
      checksum: md5(bytes),
      os_hash_value: sha512(bytes),
    });
  });

  it('imports with web-download (--uri)', async () => {
    const result = await glance(
      t.tokens.alice,
      'image-create-via-import',
      '--name',
      'cli-wd',
      '--disk-format',
      'raw',
      '--container-format',
      'bare',
      '--import-method',
      'web-download',
      '--uri',
      `${server.url}/x.img`,
    );
    expect(result.code, result.stderr).toBe(0);
    const shown = parsePropertyTable(result.stdout);
    expect(shown.name).toBe('cli-wd');
    const done = await waitForImport(t, shown.id as string);
    expect(done).toMatchObject({ status: 'active', size: bytes.length, checksum: md5(bytes) });

    // The CLI downloads what it imported, and verifies the checksum itself.
    const out = join(scratch, 'downloaded.img');
    const download = await glance(t.tokens.alice, 'image-download', '--file', out, shown.id as string);
    expect(download.code, download.stderr).toBe(0);
  });

  it('shows the import methods and, for an admin, the tasks', async () => {
    const info = await glance(t.tokens.alice, 'import-info');
    expect(info.code, info.stderr).toBe(0);
    // The table wraps long values: parsePropertyTable joins the pieces again.
    const methods = JSON.parse(parsePropertyTable(info.stdout)['import-methods'] ?? '{}') as {
      value?: string[];
    };
    expect(methods.value).toEqual(['glance-direct', 'web-download']);

    const tasks = await glance(t.tokens.admin, 'task-list');
    expect(tasks.code, tasks.stderr).toBe(0);
    const rows = parseListTable(tasks.stdout);
    expect(
      rows.filter((row) => row[1] === 'api_image_import' && row[2] === 'success').length,
    ).toBeGreaterThanOrEqual(2);

    const denied = await glance(t.tokens.alice, 'task-list');
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('403');
  });
});
