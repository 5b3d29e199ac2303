/**
 * Glance's metadata definitions catalogue (/v2/metadefs): namespaces of property definitions,
 * objects and tags, associated with resource types, that clients and consoles read to offer
 * image properties and their allowed values.
 *
 * Access (Glance's secure defaults, glance/policies/metadef.py): anyone authenticated reads the
 * public namespaces and their own project's private ones; admins read everything. Every write is
 * admin-only. A namespace the caller may not see is reported missing (404), never forbidden; one
 * it sees but may not change is a 403. A protected namespace, and everything in it, cannot be
 * deleted (403) until `protected` is set back to false.
 */
import { randomUUID } from 'node:crypto';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError } from '../kernel/errors.ts';
import { hasReaderRole, type Principal } from '../kernel/principal.ts';
import { retryOnStale } from '../kernel/retry.ts';
import { isoSeconds } from '../kernel/time.ts';
import type { AssociationBody, ObjectBody, PropertySchema } from './validation.ts';
import {
  checkTagName,
  MAX_CHILD_NAME_LENGTH,
  MAX_NAMESPACE_LENGTH,
  MAX_RESOURCE_TYPE_LENGTH,
  type NamespaceBody,
  parseAssociationBody,
  parseNamespaceBody,
  parseObjectBody,
  parsePropertyBody,
  parseTagBody,
  parseTagsBody,
} from './validation.ts';

export type NamespaceVisibility = 'public' | 'private';

export interface AssociationRecord {
  name: string;
  prefix?: string;
  properties_target?: string;
  created_at: string;
  updated_at: string;
}

export interface NamespaceRecord {
  /** Immutable; names the partition of its children, so a rename moves only this record. */
  id: string;
  namespace: string;
  display_name?: string;
  description?: string;
  visibility: NamespaceVisibility;
  protected: boolean;
  owner: string | null;
  created_at: string;
  updated_at: string;
  version: number;
  /** Resource type associations live on the record: listings show them without further reads. */
  associations: AssociationRecord[];
}

export interface ObjectRecord {
  name: string;
  description?: string;
  required?: string[];
  properties?: Record<string, PropertySchema>;
  created_at: string;
  updated_at: string;
}

export interface PropertyRecord {
  name: string;
  schema: PropertySchema;
}

export interface TagRecord {
  name: string;
  created_at: string;
  updated_at: string;
}

export interface ResourceTypeRecord {
  name: string;
  protected: boolean;
  created_at: string;
  updated_at: string;
}

export interface ChildRecords {
  object: ObjectRecord;
  property: PropertyRecord;
  tag: TagRecord;
}
export type ChildKind = keyof ChildRecords;

export interface NamespaceContents {
  objects: ObjectRecord[];
  properties: PropertyRecord[];
  tags: TagRecord[];
}

/** How a conditional child write ended (the repository never knows the API's messages). */
export type ChildWriteOutcome = 'ok' | 'namespace_gone' | 'missing' | 'exists';

export interface MetadefRepository {
  getNamespace(name: string): Promise<NamespaceRecord | null>;
  /** Every namespace (one Query of the listing partition; the catalogue is small). */
  listNamespaces(): Promise<NamespaceRecord[]>;
  /** 'exists' when the name is taken; the contents are written with the record. */
  createNamespace(namespace: NamespaceRecord, contents: NamespaceContents): Promise<'ok' | 'exists'>;
  /**
   * Writes `next` if the stored version is still `previous.version` (StaleWriteError otherwise);
   * a rename moves the record, 'exists' when the new name is taken.
   */
  updateNamespace(previous: NamespaceRecord, next: NamespaceRecord): Promise<'ok' | 'exists'>;
  /** The record (version-checked, StaleWriteError) and then everything in it. */
  deleteNamespace(namespace: NamespaceRecord): Promise<void>;
  listChildren<K extends ChildKind>(namespace: NamespaceRecord, kind: K): Promise<ChildRecords[K][]>;
  getChild<K extends ChildKind>(
    namespace: NamespaceRecord,
    kind: K,
    name: string,
  ): Promise<ChildRecords[K] | null>;
  /**
   * Writes a child while its namespace exists. `replacing` names the child it updates (which must
   * exist: 'missing' otherwise); a new name must be free ('exists' otherwise).
   */
  putChild<K extends ChildKind>(
    namespace: NamespaceRecord,
    kind: K,
    record: ChildRecords[K],
    replacing?: string,
  ): Promise<ChildWriteOutcome>;
  /** false when there was no such child. */
  deleteChild(namespace: NamespaceRecord, kind: ChildKind, name: string): Promise<boolean>;
  deleteChildren(namespace: NamespaceRecord, kind: ChildKind): Promise<void>;
  /** Removes `remove` and adds `add` (new names must be free: 'exists' otherwise). */
  replaceTags(namespace: NamespaceRecord, remove: TagRecord[], add: TagRecord[]): Promise<ChildWriteOutcome>;
  listResourceTypes(): Promise<ResourceTypeRecord[]>;
  /** Creates the resource type unless one of that name exists. */
  ensureResourceType(resourceType: ResourceTypeRecord): Promise<void>;
  /** Whether seed set `version` was written (so a deleted seed namespace does not come back). */
  isSeeded(version: string): Promise<boolean>;
  markSeeded(version: string): Promise<void>;
}

