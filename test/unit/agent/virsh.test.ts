/**
 * VirshHypervisor against libvirt's in-process test driver (test:///<fixture>): every virsh call loads the
 * fixture afresh, so each test sees the same four domains. The graceful-shutdown retry logic needs a guest
 * that ignores ACPI for a while: that part uses a fake virsh with its state in a file.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibvirtError } from '../../../agent/src/errors.ts';
import type { DomainSpec } from '../../../agent/src/hypervisor/domain-xml.ts';
import {
  classifyVirshError,
  mapState,
  parseLibvirtVersion,
  VirshHypervisor,
} from '../../../agent/src/hypervisor/virsh.ts';

const NODE_XML = `<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads><active>4</active><mhz>2000</mhz><model>x86_64</model></cpu>
  <memory>8388608</memory>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>hangar-run</name>
    <uuid>11111111-1111-4111-8111-111111111111</uuid>
    <metadata><hangar:instance xmlns:hangar='https://hangar.dev/xmlns/agent/1' id='run' host='host-a'/></metadata>
    <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <test:runstate>1</test:runstate>
  </domain>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>hangar-off</name>
    <uuid>22222222-2222-4222-8222-222222222222</uuid>
    <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
  </domain>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>hangar-saved</name>
    <uuid>33333333-3333-4333-8333-333333333333</uuid>
    <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <test:runstate>5</test:runstate>
    <test:hasmanagedsave>yes</test:hasmanagedsave>
  </domain>
  <domain type='test'>
    <name>other-vm</name>
    <memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>
  </domain>
</node>
`;

const spec = (dir: string): DomainSpec => ({
  name: 'hangar-new',
  uuid: '44444444-4444-4444-8444-444444444444',
  title: 'new <one>',
  type: 'qemu',
  vcpus: 1,
  memoryMib: 128,
  disk: { path: join(dir, 'overlay.qcow2') },
  seed: { path: join(dir, 'seed.img'), device: 'disk' },
  consoleLogPath: join(dir, 'console.log'),
  network: 'user',
  metadata: { instanceId: 'new', hostId: 'host-a' },
});

// These spawn real processes (virsh, qemu-img): generous per-test limits for a loaded 2-core CI machine.
describe('VirshHypervisor (libvirt test driver)', { timeout: 30_000 }, () => {
  let dir: string;
  let hv: VirshHypervisor;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-virsh-'));
    await writeFile(join(dir, 'node.xml'), NODE_XML);
    hv = new VirshHypervisor({ uri: `test://${join(dir, 'node.xml')}`, timeoutMs: 20_000 });
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads host capabilities and the libvirt version as one number', async () => {
    // Act
    const caps = await hv.capabilities();

    // Assess
    expect(caps.vcpus).toBe(4);
    expect(caps.ramMb).toBe(8192);
    expect(caps.architecture).toBe('x86_64');
    expect(caps.libvirtVersion).toBeGreaterThanOrEqual(1_000_000);
  });

  it('reports state, UUID and managed save per domain, and null for a missing one', async () => {
    // Act
    const running = await hv.info('hangar-run');
    const off = await hv.info('hangar-off');
    const saved = await hv.info('hangar-saved');
    const missing = await hv.info('hangar-nope');

    // Assess
    expect(running).toEqual({
      name: 'hangar-run',
      uuid: '11111111-1111-4111-8111-111111111111',
      state: 'running',
      managedSave: false,
    });
    expect(off?.state).toBe('shutoff');
    expect(saved).toMatchObject({ state: 'saved', managedSave: true });
    expect(missing).toBeNull();
  });

  it('lists only domains with the prefix, with managed saves shown as saved', async () => {
    // Act
    const domains = await hv.list('hangar-');

    // Assess
    expect(domains.map((d) => [d.name, d.state]).sort()).toEqual([
      ['hangar-off', 'shutoff'],
      ['hangar-run', 'running'],
      ['hangar-saved', 'saved'],
    ]);
  });

  it('defines a domain from the generated XML (libvirt parses and accepts it)', async () => {
    // Act
    const uuid = await hv.define(spec(dir));

    // Assess
    expect(uuid).toBe('44444444-4444-4444-8444-444444444444');
  });

  it('rejects a redefinition of an existing name under another UUID as a uuid conflict', async () => {
    // Act
    const error = await hv
      .define({ ...spec(dir), name: 'hangar-run', uuid: '55555555-5555-4555-8555-555555555555' })
      .catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(LibvirtError);
    expect((error as LibvirtError).code).toBe('uuid_conflict');
  });

  it('maps start outcomes: started, restored from a managed save, already running, not found', async () => {
    await expect(hv.start('hangar-off')).resolves.toBe('started');
    await expect(hv.start('hangar-saved')).resolves.toBe('restored');
    await expect(hv.start('hangar-run')).resolves.toBe('already_running');
    await expect(hv.start('hangar-nope')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('maps destroy outcomes: destroyed, already off, not found', async () => {
    await expect(hv.destroy('hangar-run')).resolves.toBe('destroyed');
    await expect(hv.destroy('hangar-off')).resolves.toBe('already_off');
    await expect(hv.destroy('hangar-nope')).resolves.toBe('not_found');
  });

  it('treats a managed save of an already saved domain as done (without calling managedsave)', async () => {
    await expect(hv.managedSave('hangar-saved')).resolves.toBe('already_saved');
  });

  it('undefines (falling back when the driver has no NVRAM support) and reports a missing domain', async () => {
    await expect(hv.undefine('hangar-saved')).resolves.toBe('undefined');
    await expect(hv.undefine('hangar-nope')).resolves.toBe('not_found');
  });

  it('reads the owner from the Hangar metadata, null for foreign domains', async () => {
    await expect(hv.owner('hangar-run')).resolves.toEqual({ instanceId: 'run', hostId: 'host-a' });
    await expect(hv.owner('hangar-off')).resolves.toBeNull();
    await expect(hv.owner('hangar-nope')).resolves.toBeNull();
  });

  it('treats a shutdown of a shut-off domain as already off', async () => {
    await expect(hv.shutdown('hangar-off', { deadlineMs: 5_000, retryIntervalMs: 1_000 })).resolves.toBe(
      'already_off',
    );
  });
});

/**
 * A fake virsh: one domain whose state lives in a file. It powers off after N ACPI requests (0 = never), and
 * with a `hang` file its managedsave saves and then never returns.
 */
