/** Ports of the instances and hosts services. Adapters in functions/adapters implement them. */
import type { ImageRecord } from '../images/image.ts';
import type { Principal } from '../kernel/principal.ts';
import type { HostRecord, HostRegistration, InstanceRecord } from './records.ts';
import type { JobRecord } from './work-queue.ts';

/** A versioned write of one record: `next` lands only if the stored one is still `previous.version`. */
export interface Change<T> {
  previous: T;
  next: T;
}

export interface InstanceListSpec {
  /** undefined: every project's (admins). */
  project?: string;
  limit: number;
  /** The instance the previous page ended with. */
  marker?: InstanceRecord;
}

/** Instances, hosts and jobs in storage. Methods that change two items do it in one transaction. */
export interface InstanceStore {
  getInstance(id: string): Promise<InstanceRecord | null>;
  /** Newest first. */
  listInstances(spec: InstanceListSpec): Promise<InstanceRecord[]>;
  /** The instances placed on the host and not yet destroyed. */
  listHostInstances(hostId: string): Promise<InstanceRecord[]>;
  /**
   * Writes the instance and its build job and adds the instance's demand to the host's use, all
   * or nothing. StaleWriteError when the host no longer has room (or changed its capacity).
   */
  createInstance(instance: InstanceRecord, job: JobRecord, host: HostRecord): Promise<void>;
  /**
   * Writes `next` (instance) if its version is still `previous.version`, plus `job` if given.
   * With `host` (as read), what `next` holds of it beyond `previous` (demandOf: an upgrade's new
   * disk) is added to its use, only if it is unchanged and has room (StaleWriteError otherwise).
   */
  updateInstance(
    previous: InstanceRecord,
    next: InstanceRecord,
    job?: JobRecord,
    host?: HostRecord,
  ): Promise<void>;
  getJob(id: string): Promise<JobRecord | null>;
  /** The host's open jobs (pending or claimed), oldest first. */
  queue(hostId: string, limit: number): Promise<JobRecord[]>;
  /** Writes `next` if the stored job is still `previous.version` and claimable at `now`. */
  claimJob(previous: JobRecord, next: JobRecord, now: Date): Promise<void>;
  /** Writes `next` if the stored job is still `previous.version`. */
  updateJob(previous: JobRecord, next: JobRecord): Promise<void>;
  /**
   * Ends a job and applies it to its instance in one transaction (both version-checked). What the
   * instance holds of its host less than before (demandOf: a destroy, a dropped disk) goes back
   * to it; when it ends up Inexistent its pointers go.
   */
  finishJob(job: Change<JobRecord>, instance?: Change<InstanceRecord>): Promise<void>;
  getHost(id: string): Promise<HostRecord | null>;
  listHosts(): Promise<HostRecord[]>;
  /** Creates or updates the host's capacity; its use (used_*) is kept. */
  putHost(id: string, registration: HostRegistration, now: Date): Promise<HostRecord>;
  /** false when the host was never registered. */
  heartbeatHost(id: string, now: Date): Promise<boolean>;
  /**
   * Writes the instance's change (to Inexistent), releases its host capacity and pointers, and
   * ends its open job, all version-checked and all or nothing.
   */
  destroyWithoutHost(instance: Change<InstanceRecord>, job?: Change<JobRecord>): Promise<void>;
  /** Which of the images some not-destroyed instance's disk or previous disk is built on. */
  imagesInUse(imageIds: readonly string[]): Promise<Set<string>>;
}

/** How the instances API finds the image a request names. */
export interface ImageLookup {
  /** By id, as the caller may see it (NotFoundError otherwise). */
  show(principal: Principal, id: string): Promise<ImageRecord>;
  /** A name:tag reference, resolved for the caller (NotFoundError when it does not resolve). */
  resolve(principal: Principal, reference: string): Promise<ImageRecord>;
}

/**
 * What snapshots need of the images and references services (composed in edge/compose.ts, so
 * their access rules, quotas and property protections apply).
 */
export interface SnapshotImages {
  /** POST /v2/images as `principal` (an admin may name another owner); the image is queued. */
  create(principal: Principal, body: Record<string, unknown>): Promise<ImageRecord>;
  /** The record as stored (null: none, or deleted). */
  get(id: string): Promise<ImageRecord | null>;
  /**
   * Deletes the image and frees its data, whatever state the upload left it in: a failed snapshot
   * leaves no image to boot and no blob behind. Never rejects for an image already gone.
   */
  discard(id: string, reason: string): Promise<void>;
  /**
   * Where `reference` would be written for `principal` (in `namespace`, default their project),
   * and where it points now (403 if not theirs).
   */
  referenceTarget(
    principal: Principal,
    reference: string,
    namespace?: string,
  ): Promise<{ namespace: string; current: string | null }>;
  /** The CAS move (or create, `expect` null) to the snapshot, recorded as `snapshot`. */
  moveReference(
    principal: Principal,
    reference: string,
    input: { image_id: string; expect: string | null; namespace: string },
  ): Promise<void>;
}

/**
 * Tells a host's agent that its queue gained a job, so it claims now instead of at its next poll
 * (the agents' WebSocket: API Gateway's on AWS, the embedded gateway's locally). Best effort: an
 * implementation never rejects; a notification that is lost costs the job at most the agent's
 * fallback poll interval.
 */
export interface JobNotifier {
  jobsQueued(hostId: string): Promise<void>;
}

/** Where no agent listens (no socket configured): every job waits for its host's poll. */
export const SILENT_NOTIFIER: JobNotifier = { jobsQueued: async () => {} };
