/**
 * ReferencesService.sweepRetention over in-memory repositories: every name with a policy is
 * swept, a name that fails is reported without stopping the others, and a version deleted since
 * does not block its name.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import type { ImageRecord } from '#core/images/image';
import { ImagesService } from '#core/images/images-service';
import type { ImageRepository } from '#core/images/ports';
import { StaleWriteError } from '#core/kernel/errors';
import type {
  HistoryEntry,
  NamedRetentionPolicy,
  ReferenceRecord,
  RetentionPolicy,
} from '#core/references/references';
import {
  RETIRED_AT_PROPERTY,
  type ReferenceRepository,
  ReferencesService,
} from '#core/references/references-service';
import { alice, makeActiveImage, NOW, QUOTAS } from './fixtures.ts';

class MemoryImages implements ImageRepository {
  readonly records = new Map<string, ImageRecord>();
  async get(id: string) {
    const found = this.records.get(id);
    return found ? structuredClone(found) : null;
  }
  async create(image: ImageRecord) {
    this.records.set(image.id, structuredClone(image));
  }
  async update(previous: ImageRecord, next: ImageRecord) {
    if (this.records.get(previous.id)?.version !== previous.version) throw new StaleWriteError('stale');
    this.records.set(next.id, structuredClone(next));
  }
  async list(): Promise<ImageRecord[]> {
    throw new Error('not needed by retention');
  }
}

class MemoryReferences implements ReferenceRepository {
  readonly refs = new Map<string, ReferenceRecord>();
  readonly entries: HistoryEntry[] = [];
  readonly policies = new Map<string, NamedRetentionPolicy>();
  /** Names whose history cannot be read (a storage failure for that name only). */
  readonly broken = new Set<string>();

  private key = (namespace: string, name: string, tag = '') => `${namespace}#${name}#${tag}`;

  async get(namespace: string, name: string, tag: string) {
    return this.refs.get(this.key(namespace, name, tag)) ?? null;
  }
  async create(reference: ReferenceRecord, entry: HistoryEntry) {
    this.refs.set(this.key(reference.namespace, reference.name, reference.tag), { ...reference });
    this.entries.push(entry);
  }
  async move(previous: ReferenceRecord, next: ReferenceRecord, entry: HistoryEntry) {
    const key = this.key(next.namespace, next.name, next.tag);
    if (this.refs.get(key)?.version !== previous.version) throw new StaleWriteError('stale');
    this.refs.set(key, { ...next });
    this.entries.push(entry);
  }
  async delete(previous: ReferenceRecord, entry: HistoryEntry) {
    this.refs.delete(this.key(previous.namespace, previous.name, previous.tag));
    this.entries.push(entry);
  }
  async list(namespace: string, name?: string) {
    return [...this.refs.values()].filter(
      (r) => r.namespace === namespace && (name === undefined || r.name === name),
    );
  }
  async history(namespace: string, name: string, tag?: string) {
    if (this.broken.has(name)) throw new Error(`history of ${name} is unreadable`);
    return this.entries.filter(
      (e) => e.namespace === namespace && e.name === name && (tag === undefined || e.tag === tag),
    );
  }
  async getPolicy(namespace: string, name: string) {
    return this.policies.get(this.key(namespace, name))?.policy ?? null;
  }
  async putPolicy(namespace: string, name: string, policy: RetentionPolicy) {
    this.policies.set(this.key(namespace, name), { namespace, name, policy });
  }
  async listPolicies() {
    return [...this.policies.values()];
  }
}