/** A seed namespace as Glance's etc/metadefs/*.json files write them. */
export interface SeedNamespace extends NamespaceBody {
  namespace: string;
}
export interface MetadefSeed {
  version: string;
  resourceTypes: readonly string[];
  namespaces: readonly SeedNamespace[];
  owner: string;
}

// ---------------------------------------------------------------------------------------------
// Rendering (Glance's wsme models as JSON).

const SCHEMA_LINK = '/v2/schemas/metadefs/namespace';
const OBJECT_SCHEMA_LINK = '/v2/schemas/metadefs/object';

function namespaceHref(name: string): string {
  return `/v2/metadefs/namespaces/${name}`;
}

export function renderAssociation(association: AssociationRecord): Record<string, unknown> {
  return { ...association };
}

export function renderObject(namespace: string, object: ObjectRecord): Record<string, unknown> {
  return {
    ...object,
    schema: OBJECT_SCHEMA_LINK,
    self: `${namespaceHref(namespace)}/objects/${object.name}`,
  };
}

export function renderProperty(property: PropertyRecord): Record<string, unknown> {
  return { name: property.name, ...property.schema };
}

export function renderTag(tag: TagRecord): Record<string, unknown> {
  return { ...tag };
}

function propertiesMap(properties: readonly PropertyRecord[], prefix = ''): Record<string, PropertySchema> {
  return Object.fromEntries(properties.map((p) => [`${prefix}${p.name}`, p.schema]));
}

