/**
 * A fake Hangar service for the agent's e2e test and benchmark: the hosts/jobs HTTP contract over node:http
 * with an in-memory job list, plus GET /v2/images/{id}/file serving image bytes from local files.
 * Leases behave like the real ones: a claimed job whose lease expired can be claimed again (attempt + 1),
 * and a stale lease token gets 409.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { STAGE_AFTER } from '#core/instances/lifecycle';
import type { JobKind, Stage } from '#core/instances/records';
import { renderClaimedJob } from '#core/instances/work-queue';

export interface FakeImage {
  id: string;
  path: string;
  disk_format: string;
  /** What the service publishes; a test can publish a wrong one. */
  os_hash_value: string;
  size: number;
}

export interface FakeInstance {
  id: string;
  name: string;
  hostname: string;
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  user_data: string | null;
  image_id: string;
  stage: Stage;
}

export interface FakeJob {
  id: string;
  kind: JobKind;
  instanceId: string;
  status: 'queued' | 'claimed' | 'done' | 'failed';
  leaseToken?: string;
  leaseExpiresAt?: number;
  leaseSeconds?: number;
  attempt: number;
  result?: { console_log?: string; domain_uuid?: string };
  reason?: string;
  /** Date.now() at each claim / at completion (the benchmark measures between them). */
  claimedAt: number[];
  finishedAt?: number;
}

export class FakeHangarService {
  readonly hostId: string;
  readonly token: string;
  readonly images = new Map<string, FakeImage>();
  readonly instances = new Map<string, FakeInstance>();
  readonly jobs: FakeJob[] = [];
  readonly observed: Array<{ instanceId: string; state: string; reason?: string }> = [];
  readonly imageRequests = new Map<string, number>();
  host: Record<string, unknown> | undefined;
  hostHeartbeats = 0;
  /** When set, claim answers 204 (lets a test hold jobs back). */
  paused = false;
  private server: Server | undefined;
  url = '';