describe('ReferencesService.sweepRetention', () => {
  let images: MemoryImages;
  let refs: MemoryReferences;
  let now: Date;
  let service: ReferencesService;

  const tick = (seconds: number) => {
    now = new Date(now.getTime() + seconds * 1000);
  };
  const image = (id: string) => images.records.get(id) as ImageRecord;

  beforeEach(async () => {
    images = new MemoryImages();
    refs = new MemoryReferences();
    now = NOW;
    const clock = () => now;
    service = new ReferencesService(
      refs,
      new ImagesService(images, QUOTAS, clock),
      { inUse: async () => new Set<string>() },
      clock,
    );
    for (const id of ['app-1', 'app-2', 'mid-1', 'mid-2', 'web-1', 'web-2', 'db-1', 'db-2', 'db-3'])
      await images.create(makeActiveImage({ id, name: id, owner: 'projA' }));
  });

  /** name:prod at `first`, then moved to `second` a second later (which hides `first`). */
  async function published(name: string, first: string, second: string): Promise<void> {
    await service.create(alice, { reference: `${name}:prod`, image_id: first });
    tick(1);
    await service.move(alice, `${name}:prod`, { image_id: second });
  }

  it('deactivates what the moves hid once the grace period is over, and never what a reference points to', async () => {
    // Prepare
    await service.setPolicy(alice, 'app', { keep: 1, grace_seconds: 60 });
    await published('app', 'app-1', 'app-2');
    expect(image('app-1')).toMatchObject({ os_hidden: true, status: 'active' });

    // Act: within the grace period, then after it.
    const early = await service.sweepRetention();
    tick(61);
    const late = await service.sweepRetention();

    // Assess
    expect(early).toEqual({ names: 1, hidden: [], deactivated: [], restored: [], failed: [] });
    expect(late).toEqual({ names: 1, hidden: [], deactivated: ['app-1'], restored: [], failed: [] });
    expect(image('app-1').status).toBe('deactivated');
    expect(image('app-2')).toMatchObject({ status: 'active', os_hidden: false });
    expect(image('app-2').properties).not.toHaveProperty(RETIRED_AT_PROPERTY);
  });

  it('reports a name that fails and still sweeps the names after it', async () => {
    // Prepare: three names, the middle one's history unreadable.
    for (const name of ['app', 'mid', 'web']) {
      await service.setPolicy(alice, name, { keep: 1, grace_seconds: 60 });
      await published(name, `${name}-1`, `${name}-2`);
    }
    refs.broken.add('mid');
    tick(61);

    // Act
    const sweep = await service.sweepRetention();

    // Assess
    expect(sweep.names).toBe(3);
    expect(sweep.deactivated).toEqual(['app-1', 'web-1']);
    expect(sweep.failed).toHaveLength(1);
    expect(sweep.failed[0]).toMatchObject({ namespace: 'projA', name: 'mid' });
    expect(String(sweep.failed[0]?.error)).toMatch(/history of mid is unreadable/);
    expect(image('mid-1')).toMatchObject({ status: 'active', os_hidden: true });
    expect(image('web-1').status).toBe('deactivated');
  });

  it('hides what is left of a name when one of its old versions was deleted meanwhile', async () => {
    // Prepare: versions made before the name had a policy; the oldest one deleted since.
    await service.create(alice, { reference: 'db:prod', image_id: 'db-1' });
    tick(1);
    await service.move(alice, 'db:prod', { image_id: 'db-2' });
    tick(1);
    await service.move(alice, 'db:prod', { image_id: 'db-3' });
    images.records.set('db-1', { ...image('db-1'), status: 'deleted' });
    await service.setPolicy(alice, 'db', { keep: 1, grace_seconds: 60 });

    // Act
    const sweep = await service.sweepRetention();

    // Assess
    expect(sweep).toEqual({ names: 1, hidden: ['db-2'], deactivated: [], restored: [], failed: [] });
    expect(image('db-2').os_hidden).toBe(true);
    expect(image('db-3').os_hidden).toBe(false);
  });

  it('does nothing without policies', async () => {
    expect(await service.sweepRetention()).toEqual({
      names: 0,
      hidden: [],
      deactivated: [],
      restored: [],
      failed: [],
    });
  });
});
