import { describe, expect, it } from 'vitest';
import {
  probeAccelerator,
  probeBootSector,
  resolveDomainType,
} from '../../../agent/src/hypervisor/kvm-probe.ts';
import { silentLogger } from '../../../agent/src/log.ts';

describe('KVM probe', { timeout: 30_000 }, () => {
  it('builds a valid 512-byte boot sector', () => {
    // Act
    const sector = probeBootSector();

    // Assess
    expect(sector.length).toBe(512);
    expect(sector.subarray(510)).toEqual(Buffer.from([0x55, 0xaa]));
    expect(sector[0]).toBe(0xfa); // cli
  });

  it('runs the probe guest to completion under TCG (proves the probe itself works)', async () => {
    // Act
    const result = await probeAccelerator('tcg', { qemuBinary: 'qemu-system-x86_64', timeoutMs: 10_000 });

    // Assess
    expect(result).toMatchObject({ usable: true });
  });

  it('reports a qemu that cannot start as unusable rather than throwing', async () => {
    // Act
    const result = await probeAccelerator('tcg', { qemuBinary: '/nonexistent/qemu', timeoutMs: 1_000 });

    // Assess
    expect(result.usable).toBe(false);
  });

  it('does not probe when the domain type is given', async () => {
    await expect(
      resolveDomainType('qemu', { qemuBinary: '/nonexistent/qemu', timeoutMs: 1, log: silentLogger }),
    ).resolves.toBe('qemu');
    await expect(
      resolveDomainType('kvm', { qemuBinary: '/nonexistent/qemu', timeoutMs: 1, log: silentLogger }),
    ).resolves.toBe('kvm');
  });
});
