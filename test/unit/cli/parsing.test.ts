/** The CLI's own small parsers: sizes, durations, byte counts, NAME:TAG and HTTP status → exit code. */
import { describe, expect, it } from 'vitest';
import { splitReference } from '../../../cli/commands/transfer.ts';
import { type CliError, ExitCode, exitCodeForStatus } from '../../../cli/errors.ts';
import { bytes, parseDuration, parseSize } from '../../../cli/format.ts';

describe('hangar parsing', () => {
  it('reads sizes in binary multiples, as curl does', () => {
    expect(parseSize('1024')).toBe(1024);
    expect(parseSize('512k')).toBe(512 * 1024);
    expect(parseSize('10M')).toBe(10 * 1024 ** 2);
    expect(parseSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
    for (const bad of ['', 'M', '-1M', 'ten', '1X']) expect(parseSize(bad), bad).toBeUndefined();
  });

  it('reads durations, seconds by default', () => {
    expect(parseDuration('30')).toBe(30_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('soon')).toBeUndefined();
  });

  it('prints byte counts people read', () => {
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1023)).toBe('1023 B');
    expect(bytes(12 * 1024 * 1024)).toBe('12.0 MiB');
    expect(bytes(null)).toBe('-');
  });

  it('splits NAME:TAG, a bare name being name:latest, and refuses an empty side as usage', () => {
    expect(splitReference('fedora:40')).toEqual({ name: 'fedora', tag: '40', reference: 'fedora:40' });
    expect(splitReference('fedora').reference).toBe('fedora:latest');
    for (const bad of [':40', 'fedora:', ''])
      expect(() => splitReference(bad), bad).toThrow(
        expect.objectContaining({ exitCode: ExitCode.usage }) as unknown as CliError,
      );
  });

  it('maps statuses to the documented exit codes', () => {
    expect(exitCodeForStatus(404)).toBe(3);
    expect(exitCodeForStatus(409)).toBe(4);
    expect(exitCodeForStatus(504)).toBe(5);
    expect(exitCodeForStatus(403)).toBe(1);
    expect(exitCodeForStatus(500)).toBe(1);
  });
});
