/**
 * In-memory fakes of the storage ports in core/kernel/ports.ts, for fake-backed unit tests of the
 * core services. They keep the ports' documented contracts (version-conditional writes that throw
 * StaleWriteError, create that refuses an existing id with ConflictError, blob keys never
 * overwritten) and let a test inject lost races:
 *   - failUpdates(n): the next n versioned writes throw StaleWriteError and change nothing, as a
 *     DynamoDB TransactionConflict (the adapters map it to StaleWriteError, isLostRace);
 *   - interfere(change): before the next versioned write, another writer's change lands first, so
 *     that write is stale for real and the service must re-read and re-apply.
 *
 * The port types are imported here only (one place to re-point when ports move beside their domains).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type {
  BlobPutHooks,
  BlobStore,
  ObjectPin,
  ObjectRef,
  ObjectStore,
  OpenedObject,
  StreamDigester,
} from '#core/data/ports';
import type { ImageRecord } from '#core/images/image';
import type { ImageListSpec, ImageRepository, LeaseIndex } from '#core/images/ports';
import { ConflictError, StaleWriteError } from '#core/kernel/errors';
import type { TaskListSpec, TaskRepository, WorkflowName, WorkflowStarter } from '#core/tasks/ports';
import type { TaskRecord } from '#core/tasks/task';
import type { EventMarker, EventMarkers, MultipartUploads, WebFetcher } from '#core/transfer/ports';
import { UrlRefused } from '#core/transfer/url-filter';

const clone = <T>(value: T): T => structuredClone(value);

/** Lost-race injection shared by the versioned stores. */
export class RaceInjector<T> {
  private failing = 0;
  private failAfter = 0;
  private interference: Array<{ after: number; change: (stored: T) => T }> = [];
  /** Versioned writes attempted (landed or not). */
  attempts = 0;

  /**
   * After `after` more writes, the next `count` versioned writes throw StaleWriteError and change
   * nothing (Infinity: every one).
   */
  failUpdates(count: number, after = 0): void {
    this.failing = count;
    this.failAfter = after;
  }

  /** After `after` more writes, another writer's change lands just before the next versioned write. */
  interfere(change: (stored: T) => T, after = 0): void {
    this.interference.push({ after, change });
  }

  /** Called at the start of each versioned write: throws, or applies interference, or neither. */
  before(id: string, stored: () => T | undefined, store: (value: T) => void): void {
    this.attempts += 1;
    if (this.failing > 0) {
      if (this.failAfter > 0) this.failAfter -= 1;
      else {
        this.failing -= 1;
        throw new StaleWriteError(`${id}: transaction conflict (injected)`);
      }
    }
    const due = this.interference[0];
    if (due && due.after > 0) {
      due.after -= 1;
      return;
    }
    const change = this.interference.shift()?.change;
    const current = stored();
    if (change && current !== undefined) store(change(current));
  }
}

/** ImageRepository + LeaseIndex over a Map; `version` guards every update. */
export class FakeImageRepository implements ImageRepository, LeaseIndex {
  readonly records = new Map<string, ImageRecord>();
  readonly races = new RaceInjector<ImageRecord>();
  /** Every record written by update(), in order. */
  readonly writes: ImageRecord[] = [];

  constructor(...images: ImageRecord[]) {
    for (const image of images) this.records.set(image.id, clone(image));
  }

  async get(id: string): Promise<ImageRecord | null> {
    const found = this.records.get(id);
    return found ? clone(found) : null;
  }

  /** The stored record; fails the test when there is none. */
  stored(id: string): ImageRecord {
    const found = this.records.get(id);
    if (!found) throw new Error(`no image ${id} in the fake repository`);
    return clone(found);
  }

  async create(image: ImageRecord): Promise<void> {
    if (this.records.has(image.id))
      throw new ConflictError(`Image with identifier ${image.id} already exists!`);
    this.records.set(image.id, clone(image));
  }

  async update(previous: ImageRecord, next: ImageRecord): Promise<void> {
    this.races.before(
      `Image ${next.id}`,
      () => this.records.get(next.id),
      (value) => this.records.set(value.id, { ...value, version: value.version + 1 }),
    );
    const stored = this.records.get(next.id);
    if (!stored || stored.version !== previous.version || next.version !== previous.version + 1)
      throw new StaleWriteError(`Image ${next.id} was changed by another request`);
    this.records.set(next.id, clone(next));
    this.writes.push(clone(next));
  }

  async list(spec: ImageListSpec): Promise<ImageRecord[]> {
    return [...this.records.values()].filter(spec.filter).sort(spec.compare).slice(0, spec.limit).map(clone);
  }

  async expiredLeases(before: Date | null, limit: number): Promise<ImageRecord[]> {
    return [...this.records.values()]
      .filter((image) => image.lease && (before === null || Date.parse(image.lease.expires_at) <= +before))
      .slice(0, limit)
      .map(clone);
  }
}

