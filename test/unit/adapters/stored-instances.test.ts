/** Instance records as stored: one written before upgrades existed still reads, and follows its reference. */
import { describe, expect, it } from 'vitest';
import { parseInstance } from '#adapters/dynamo/instance-repository';
import { referenceOf } from '#core/instances/lifecycle';
import { demandOf } from '#core/instances/placement';
import { renderInstance } from '#core/instances/views';

/** What the table held for an instance made before `reference`, `previous_image` and `upgrade_to`. */
const OLD_RECORD = {
  id: '2f0c1d7e-3a4b-4c5d-8e9f-0a1b2c3d4e5f',
  name: 'web',
  hostname: 'web',
  project: 'projA',
  user_id: 'alice',
  image_ref: 'web:stable',
  image: {
    id: '9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d',
    name: 'web v1',
    disk_format: 'qcow2',
    size: 1024,
    os_hash_algo: 'sha512',
    os_hash_value: 'ab'.repeat(64),
  },
  vcpus: 1,
  ram_mb: 256,
  disk_gb: 4,
  user_data: null,
  host_id: 'h1',
  stage: 'Running',
  reason: null,
  last_error: null,
  pending_job: null,
  domain_uuid: '2f0c1d7e-3a4b-4c5d-8e9f-0a1b2c3d4e5f',
  console_log: null,
  observed: null,
  created_at: '2026-11-30T10:00:00Z',
  updated_at: '2026-11-30T10:01:00Z',
  destroyed_at: null,
  version: 3,
};

describe('stored instance records', () => {
  it('reads a record made before upgrades: it follows the reference it was created from, one disk', () => {
    // Act
    const instance = parseInstance({ data: JSON.stringify(OLD_RECORD) });

    // Assess
    expect(referenceOf(instance)).toBe('web:stable');
    expect(demandOf(instance).disk_gb).toBe(4);
    expect(renderInstance(instance)).toMatchObject({
      reference: 'web:stable',
      previous_image: null,
      upgrading_to: null,
    });
  });

  it('an old record made from an image id follows no reference', () => {
    // Act
    const instance = parseInstance({
      data: JSON.stringify({ ...OLD_RECORD, image_ref: OLD_RECORD.image.id }),
    });

    // Assess
    expect(referenceOf(instance)).toBeNull();
  });
});
