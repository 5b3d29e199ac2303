/**
 * Use cases of name:tag references. A reference lives in a namespace: the caller's project, or
 * `public` (admins only), which every project resolves after its own. Moves are compare-and-swap
 * on the reference's version, so of two concurrent moves exactly one wins and the other gets 409.
 */

import type { ImageRecord } from '../images/image.ts';
import type { ImagesService } from '../images/images-service.ts';
import { BadRequestError, ConflictError, ForbiddenError, StaleWriteError } from '../kernel/errors.ts';
import {
  canReadProject,
  canWriteProject,
  hasReaderRole,
  isHostAgent,
  makePrincipal,
  type Principal,
} from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';
import {
  assertExpected,
  type HistoryAction,
  type HistoryEntry,
  type NamedRetentionPolicy,
  notFoundReference,
  PUBLIC_NAMESPACE,
  parseReference,
  planRetention,
  type ReferenceName,
  type ReferenceRecord,
  type RetentionPlan,
  type RetentionPolicy,
  type RetentionSweep,
  rollbackTarget,
  validateName,
} from './references.ts';

export interface ReferenceRepository {
  get(namespace: string, name: string, tag: string): Promise<ReferenceRecord | null>;
  /** ConflictError when it exists. */
  create(reference: ReferenceRecord, entry: HistoryEntry): Promise<void>;
  /** StaleWriteError unless the stored version is still `previous.version`. */
  move(previous: ReferenceRecord, next: ReferenceRecord, entry: HistoryEntry): Promise<void>;
  delete(previous: ReferenceRecord, entry: HistoryEntry): Promise<void>;
  list(namespace: string, name?: string): Promise<ReferenceRecord[]>;
  /** Every tag's history of a name when `tag` is undefined. */
  history(namespace: string, name: string, tag?: string): Promise<HistoryEntry[]>;
  getPolicy(namespace: string, name: string): Promise<RetentionPolicy | null>;
  putPolicy(namespace: string, name: string, policy: RetentionPolicy): Promise<void>;
  /** Every name's policy, in all namespaces (for the scheduled sweep). */
  listPolicies(): Promise<NamedRetentionPolicy[]>;
}

/** Which images instances run from (the instances API implements it). */
export interface ImageUsage {
  inUse(imageIds: readonly string[]): Promise<Set<string>>;
}

/** Set on an image when retention hides it; the grace period counts from here. */
export const RETIRED_AT_PROPERTY = 'hangar_retired_at';

/** Namespaces are project ids (or `public`); Glance caps those at 255 characters. */
const MAX_NAMESPACE = 255;

function checkNamespace(namespace: string | undefined): void {
  if (namespace !== undefined && namespace.length > MAX_NAMESPACE)
    throw new BadRequestError(`Invalid namespace: at most ${MAX_NAMESPACE} characters are allowed.`);
}

