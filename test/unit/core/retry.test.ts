/**
 * core/kernel/retry.ts and ImagesService.mutate over it: a lost race is retried with jittered backoff
 * until a time budget (not a count) runs out, and a retry that now truly conflicts answers that
 * conflict instead of landing.
 */
import { describe, expect, it } from 'vitest';
import type { ImageRecord } from '#core/images/image';
import { ImagesService } from '#core/images/images-service';
import type { ImageRepository } from '#core/images/ports';
import { ConflictError, StaleWriteError, UnavailableError } from '#core/kernel/errors';
import { backoffDelay, retryOnStale } from '#core/kernel/retry';
import { alice, makeImage, QUOTAS } from './fixtures.ts';

const PATCH = 'application/openstack-images-v2.1-json-patch';

/** Conditional writes as DynamoDB does them; `interleave` runs as another writer just before one. */
class RacingImages implements ImageRepository {
  readonly records = new Map<string, ImageRecord>();
  interleave: ((stored: ImageRecord) => ImageRecord) | undefined;
  async get(id: string) {
    const found = this.records.get(id);
    return found ? structuredClone(found) : null;
  }
  async create(image: ImageRecord) {
    this.records.set(image.id, structuredClone(image));
  }
  async update(previous: ImageRecord, next: ImageRecord) {
    const other = this.interleave;
    this.interleave = undefined;
    if (other) {
      const stored = this.records.get(previous.id) as ImageRecord;
      this.records.set(previous.id, { ...other(stored), version: stored.version + 1 });
    }
    if (this.records.get(previous.id)?.version !== previous.version) throw new StaleWriteError('stale');
    this.records.set(next.id, structuredClone(next));
  }
  async list(): Promise<ImageRecord[]> {
    throw new Error('not needed');
  }
}

describe('retryOnStale', () => {
  let clock = 0;
  const fakeSleep = async (ms: number) => {
    clock += ms;
  };
  it('keeps retrying past any fixed count while the time budget lasts', async () => {
    clock = 0;
    let calls = 0;
    const result = await retryOnStale(
      async () => {
        calls++;
        if (calls < 500) throw new StaleWriteError('lost');
        return 'landed';
      },
      { budgetMs: 20_000, now: () => clock, sleep: fakeSleep, random: () => 0.02 },
    );
    expect(result).toBe('landed');
    expect(calls).toBe(500);
  });

  it('gives the StaleWriteError back once the budget is spent', async () => {
    clock = 0;
    const attempt = retryOnStale(
      async () => {
        clock += 30;
        throw new StaleWriteError('lost');
      },
      { budgetMs: 1_000, now: () => clock, sleep: fakeSleep },
    );
    await expect(attempt).rejects.toBeInstanceOf(StaleWriteError);
    expect(clock).toBeGreaterThanOrEqual(1_000);
  });

  it('throws what `exhausted` makes of the last StaleWriteError once the budget is spent', async () => {
    clock = 0;
    let calls = 0;
    const attempt = retryOnStale(
      async () => {
        calls++;
        throw new StaleWriteError(`lost ${calls}`);
      },
      {
        budgetMs: 100,
        now: () => clock,
        sleep: fakeSleep,
        random: () => 0.5,
        exhausted: (error) => new UnavailableError('busy', { cause: error }),
      },
    );
    const error = await attempt.then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as Error).message).toBe('busy');
    expect((error as Error).cause).toEqual(new StaleWriteError(`lost ${calls}`));
    expect(clock).toBe(100);
    expect(calls).toBeGreaterThan(1);
  });

  it('does not retry any other error', async () => {
    let calls = 0;
    const attempt = retryOnStale(async () => {
      calls++;
      throw new ConflictError('real');
    });
    await expect(attempt).rejects.toThrow('real');
    expect(calls).toBe(1);
  });

  it('gives up after maxAttempts, whatever budget is left, with the last loss or what `exhausted` makes of it', async () => {
    clock = 0;
    let calls = 0;
    const lose = async (): Promise<never> => {
      calls++;
      throw new StaleWriteError('lost');
    };
    const count = { maxAttempts: 3, now: () => clock, sleep: fakeSleep };
    await expect(retryOnStale(lose, count)).rejects.toBeInstanceOf(StaleWriteError);
    expect(calls).toBe(3);
    const tooOften = (error: StaleWriteError) => new ConflictError(`too often: ${error.message}`);
    await expect(retryOnStale(lose, { ...count, exhausted: tooOften })).rejects.toThrow(
      new ConflictError('too often: lost'),
    );
    expect(calls).toBe(6);
    // The last attempt allowed still lands.
    const landsThird = async (n: number) => {
      if (n < 3) throw new StaleWriteError('lost');
      return 'landed';
    };
    expect(await retryOnStale(landsThird, count)).toBe('landed');
  });

  it('backs off exponentially with full jitter, capped', () => {
    expect(backoffDelay(1, () => 0.999)).toBe(3);
    expect(backoffDelay(3, () => 0.999)).toBe(15);
    expect(backoffDelay(40, () => 0.999)).toBe(999);
    expect(backoffDelay(40, () => 0)).toBe(0);
  });
});

describe('ImagesService.mutate on a lost race', () => {
  it('re-applies a non-conflicting patch to the fresh record: both changes land', async () => {
    const repo = new RacingImages();
    const image = makeImage();
    await repo.create(image);
    repo.interleave = (stored) => ({ ...stored, properties: { ...stored.properties, other: 'x' } });
    const service = new ImagesService(repo, QUOTAS);
    await service.patch(alice, image.id, PATCH, [{ op: 'add', path: '/mine', value: 'y' }]);
    expect(repo.records.get(image.id)?.properties).toMatchObject({ other: 'x', mine: 'y' });
  });

  it('answers 409 when the other writer removed the property this patch replaces', async () => {
    const repo = new RacingImages();
    const image = makeImage();
    await repo.create(image);
    repo.interleave = (stored) => {
      const { custom_prop: _removed, ...rest } = stored.properties;
      return { ...stored, properties: rest };
    };
    const service = new ImagesService(repo, QUOTAS);
    const patch = service.patch(alice, image.id, PATCH, [
      { op: 'replace', path: '/custom_prop', value: 'v2' },
    ]);
    await expect(patch).rejects.toThrow(new ConflictError('Property custom_prop does not exist.'));
    expect(repo.records.get(image.id)?.properties.custom_prop).toBeUndefined();
  });
});
