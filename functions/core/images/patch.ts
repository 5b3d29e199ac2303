/**
 * PATCH /v2/images/{id}: Glance's restricted JSON-patch. Parsing follows
 * RequestDeserializer.update (every operation is checked before any is applied), applying follows
 * ImagesController._do_add/_do_replace/_do_remove and the domain setters behind them.
 *
 * Locations are out of scope for Hangar: any /locations path is refused with 403
 * "Attribute 'locations' is reserved." (Glance would manage store locations there).
 */
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  UnsupportedMediaTypeError,
} from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { isoSeconds } from '../kernel/time.ts';
import {
  type AllowedFormats,
  GLANCE_FORMATS,
  type ImageRecord,
  isReservedProperty,
  READ_ONLY_PROPERTIES,
} from './image.ts';
import { PropertyProtections } from './property-protections.ts';
import {
  dedupeTags,
  enforcePropertyQuota,
  enforceTagQuota,
  isWritableBaseProperty,
  publicizeDenied,
  type Quotas,
  readOnlyError,
  reservedError,
  validateExtraPropertyKey,
  validateNonNegative,
  validatePropertyValue,
  type WritableBaseProperty,
  WritableFieldsSchema,
} from './validation.ts';

export const PATCH_MEDIA_TYPE_V20 = 'application/openstack-images-v2.0-json-patch';
export const PATCH_MEDIA_TYPE_V21 = 'application/openstack-images-v2.1-json-patch';
/** Sent back as Accept-Patch on a 415, sorted as Glance sorts them. */
export const ACCEPT_PATCH = [PATCH_MEDIA_TYPE_V20, PATCH_MEDIA_TYPE_V21] as const;

const OPERATIONS = ['add', 'remove', 'replace'] as const;
export type PatchOp = (typeof OPERATIONS)[number];

/** v2.0 is JSON-Schema draft 4 style ({"add": "/path"}), v2.1 is RFC 6902 style ({"op", "path"}). */
export type PatchDialect = 'v2.0' | 'v2.1';

export interface PatchOperation {
  op: PatchOp;
  /** The decoded pointer, one element per segment (always one, since locations are refused). */
  path: string[];
  /** Present for add and replace. */
  value?: unknown;
  dialect: PatchDialect;
}

/** Read-only for PATCH: Glance's list, plus `stores`, which Hangar never lets clients write. */
function isReadOnlyForPatch(key: string): boolean {
  return READ_ONLY_PROPERTIES.has(key) || key === 'stores';
}