export class ReferencesService {
  constructor(
    private readonly repo: ReferenceRepository,
    private readonly images: ImagesService,
    private readonly usage: ImageUsage,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** The namespace a write addresses: the caller's project, or `public` for admins who ask. */
  private writeNamespace(principal: Principal, requested: string | undefined): string {
    checkNamespace(requested);
    const namespace = requested ?? principal.project;
    if (canWriteProject(principal, namespace)) return namespace;
    if (namespace === principal.project)
      throw new ForbiddenError(
        `Only members of project ${namespace} may change its references and retention.`,
      );
    throw new ForbiddenError(`Only admins may change references in namespace '${namespace}'.`);
  }

  /** Own namespace (readers), public (every reader), any (admins); host agents keep their own and public. */
  private readsNamespace(principal: Principal, namespace: string): boolean {
    if (isHostAgent(principal)) return namespace === principal.project || namespace === PUBLIC_NAMESPACE;
    if (namespace === PUBLIC_NAMESPACE) return hasReaderRole(principal);
    return canReadProject(principal, namespace);
  }

  private async usableImage(principal: Principal, id: string, namespace: string): Promise<ImageRecord> {
    const image = await this.images.show(principal, id);
    if (image.status !== 'active')
      throw new ConflictError(`Image ${id} is ${image.status}; only active images can be referenced.`);
    if (namespace === PUBLIC_NAMESPACE && image.visibility !== 'public' && image.visibility !== 'community')
      throw new ConflictError(
        `Image ${id} is ${image.visibility}; a public reference must point to a public or community image.`,
      );
    return image;
  }

  private entry(
    ref: ReferenceRecord,
    action: HistoryAction,
    from: string | null,
    to: string | null,
    by: Principal,
    buildId?: string | null,
  ): HistoryEntry {
    return {
      namespace: ref.namespace,
      name: ref.name,
      tag: ref.tag,
      seq: ref.version,
      action,
      from,
      to,
      by: `${by.user}@${by.project}`,
      at: isoSeconds(this.clock()),
      ...(buildId ? { build_id: buildId } : {}),
    };
  }

  async create(
    principal: Principal,
    input: { reference: string; image_id: string; namespace?: string; build_id?: string | null },
    action: HistoryAction = 'create',
  ): Promise<ReferenceRecord> {
    const { name, tag } = parseReference(input.reference);
    const namespace = this.writeNamespace(principal, input.namespace);
    await this.usableImage(principal, input.image_id, namespace);
    const now = isoSeconds(this.clock());
    const ref: ReferenceRecord = {
      namespace,
      name,
      tag,
      image_id: input.image_id,
      created_at: now,
      updated_at: now,
      updated_by: `${principal.user}@${principal.project}`,
      version: 1,
    };
    await this.repo.create(ref, this.entry(ref, action, null, input.image_id, principal, input.build_id));
    await this.reviveQuietly(namespace, input.image_id);
    await this.applyRetentionQuietly(namespace, name);
    return ref;
  }

  /** Own namespace first, then public; the image must be visible to the caller (else 404). */
  async resolve(
    principal: Principal,
    text: string,
  ): Promise<{ reference: ReferenceRecord; image: ImageRecord }> {
    const parsed = parseReference(text);
    const reference = await this.find(principal, parsed);
    const image = await this.images.show(principal, reference.image_id).catch(() => {
      throw notFoundReference(parsed);
    });
    return { reference, image };
  }

  private async find(principal: Principal, ref: ReferenceName, namespace?: string): Promise<ReferenceRecord> {
    checkNamespace(namespace);
    const namespaces = namespace !== undefined ? [namespace] : [principal.project, PUBLIC_NAMESPACE];
    for (const ns of namespaces) {
      if (!this.readsNamespace(principal, ns)) continue;
      const found = await this.repo.get(ns, ref.name, ref.tag);
      if (found) return found;
    }
    throw notFoundReference(ref);
  }

  async show(principal: Principal, text: string, namespace?: string): Promise<ReferenceRecord> {
    return this.find(principal, parseReference(text), namespace);
  }

  async list(principal: Principal, namespace?: string, name?: string): Promise<ReferenceRecord[]> {
    if (name !== undefined) validateName(name);
    checkNamespace(namespace);
    const ns = namespace ?? principal.project;
    if (!this.readsNamespace(principal, ns)) return [];
    return this.repo.list(ns, name);
  }

  async move(
    principal: Principal,
    text: string,
    input: { image_id: string; expect?: string; namespace?: string; build_id?: string | null },
    action: HistoryAction = 'move',
  ): Promise<ReferenceRecord> {
    const parsed = parseReference(text);
    const namespace = this.writeNamespace(principal, input.namespace);
    const current = await this.repo.get(namespace, parsed.name, parsed.tag);
    if (!current) throw notFoundReference(parsed);
    assertExpected(current, input.expect);
    if (current.image_id === input.image_id) return current;
    await this.usableImage(principal, input.image_id, namespace);
    const next: ReferenceRecord = {
      ...current,
      image_id: input.image_id,
      updated_at: isoSeconds(this.clock()),
      updated_by: `${principal.user}@${principal.project}`,
      version: current.version + 1,
    };
    try {
      await this.repo.move(
        current,
        next,
        this.entry(next, action, current.image_id, input.image_id, principal, input.build_id),
      );
    } catch (error) {
      if (error instanceof StaleWriteError)
        throw new ConflictError(
          `Reference ${parsed.name}:${parsed.tag} was moved by another request; read it again and retry.`,
        );
      throw error;
    }
    await this.reviveQuietly(namespace, input.image_id);
    await this.applyRetentionQuietly(namespace, parsed.name);
    return next;
  }

  async rollback(
    principal: Principal,
    text: string,
    input: { to?: string; expect?: string; namespace?: string },
  ): Promise<ReferenceRecord> {
    const parsed = parseReference(text);
    const namespace = this.writeNamespace(principal, input.namespace);
    const current = await this.repo.get(namespace, parsed.name, parsed.tag);
    if (!current) throw notFoundReference(parsed);
    const history = await this.repo.history(namespace, parsed.name, parsed.tag);
    const target = rollbackTarget(current, history, input.to);
    return this.move(
      principal,
      text,
      { image_id: target, expect: input.expect ?? current.image_id, namespace },
      'rollback',
    );
  }

  async delete(principal: Principal, text: string, namespace?: string): Promise<void> {
    const parsed = parseReference(text);
    const ns = this.writeNamespace(principal, namespace);
    const current = await this.repo.get(ns, parsed.name, parsed.tag);
    if (!current) throw notFoundReference(parsed);
    const gone = { ...current, version: current.version + 1 };
    await this.repo.delete(current, this.entry(gone, 'delete', current.image_id, null, principal));
  }

  async history(principal: Principal, text: string, namespace?: string): Promise<HistoryEntry[]> {
    const parsed = parseReference(text);
    checkNamespace(namespace);
    const current = await this.find(principal, parsed, namespace).catch(() => undefined);
    const ns = current?.namespace ?? namespace ?? principal.project;
    if (!this.readsNamespace(principal, ns)) throw notFoundReference(parsed);
    const entries = await this.repo.history(ns, parsed.name, parsed.tag);
    if (entries.length === 0) throw notFoundReference(parsed);
    return entries.sort((a, b) => b.seq - a.seq);
  }

  async setPolicy(
    principal: Principal,
    name: string,
    policy: RetentionPolicy,
    namespace?: string,
  ): Promise<RetentionPolicy> {
    validateName(name);
    if (!Number.isInteger(policy.keep) || policy.keep < 1)
      throw new BadRequestError('keep must be an integer of at least 1.');
    if (!Number.isInteger(policy.grace_seconds) || policy.grace_seconds < 0)
      throw new BadRequestError('grace_seconds must be a non-negative integer.');
    const ns = this.writeNamespace(principal, namespace);
    await this.repo.putPolicy(ns, name, policy);
    return policy;
  }

  async getPolicy(principal: Principal, name: string, namespace?: string): Promise<RetentionPolicy | null> {
    validateName(name);
    checkNamespace(namespace);
    const ns = namespace ?? principal.project;
    if (!this.readsNamespace(principal, ns)) return null;
    return this.repo.getPolicy(ns, name);
  }

  // -------------------------------------------------------------------------------------------
  // Publishing (core/references/publish.ts drives these from the publish state machine's steps).

  /** Where a publish would write, and what the reference points to now (null: not yet created). */
  async publishTarget(
    principal: Principal,
    ref: ReferenceName,
    namespace: string | undefined,
    candidateId: string,
  ): Promise<{ namespace: string; current: ReferenceRecord | null }> {
    const ns = this.writeNamespace(principal, namespace);
    await this.usableImage(principal, candidateId, ns);
    return { namespace: ns, current: await this.repo.get(ns, ref.name, ref.tag) };
  }

  /** The candidate as the publisher may use it (active, visible, public enough for `namespace`). */
  publishCandidate(principal: Principal, candidateId: string, namespace: string): Promise<ImageRecord> {
    return this.usableImage(principal, candidateId, this.writeNamespace(principal, namespace));
  }

  /** 409 unless the reference still points to `expect` (null: it must not exist). */
  async assertStill(
    principal: Principal,
    text: string,
    namespace: string,
    expect: string | null,
  ): Promise<void> {
    const parsed = parseReference(text);
    const current = await this.repo.get(this.writeNamespace(principal, namespace), parsed.name, parsed.tag);
    if ((current?.image_id ?? null) !== expect)
      throw new ConflictError(
        `Reference ${parsed.name}:${parsed.tag} now points to ${current?.image_id ?? 'nothing'}, not ${expect ?? 'nothing'}: someone else moved it.`,
      );
  }

  /**
   * The publish's final step: a conditional move, or a create when `expect` is null. A build's
   * publish (`build_id`) is recorded as `build`, naming the build.
   */
  async publishMove(
    principal: Principal,
    text: string,
    input: { image_id: string; expect: string | null; namespace: string; build_id?: string | null },
  ): Promise<ReferenceRecord> {
    const action: HistoryAction = input.build_id ? 'build' : 'publish';
    if (input.expect !== null) return this.move(principal, text, { ...input, expect: input.expect }, action);
    try {
      return await this.create(
        principal,
        { reference: text, image_id: input.image_id, namespace: input.namespace, build_id: input.build_id },
        input.build_id ? 'build' : 'create',
      );
    } catch (error) {
      if (error instanceof ConflictError)
        throw new ConflictError(`Reference ${text} was created by someone else meanwhile.`);
      throw error;
    }
  }

  /**
   * Where a snapshot's reference would be written, and what it points to now (null: it does not
   * exist yet): checked when the snapshot is asked for, so a reference the caller may not write is
   * refused before anything is made.
   */
  async snapshotTarget(
    principal: Principal,
    text: string,
    requested?: string,
  ): Promise<{ namespace: string; current: string | null }> {
    const parsed = parseReference(text);
    const namespace = this.writeNamespace(principal, requested);
    const current = await this.repo.get(namespace, parsed.name, parsed.tag);
    return { namespace, current: current?.image_id ?? null };
  }

  /**
   * A snapshot's move, once its image is active: compare-and-swap from what the reference pointed
   * to when the snapshot was asked for (`expect` null: it must still not exist), recorded as
   * `snapshot` in the history.
   */
  async snapshotMove(
    principal: Principal,
    text: string,
    input: { image_id: string; expect: string | null; namespace: string },
  ): Promise<ReferenceRecord> {
    if (input.expect !== null)
      return this.move(principal, text, { ...input, expect: input.expect }, 'snapshot');
    try {
      return await this.create(
        principal,
        { reference: text, image_id: input.image_id, namespace: input.namespace },
        'snapshot',
      );
    } catch (error) {
      if (error instanceof ConflictError)
        throw new ConflictError(`Reference ${text} was created by someone else meanwhile.`);
      throw error;
    }
  }

  /** Applies the name's retention policy now; returns what it did. */
  async applyRetention(principal: Principal, name: string, namespace?: string): Promise<RetentionPlan> {
    validateName(name);
    return this.retain(this.writeNamespace(principal, namespace), name);
  }

  /**
   * Applies every name's policy: without this scheduled sweep a hidden version would only be
   * deactivated when a reference of its name moves again. Names are independent, so one that
   * fails is reported in `failed` and the others are still swept.
   */
  async sweepRetention(): Promise<RetentionSweep> {
    const policies = await this.repo.listPolicies();
    const sweep: RetentionSweep = {
      names: policies.length,
      hidden: [],
      deactivated: [],
      restored: [],
      failed: [],
    };
    for (const { namespace, name } of policies) {
      try {
        const plan = await this.retain(namespace, name);
        sweep.hidden.push(...plan.hide);
        sweep.deactivated.push(...plan.deactivate);
        sweep.restored.push(...plan.restore);
      } catch (error) {
        sweep.failed.push({ namespace, name, error });
      }
    }
    return sweep;
  }

  /** Retention acts for the namespace with the rights of its policy, not of whoever moved a tag. */
  private retentionActor(namespace: string): Principal {
    return makePrincipal(namespace, 'retention', ['admin']);
  }

  /**
   * A version retention hid is served again once a reference points to it: show it again and
   * clear its retirement mark, so its grace period does not run on (and deactivate it) while
   * the reference serves it. Nothing to do for an image retention never hid.
   */
  private revive(namespace: string, id: string): Promise<ImageRecord> {
    return this.images.mutate(this.retentionActor(namespace), id, (image) => {
      if (image.properties[RETIRED_AT_PROPERTY] === undefined) return null;
      const { [RETIRED_AT_PROPERTY]: _cleared, ...properties } = image.properties;
      return { ...image, os_hidden: false, properties };
    });
  }

  private async reviveQuietly(namespace: string, id: string): Promise<void> {
    // The move has landed; if this fails, the name's next retention run (or sweep) restores it.
    await this.revive(namespace, id).catch(() => undefined);
  }

  private async applyRetentionQuietly(namespace: string, name: string): Promise<void> {
    // Retention is housekeeping: a failure here must not fail the move that triggered it.
    await this.retain(namespace, name).catch(() => undefined);
  }

  private async retain(namespace: string, name: string): Promise<RetentionPlan> {
    const policy = await this.repo.getPolicy(namespace, name);
    if (!policy) return { hide: [], deactivate: [], restore: [] };
    const [history, references] = await Promise.all([
      this.repo.history(namespace, name),
      this.repo.list(namespace, name),
    ]);
    const candidates = [...new Set(history.map((e) => e.to).filter((id): id is string => id !== null))];
    const actor = this.retentionActor(namespace);
    const hiddenAt = new Map<string, number>();
    const readable = new Set<string>();
    const active = new Set<string>();
    for (const id of candidates) {
      const image = await this.images.show(actor, id).catch(() => undefined);
      if (!image) continue;
      readable.add(id);
      if (image.status === 'active') active.add(id);
      const stamp = image.properties[RETIRED_AT_PROPERTY];
      if (stamp) hiddenAt.set(id, Date.parse(stamp));
    }
    const planned = planRetention({
      policy,
      history,
      pointedTo: new Set(references.map((r) => r.image_id)),
      inUse: await this.usage.inUse(candidates),
      hiddenAt,
      now: this.clock().getTime(),
    });
    // A version deleted since (or unreadable now) cannot be hidden: trying would throw and stop
    // this name's retention at that image on every run, sweep included.
    // A deactivated version stays as retention left it even when kept again: only an active one
    // is shown again.
    const plan: RetentionPlan = {
      ...planned,
      hide: planned.hide.filter((id) => readable.has(id)),
      restore: planned.restore.filter((id) => active.has(id)),
    };
    for (const id of plan.restore) await this.revive(namespace, id);
    for (const id of plan.hide)
      await this.images.mutate(actor, id, (image) =>
        image.os_hidden && image.properties[RETIRED_AT_PROPERTY]
          ? null
          : {
              ...image,
              os_hidden: true,
              properties: { ...image.properties, [RETIRED_AT_PROPERTY]: isoSeconds(this.clock()) },
            },
      );
    for (const id of plan.deactivate) await this.images.deactivate(actor, id).catch(() => undefined);
    return plan;
  }
}