export function renderNamespace(
  namespace: NamespaceRecord,
  contents?: NamespaceContents,
  prefix = '',
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    namespace: namespace.namespace,
    visibility: namespace.visibility,
    protected: namespace.protected,
    created_at: namespace.created_at,
    updated_at: namespace.updated_at,
    schema: SCHEMA_LINK,
    self: namespaceHref(namespace.namespace),
  };
  if (namespace.display_name !== undefined) out.display_name = namespace.display_name;
  if (namespace.description !== undefined) out.description = namespace.description;
  if (namespace.owner !== null) out.owner = namespace.owner;
  if (namespace.associations.length > 0)
    out.resource_type_associations = namespace.associations.map(renderAssociation);
  if (contents) {
    if (contents.properties.length > 0) out.properties = propertiesMap(contents.properties, prefix);
    if (contents.objects.length > 0)
      out.objects = contents.objects.map((object) => {
        const rendered = renderObject(namespace.namespace, object);
        if (prefix && object.properties)
          rendered.properties = Object.fromEntries(
            Object.entries(object.properties).map(([k, v]) => [`${prefix}${k}`, v]),
          );
        if (prefix && object.required) rendered.required = object.required.map((r) => `${prefix}${r}`);
        return rendered;
      });
    if (contents.tags.length > 0) out.tags = contents.tags.map((tag) => ({ name: tag.name }));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Messages (Glance's, glance/common/exception.py).

const namespaceNotFound = (name: string) =>
  new NotFoundError(`Metadata definition namespace=${name} was not found.`);
const notAuthorized = (action: string) =>
  new ForbiddenError(`You are not authorized to complete ${action} action.`);
const CHILD_NOT_FOUND: Record<ChildKind, (name: string, ns: string) => string> = {
  object: (name, ns) => `The metadata definition object with name=${name} was not found in namespace=${ns}.`,
  property: (name, ns) =>
    `The metadata definition property with name=${name} was not found in namespace=${ns}.`,
  tag: (name, ns) => `The metadata definition tag with name=${name} was not found in namespace=${ns}.`,
};
const CHILD_DUPLICATE: Record<ChildKind, (name: string, ns: string) => string> = {
  object: (name, ns) => `A metadata definition object with name=${name} already exists in namespace=${ns}.`,
  property: (name, ns) =>
    `A metadata definition property with name=${name} already exists in namespace=${ns}.`,
  tag: (name, ns) =>
    `A metadata tag with name=${name} already exists in namespace=${ns}. (Please note that metadata tag names are case insensitive).`,
};
const CHILD_PROTECTED: Record<ChildKind, (name: string) => string> = {
  object: (name) => `Metadata definition object ${name} is protected and cannot be deleted.`,
  property: (name) => `Metadata definition property ${name} is protected and cannot be deleted.`,
  tag: (name) => `Metadata definition tag ${name} is protected and cannot be deleted.`,
};
const CHILD_ACTIONS: Record<ChildKind, { add: string; modify: string; remove: string }> = {
  object: { add: 'add_metadef_object', modify: 'modify_metadef_object', remove: 'delete_metadef_object' },
  property: {
    add: 'add_metadef_property',
    modify: 'modify_metadef_property',
    remove: 'remove_metadef_property',
  },
  tag: { add: 'add_metadef_tag', modify: 'modify_metadef_tag', remove: 'delete_metadef_tag' },
};
const protectedNamespace = (name: string) =>
  new ForbiddenError(`Metadata definition namespace ${name} is protected and cannot be deleted.`);

// ---------------------------------------------------------------------------------------------
// Listing.

export const NAMESPACE_SORT_KEYS = [
  'created_at',
  'updated_at',
  'namespace',
  'display_name',
  'owner',
  'visibility',
  'protected',
] as const;
type NamespaceSortKey = (typeof NAMESPACE_SORT_KEYS)[number];
const TAG_SORT_KEYS = ['created_at', 'updated_at', 'name'] as const;

export interface ListParams {
  limit?: string;
  marker?: string;
  sort_key?: string;
  sort_dir?: string;
  visibility?: string;
  resource_types?: string;
}

/** Glance's limit_param_default and api_limit_max. */
const DEFAULT_LIMIT = 25;
const MAX_LIMIT = 1000;

/** changeNamespace: the first try and up to five more on a namespace that changed meanwhile. */
const NAMESPACE_WRITE_ATTEMPTS = 6;

function parseLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIMIT;
  if (!/^[+-]?\d+$/.test(raw.trim())) throw new BadRequestError('limit param must be an integer');
  const limit = Number(raw);
  if (limit < 0) throw new BadRequestError('limit param must be positive');
  return Math.min(limit, MAX_LIMIT);
}

function parseSortDir(raw: string | undefined): 'asc' | 'desc' {
  const dir = raw ?? 'desc';
  if (dir !== 'asc' && dir !== 'desc') throw new BadRequestError(`Invalid sort direction: ${dir}`);
  return dir;
}

function parseSortKey<K extends string>(raw: string | undefined, allowed: readonly K[]): K {
  const key = raw ?? 'created_at';
  if (!(allowed as readonly string[]).includes(key)) throw new BadRequestError(`Invalid sort key: ${key}`);
  return key as K;
}

function compareValues(a: unknown, b: unknown): number {
  const av = a === undefined || a === null ? '' : String(a);
  const bv = b === undefined || b === null ? '' : String(b);
  return av < bv ? -1 : av > bv ? 1 : 0;
}

/** Sorted by `key`, then Glance's tiebreakers created_at and a stable identity, in `dir`. */
function sortBy<T>(items: T[], key: keyof T, dir: 'asc' | 'desc', identity: (item: T) => string): T[] {
  const sign = dir === 'asc' ? 1 : -1;
  return items.sort(
    (a, b) =>
      sign *
      (compareValues(a[key], b[key]) ||
        compareValues((a as { created_at?: string }).created_at, (b as { created_at?: string }).created_at) ||
        compareValues(identity(a), identity(b))),
  );
}

export interface NamespacePage {
  namespaces: Record<string, unknown>[];
  /** The last namespace's name when the page is full (Glance's `next`). */
  next?: string;
}

// ---------------------------------------------------------------------------------------------

/** Glance lower-cases nothing, but its database compares tag names without regard to case. */
export const tagIdentity = (name: string) => name.toLowerCase();

export class MetadefsService {
  private seeding: Promise<void> | undefined;

  constructor(
    private readonly repo: MetadefRepository,
    private readonly seed: MetadefSeed,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private now(): string {
    return isoSeconds(this.clock());
  }

  // -- seeding --------------------------------------------------------------------------------

  /**
   * Writes the seed catalogue once per table: each namespace only if its name is free, then a
   * marker, so a restart (or a concurrent cold start) changes nothing and an admin's deletion of
   * a seeded namespace sticks. Memoized per process; a failure is retried on the next call.
   */
  ensureSeeded(): Promise<void> {
    this.seeding ??= this.writeSeed().catch((error: unknown) => {
      this.seeding = undefined;
      throw error;
    });
    return this.seeding;
  }

  private async writeSeed(): Promise<void> {
    if (await this.repo.isSeeded(this.seed.version)) return;
    const now = this.now();
    for (const name of this.seed.resourceTypes)
      await this.repo.ensureResourceType({ name, protected: true, created_at: now, updated_at: now });
    for (const body of this.seed.namespaces) {
      const { record, contents } = this.build(parseNamespaceBody(body), this.seed.owner, now);
      await this.repo.createNamespace(record, contents);
      for (const association of record.associations)
        await this.repo.ensureResourceType({
          name: association.name,
          protected: false,
          created_at: now,
          updated_at: now,
        });
    }
    await this.repo.markSeeded(this.seed.version);
  }

  // -- access ---------------------------------------------------------------------------------

  // Glance's secure defaults: a reader (or member) reads public namespaces and its project's own;
  // a token with no recognised role reads none.
  private canSee(namespace: NamespaceRecord, principal: Principal): boolean {
    if (principal.isAdmin) return true;
    if (!hasReaderRole(principal)) return false;
    return (
      namespace.visibility === 'public' || (namespace.owner !== null && namespace.owner === principal.project)
    );
  }

  private async visible(name: string, principal: Principal): Promise<NamespaceRecord> {
    await this.ensureSeeded();
    // Longer names cannot exist (and would not fit a DynamoDB key).
    const namespace = [...name].length <= MAX_NAMESPACE_LENGTH ? await this.repo.getNamespace(name) : null;
    if (!namespace || !this.canSee(namespace, principal)) throw namespaceNotFound(name);
    return namespace;
  }

  /** Admin-only writes: a visible namespace gives 403, an invisible one 404 (visible() first). */
  private requireAdmin(principal: Principal, action: string): void {
    if (!principal.isAdmin) throw notAuthorized(action);
  }

  /**
   * Reads the namespace and runs `change` on it; if the namespace changed meanwhile (StaleWriteError)
   * it reads it again and decides afresh, up to five more times.
   */
  private async changeNamespace<T>(
    name: string,
    principal: Principal,
    change: (namespace: NamespaceRecord) => Promise<T>,
  ): Promise<T> {
    return retryOnStale(async () => change(await this.visible(name, principal)), {
      maxAttempts: NAMESPACE_WRITE_ATTEMPTS,
    });
  }

  // -- namespaces -----------------------------------------------------------------------------

  private build(
    body: NamespaceBody,
    owner: string,
    now: string,
  ): { record: NamespaceRecord; contents: NamespaceContents } {
    const record: NamespaceRecord = {
      id: randomUUID(),
      namespace: body.namespace,
      visibility: body.visibility ?? 'private',
      protected: body.protected ?? false,
      owner: body.owner ?? owner,
      created_at: now,
      updated_at: now,
      version: 1,
      associations: [],
    };
    if (body.display_name !== undefined) record.display_name = body.display_name;
    if (body.description !== undefined) record.description = body.description;
    for (const association of body.resource_type_associations ?? []) {
      if (record.associations.some((a) => a.name === association.name))
        throw new ConflictError(duplicateAssociation(association.name, body.namespace));
      record.associations.push(newAssociation(association, now));
    }
    const contents: NamespaceContents = { objects: [], properties: [], tags: [] };
    for (const object of body.objects ?? []) {
      if (contents.objects.some((o) => o.name === object.name))
        throw new ConflictError(CHILD_DUPLICATE.object(object.name, body.namespace));
      contents.objects.push(newObject(object, now));
    }
    for (const [name, schema] of Object.entries(body.properties ?? {})) {
      if ([...name].length > MAX_CHILD_NAME_LENGTH)
        throw new BadRequestError(
          `Property name ${name} is longer than ${MAX_CHILD_NAME_LENGTH} characters.`,
        );
      const { name: _ignored, ...rest } = schema;
      contents.properties.push({ name, schema: rest });
    }
    for (const tag of body.tags ?? []) {
      if (contents.tags.some((t) => tagIdentity(t.name) === tagIdentity(tag.name)))
        throw new ConflictError(CHILD_DUPLICATE.tag(tag.name, body.namespace));
      contents.tags.push({ name: tag.name, created_at: now, updated_at: now });
    }
    return { record, contents };
  }

  async createNamespace(principal: Principal, input: unknown): Promise<Record<string, unknown>> {
    await this.ensureSeeded();
    this.requireAdmin(principal, 'add_metadef_namespace');
    const now = this.now();
    const { record, contents } = this.build(parseNamespaceBody(input), principal.project, now);
    if ((await this.repo.createNamespace(record, contents)) === 'exists')
      throw new ConflictError(`The metadata definition namespace=${record.namespace} already exists.`);
    for (const association of record.associations)
      await this.repo.ensureResourceType(newResourceType(association.name, now));
    return renderNamespace(record, contents);
  }

  async listNamespaces(principal: Principal, params: ListParams): Promise<NamespacePage> {
    await this.ensureSeeded();
    const limit = parseLimit(params.limit);
    const sortKey = parseSortKey<NamespaceSortKey>(params.sort_key, NAMESPACE_SORT_KEYS);
    const sortDir = parseSortDir(params.sort_dir);
    const visibility = params.visibility;
    if (visibility && visibility !== 'public' && visibility !== 'private')
      throw new BadRequestError(`Invalid visibility value: ${visibility}`);
    const resourceTypes = params.resource_types ? params.resource_types.split(',') : undefined;

    const all = (await this.repo.listNamespaces()).filter((ns) => this.canSee(ns, principal));
    const matching = all.filter(
      (ns) =>
        (!visibility || ns.visibility === visibility) &&
        (!resourceTypes || ns.associations.some((a) => resourceTypes.includes(a.name))),
    );
    let start = 0;
    if (params.marker !== undefined) {
      const marker = all.find((ns) => ns.namespace === params.marker);
      if (!marker) throw namespaceNotFound(params.marker);
      // The marker need not match the filters: the page starts after its place in the order.
      if (!matching.includes(marker)) matching.push(marker);
      sortBy(matching, sortKey, sortDir, (ns) => ns.id);
      start = matching.indexOf(marker) + 1;
    } else sortBy(matching, sortKey, sortDir, (ns) => ns.id);
    return this.namespacePage(matching.slice(start, start + limit), limit);
  }

  private namespacePage(shown: NamespaceRecord[], limit: number): NamespacePage {
    const out: NamespacePage = { namespaces: shown.map((ns) => renderNamespace(ns)) };
    const last = shown.at(-1);
    if (last && shown.length === limit) out.next = last.namespace;
    return out;
  }

  async showNamespace(
    principal: Principal,
    name: string,
    resourceType?: string,
  ): Promise<Record<string, unknown>> {
    const namespace = await this.visible(name, principal);
    const contents = await this.contents(namespace);
    const prefix = resourceType
      ? (namespace.associations.find((a) => a.name === resourceType)?.prefix ?? '')
      : '';
    return renderNamespace(namespace, contents, prefix);
  }

  private async contents(namespace: NamespaceRecord): Promise<NamespaceContents> {
    const [objects, properties, tags] = await Promise.all([
      this.repo.listChildren(namespace, 'object'),
      this.repo.listChildren(namespace, 'property'),
      this.repo.listChildren(namespace, 'tag'),
    ]);
    return {
      objects: sortBy(objects, 'name', 'asc', (o) => o.name),
      properties: properties.sort((a, b) => compareValues(a.name, b.name)),
      tags: sortBy(tags, 'created_at', 'asc', (t) => tagIdentity(t.name)),
    };
  }

  /** PUT replaces the namespace's own fields; what the body leaves out takes the create defaults. */
  async updateNamespace(
    principal: Principal,
    name: string,
    input: unknown,
  ): Promise<Record<string, unknown>> {
    return this.changeNamespace(name, principal, async (previous) => {
      this.requireAdmin(principal, 'modify_metadef_namespace');
      const body = parseNamespaceBody(input);
      const next: NamespaceRecord = {
        ...previous,
        namespace: body.namespace,
        visibility: body.visibility ?? 'private',
        protected: body.protected ?? false,
        owner: body.owner ?? principal.project,
        updated_at: this.now(),
        version: previous.version + 1,
      };
      delete next.display_name;
      delete next.description;
      if (body.display_name !== undefined) next.display_name = body.display_name;
      if (body.description !== undefined) next.description = body.description;
      if ((await this.repo.updateNamespace(previous, next)) === 'exists')
        throw new ConflictError(`The metadata definition namespace=${next.namespace} already exists.`);
      return renderNamespace(next);
    });
  }

  async deleteNamespace(principal: Principal, name: string): Promise<void> {
    // Changed meanwhile (e.g. made protected): changeNamespace decides again on the fresh record.
    await this.changeNamespace(name, principal, async (namespace) => {
      this.requireAdmin(principal, 'delete_metadef_namespace');
      if (namespace.protected) throw protectedNamespace(namespace.namespace);
      await this.repo.deleteNamespace(namespace);
    });
  }

  /** DELETE /objects, /properties, /tags: everything of one kind (Glance checks namespace deletion rights). */
  async deleteAllChildren(principal: Principal, name: string, kind: ChildKind): Promise<void> {
    const namespace = await this.visible(name, principal);
    this.requireAdmin(principal, 'delete_metadef_namespace');
    if (kind === 'tag') this.requireAdmin(principal, 'delete_metadef_tags');
    if (namespace.protected) throw protectedNamespace(namespace.namespace);
    await this.repo.deleteChildren(namespace, kind);
  }

  // -- objects, properties, tags --------------------------------------------------------------

  private async child<K extends ChildKind>(
    namespace: NamespaceRecord,
    kind: K,
    name: string,
  ): Promise<ChildRecords[K]> {
    const found =
      [...name].length <= MAX_CHILD_NAME_LENGTH ? await this.repo.getChild(namespace, kind, name) : null;
    if (!found) throw new NotFoundError(CHILD_NOT_FOUND[kind](name, namespace.namespace));
    return found;
  }

  private async write<K extends ChildKind>(
    namespace: NamespaceRecord,
    kind: K,
    record: ChildRecords[K],
    replacing?: string,
  ): Promise<void> {
    const outcome = await this.repo.putChild(namespace, kind, record, replacing);
    if (outcome === 'namespace_gone') throw namespaceNotFound(namespace.namespace);
    if (outcome === 'missing')
      throw new NotFoundError(CHILD_NOT_FOUND[kind](replacing ?? record.name, namespace.namespace));
    if (outcome === 'exists')
      throw new ConflictError(CHILD_DUPLICATE[kind](record.name, namespace.namespace));
  }

  /** POST of one object, property or tag: `build` makes the record from the request. */
  private async addChild<K extends ChildKind>(
    principal: Principal,
    ns: string,
    kind: K,
    build: () => ChildRecords[K],
  ): Promise<{ namespace: NamespaceRecord; record: ChildRecords[K] }> {
    const namespace = await this.visible(ns, principal);
    this.requireAdmin(principal, CHILD_ACTIONS[kind].add);
    const record = build();
    await this.write(namespace, kind, record);
    return { namespace, record };
  }

  /** PUT of one object, property or tag: `build` makes the new record from the stored one. */
  private async replaceChild<K extends ChildKind>(
    principal: Principal,
    ns: string,
    kind: K,
    name: string,
    build: (previous: ChildRecords[K]) => ChildRecords[K],
  ): Promise<{ namespace: NamespaceRecord; record: ChildRecords[K] }> {
    const namespace = await this.visible(ns, principal);
    this.requireAdmin(principal, CHILD_ACTIONS[kind].modify);
    const previous = await this.child(namespace, kind, name);
    const record = build(previous);
    await this.write(namespace, kind, record, previous.name);
    return { namespace, record };
  }

  async listObjects(principal: Principal, ns: string, params: ListParams): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    const objects = await this.listChildren(namespace, 'object', params, (o) => o.name);
    return {
      objects: objects.map((o) => renderObject(namespace.namespace, o)),
      schema: 'v2/schemas/metadefs/objects',
    };
  }

  private async listChildren<K extends 'object' | 'tag'>(
    namespace: NamespaceRecord,
    kind: K,
    params: ListParams,
    identity: (item: ChildRecords[K]) => string,
  ): Promise<ChildRecords[K][]> {
    const limit = params.limit === undefined ? Number.POSITIVE_INFINITY : parseLimit(params.limit);
    const key = parseSortKey(params.sort_key, TAG_SORT_KEYS);
    const dir = parseSortDir(params.sort_dir);
    const all = sortBy(await this.repo.listChildren(namespace, kind), key, dir, identity);
    let start = 0;
    if (params.marker !== undefined) {
      const marker = params.marker;
      const at = all.findIndex((item) =>
        kind === 'tag' ? tagIdentity(item.name) === tagIdentity(marker) : item.name === marker,
      );
      if (at < 0) throw new NotFoundError(CHILD_NOT_FOUND[kind](marker, namespace.namespace));
      start = at + 1;
    }
    return all.slice(start, start + limit);
  }

  async createObject(principal: Principal, ns: string, input: unknown): Promise<Record<string, unknown>> {
    const { namespace, record } = await this.addChild(principal, ns, 'object', () =>
      newObject(parseObjectBody(input), this.now()),
    );
    return renderObject(namespace.namespace, record);
  }

  async showObject(principal: Principal, ns: string, name: string): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    return renderObject(namespace.namespace, await this.child(namespace, 'object', name));
  }

  async updateObject(
    principal: Principal,
    ns: string,
    name: string,
    input: unknown,
  ): Promise<Record<string, unknown>> {
    const { namespace, record } = await this.replaceChild(principal, ns, 'object', name, (previous) => ({
      ...newObject(parseObjectBody(input), this.now()),
      created_at: previous.created_at,
    }));
    return renderObject(namespace.namespace, record);
  }

  async createProperty(principal: Principal, ns: string, input: unknown): Promise<Record<string, unknown>> {
    const { record } = await this.addChild(principal, ns, 'property', () => propertyRecord(input));
    return renderProperty(record);
  }

  async listProperties(principal: Principal, ns: string): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    const properties = await this.repo.listChildren(namespace, 'property');
    properties.sort((a, b) => compareValues(a.name, b.name));
    return { properties: propertiesMap(properties) };
  }

  /** With `resource_type`, `name` carries that association's prefix, which is stripped (Glance). */
  async showProperty(
    principal: Principal,
    ns: string,
    name: string,
    resourceType?: string,
  ): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    let bare = name;
    if (resourceType) {
      const association = namespace.associations.find((a) => a.name === resourceType);
      if (!association) throw new NotFoundError(associationNotFound(resourceType, namespace.namespace));
      const prefix = association.prefix;
      if (!prefix || !name.startsWith(prefix))
        throw new NotFoundError(
          `Property ${name} does not start with the expected resource type association prefix of '${prefix ?? ''}'.`,
        );
      bare = name.slice(prefix.length);
    }
    return renderProperty(await this.child(namespace, 'property', bare));
  }

  async updateProperty(
    principal: Principal,
    ns: string,
    name: string,
    input: unknown,
  ): Promise<Record<string, unknown>> {
    const { record } = await this.replaceChild(principal, ns, 'property', name, () => propertyRecord(input));
    return renderProperty(record);
  }

  async deleteChild(principal: Principal, ns: string, kind: ChildKind, name: string): Promise<void> {
    const namespace = await this.visible(ns, principal);
    this.requireAdmin(principal, CHILD_ACTIONS[kind].remove);
    const found = await this.child(namespace, kind, name);
    if (namespace.protected) throw new ForbiddenError(CHILD_PROTECTED[kind](found.name));
    if (!(await this.repo.deleteChild(namespace, kind, found.name)))
      throw new NotFoundError(CHILD_NOT_FOUND[kind](name, namespace.namespace));
  }

  async listTags(principal: Principal, ns: string, params: ListParams): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    const tags = await this.listChildren(namespace, 'tag', params, (t) => tagIdentity(t.name));
    return { tags: tags.map(renderTag) };
  }

  async showTag(principal: Principal, ns: string, name: string): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    return renderTag(await this.child(namespace, 'tag', name));
  }

  async createTag(principal: Principal, ns: string, name: string): Promise<Record<string, unknown>> {
    const { record } = await this.addChild(principal, ns, 'tag', () => {
      checkTagName(name);
      const now = this.now();
      return { name, created_at: now, updated_at: now };
    });
    return renderTag(record);
  }

  async updateTag(
    principal: Principal,
    ns: string,
    name: string,
    input: unknown,
  ): Promise<Record<string, unknown>> {
    const { record } = await this.replaceChild(principal, ns, 'tag', name, (previous) => ({
      ...previous,
      name: parseTagBody(input).name,
      updated_at: this.now(),
    }));
    return renderTag(record);
  }

  /**
   * POST /tags: the body's tags replace the namespace's, or are added to them with
   * `X-Openstack-Append: true` (Glance); a name given twice, or already there when appending, is a 409.
   */
  async createTags(
    principal: Principal,
    ns: string,
    input: unknown,
    append: boolean,
  ): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    this.requireAdmin(principal, 'add_metadef_tags');
    const body = parseTagsBody(input);
    const now = this.now();
    const seen = new Set<string>();
    const add: TagRecord[] = [];
    for (const { name } of body.tags) {
      if (seen.has(tagIdentity(name)))
        throw new ConflictError(CHILD_DUPLICATE.tag(name, namespace.namespace));
      seen.add(tagIdentity(name));
      add.push({ name, created_at: now, updated_at: now });
    }
    const existing = await this.repo.listChildren(namespace, 'tag');
    let remove: TagRecord[] = [];
    if (append) {
      const clash = existing.find((t) => seen.has(tagIdentity(t.name)));
      if (clash) throw new ConflictError(CHILD_DUPLICATE.tag(clash.name, namespace.namespace));
    } else remove = existing;
    const outcome = await this.repo.replaceTags(namespace, remove, add);
    if (outcome === 'namespace_gone') throw namespaceNotFound(namespace.namespace);
    if (outcome !== 'ok') throw new ConflictError('The namespace tags changed meanwhile; try again.');
    return { tags: add.map((t) => ({ name: t.name })) };
  }

  // -- resource types -------------------------------------------------------------------------

  async listResourceTypes(): Promise<Record<string, unknown>> {
    await this.ensureSeeded();
    const types = await this.repo.listResourceTypes();
    types.sort((a, b) => compareValues(a.name, b.name));
    return {
      resource_types: types.map((t) => ({
        name: t.name,
        created_at: t.created_at,
        updated_at: t.updated_at,
      })),
    };
  }

  async listAssociations(principal: Principal, ns: string): Promise<Record<string, unknown>> {
    const namespace = await this.visible(ns, principal);
    return { resource_type_associations: namespace.associations.map(renderAssociation) };
  }

  /** An unknown resource type is created on the way, as Glance does. */
  async createAssociation(
    principal: Principal,
    ns: string,
    input: unknown,
  ): Promise<Record<string, unknown>> {
    const { association, now } = await this.changeNamespace(ns, principal, async (previous) => {
      this.requireAdmin(principal, 'add_metadef_resource_type_association');
      const body = parseAssociationBody(input);
      if (previous.associations.some((a) => a.name === body.name))
        throw new ConflictError(duplicateAssociation(body.name, previous.namespace));
      const now = this.now();
      const association = newAssociation(body, now);
      await this.repo.updateNamespace(previous, {
        ...previous,
        associations: [...previous.associations, association],
        version: previous.version + 1,
      });
      return { association, now };
    });
    await this.repo.ensureResourceType(newResourceType(association.name, now));
    return renderAssociation(association);
  }

  async deleteAssociation(principal: Principal, ns: string, resourceType: string): Promise<void> {
    await this.changeNamespace(ns, principal, async (previous) => {
      this.requireAdmin(principal, 'remove_metadef_resource_type_association');
      if (!previous.associations.some((a) => a.name === resourceType))
        throw new NotFoundError(associationNotFound(resourceType, previous.namespace));
      if (previous.protected)
        throw new ForbiddenError(
          `Metadata definition resource-type-association ${resourceType} is protected and cannot be deleted.`,
        );
      await this.repo.updateNamespace(previous, {
        ...previous,
        associations: previous.associations.filter((a) => a.name !== resourceType),
        version: previous.version + 1,
      });
    });
  }
}