const FAKE_VIRSH = `#!/bin/sh
dir=$(dirname "$0")
shift 3   # -q -c URI
echo "$*" >> "$dir/calls"
state=$(cat "$dir/state")
case "$1" in
  dominfo)
    ms=no; s='shut off'
    [ "$state" = running ] && s=running
    [ "$state" = saved ] && ms=yes
    printf 'Name:           %s\\nUUID:           66666666-6666-4666-8666-666666666666\\nState:          %s\\nManaged save:   %s\\n' "$2" "$s" "$ms" ;;
  shutdown)
    n=$(($(cat "$dir/acpi") + 1)); echo $n > "$dir/acpi"
    need=$(cat "$dir/needed")
    if [ "$need" != 0 ] && [ "$n" -ge "$need" ]; then echo off > "$dir/state"; fi ;;
  destroy)
    if [ "$state" = running ]; then echo off > "$dir/state"; else echo "error: Requested operation is not valid: domain is not running" >&2; exit 1; fi ;;
  managedsave)
    echo saved > "$dir/state"
    # like libvirt 9.0's virsh now and then: the save is done but virsh never returns
    [ -f "$dir/hang" ] && exec sleep 60
    : ;;
  *) echo "error: unexpected $1" >&2; exit 1 ;;
esac
`;