function dialectOf(mediaType: string | undefined): PatchDialect {
  // Parameters such as charset do not change the dialect (webob compares the bare type).
  const bare = (mediaType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  if (bare === PATCH_MEDIA_TYPE_V21) return 'v2.1';
  if (bare === PATCH_MEDIA_TYPE_V20) return 'v2.0';
  throw new UnsupportedMediaTypeError(
    `The request media type ${bare || 'None'} is not supported by this server.`,
    [...ACCEPT_PATCH],
  );
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function operationOf(raw: Record<string, unknown>, dialect: PatchDialect): { op: PatchOp; pointer: unknown } {
  if (dialect === 'v2.0') {
    const present = OPERATIONS.filter((op) => Object.hasOwn(raw, op));
    if (present.length > 1)
      throw new BadRequestError(
        'Operation objects must contain only one member named "add", "remove", or "replace".',
      );
    const op = present[0];
    if (op === undefined)
      throw new BadRequestError(
        'Operation objects must contain exactly one member named "add", "remove", or "replace".',
      );
    return { op, pointer: raw[op] };
  }
  const op = raw.op;
  if (op === undefined || op === null)
    throw new BadRequestError(
      `Unable to find \`op\` in JSON Schema change. It must be one of the following: ${OPERATIONS.join(', ')}.`,
    );
  if (!(OPERATIONS as readonly unknown[]).includes(op))
    throw new BadRequestError(
      `Invalid operation: \`${describe(op)}\`. It must be one of the following: ${OPERATIONS.join(', ')}.`,
    );
  if (!Object.hasOwn(raw, 'path')) throw new BadRequestError("Unable to find 'path' in JSON Schema change");
  return { op: op as PatchOp, pointer: raw.path };
}

/** Glance's restricted JSON pointer: validated, then split and unescaped (segments are trimmed). */
export function decodePointer(pointer: unknown): string[] {
  const text = describe(pointer);
  if (typeof pointer !== 'string' || !pointer.startsWith('/'))
    throw new BadRequestError(`Pointer \`${text}\` does not start with "/".`);
  // Glance only looks after the first character and so lets "//x" through; Hangar refuses any "//".
  if (/\/\s*?\//.test(pointer)) throw new BadRequestError(`Pointer \`${pointer}\` contains adjacent "/".`);
  if (pointer.length > 1 && pointer.endsWith('/'))
    throw new BadRequestError(`Pointer \`${pointer}\` end with "/".`);
  if (/~[^01]/.test(pointer) || pointer.endsWith('~'))
    throw new BadRequestError(
      `Pointer \`${pointer}\` contains "~" not part of a recognized escape sequence.`,
    );
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~').trim());
}

function validatePath(op: PatchOp, path: string[]): void {
  // Glance allows /locations/N for add and remove; everything else is exactly one segment deep.
  const depth = path[0] === 'locations' && op !== 'replace' ? 2 : 1;
  if (path.length !== depth || path[0] === '')
    throw new BadRequestError(`Invalid JSON pointer for this resource: '/${path.join('/')}'`);
}

function validateChange(change: PatchOperation, formats: AllowedFormats): void {
  const root = change.path[0] ?? '';
  if (isReadOnlyForPatch(root)) throw readOnlyError(root);
  if (isReservedProperty(root)) throw reservedError(root);
  if (change.op === 'remove') return;
  if (!isWritableBaseProperty(root)) validateExtraPropertyKey(root);
  validatePropertyValue(root, change.value, formats);
}

/**
 * The deserializer half: checks the media type and every operation (shape, pointer, value schema,
 * read-only and reserved keys) without touching the image.
 */
export function parsePatch(
  mediaType: string | undefined,
  body: unknown,
  formats: AllowedFormats = GLANCE_FORMATS,
): PatchOperation[] {
  const dialect = dialectOf(mediaType);
  if (!Array.isArray(body))
    throw new BadRequestError('Request body must be a JSON array of operation objects.');
  return body.map((raw: unknown) => {
    if (!isJsonObject(raw)) throw new BadRequestError('Operations must be JSON objects.');
    const { op, pointer } = operationOf(raw, dialect);
    const path = decodePointer(pointer);
    validatePath(op, path);
    const change: PatchOperation = { op, path, dialect };
    if (op !== 'remove') {
      if (!Object.hasOwn(raw, 'value'))
        throw new BadRequestError(`Operation "${op}" requires a member named "value".`);
      change.value = raw.value;
    }
    validateChange(change, formats);
    return change;
  });
}

/** The domain setters Glance runs when a base attribute changes. */
function setBaseProperty(
  image: ImageRecord,
  key: WritableBaseProperty,
  value: unknown,
  quotas: Quotas,
): ImageRecord {
  if (
    (key === 'disk_format' || key === 'container_format') &&
    !['queued', 'importing'].includes(image.status)
  )
    throw new ForbiddenError(`Attribute ${key} can be only replaced for a queued image.`);
  // The value already passed the schema in parsePatch; this parse only narrows its type.
  const fields = WritableFieldsSchema.parse({ [key]: value });
  if (fields.min_ram !== undefined) validateNonNegative('min_ram', fields.min_ram);
  if (fields.min_disk !== undefined) validateNonNegative('min_disk', fields.min_disk);
  if (fields.tags !== undefined) {
    fields.tags = dedupeTags(fields.tags);
    enforceTagQuota(fields.tags.length, quotas);
  }
  return { ...image, ...fields };
}

function enforceWritePolicy(key: string, value: unknown, principal: Principal): void {
  // Glance checks replace /owner only; Hangar applies the same rule to add, which would otherwise
  // let a project hand its image to another project.
  if (key === 'owner' && !principal.isAdmin) throw new ForbiddenError("Owner can't be updated by non admin.");
  if (key === 'visibility' && value === 'public' && !principal.isAdmin) throw publicizeDenied();
}

/**
 * Applies a PATCH body to `image` and returns the new record (the input is not modified).
 * The caller bumps `version` and persists; `updated_at` becomes `now` when there was any operation.
 *
 * With property protections the extra properties are seen as Glance's ExtraPropertiesProxy shows
 * them: a property the caller may not read does not exist for it (replace or remove → 409), setting
 * a readable one needs `update`, setting any other (new, or unreadable) needs `create`, and removing
 * needs `delete` (403 otherwise). Properties the caller cannot read stay stored as they were.
 */
export function applyPatch(
  image: ImageRecord,
  mediaType: string | undefined,
  body: unknown,
  principal: Principal,
  quotas: Quotas,
  now: Date,
  protections: PropertyProtections = PropertyProtections.NONE,
  formats: AllowedFormats = GLANCE_FORMATS,
): ImageRecord {
  const changes = parsePatch(mediaType, body, formats);
  let next: ImageRecord = { ...image, tags: [...image.tags] };
  // A Map keeps any key (even "__proto__") as plain data.
  const properties = new Map(Object.entries(image.properties));
  const readable = protections.readableBy(principal);
  // The extra properties as the caller sees them; set and removed along with `properties`.
  const visible = new Set([...properties.keys()].filter(readable));

  for (const change of changes) {
    const key = change.path[0] ?? '';
    if (change.op === 'remove') {
      if (isWritableBaseProperty(key)) throw new ForbiddenError(`Property ${key} may not be removed.`);
      if (!visible.has(key)) throw new ConflictError(`Property ${key} does not exist.`);
      protections.enforce(principal, key, 'delete');
      properties.delete(key);
      visible.delete(key);
      continue;
    }
    enforceWritePolicy(key, change.value, principal);
    const exists = isWritableBaseProperty(key) || visible.has(key);
    if (change.op === 'replace' && !exists) throw new ConflictError(`Property ${key} does not exist.`);
    // Under v2.0 add never overwrites; under v2.1 it does (RFC 6902).
    if (change.op === 'add' && change.dialect === 'v2.0' && exists)
      throw new ConflictError(`Property ${key} already present.`);
    if (isWritableBaseProperty(key)) next = setBaseProperty(next, key, change.value, quotas);
    else {
      protections.enforce(principal, key, visible.has(key) && readable(key) ? 'update' : 'create');
      properties.set(key, String(change.value));
      visible.add(key);
    }
  }

  // Like Glance, the property quota only bites when the patch adds keys, so an image already
  // over quota can still be trimmed or edited.
  const added = [...properties.keys()].some((key) => !Object.hasOwn(image.properties, key));
  if (added) enforcePropertyQuota(properties.size, quotas);

  return {
    ...next,
    properties: Object.fromEntries(properties),
    updated_at: changes.length > 0 ? isoSeconds(now) : image.updated_at,
  };
}