/** TaskRepository over a Map. */
export class FakeTaskRepository implements TaskRepository {
  readonly records = new Map<string, TaskRecord>();
  readonly races = new RaceInjector<TaskRecord>();

  async get(id: string): Promise<TaskRecord | null> {
    const found = this.records.get(id);
    return found ? clone(found) : null;
  }

  stored(id: string): TaskRecord {
    const found = this.records.get(id);
    if (!found) throw new Error(`no task ${id} in the fake repository`);
    return clone(found);
  }

  all(): TaskRecord[] {
    return [...this.records.values()].map(clone);
  }

  async create(task: TaskRecord): Promise<void> {
    if (this.records.has(task.id)) throw new ConflictError(`Task ${task.id} exists`);
    this.records.set(task.id, clone(task));
  }

  async update(previous: TaskRecord, next: TaskRecord): Promise<void> {
    this.races.before(
      `Task ${next.id}`,
      () => this.records.get(next.id),
      (value) => this.records.set(value.id, { ...value, version: value.version + 1 }),
    );
    const stored = this.records.get(next.id);
    if (!stored || stored.version !== previous.version || next.version !== previous.version + 1)
      throw new StaleWriteError(`Task ${next.id} was changed by another request`);
    this.records.set(next.id, clone(next));
  }

  async list(spec: TaskListSpec): Promise<TaskRecord[]> {
    return this.all()
      .filter(spec.filter)
      .sort((a, b) => (spec.descending ? b.created_at.localeCompare(a.created_at) : 0))
      .slice(0, spec.limit);
  }

  async listForImage(imageId: string): Promise<TaskRecord[]> {
    return this.all().filter((task) => task.image_id === imageId);
  }
}

/**
 * BlobStore over a Map. put() feeds every block to hooks.onBlock before "sending" it; without an
 * expected size it behaves as a multipart upload (onMultipartStart, with a made-up id).
 */
export class FakeBlobStore implements BlobStore {
  readonly objects = new Map<string, Buffer>();
  readonly deleted: string[] = [];
  readonly aborted: Array<{ key: string; uploadId: string }> = [];
  /** Makes the next put() fail after this many blocks with a non-domain error (a store fault). */
  failPutAfterBlocks: number | undefined;

  async put(
    key: string,
    source: AsyncIterable<Buffer>,
    hooks: BlobPutHooks,
    expectedSize?: number,
  ): Promise<{ size: number }> {
    if (this.objects.has(key)) throw new Error(`blob ${key} exists; the store never overwrites`);
    if (expectedSize === undefined) await hooks.onMultipartStart?.(`upload-${key}`);
    const chunks: Buffer[] = [];
    let blocks = 0;
    for await (const block of source) {
      if (this.failPutAfterBlocks !== undefined && blocks >= this.failPutAfterBlocks) {
        this.failPutAfterBlocks = undefined;
        throw new Error('the store went away (injected)');
      }
      await hooks.onBlock(block);
      chunks.push(Buffer.from(block));
      blocks += 1;
    }
    const data = Buffer.concat(chunks);
    this.objects.set(key, data);
    return { size: data.length };
  }

  async get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    const data = this.objects.get(key);
    if (!data) throw new Error(`no blob ${key}`);
    return Readable.from([range ? data.subarray(range.start, range.end + 1) : data]);
  }

  async delete(key: string): Promise<void> {
    this.deleted.push(key);
    this.objects.delete(key);
  }

  async exists(key: string): Promise<boolean> {
    return this.objects.has(key);
  }

  async presignedGet(key: string, expiresSeconds: number): Promise<string> {
    return `https://blobs.example/${key}?expires=${expiresSeconds}`;
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    this.aborted.push({ key, uploadId });
  }

  async deletePrefix(prefix: string): Promise<number> {
    const keys = [...this.objects.keys()].filter((key) => key.startsWith(prefix));
    for (const key of keys) await this.delete(key);
    return keys.length;
  }
}

/** md5 + sha512 in this thread (the adapter hashes on worker threads). */
export class FakeDigester implements StreamDigester {
  private readonly md5 = createHash('md5');
  private readonly sha512 = createHash('sha512');
  cancelled = false;

  async update(block: Buffer): Promise<void> {
    this.md5.update(block);
    this.sha512.update(block);
  }

  async finish(): Promise<{ md5: string; sha512: string }> {
    return { md5: this.md5.digest('hex'), sha512: this.sha512.digest('hex') };
  }

  cancel(): void {
    this.cancelled = true;
  }
}

export const plainBlock = (size: number) => Buffer.alloc(size);

export const digestsOf = (data: Buffer) => ({
  md5: createHash('md5').update(data).digest('hex'),
  sha512: createHash('sha512').update(data).digest('hex'),
});

/** A body arriving in chunks of `chunk` bytes. */
export async function* bodyOf(data: Buffer, chunk = 64 * 1024): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += chunk) yield data.subarray(offset, offset + chunk);
}