describe('VirshHypervisor.shutdown (fake virsh)', { timeout: 30_000 }, () => {
  let dir: string;
  const fake = async (acpiNeeded: number) => {
    await writeFile(join(dir, 'state'), 'running');
    await writeFile(join(dir, 'acpi'), '0');
    await writeFile(join(dir, 'needed'), String(acpiNeeded));
    await writeFile(join(dir, 'calls'), '');
    return new VirshHypervisor({ uri: 'fake:///', virsh: join(dir, 'virsh') });
  };
  const calls = async (verb: string) =>
    (await readFile(join(dir, 'calls'), 'utf8')).split('\n').filter((line) => line.startsWith(verb)).length;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-fake-virsh-'));
    await writeFile(join(dir, 'virsh'), FAKE_VIRSH);
    await chmod(join(dir, 'virsh'), 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resends the ACPI request until the guest powers off (one sent during boot is lost)', async () => {
    // Prepare
    const hv = await fake(3);

    // Act
    const outcome = await hv.shutdown('hangar-x', { deadlineMs: 10_000, retryIntervalMs: 200, pollMs: 50 });

    // Assess
    expect(outcome).toBe('shut_down');
    expect(await calls('shutdown')).toBe(3);
    expect(await calls('destroy')).toBe(0);
  });

  it('forces the domain off once the deadline passes', async () => {
    // Prepare
    const hv = await fake(0);

    // Act
    const outcome = await hv.shutdown('hangar-x', { deadlineMs: 700, retryIntervalMs: 200, pollMs: 50 });

    // Assess
    expect(outcome).toBe('destroyed');
    expect(await calls('shutdown')).toBeGreaterThanOrEqual(3);
    expect(await calls('destroy')).toBe(1);
  });
});

describe('VirshHypervisor.managedSave (fake virsh)', { timeout: 30_000 }, () => {
  let dir: string;
  const fake = async (hang: boolean) => {
    await rm(join(dir, 'hang'), { force: true });
    if (hang) await writeFile(join(dir, 'hang'), '');
    await writeFile(join(dir, 'state'), 'running');
    await writeFile(join(dir, 'acpi'), '0');
    await writeFile(join(dir, 'needed'), '0');
    await writeFile(join(dir, 'calls'), '');
    return new VirshHypervisor({
      uri: 'fake:///',
      virsh: join(dir, 'virsh'),
      savePollMs: 100,
      saveGraceMs: 300,
    });
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-fake-virsh-'));
    await writeFile(join(dir, 'virsh'), FAKE_VIRSH);
    await chmod(join(dir, 'virsh'), 0o755);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('saves a running domain', async () => {
    // Prepare
    const hv = await fake(false);

    // Act + Assess
    await expect(hv.managedSave('hangar-x')).resolves.toBe('saved');
    expect(await readFile(join(dir, 'state'), 'utf8')).toBe('saved\n');
  });

  it('stops waiting for a virsh that hangs after the save finished, once libvirt shows it saved', async () => {
    // Prepare
    const hv = await fake(true);
    const started = Date.now();

    // Act
    const outcome = await hv.managedSave('hangar-x');

    // Assess
    expect(outcome).toBe('saved');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('virsh output parsing', () => {
  it('classifies the libvirt failures the agent acts on', () => {
    expect(classifyVirshError("error: failed to get domain 'x'")).toBe('not_found');
    expect(classifyVirshError("error: Domain not found: no domain with matching name 'x'")).toBe('not_found');
    expect(classifyVirshError('error: Requested operation is not valid: domain is not running')).toBe(
      'not_running',
    );
    expect(classifyVirshError('error: Domain is already active')).toBe('already_running');
    expect(classifyVirshError('error: Timed out during operation: cannot acquire state change lock')).toBe(
      'busy',
    );
    expect(classifyVirshError("error: operation failed: domain 'x' already exists with uuid 1")).toBe(
      'uuid_conflict',
    );
    expect(classifyVirshError('error: something else')).toBe('other');
  });

  it('maps libvirt states, shut off + managed save = saved', () => {
    expect(mapState('shut off', true)).toBe('saved');
    expect(mapState('shut off', false)).toBe('shutoff');
    expect(mapState('in shutdown', false)).toBe('shutting_down');
    expect(mapState('idle', false)).toBe('running');
    expect(mapState('crashed', false)).toBe('crashed');
    expect(mapState('weird', false)).toBe('other');
  });

  it('encodes versions like libvirt does', () => {
    expect(parseLibvirtVersion('Running against daemon: 9.0.0')).toBe(9_000_000);
    expect(parseLibvirtVersion('Using library: libvirt 10.2.13\n')).toBe(10_002_013);
    expect(() => parseLibvirtVersion('nonsense')).toThrow(LibvirtError);
  });
});
