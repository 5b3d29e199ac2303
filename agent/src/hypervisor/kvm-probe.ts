/**
 * Which domain type to use. 'auto' runs a tiny probe guest under KVM with a short timeout and falls back
 * to TCG ('qemu'). Just opening /dev/kvm is not enough: on software-nested backends (kvm_pvm) /dev/kvm
 * exists and real-mode code runs, but the first protected-mode iret fails with "KVM internal error ...
 * emulation failure" and qemu hangs (measured: vm-probe README; the syslinux boot of the test guest dies
 * exactly there). The probe does that iret.
 */
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExecError } from '../errors.ts';
import { run } from '../exec.ts';
import type { Logger } from '../log.ts';
import type { DomainType } from './domain-xml.ts';

/**
 * A 512-byte boot sector, assembled from (GNU as, .code16, linked at 0x7c00):
 *   cli; zero ds/ss; sp=0x7c00; lgdt gdt_desc; cr0.PE=1; ljmp 0x08:pm
 *   pm (.code32): load 0x10 into ds/es/ss; esp=0x7c00; pushf; push 0x08; push after; iret
 *   after: mov al,0x21; out 0xf4,al   (isa-debug-exit: qemu exits with status (0x21<<1)|1 = 67)
 *   hlt loop; GDT: null, flat code32, flat data32; gdt_desc: .word 23, .long gdt; 0x55aa signature.
 */
const PROBE_CODE_HEX =
  'fa31c08ed88ed0bc007c660f0116607c0f20c06683c8010f22c066ea227c0000080066b810008ed88ec08ed0bc007c00009c6a08683a7c0000cfb021e6f4f4ebfd8db426000000000000000000000000ffff0000009acf00ffff00000092cf001700487c0000';
const PROBE_EXIT_CODE = 67;

export function probeBootSector(): Buffer {
  const sector = Buffer.alloc(512);
  Buffer.from(PROBE_CODE_HEX, 'hex').copy(sector);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

export interface ProbeResult {
  usable: boolean;
  reason: string;
  elapsedMs: number;
}

/** Run the probe boot sector under the given accelerator; usable = it reached the debug-exit port in time. */
export async function probeAccelerator(
  accel: 'kvm' | 'tcg',
  options: { qemuBinary: string; timeoutMs: number; signal?: AbortSignal },
): Promise<ProbeResult> {
  const started = Date.now();
  const elapsed = () => Date.now() - started;
  if (accel === 'kvm') {
    try {
      await access('/dev/kvm', constants.R_OK | constants.W_OK);
    } catch {
      return { usable: false, reason: '/dev/kvm missing or not accessible', elapsedMs: elapsed() };
    }
  }
  const dir = await mkdtemp(join(tmpdir(), 'hangar-kvm-probe-'));
  try {
    const image = join(dir, 'probe.img');
    await writeFile(image, probeBootSector());
    // prettier-ignore
    const args = [
      '-accel',
      accel,
      '-M',
      'pc',
      '-m',
      '16',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-device',
      'isa-debug-exit,iobase=0xf4,iosize=0x04',
      '-drive',
      `file=${image},format=raw,if=ide`,
    ];
    try {
      await run(options.qemuBinary, args, {
        timeoutMs: options.timeoutMs,
        signal: options.signal,
        okExitCodes: [PROBE_EXIT_CODE],
      });
      return { usable: true, reason: 'probe guest ran to completion', elapsedMs: elapsed() };
    } catch (error) {
      if (!(error instanceof ExecError) || error.details.reason === 'aborted') throw error;
      const why =
        error.details.reason === 'timeout'
          ? `probe guest hung (no exit within ${options.timeoutMs} ms)`
          : `probe failed: ${error.details.stderr.trim().split('\n')[0] ?? error.message}`;
      return { usable: false, reason: why, elapsedMs: elapsed() };
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function resolveDomainType(
  requested: 'auto' | DomainType,
  options: { qemuBinary: string; timeoutMs: number; log: Logger; signal?: AbortSignal },
): Promise<DomainType> {
  if (requested !== 'auto') return requested;
  const probe = await probeAccelerator('kvm', options);
  options.log.info('kvm probe', { usable: probe.usable, reason: probe.reason, elapsed_ms: probe.elapsedMs });
  return probe.usable ? 'kvm' : 'qemu';
}
