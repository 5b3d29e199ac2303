/**
 * Builds (build -> test -> publish): the request, the record and its stages, and the view. Pure:
 * no I/O, no clock of its own (callers pass `now`).
 *
 *   provisioning     the build instance (the base, the recipe as its user-data) is being placed and built
 *   running recipe   the guest runs the recipe; the recipe's last act powers the guest off (Shutoff)
 *   snapshotting     the instance's disk becomes an image (the snapshot job), with the build's provenance
 *   testing          the publish steps verify the image and, if asked, boot it behind the gate
 *   publishing       the compare-and-swap move of the target to the image
 *   succeeded | failed
 */
import { z } from 'zod';
import { MAX_USER_DATA_BYTES } from '../instances/requests.ts';
import { BadRequestError } from '../kernel/errors.ts';
import { isoSeconds } from '../kernel/time.ts';
import { BootGateSchema } from '../references/publish.ts';

export const BUILD_STAGES = [
  'provisioning',
  'running recipe',
  'snapshotting',
  'testing',
  'publishing',
  'succeeded',
  'failed',
] as const;
export type BuildStage = (typeof BUILD_STAGES)[number];

export const DEFAULT_BUILD_TIMEOUT_SECONDS = 1800;
/** The build's instance: how long provisioning plus the recipe may take before the build fails. */
export const MAX_BUILD_TIMEOUT_SECONDS = 4 * 3600;
/** How much of the build instance's console the build keeps. */
export const CONSOLE_TAIL_CHARS = 4096;

/** Image properties the service sets on the built image (besides the snapshot's own provenance). */
export const BUILD_PROVENANCE_KEYS = [
  'hangar_build_id',
  'hangar_base_image',
  'hangar_recipe_sha256',
] as const;

/**
 * The base's properties the built image keeps: where it can boot (the placement's architecture and
 * hypervisor requirements, core/instances/placement.ts) and what it is, as Nova's snapshots keep
 * the base's image properties.
 */
export const INHERITED_PROPERTIES = [
  'architecture',
  'hw_architecture',
  'hypervisor_type',
  'img_hv_type',
  'hypervisor_version_requires',
  'img_hv_requested_version',
  'os_distro',
  'os_version',
] as const;

export const BuildRequestSchema = z.strictObject({
  /** An image id, or a name:tag reference the caller can resolve. */
  base: z.string().min(1).max(300),
  recipe: z.strictObject({
    user_data: z
      .string()
      .min(1)
      .refine((text) => Buffer.byteLength(text, 'utf8') <= MAX_USER_DATA_BYTES, {
        message: `user_data is limited to ${MAX_USER_DATA_BYTES} bytes`,
      }),
  }),
  /** The name:tag the built image is published to. */
  target: z.string().min(1).max(300),
  /** The target's namespace (default: the caller's project). */
  namespace: z.string().min(1).max(255).optional(),
  /** The publish gate (the same settings POST /v1/references/{ref}/publish takes). */
  boot: BootGateSchema.optional(),
  timeout_seconds: z
    .number()
    .int()
    .min(10)
    .max(MAX_BUILD_TIMEOUT_SECONDS)
    .default(DEFAULT_BUILD_TIMEOUT_SECONDS),
  vcpus: z.number().int().min(1).max(64).default(1),
  ram_mb: z.number().int().min(64).max(65536).default(256),
  disk_gb: z.number().int().min(1).max(1024).default(1),
});
export type BuildRequest = z.infer<typeof BuildRequestSchema>;

export interface StageTiming {
  stage: BuildStage;
  started_at: string;
  ended_at: string | null;
}

export interface BuildRecord {
  id: string;
  /** The requester's project (who may read it) and the requester. */
  project: string;
  user_id: string;
  roles: string[];
  request_id: string;
  base: {
    requested: string;
    image_id: string;
    name: string | null;
    os_hash_value: string;
    /** INHERITED_PROPERTIES the base has, for the built image. */
    properties: Record<string, string>;
  };
  /** The recipe's text (never shown) and its sha256 (shown, and on the built image). */
  recipe: string;
  recipe_sha256: string;
  target: string;
  namespace: string;
  /** Where the target pointed when the build was asked for: the publish's compare-and-swap. */
  expect: string | null;
  boot: z.infer<typeof BootGateSchema> | null;
  timeout_seconds: number;
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  stage: BuildStage;
  stages: StageTiming[];
  instance_id: string | null;
  image_id: string | null;
  publication_id: string | null;
  console_tail: string | null;
  reason: string | null;
  created_at: string;
  updated_at: string;
  version: number;
}

export function parseBuildRequest(body: unknown): BuildRequest {
  const parsed = BuildRequestSchema.safeParse(body);
  if (parsed.success) return parsed.data;
  throw new BadRequestError(
    `Invalid build: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`,
  );
}

export const isFinishedBuild = (build: BuildRecord) =>
  build.stage === 'succeeded' || build.stage === 'failed';

/** The build moved to `stage` (the running stage's timing closed, the new one opened); unchanged if already there. */
export function enterStage(build: BuildRecord, stage: BuildStage, now: Date, reason?: string): BuildRecord {
  if (build.stage === stage || isFinishedBuild(build)) return build;
  const at = isoSeconds(now);
  const closed = build.stages.map((t) => (t.ended_at === null ? { ...t, ended_at: at } : t));
  const finished = stage === 'succeeded' || stage === 'failed';
  return {
    ...build,
    stage,
    stages: finished ? closed : [...closed, { stage, started_at: at, ended_at: null }],
    reason: reason ?? build.reason,
    updated_at: at,
    version: build.version + 1,
  };
}

/** The image properties of the built image: the base's it keeps, where it came from and what made it. */
export function buildProvenance(build: BuildRecord): Record<string, string> {
  return {
    ...build.base.properties,
    hangar_build_id: build.id,
    hangar_base_image: build.base.image_id,
    hangar_recipe_sha256: build.recipe_sha256,
  };
}

const seconds = (t: StageTiming) =>
  t.ended_at === null ? null : (Date.parse(t.ended_at) - Date.parse(t.started_at)) / 1000;

export const buildPath = (id: string) => `/v1/builds/${id}`;

export function renderBuild(build: BuildRecord): Record<string, unknown> {
  return {
    id: build.id,
    project: build.project,
    user_id: build.user_id,
    base: build.base,
    recipe_sha256: build.recipe_sha256,
    target: build.target,
    namespace: build.namespace,
    expect: build.expect,
    boot: build.boot,
    timeout_seconds: build.timeout_seconds,
    vcpus: build.vcpus,
    ram_mb: build.ram_mb,
    disk_gb: build.disk_gb,
    stage: build.stage,
    stages: build.stages.map((t) => ({ ...t, seconds: seconds(t) })),
    instance_id: build.instance_id,
    image_id: build.image_id,
    publication_id: build.publication_id,
    console_tail: build.console_tail,
    reason: build.reason,
    created_at: build.created_at,
    updated_at: build.updated_at,
    self: buildPath(build.id),
  };
}
