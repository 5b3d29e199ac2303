/**
 * Value rules shared by image create and PATCH: the image JSON-Schema of Glance expressed with zod,
 * with error texts shaped like the ones Glance's jsonschema validation returns, plus the domain
 * checks Glance makes after the schema (negative sizes, quotas).
 */
import { z } from 'zod';
import { BadRequestError, ForbiddenError, TooLargeError } from '../kernel/errors.ts';
import { type AllowedFormats, GLANCE_FORMATS, VISIBILITIES } from './image.ts';

/** The pattern Glance's schema gives `id`; also used for kernel_id and ramdisk_id. */
export const UUID_PATTERN =
  '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$';
const UUID_RE = new RegExp(UUID_PATTERN);

/** Schema enum orders, as Glance prints them in messages and serves them in /v2/schemas/image. */
export const SCHEMA_VISIBILITIES = ['community', 'public', 'private', 'shared'] as const;
export const SCHEMA_STATUSES = [
  'queued',
  'saving',
  'active',
  'killed',
  'deleted',
  'uploading',
  'importing',
  'pending_delete',
  'deactivated',
] as const;

export interface Quotas {
  /** Glance's image_property_quota; negative means unlimited. */
  properties: number;
  /** Glance's image_tag_quota; negative means unlimited. */
  tags: number;
}

/** Base attributes a client may write (everything else in BASE_PROPERTIES is read-only or reserved). */
export const WRITABLE_BASE_PROPERTIES = [
  'name',
  'visibility',
  'protected',
  'os_hidden',
  'owner',
  'min_ram',
  'min_disk',
  'container_format',
  'disk_format',
  'tags',
] as const;
export type WritableBaseProperty = (typeof WRITABLE_BASE_PROPERTIES)[number];

export function isWritableBaseProperty(key: string): key is WritableBaseProperty {
  return (WRITABLE_BASE_PROPERTIES as readonly string[]).includes(key);
}

/** Glance refuses these outright on create ("_disallowed_properties"). */
export const DISALLOWED_ON_CREATE = ['direct_url', 'self', 'file', 'schema', 'stores'] as const;

function pyString(text: string): string {
  // Python's repr picks double quotes only when that avoids escaping a single quote.
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += `\\${quote}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${quote}${out}${quote}`;
}

/** Past this depth pyRepr writes `...`, as Python's reprlib does, instead of recursing on. */
const MAX_REPR_DEPTH = 50;

/** The Python repr() of a JSON value: Glance's messages quote offending values this way. */
export function pyRepr(value: unknown, depth = 0): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'string') return pyString(value);
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value))
    return depth >= MAX_REPR_DEPTH ? '[...]' : `[${value.map((v) => pyRepr(v, depth + 1)).join(', ')}]`;
  if (typeof value === 'object') {
    if (depth >= MAX_REPR_DEPTH) return '{...}';
    const entries = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `${pyString(k)}: ${pyRepr(v, depth + 1)}`,
    );
    return `{${entries.join(', ')}}`;
  }
  return String(value);
}

const PREFIX = "Provided object does not match schema 'image': ";

/** The 400 Glance answers when a value fails the image schema. */
export function schemaError(detail: string): BadRequestError {
  return new BadRequestError(`${PREFIX}${detail}`);
}

type Issue = { input?: unknown };
const notOfType = (types: string) => (iss: Issue) => `${pyRepr(iss.input)} is not of type ${types}`;
const tooLong = (iss: Issue) => `${pyRepr(iss.input)} is too long`;
const notOneOf = (list: readonly (string | null)[]) => (iss: Issue) =>
  `${pyRepr(iss.input)} is not one of ${pyRepr(list)}`;
const noMatch = (pattern: string) => (iss: Issue) => `${pyRepr(iss.input)} does not match ${pyRepr(pattern)}`;

/** Length in characters (code points), as jsonschema's maxLength and the database count it. */
function charCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
const maxChars = (max: number) => (text: string) => charCount(text) <= max;

const nullableString = (max?: number) => {
  const base = z.string({ error: notOfType("'null', 'string'") });
  return (max === undefined ? base : base.refine(maxChars(max), { error: tooLong })).nullable();
};
const nullableInteger = () =>
  z
    .number({ error: notOfType("'null', 'integer'") })
    .int({ error: notOfType("'null', 'integer'") })
    .nullable();
const integer = () => z.number({ error: notOfType("'integer'") }).int({ error: notOfType("'integer'") });
const boolean = () => z.boolean({ error: notOfType("'boolean'") });
const string = () => z.string({ error: notOfType("'string'") });
const uuidString = () => string().regex(UUID_RE, { error: noMatch(UUID_PATTERN) });

const visibility = () =>
  z
    .string({ error: notOfType("'string'") })
    .pipe(z.enum(VISIBILITIES, { error: notOneOf(SCHEMA_VISIBILITIES) }));

