/** Shared builders for the core unit tests. */

import type { ImageRecord } from '#core/images/image';
import type { HostRecord } from '#core/instances/records';
import { type ErrorKind, HangarError } from '#core/kernel/errors';
import { makePrincipal, type Principal } from '#core/kernel/principal';

export const NOW = new Date('2026-11-22T02:11:29.678Z');
export const LATER = new Date('2026-11-22T03:00:00.123Z');

export const alice: Principal = makePrincipal('projA', 'alice', ['member', 'reader']);
export const bob: Principal = makePrincipal('projB', 'bob', ['member', 'reader']);
export const admin: Principal = makePrincipal('admin-project', 'root', ['admin', 'member']);

export const QUOTAS = { properties: 128, tags: 128 };

/** A queued image owned by projA, with overrides. */
export function makeImage(overrides: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id: 'dec8c320-a25d-4809-a4d9-96f9d61a425b',
    name: 'probe-1',
    status: 'queued',
    visibility: 'private',
    protected: false,
    os_hidden: false,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    owner: 'projA',
    size: null,
    virtual_size: null,
    min_ram: 128,
    min_disk: 1,
    container_format: 'bare',
    disk_format: 'raw',
    created_at: '2026-11-22T02:11:29Z',
    updated_at: '2026-11-22T02:11:29Z',
    tags: ['t1', 't2'],
    properties: { custom_prop: 'v1', os_distro: 'debian' },
    version: 3,
    blob_key: null,
    ...overrides,
  };
}

/** An active image with data. */
export function makeActiveImage(overrides: Partial<ImageRecord> = {}): ImageRecord {
  return makeImage({
    status: 'active',
    size: 1048583,
    virtual_size: 1048583,
    checksum: 'f9a574bae383b2c1626186c937d4b00d',
    os_hash_algo: 'sha512',
    os_hash_value: 'ab'.repeat(64),
    blob_key: 'images/dec8c320-a25d-4809-a4d9-96f9d61a425b',
    ...overrides,
  });
}

/** A registered qemu host with nothing placed on it, heard from half a minute before NOW. */
export function makeHost(overrides: Partial<HostRecord> = {}): HostRecord {
  return {
    id: 'h1',
    vcpus: 8,
    ram_mb: 16384,
    disk_gb: 100,
    architecture: 'x86_64',
    hypervisor_type: 'qemu',
    hypervisor_version: 9_000_000,
    used_vcpus: 0,
    used_ram_mb: 0,
    used_disk_gb: 0,
    registered_at: '2026-11-22T02:00:00.000Z',
    updated_at: '2026-11-22T02:00:00.000Z',
    heartbeat_at: '2026-11-22T02:11:00.000Z',
    ...overrides,
  };
}

/** Runs `fn`, which must throw a domain error, and returns that error. */
export function captureError(fn: () => unknown): HangarError {
  try {
    fn();
  } catch (error) {
    if (error instanceof HangarError) return error;
    throw error;
  }
  throw new Error('expected a domain error, but nothing was thrown');
}

/** The kind and message of the domain error `fn` throws. */
export function errorOf(fn: () => unknown): { kind: ErrorKind; message: string } {
  const error = captureError(fn);
  return { kind: error.kind, message: error.message };
}