/** Records executions; `failNext` makes the next start throw. */
export class FakeWorkflowStarter implements WorkflowStarter {
  readonly started: Array<{ workflow: WorkflowName; executionName: string; input: Record<string, unknown> }> =
    [];
  failNext: Error | undefined;

  async start(workflow: WorkflowName, executionName: string, input: Record<string, unknown>): Promise<void> {
    if (this.failNext) {
      const error = this.failNext;
      this.failNext = undefined;
      throw error;
    }
    if (this.started.some((run) => run.executionName === executionName)) return;
    this.started.push({ workflow, executionName, input: clone(input) });
  }
}

export class FakeEventMarkers implements EventMarkers {
  readonly markers = new Map<string, EventMarker>();

  async claim(proposal: EventMarker): Promise<EventMarker> {
    const found = this.markers.get(proposal.eventId);
    if (found) return clone(found);
    this.markers.set(proposal.eventId, clone(proposal));
    return clone(proposal);
  }

  async markDone(eventId: string): Promise<void> {
    const found = this.markers.get(eventId);
    if (found) found.done = true;
  }
}

interface StoredObject {
  data: Buffer;
  metadata: Record<string, string>;
  etag: string;
}

/** ObjectStore over a Map keyed `bucket/key`. */
export class FakeObjectStore implements ObjectStore {
  readonly objects = new Map<string, StoredObject>();
  readonly deleted: ObjectRef[] = [];

  put(ref: ObjectRef, data: Buffer, metadata: Record<string, string> = {}): void {
    this.objects.set(`${ref.bucket}/${ref.key}`, {
      data,
      metadata,
      etag: createHash('md5').update(data).digest('hex'),
    });
  }

  has(ref: ObjectRef): boolean {
    return this.objects.has(`${ref.bucket}/${ref.key}`);
  }

  data(ref: ObjectRef): Buffer | undefined {
    return this.objects.get(`${ref.bucket}/${ref.key}`)?.data;
  }

  async open(ref: ObjectRef): Promise<OpenedObject> {
    const found = this.objects.get(`${ref.bucket}/${ref.key}`);
    if (!found) throw new Error(`no object ${ref.bucket}/${ref.key}`);
    return { body: bodyOf(found.data), size: found.data.length, pin: { etag: found.etag }, abort: () => {} };
  }

  async copy(from: ObjectRef, pin: ObjectPin, to: ObjectRef, size: number): Promise<void> {
    const found = this.objects.get(`${from.bucket}/${from.key}`);
    if (!found || (pin.etag && pin.etag !== found.etag) || found.data.length !== size)
      throw new Error(`precondition failed copying ${from.key}`);
    if (this.has(to)) throw new Error(`${to.key} exists; copies never overwrite`);
    this.objects.set(`${to.bucket}/${to.key}`, { ...found });
  }

  async head(ref: ObjectRef) {
    const found = this.objects.get(`${ref.bucket}/${ref.key}`);
    if (!found) return null;
    return { size: found.data.length, pin: { etag: found.etag }, metadata: { ...found.metadata } };
  }

  async delete(ref: ObjectRef): Promise<void> {
    this.deleted.push(ref);
    this.objects.delete(`${ref.bucket}/${ref.key}`);
  }
}

export class FakeMultipartUploads implements MultipartUploads {
  readonly calls: Array<{ op: 'start' | 'complete' | 'abort'; ref: ObjectRef; detail: unknown }> = [];

  async start(ref: ObjectRef, partCount: number, expiresSeconds: number) {
    this.calls.push({ op: 'start', ref, detail: { partCount, expiresSeconds } });
    return {
      uploadId: 'mpu-1',
      partUrls: Array.from(
        { length: partCount },
        (_, i) => `https://uploads.example/${ref.key}?part=${i + 1}`,
      ),
    };
  }

  async complete(
    ref: ObjectRef,
    uploadId: string,
    parts: ReadonlyArray<{ partNumber: number; etag: string }>,
  ) {
    this.calls.push({ op: 'complete', ref, detail: { uploadId, parts } });
  }

  async abort(ref: ObjectRef, uploadId: string) {
    this.calls.push({ op: 'abort', ref, detail: { uploadId } });
  }
}

/**
 * Serves the bodies it was given, with their size (as Content-Length) unless the URI is in
 * `chunked`; refuses URIs listed in `refused` (or not http(s)).
 */
export class FakeWebFetcher implements WebFetcher {
  readonly bodies = new Map<string, Buffer>();
  readonly refused = new Set<string>();
  readonly chunked = new Set<string>();

  async vet(uri: string): Promise<void> {
    if (!/^https?:\/\/./.test(uri) || this.refused.has(uri)) throw new UrlRefused(`refused: ${uri}`);
  }

  async open(uri: string) {
    await this.vet(uri);
    const data = this.bodies.get(uri);
    if (!data) throw new Error(`404 for ${uri}`);
    return { body: bodyOf(data), size: this.chunked.has(uri) ? undefined : data.length, abort: () => {} };
  }
}