/** Base properties a client may write, typed so parsed values drop straight into an ImageRecord. */
export const WRITABLE_SCHEMAS = {
  name: nullableString(255),
  visibility: visibility(),
  protected: boolean(),
  os_hidden: boolean(),
  owner: nullableString(255),
  min_ram: integer(),
  min_disk: integer(),
  // Their enums are the deployment's lists (AllowedFormats), checked in validatePropertyValue.
  container_format: nullableString(),
  disk_format: nullableString(),
  tags: z.array(string().refine(maxChars(255), { error: tooLong }), { error: notOfType("'array'") }),
} satisfies Record<WritableBaseProperty, z.ZodType>;

export const WritableFieldsSchema = z.object(WRITABLE_SCHEMAS).partial();
export type WritableFields = z.infer<typeof WritableFieldsSchema>;

/** Every base property of Glance's image schema, read-only ones included (create validates them too). */
export const BASE_PROPERTY_SCHEMAS: Readonly<Record<string, z.ZodType>> = {
  ...WRITABLE_SCHEMAS,
  id: uuidString(),
  status: string().refine((v) => (SCHEMA_STATUSES as readonly string[]).includes(v), {
    error: notOneOf(SCHEMA_STATUSES),
  }),
  checksum: nullableString(32),
  os_hash_algo: nullableString(64),
  os_hash_value: nullableString(128),
  size: nullableInteger(),
  virtual_size: nullableInteger(),
  created_at: string(),
  updated_at: string(),
  direct_url: string(),
  self: string(),
  file: string(),
  stores: string(),
  schema: string(),
  // Locations are out of scope; only the shape is checked before the 403 "reserved" answer.
  locations: z.array(z.unknown(), { error: notOfType("'array'") }),
};

export const idSchema = uuidString();

/**
 * Extra properties Glance's schema describes (etc/schema-image.json). Glance lets kernel_id and
 * ramdisk_id be null; Hangar stores extra properties as strings only, so null is refused here.
 */
const KNOWN_EXTRA_SCHEMAS: Readonly<Record<string, z.ZodType>> = {
  kernel_id: uuidString(),
  ramdisk_id: uuidString(),
  cinder_encryption_key_deletion_policy: string().refine(
    (v) => v === 'on_image_deletion' || v === 'do_not_delete',
    { error: notOneOf(['on_image_deletion', 'do_not_delete']) },
  ),
};

/** Any other extra property: the schema's additionalProperties is {"type": "string"}. */
const EXTRA_PROPERTY_SCHEMA = string();

/**
 * Throws Glance's schema 400 when `value` is not acceptable for property `key`. disk_format and
 * container_format must be in `formats`, as Glance's schema enums are its [image_format] lists.
 */
export function validatePropertyValue(
  key: string,
  value: unknown,
  formats: AllowedFormats = GLANCE_FORMATS,
): void {
  // Own-key lookups only: a property named "constructor" or "__proto__" is just an extra property.
  const schema = Object.hasOwn(BASE_PROPERTY_SCHEMAS, key)
    ? BASE_PROPERTY_SCHEMAS[key]
    : Object.hasOwn(KNOWN_EXTRA_SCHEMAS, key)
      ? KNOWN_EXTRA_SCHEMAS[key]
      : EXTRA_PROPERTY_SCHEMA;
  if (!schema) return;
  const result = schema.safeParse(value);
  if (!result.success) throw schemaError(result.error.issues[0]?.message ?? `${pyRepr(value)} is invalid`);
  const allowed =
    key === 'disk_format' ? formats.disk : key === 'container_format' ? formats.container : null;
  if (allowed && typeof value === 'string' && !allowed.includes(value))
    throw schemaError(notOneOf([null, ...allowed])({ input: value }));
}

/** Glance's LP #1737952 rule: custom property names fit the 255-character database column. */
export function validateExtraPropertyKey(key: string): void {
  if (charCount(key) > 255)
    throw new BadRequestError('Custom property should not be greater than 255 characters.');
}

/** The domain rule Glance applies after the schema (the schema itself has no minimum). */
export function validateNonNegative(param: 'min_ram' | 'min_disk', value: number): void {
  if (value < 0)
    throw new BadRequestError(
      `Invalid value '${value}' for parameter '${param}': Cannot be a negative value`,
    );
}

/** Tags are a set in Glance; Hangar keeps the first occurrence order so answers are stable. */
export function dedupeTags(tags: readonly string[]): string[] {
  return [...new Set(tags)];
}

export function enforceTagQuota(count: number, quotas: Quotas): void {
  if (quotas.tags >= 0 && count > quotas.tags)
    throw new TooLargeError(
      `The limit has been exceeded on the number of allowed image tags. Attempted: ${count}, Maximum: ${quotas.tags}`,
    );
}

export function enforcePropertyQuota(count: number, quotas: Quotas): void {
  if (quotas.properties >= 0 && count > quotas.properties)
    throw new TooLargeError(
      `The limit has been exceeded on the number of allowed image properties. Attempted: ${count}, Maximum: ${quotas.properties}`,
    );
}

export function readOnlyError(key: string): ForbiddenError {
  return new ForbiddenError(`Attribute '${key}' is read-only.`);
}

export function reservedError(key: string): ForbiddenError {
  return new ForbiddenError(`Attribute '${key}' is reserved.`);
}

/** Glance's publicize_image policy defaults to admin only. */
export function publicizeDenied(): ForbiddenError {
  return new ForbiddenError('You are not authorized to complete publicize_image action.');
}
