/**
 * The snapshot handler against the in-memory hypervisor, real instance files and qemu-img, and an
 * uploader that keeps what it is sent: the guest paused only around the overlay copy (and resumed
 * even when the copy fails), a standalone qcow2 with the disk's content uploaded by the path the
 * service named, and the job failed when the image is not queued or the stored digests differ.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentError, JobRejectedError } from '../../../agent/src/errors.ts';
import { run } from '../../../agent/src/exec.ts';
import { JOB_HANDLERS, type JobContext } from '../../../agent/src/jobs.ts';
import { silentLogger } from '../../../agent/src/log.ts';
import type { ImageUploader, Job, SentDigests, ServiceImage } from '../../../agent/src/service-client.ts';
import { jobContext, jobFor, stubCache, testInstance } from '../../helpers/agent-jobs.ts';
import { MemoryHypervisor, qcow2BackingFile } from '../../helpers/agent-memory-hypervisor.ts';

const INSTANCE = '3b9e0c7d-41a2-4f6b-8d15-7c0e2a9f4b61';
const NAME = `hangar-${INSTANCE}`;
const SNAPSHOT = 'snap-1';

/** The service's side of an upload: the image queued until bytes arrive, then active with their digests. */
class KeepingUploader implements ImageUploader {
  readonly calls: string[] = [];
  status = 'queued';
  stored: { checksum: string; os_hash_value: string } | undefined;
  /** What the service stores instead of what it was sent (a corrupted upload). */
  tamper = false;
  bytes: Buffer | undefined;

  uploadImageFile(imageId: string, grant: string, path: string): Promise<SentDigests> {
    this.calls.push(`put ${imageId} ${grant}`);
    return this.keep(path);
  }
  uploadImageMultipart(imageId: string, grant: string, path: string): Promise<SentDigests> {
    this.calls.push(`multipart ${imageId} ${grant}`);
    return this.keep(path);
  }
  async getImage(imageId: string): Promise<ServiceImage | null> {
    return { id: imageId, status: this.status, ...this.stored };
  }
  private async keep(path: string): Promise<SentDigests> {
    this.bytes = await readFile(path);
    const sent = {
      size: this.bytes.length,
      md5: createHash('md5').update(this.bytes).digest('hex'),
      sha512: createHash('sha512').update(this.bytes).digest('hex'),
    };
    this.status = 'active';
    this.stored = { checksum: sent.md5, os_hash_value: this.tamper ? '0'.repeat(128) : sent.sha512 };
    return sent;
  }
}

const job = (kind: Job['kind'], upload: 'put' | 'multipart' = 'put'): Job =>
  jobFor(
    kind,
    testInstance(INSTANCE, 'db'),
    kind === 'snapshot' ? { snapshot: { image_id: SNAPSHOT, upload, upload_grant: 'grant-1' } } : {},
  );