function newAssociation(body: AssociationBody, now: string): AssociationRecord {
  const association: AssociationRecord = { name: body.name, created_at: now, updated_at: now };
  if (body.prefix !== undefined) association.prefix = body.prefix;
  if (body.properties_target !== undefined) association.properties_target = body.properties_target;
  return association;
}

function newObject(body: ObjectBody, now: string): ObjectRecord {
  const object: ObjectRecord = { name: body.name, created_at: now, updated_at: now };
  if (body.description !== undefined) object.description = body.description;
  if (body.required !== undefined) object.required = body.required;
  if (body.properties !== undefined)
    object.properties = Object.fromEntries(
      Object.entries(body.properties).map(([k, { name: _ignored, ...schema }]) => [k, schema]),
    );
  return object;
}

function propertyRecord(input: unknown): PropertyRecord {
  const { name, ...schema } = parsePropertyBody(input);
  return { name, schema };
}

function newResourceType(name: string, now: string): ResourceTypeRecord {
  if ([...name].length > MAX_RESOURCE_TYPE_LENGTH)
    throw new BadRequestError('Resource type name is too long.');
  return { name, protected: false, created_at: now, updated_at: now };
}

function duplicateAssociation(resourceType: string, namespace: string): string {
  return `The metadata definition resource-type association of resource-type=${resourceType} to namespace=${namespace} already exists.`;
}

function associationNotFound(resourceType: string, namespace: string): string {
  return `The metadata definition resource-type association of resource-type=${resourceType} to namespace=${namespace}, was not found.`;
}
