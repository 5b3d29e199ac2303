/**
 * Request bodies of the metadata definitions API, checked as Glance checks them against its
 * metadefs JSON schemas (metadef-schemas.ts): the same required fields, types, lengths and enums,
 * and a 400 "Provided object does not match schema '<name>': ..." when one fails.
 */
import { z } from 'zod';
import { pyRepr } from '../images/validation.ts';
import { BadRequestError, ForbiddenError } from '../kernel/errors.ts';

/** Glance's column sizes: longer names cannot exist, so lookups answer 404 without a read. */
export const MAX_NAMESPACE_LENGTH = 80;
export const MAX_CHILD_NAME_LENGTH = 255;
export const MAX_RESOURCE_TYPE_LENGTH = 80;

const PROPERTY_TYPES = ['array', 'boolean', 'integer', 'number', 'object', 'string'] as const;

const chars = (text: string) => [...text].length;
const str = (max?: number) =>
  max === undefined ? z.string() : z.string().refine((s) => chars(s) <= max, { error: 'too_long' });
const nonNegativeInt = () => z.number().int().min(0);
const stringArray = () =>
  z
    .array(z.string())
    .refine((items) => new Set(items).size === items.length, { error: 'has non-unique elements' });

const isRegex = (pattern: string) => {
  try {
    new RegExp(pattern, 'u');
    return true;
  } catch {
    return false;
  }
};

/** One property definition (Glance's PropertyType): a JSON-Schema fragment with a title. */
const PropertyFields = {
  name: str(MAX_CHILD_NAME_LENGTH).optional(),
  title: z.string(),
  description: z.string().optional(),
  operators: z.array(z.string()).optional(),
  type: z.enum(PROPERTY_TYPES).nullable(),
  required: stringArray().optional(),
  minimum: z.number().optional(),
  maximum: z.number().optional(),
  maxLength: nonNegativeInt().optional(),
  minLength: nonNegativeInt().optional(),
  pattern: z.string().refine(isRegex, { error: 'is not a regex' }).optional(),
  enum: z.array(z.unknown()).optional(),
  readonly: z.boolean().optional(),
  default: z.unknown().optional(),
  items: z
    .object({ type: z.enum(PROPERTY_TYPES).nullable().optional(), enum: z.array(z.unknown()).optional() })
    .optional(),
  maxItems: nonNegativeInt().optional(),
  minItems: nonNegativeInt().optional(),
  uniqueItems: z.boolean().optional(),
  additionalItems: z.boolean().optional(),
};

export const PropertyDefinitionSchema = z.strictObject(PropertyFields);
export type PropertyDefinition = z.infer<typeof PropertyDefinitionSchema>;
/** A property as stored: everything but its name (the name is its key). */
export type PropertySchema = Omit<PropertyDefinition, 'name'>;

const PropertyBody = z.strictObject({ ...PropertyFields, name: str(MAX_CHILD_NAME_LENGTH) });
const PropertyMap = z.record(z.string(), z.strictObject(PropertyFields));

const ObjectBody = z.strictObject({
  name: str(MAX_CHILD_NAME_LENGTH),
  description: z.string().optional(),
  required: stringArray().optional(),
  properties: PropertyMap.optional(),
});
export type ObjectBody = z.infer<typeof ObjectBody>;

const TagBody = z.strictObject({ name: str(MAX_CHILD_NAME_LENGTH) });
const TagsBody = z.strictObject({ tags: z.array(TagBody) });

const AssociationBody = z.strictObject({
  name: str(MAX_RESOURCE_TYPE_LENGTH),
  prefix: str(80).optional(),
  properties_target: str(80).optional(),
});
export type AssociationBody = z.infer<typeof AssociationBody>;

const NamespaceBody = z.strictObject({
  namespace: str(MAX_NAMESPACE_LENGTH).refine((s) => s.length > 0, { error: 'is too short' }),
  display_name: str(80).optional(),
  description: str(500).optional(),
  visibility: z.enum(['public', 'private']).optional(),
  protected: z.boolean().optional(),
  owner: str(255).optional(),
  resource_type_associations: z.array(AssociationBody).optional(),
  properties: PropertyMap.optional(),
  objects: z.array(ObjectBody).optional(),
  tags: z.array(TagBody).optional(),
});
export type NamespaceBody = z.infer<typeof NamespaceBody>;

/** Attributes the server sets: Glance refuses them in a body with 403. */
const READ_ONLY = ['self', 'schema', 'created_at', 'updated_at'] as const;

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const key of path) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

/** jsonschema's wording for the first problem zod found. */
function describe(issue: z.core.$ZodIssue, input: unknown): string {
  const value = valueAt(input, issue.path);
  const key = issue.path.at(-1);
  switch (issue.code) {
    case 'unrecognized_keys':
      return `Additional properties are not allowed (${issue.keys.map((k) => pyRepr(k)).join(', ')} ${
        issue.keys.length === 1 ? 'was' : 'were'
      } unexpected)`;
    case 'invalid_type':
      if (value === undefined) return `${pyRepr(String(key))} is a required property`;
      return `${pyRepr(value)} is not of type ${pyRepr(issue.expected)}`;
    case 'invalid_value':
      return `${pyRepr(value)} is not one of ${pyRepr(issue.values)}`;
    case 'too_small':
      return `${pyRepr(value)} is less than the minimum of ${String(issue.minimum)}`;
    case 'custom':
      if (issue.message === 'too_long') return `${pyRepr(value)} is too long`;
      return `${pyRepr(value)} ${issue.message}`;
    default:
      return `${pyRepr(value)} is not valid under the given schema`;
  }
}

function parse<T>(schema: z.ZodType<T>, schemaName: string, input: unknown): T {
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    throw new BadRequestError(
      `Provided object does not match schema '${schemaName}': ${pyRepr(input)} is not of type 'object'`,
    );
  for (const key of READ_ONLY)
    if (Object.hasOwn(input, key)) throw new ForbiddenError(`Attribute '${key}' is read-only.`);
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const detail = issue ? describe(issue, input) : 'invalid';
  throw new BadRequestError(`Provided object does not match schema '${schemaName}': ${detail}`);
}

export const parseNamespaceBody = (input: unknown) => parse(NamespaceBody, 'namespace', input);
export const parseObjectBody = (input: unknown) => parse(ObjectBody, 'object', input);
export const parsePropertyBody = (input: unknown) => parse(PropertyBody, 'property', input);
export const parseTagBody = (input: unknown) => parse(TagBody, 'tag', input);
export const parseTagsBody = (input: unknown) => parse(TagsBody, 'tags', input);
export const parseAssociationBody = (input: unknown) =>
  parse(AssociationBody, 'resource_type_association', input);

/** A tag named in the URL (POST /tags/{name}) is checked against the tag schema too. */
export function checkTagName(name: string): void {
  if (chars(name) > MAX_CHILD_NAME_LENGTH)
    throw new BadRequestError(`Provided object does not match schema 'tag': ${pyRepr(name)} is too long`);
}