describe('the snapshot job', { timeout: 30_000 }, () => {
  let dir: string;
  let hv: MemoryHypervisor;
  let uploader: KeepingUploader;
  let ctx: JobContext;
  let basePath: string;
  const signal = new AbortController().signal;
  const snapshot = (upload: 'put' | 'multipart' = 'put', context: JobContext = ctx) =>
    JOB_HANDLERS.snapshot(job('snapshot', upload), context, silentLogger, signal);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-snapshot-job-'));
    basePath = join(dir, 'base.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', basePath, String(16 * 1024 * 1024)]);
    hv = new MemoryHypervisor();
    uploader = new KeepingUploader();
    const cache = stubCache(async () => ({
      id: 'img-1',
      path: basePath,
      format: 'qcow2',
      size: 0,
      virtualSize: 16 << 20,
      sha512: '',
    }));
    ctx = await jobContext(dir, hv, cache, { uploader });
    await JOB_HANDLERS.build(job('build'), ctx, silentLogger, signal);
    hv.calls.length = 0;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** What the uploader received, as a file, for qemu-img to read. */
  async function uploadedFile(): Promise<string> {
    const path = join(dir, 'uploaded.qcow2');
    await writeFile(path, uploader.bytes ?? Buffer.alloc(0));
    return path;
  }
  const leftovers = async () =>
    (await readdir(ctx.files.paths(INSTANCE).dir)).filter((name) => name.startsWith('snapshot-'));

  it('pauses a running guest only around the overlay copy and uploads a standalone qcow2 of its disk', async () => {
    // Prepare: what the guest wrote, in its overlay only
    const { overlay } = ctx.files.paths(INSTANCE);
    await run('qemu-io', ['-c', 'write -P 0xab 4M 64k', overlay]);

    // Act
    const result = await snapshot();

    // Assess
    expect(hv.calls.filter((call) => /^(suspend|resume) /.test(call))).toEqual([
      `suspend ${NAME}`,
      `resume ${NAME}`,
    ]);
    expect(hv.domains.get(NAME)?.state).toBe('running');
    expect(uploader.calls).toEqual([`put ${SNAPSHOT} grant-1`]);
    const uploaded = await uploadedFile();
    expect(await qcow2BackingFile(uploaded)).toBeNull();
    // The guest's disk as it sees it (its writes over the base), not the base alone.
    await run('qemu-img', ['compare', '-U', uploaded, overlay]);
    // (compare's exit code 1: the contents differ; 2 would be an error)
    await expect(run('qemu-img', ['compare', '-U', uploaded, basePath])).rejects.toMatchObject({
      details: { exitCode: 1, stdout: expect.stringMatching(/mismatch at offset 4194304/i) },
    });
    expect(result.snapshot).toMatchObject({
      size: uploader.bytes?.length,
      checksum: uploader.stored?.checksum,
      os_hash_value: uploader.stored?.os_hash_value,
    });
    expect(result.snapshot?.paused_ms).toEqual(expect.any(Number));
    expect(result.domain_uuid).toBe(INSTANCE);
    expect(await leftovers()).toEqual([]);
  });

  it('reads a shut-off disk in place, without a pause, and uploads by multipart when the service says so', async () => {
    // Prepare
    await JOB_HANDLERS.stop(job('stop'), ctx, silentLogger, signal);
    hv.calls.length = 0;

    // Act
    const result = await snapshot('multipart');

    // Assess
    expect(hv.count('suspend')).toBe(0);
    expect(hv.count('resume')).toBe(0);
    expect(uploader.calls).toEqual([`multipart ${SNAPSHOT} grant-1`]);
    expect(result.snapshot?.paused_ms).toBeNull();
    expect(hv.domains.get(NAME)?.state).toBe('shutoff');
  });

  it('resumes the guest even when the copy fails, and leaves no work files', async () => {
    // Prepare: nothing to copy
    await rm(ctx.files.paths(INSTANCE).overlay);

    // Act
    const attempt = snapshot();

    // Assess
    await expect(attempt).rejects.toThrow(/ENOENT/);
    expect(hv.calls.filter((call) => /^(suspend|resume) /.test(call))).toEqual([
      `suspend ${NAME}`,
      `resume ${NAME}`,
    ]);
    expect(hv.domains.get(NAME)?.state).toBe('running');
    expect(uploader.calls).toEqual([]);
    expect(await leftovers()).toEqual([]);
  });

  it('fails a retry whose image is no longer queued, before touching the guest', async () => {
    // Prepare: an earlier attempt uploaded
    uploader.status = 'active';

    // Act + Assess
    await expect(snapshot()).rejects.toThrow(AgentError);
    await expect(snapshot()).rejects.toThrow(`snapshot image ${SNAPSHOT} is active, not queued`);
    expect(hv.count('suspend')).toBe(0);
    expect(uploader.calls).toEqual([]);
  });

  it('fails when the digests the service stored differ from those sent', async () => {
    // Prepare
    uploader.tamper = true;

    // Act + Assess
    await expect(snapshot()).rejects.toThrow(/snapshot digests differ/);
    expect(hv.domains.get(NAME)?.state).toBe('running');
    expect(await leftovers()).toEqual([]);
  });

  it('rejects a job without its snapshot spec, and an agent without an uploader', async () => {
    await expect(JOB_HANDLERS.snapshot(job('build'), ctx, silentLogger, signal)).rejects.toBeInstanceOf(
      JobRejectedError,
    );
    const { uploader: _, ...withoutUploader } = ctx;
    await expect(snapshot('put', withoutUploader)).rejects.toBeInstanceOf(JobRejectedError);
    expect(uploader.calls).toEqual([]);
  });
});
