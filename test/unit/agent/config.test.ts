import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig } from '../../../agent/src/config.ts';
import { ConfigError, ExecError } from '../../../agent/src/errors.ts';
import { run } from '../../../agent/src/exec.ts';

const REPO = resolve(import.meta.dirname, '../../..');
const minimal = { service_url: 'http://127.0.0.1:8080/', host_id: 'host-1', token: 't', data_dir: 'data' };

describe('agent config', { timeout: 30_000 }, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-agent-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fills in defaults and resolves data_dir against the config file directory', () => {
    // Act
    const config = parseConfig(minimal, '/etc/hangar');

    // Assess
    expect(config).toMatchObject({
      service_url: 'http://127.0.0.1:8080',
      data_dir: '/etc/hangar/data',
      libvirt_uri: 'qemu:///system',
      domain_type: 'auto',
      lease_seconds: 60,
      verify_cached_images: 'stamp',
      capacity: {},
      prefetch: [],
      prefetch_interval_ms: 600_000,
    });
  });

  it('accepts prefetch entries that are image ids or name:tag references', () => {
    // Act
    const config = parseConfig(
      {
        ...minimal,
        prefetch: ['fedora:40', 'fedora', 'my.os_x-y:v1.0-rc_2', '6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d'],
        prefetch_interval_ms: 1_000,
      },
      '/',
    );

    // Assess
    expect(config.prefetch).toHaveLength(4);
    expect(config.prefetch_interval_ms).toBe(1_000);
  });

  it('rejects a prefetch entry that breaks the name or tag rules, naming it, and too short an interval', () => {
    for (const bad of [
      'Fedora:40',
      'fedora:',
      ':40',
      'fedora:.hidden',
      'a..b',
      'a/b:1',
      '',
      'x'.repeat(129),
    ]) {
      expect(() => parseConfig({ ...minimal, prefetch: ['fedora:40', bad] }, '/'), bad).toThrow(ConfigError);
    }
    expect(() => parseConfig({ ...minimal, prefetch: ['Fedora:40'] }, '/')).toThrow(
      /"Fedora:40" is neither an image id \(UUID\) nor a name:tag reference/,
    );
    expect(() => parseConfig({ ...minimal, prefetch: 'fedora:40' }, '/')).toThrow(/prefetch/);
    expect(() => parseConfig({ ...minimal, prefetch_interval_ms: 999 }, '/')).toThrow(/prefetch_interval_ms/);
  });

  it('rejects unknown keys, unsafe host ids and invalid boot marker regexes', () => {
    expect(() => parseConfig({ ...minimal, surprise: 1 }, '/')).toThrow(ConfigError);
    expect(() => parseConfig({ ...minimal, host_id: '../etc' }, '/')).toThrow(/host_id/);
    expect(() => parseConfig({ ...minimal, boot_marker: '(' }, '/')).toThrow(/regular expression/);
    expect(() => parseConfig({ ...minimal, domain_type: 'xen' }, '/')).toThrow(ConfigError);
  });

  it('loads a JSON file and reports unreadable or malformed ones as ConfigError', async () => {
    // Prepare
    const good = join(dir, 'agent.json');
    const bad = join(dir, 'bad.json');
    await writeFile(good, JSON.stringify({ ...minimal, libvirt_uri: 'qemu:///session' }));
    await writeFile(bad, '{ not json');

    // Act
    const config = await loadConfig(good);

    // Assess
    expect(config.libvirt_uri).toBe('qemu:///session');
    expect(config.data_dir).toBe(join(dir, 'data'));
    await expect(loadConfig(bad)).rejects.toThrow(/not valid JSON/);
    await expect(loadConfig(join(dir, 'missing.json'))).rejects.toThrow(ConfigError);
  });

  it('the CLI exits 2 with a message on a missing or invalid config', async () => {
    // Prepare
    const bad = join(dir, 'invalid.json');
    await writeFile(bad, JSON.stringify({ ...minimal, lease_seconds: 1 }));
    const tsx = join(REPO, 'node_modules/.bin/tsx');
    const main = join(REPO, 'agent/src/main.ts');

    // Act
    const noArgs = await run(tsx, [main], { timeoutMs: 30_000 }).catch((e: unknown) => e);
    const invalid = await run(tsx, [main, '--config', bad], { timeoutMs: 30_000 }).catch((e: unknown) => e);

    // Assess
    expect(noArgs).toBeInstanceOf(ExecError);
    expect((noArgs as ExecError).details).toMatchObject({ exitCode: 2 });
    expect((noArgs as ExecError).details.stderr).toContain('usage');
    expect(invalid).toBeInstanceOf(ExecError);
    expect((invalid as ExecError).details).toMatchObject({ exitCode: 2 });
    expect((invalid as ExecError).details.stderr).toContain('lease_seconds');
  });
});
