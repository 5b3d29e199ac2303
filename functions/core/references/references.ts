/**
 * name:tag references: moving, per-project pointers to image ids (`fedora:40` -> <uuid>), with a
 * history of every move so a reference can be rolled back, and a per-name retention policy.
 * Images are immutable, so a new build is a new image and publishing it means moving the tag.
 */
import { BadRequestError, ConflictError, NotFoundError } from '../kernel/errors.ts';

/** Docker-like: lowercase name components, a tag of word characters, dots and dashes. */
const NAME_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** The namespace whose references every project resolves (admins publish into it). */
export const PUBLIC_NAMESPACE = 'public';

export interface ReferenceName {
  name: string;
  tag: string;
}

export interface ReferenceRecord {
  /** The project that owns it, or PUBLIC_NAMESPACE. */
  namespace: string;
  name: string;
  tag: string;
  image_id: string;
  created_at: string;
  updated_at: string;
  updated_by: string;
  /** Bumped by every move; moves are conditional on it. */
  version: number;
}

/**
 * `snapshot`: moved (or created) to an instance's snapshot once it became active (core/instances/snapshots.ts).
 * `build`: published by a build (core/builds/), the entry naming it in `build_id`.
 */
export const HISTORY_ACTIONS = [
  'create',
  'move',
  'rollback',
  'delete',
  'publish',
  'snapshot',
  'build',
] as const;
export type HistoryAction = (typeof HISTORY_ACTIONS)[number];

export interface HistoryEntry {
  namespace: string;
  name: string;
  tag: string;
  /** Version the reference had after this entry (1 for create). */
  seq: number;
  action: HistoryAction;
  from: string | null;
  to: string | null;
  by: string;
  at: string;
  /** The build that published the image (action `build`); absent otherwise. */
  build_id?: string;
}

export function validateName(name: string): void {
  if (name.length > 128 || !NAME_PATTERN.test(name))
    throw new BadRequestError(
      `Invalid reference name '${name}': use lowercase letters, digits and single '.', '_' or '-' separators (at most 128 characters).`,
    );
}

export function validateTag(tag: string): void {
  if (!TAG_PATTERN.test(tag))
    throw new BadRequestError(
      `Invalid reference tag '${tag}': use letters, digits, '_', '.' and '-', not starting with '.' or '-' (at most 128 characters).`,
    );
}

/** Parses `name:tag`; a bare name means `name:latest`, as container tools do. */
export function parseReference(text: string): ReferenceName {
  const colon = text.lastIndexOf(':');
  const name = colon < 0 ? text : text.slice(0, colon);
  const tag = colon < 0 ? 'latest' : text.slice(colon + 1);
  validateName(name);
  validateTag(tag);
  return { name, tag };
}

export function formatReference(ref: ReferenceName): string {
  return `${ref.name}:${ref.tag}`;
}

/** A move must name the image the caller believes the reference points to (compare-and-swap). */
export function assertExpected(current: ReferenceRecord, expect: string | undefined): void {
  if (expect !== undefined && expect !== current.image_id)
    throw new ConflictError(
      `Reference ${formatReference(current)} points to ${current.image_id}, not ${expect}; it was moved by someone else.`,
    );
}

/**
 * The image a rollback returns to: the one before the current pointer, or `to` if it is an image
 * the reference pointed to before.
 */
export function rollbackTarget(
  current: ReferenceRecord,
  history: readonly HistoryEntry[],
  to?: string,
): string {
  const earlier = history
    .filter((entry) => entry.seq <= current.version && entry.to !== null)
    .sort((a, b) => b.seq - a.seq)
    .map((entry) => entry.to as string);
  if (to !== undefined) {
    if (to === current.image_id)
      throw new ConflictError(`Reference ${formatReference(current)} already points to ${to}.`);
    if (!earlier.includes(to))
      throw new BadRequestError(
        `Image ${to} was never pointed to by ${formatReference(current)}; roll back only to an earlier image.`,
      );
    return to;
  }
  const previous = earlier.find((id) => id !== current.image_id);
  if (!previous)
    throw new ConflictError(`Reference ${formatReference(current)} has no earlier image to roll back to.`);
  return previous;
}

export interface RetentionPolicy {
  /** Newest versions (distinct images of the name) kept visible. */
  keep: number;
  /** Seconds a hidden version stays usable before it is deactivated. */
  grace_seconds: number;
}

export interface RetentionPlan {
  hide: string[];
  deactivate: string[];
  /** Versions retention hid that are kept again (pointed to again, or back within `keep`): un-hidden. */
  restore: string[];
}

/** A name's retention policy with the name it belongs to (what the scheduled sweep walks). */
export interface NamedRetentionPolicy {
  namespace: string;
  name: string;
  policy: RetentionPolicy;
}

/** What one sweep over every policy did. */
export interface RetentionSweep {
  /** Names with a policy, swept or failed. */
  names: number;
  hidden: string[];
  deactivated: string[];
  restored: string[];
  /** Names whose retention failed this time; the others were still swept. */
  failed: { namespace: string; name: string; error: unknown }[];
}

/**
 * Which images of a name to retire. Versions are the distinct images the name's references have
 * pointed to, newest first by when they were first pointed to. The newest `keep` stay; so does
 * every image a reference points to now or an instance runs from. Older ones are hidden at once
 * and deactivated once hidden for longer than the grace period. A hidden version that a reference
 * points to again (moved or rolled back to it) or that is back within `keep` is restored.
 */
export function planRetention(input: {
  policy: RetentionPolicy;
  history: readonly HistoryEntry[];
  /** Image ids some reference of the name points to now. */
  pointedTo: ReadonlySet<string>;
  /** Image ids some instance runs from. */
  inUse: ReadonlySet<string>;
  /** When each image was hidden by retention (ms), if it was. */
  hiddenAt: ReadonlyMap<string, number>;
  now: number;
}): RetentionPlan {
  // History times have second precision, so order by (time, sequence) and keep that order: a
  // re-sort by time alone would let a move made within the same second tie with its predecessor.
  const firstSeen = new Set<string>();
  for (const entry of [...input.history].sort((a, b) => a.at.localeCompare(b.at) || a.seq - b.seq))
    if (entry.to !== null) firstSeen.add(entry.to);
  const versions = [...firstSeen].reverse();
  const plan: RetentionPlan = { hide: [], deactivate: [], restore: [] };
  for (const [index, id] of versions.entries()) {
    const kept = index < input.policy.keep || input.pointedTo.has(id);
    if (kept) {
      if (input.hiddenAt.has(id)) plan.restore.push(id);
      continue;
    }
    if (input.inUse.has(id)) continue;
    const hidden = input.hiddenAt.get(id);
    if (hidden === undefined) plan.hide.push(id);
    else if (input.now - hidden >= input.policy.grace_seconds * 1000) plan.deactivate.push(id);
  }
  return plan;
}

export function notFoundReference(ref: ReferenceName): NotFoundError {
  return new NotFoundError(`No reference ${formatReference(ref)} found.`);
}