  constructor(options: { hostId: string; token: string }) {
    this.hostId = options.hostId;
    this.token = options.token;
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  addImage(image: FakeImage): void {
    this.images.set(image.id, image);
  }

  addInstance(instance: Omit<FakeInstance, 'stage'> & { stage?: Stage }): FakeInstance {
    const full = { stage: 'Building' as Stage, ...instance };
    this.instances.set(full.id, full);
    return full;
  }

  enqueue(kind: JobKind, instanceId: string): FakeJob {
    const job: FakeJob = {
      id: `job-${randomUUID()}`,
      kind,
      instanceId,
      status: 'queued',
      attempt: 0,
      claimedAt: [],
    };
    this.jobs.push(job);
    return job;
  }

  async waitForJob(job: FakeJob, timeoutMs: number): Promise<FakeJob> {
    const deadline = Date.now() + timeoutMs;
    while (job.status !== 'done' && job.status !== 'failed') {
      if (Date.now() > deadline) {
        throw new Error(
          `job ${job.kind} ${job.id} still ${job.status} (attempt ${job.attempt}) after ${timeoutMs} ms`,
        );
      }
      await sleep(50);
    }
    return job;
  }

  private async body(req: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (chunks.length === 0) return {};
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  }

  private send(res: ServerResponse, status: number, body?: unknown): void {
    res.statusCode = status;
    if (body === undefined) {
      res.end();
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(body));
  }

  private claimable(job: FakeJob, now: number): boolean {
    if (job.status === 'queued') return true;
    return job.status === 'claimed' && (job.leaseExpiresAt ?? 0) < now;
  }

  /** The claimed job as the real service renders it (its own renderClaimedJob). */
  private jobView(job: FakeJob): ReturnType<typeof renderClaimedJob> {
    const instance = this.instances.get(job.instanceId);
    if (!instance) throw new Error(`no instance ${job.instanceId}`);
    // Every instance of the real service has its image (a snapshot taken at create).
    const image = this.images.get(instance.image_id);
    if (!image) throw new Error(`no image ${instance.image_id} for instance ${instance.id}`);
    return renderClaimedJob(
      {
        id: job.id,
        kind: job.kind,
        lease_token: job.leaseToken ?? null,
        lease_expires_at: new Date(job.leaseExpiresAt ?? 0).toISOString(),
        attempt: job.attempt,
      },
      {
        ...instance,
        image: {
          id: image.id,
          disk_format: image.disk_format,
          size: image.size,
          os_hash_algo: 'sha512',
          os_hash_value: image.os_hash_value,
        },
      },
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.headers['x-auth-token'] !== this.token) return this.send(res, 401, { error: 'bad token' });
    const url = new URL(req.url ?? '/', 'http://fake');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const now = Date.now();

    if (parts[0] === 'v2' && parts[1] === 'images' && parts[3] === 'file' && method === 'GET') {
      const image = this.images.get(parts[2] ?? '');
      if (!image) return this.send(res, 404, { error: 'no image' });
      this.imageRequests.set(image.id, (this.imageRequests.get(image.id) ?? 0) + 1);
      const { size } = await stat(image.path);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      createReadStream(image.path).pipe(res);
      return;
    }

    if (parts[0] === 'v1' && parts[1] === 'hosts') {
      if (parts[2] !== this.hostId) return this.send(res, 403, { error: 'wrong host' });
      const rest = parts.slice(3).join('/');
      if (rest === '' && method === 'PUT') {
        this.host = await this.body(req);
        return this.send(res, 200, { id: this.hostId, ...this.host });
      }
      if (rest === 'heartbeat' && method === 'POST') {
        this.hostHeartbeats += 1;
        return this.send(res, 204);
      }
      if (rest === 'jobs/claim' && method === 'POST') {
        const { lease_seconds } = await this.body(req);
        if (this.paused) return this.send(res, 204);
        const busy = new Set(
          this.jobs.filter((j) => j.status === 'claimed' && !this.claimable(j, now)).map((j) => j.instanceId),
        );
        // Jobs of one instance go out in order, one at a time.
        const seen = new Set<string>();
        for (const job of this.jobs) {
          if (job.status === 'done' || job.status === 'failed') continue;
          if (seen.has(job.instanceId)) continue;
          seen.add(job.instanceId);
          if (busy.has(job.instanceId) || !this.claimable(job, now)) continue;
          job.status = 'claimed';
          job.attempt += 1;
          job.leaseToken = randomUUID();
          job.leaseSeconds = Number(lease_seconds ?? 60);
          job.leaseExpiresAt = now + job.leaseSeconds * 1000;
          job.claimedAt.push(now);
          return this.send(res, 200, { job: this.jobView(job) });
        }
        return this.send(res, 204);
      }
      if (rest === 'instances' && method === 'GET') {
        return this.send(res, 200, {
          instances: [...this.instances.values()].map((i) => ({ id: i.id, stage: i.stage, name: i.name })),
        });
      }
      if (parts[3] === 'instances' && parts[5] === 'observed' && method === 'POST') {
        const body = await this.body(req);
        this.observed.push({
          instanceId: parts[4] ?? '',
          state: String(body['state']),
          ...(body['reason'] ? { reason: String(body['reason']) } : {}),
        });
        return this.send(res, 204);
      }
    }

    if (parts[0] === 'v1' && parts[1] === 'jobs' && method === 'POST') {
      const job = this.jobs.find((j) => j.id === parts[2]);
      if (!job) return this.send(res, 404, { error: 'no job' });
      const body = await this.body(req);
      const tokenOk = body['lease_token'] === job.leaseToken;
      const action = parts[3];
      if (action === 'heartbeat') {
        if (!tokenOk || job.status !== 'claimed') return this.send(res, 409, { error: 'lease lost' });
        job.leaseExpiresAt = now + (job.leaseSeconds ?? 60) * 1000;
        return this.send(res, 200, { lease_expires_at: new Date(job.leaseExpiresAt).toISOString() });
      }
      if (action === 'complete' || action === 'fail') {
        if (!tokenOk) return this.send(res, 409, { error: 'lease lost' });
        if (job.status === 'claimed') {
          const instance = this.instances.get(job.instanceId);
          if (action === 'complete') {
            job.status = 'done';
            job.result = (body['result'] ?? {}) as FakeJob['result'];
            // The service's own stage table; a destroyed instance leaves the fake's list.
            // (a snapshot keeps the stage)
            const next = job.kind === 'snapshot' ? undefined : STAGE_AFTER[job.kind];
            if (next === 'Inexistent') this.instances.delete(job.instanceId);
            else if (instance && next) instance.stage = next;
          } else {
            job.status = 'failed';
            job.reason = String(body['reason']);
            if (instance && job.kind === 'build') instance.stage = 'Error';
          }
          job.finishedAt = now;
        }
        return this.send(res, 204);
      }
    }
    return this.send(res, 404, { error: `no route ${method} ${url.pathname}` });
  }
}
