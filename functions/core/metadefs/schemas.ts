/**
 * The JSON-Schema documents served at GET /v2/schemas/metadefs/{name}: Glance's own (its api-ref
 * samples, Apache-2.0), so clients that read them (glanceclient, Horizon) see what they expect.
 * The request validation in metadefs-validation.ts follows the same rules.
 *
 * Each member document is written once; its collection is built from it as Glance's
 * get_collection_schema does. Keys stand in alphabetical order, as the api-ref samples print them.
 */
type Schema = Readonly<Record<string, unknown>>;

const STRING = { type: 'string' };
const READ_ONLY_STRING = { readOnly: true, type: 'string' };
const JSON_TYPES = ['array', 'boolean', 'integer', 'number', 'object', 'string', null];

function timestamp(description: string): Schema {
  return { description, format: 'date-time', readOnly: true, type: 'string' };
}

/** What one property definition may say: the `property` document, and inside namespaces and objects. */
const PROPERTY_ATTRIBUTES = {
  additionalItems: { type: 'boolean' },
  default: {},
  description: STRING,
  enum: { type: 'array' },
  items: {
    properties: {
      enum: { type: 'array' },
      type: { enum: JSON_TYPES, type: 'string' },
    },
    type: 'object',
  },
  maxItems: { $ref: '#/definitions/positiveInteger' },
  maxLength: { $ref: '#/definitions/positiveInteger' },
  maximum: { type: 'number' },
  minItems: { $ref: '#/definitions/positiveIntegerDefault0' },
  minLength: { $ref: '#/definitions/positiveIntegerDefault0' },
  minimum: { type: 'number' },
  name: { maxLength: 255, type: 'string' },
  operators: { items: STRING, type: 'array' },
  pattern: { format: 'regex', type: 'string' },
  readonly: { type: 'boolean' },
  required: { $ref: '#/definitions/stringArray' },
  title: STRING,
  type: { enum: JSON_TYPES, type: 'string' },
  uniqueItems: { default: false, type: 'boolean' },
};

const POSITIVE_INTEGER_DEFINITIONS = {
  positiveInteger: { minimum: 0, type: 'integer' },
  positiveIntegerDefault0: { allOf: [{ $ref: '#/definitions/positiveInteger' }, { default: 0 }] },
};

/** Namespaces and objects hold a map of property definitions under `properties`. */
const PROPERTY_MAP_DEFINITIONS = {
  ...POSITIVE_INTEGER_DEFINITIONS,
  property: {
    additionalProperties: { properties: PROPERTY_ATTRIBUTES, required: ['title', 'type'], type: 'object' },
    type: 'object',
  },
  stringArray: { items: STRING, type: 'array', uniqueItems: true },
};

/** A member document, as Glance's Schema.raw() gives it with additionalProperties false. */
function member(name: string, properties: Schema, required: string[], definitions?: Schema): Schema {
  return { additionalProperties: false, ...(definitions && { definitions }), name, properties, required };
}

const COLLECTION_LINKS = [
  { href: '{first}', rel: 'first' },
  { href: '{next}', rel: 'next' },
  { href: '{schema}', rel: 'describedby' },
];

/**
 * Glance's CollectionSchema (an array of members) or DictCollectionSchema ('dict': members keyed by
 * name): the member's definitions move up to the collection, as Glance's raw() moves them.
 */
function collection(name: string, of: Schema, shape: 'array' | 'dict' = 'array'): Schema {
  const { definitions, ...item } = of;
  const members =
    shape === 'array' ? { items: item, type: 'array' } : { additionalProperties: item, type: 'object' };
  const properties = { first: STRING, next: STRING, schema: STRING, [name]: members };
  return {
    ...(definitions !== undefined && { definitions }),
    links: COLLECTION_LINKS,
    name,
    properties: Object.fromEntries(Object.entries(properties).sort(([a], [b]) => (a < b ? -1 : 1))),
  };
}

const NAMESPACE = member(
  'namespace',
  {
    created_at: timestamp('Date and time of namespace creation'),
    description: {
      description: 'Provides a user friendly description of the namespace.',
      maxLength: 500,
      type: 'string',
    },
    display_name: {
      description: 'The user friendly name for the namespace. Used by UI if available.',
      maxLength: 80,
      type: 'string',
    },
    namespace: { description: 'The unique namespace text.', maxLength: 80, type: 'string' },
    objects: {
      items: {
        properties: {
          description: STRING,
          name: STRING,
          properties: { $ref: '#/definitions/property' },
          required: { $ref: '#/definitions/stringArray' },
        },
        type: 'object',
      },
      type: 'array',
    },
    owner: { description: 'Owner of the namespace.', maxLength: 255, type: 'string' },
    properties: { $ref: '#/definitions/property' },
    protected: { description: 'If true, namespace will not be deletable.', type: 'boolean' },
    resource_type_associations: {
      items: { properties: { name: STRING, prefix: STRING, properties_target: STRING }, type: 'object' },
      type: 'array',
    },
    schema: READ_ONLY_STRING,
    self: READ_ONLY_STRING,
    tags: { items: { properties: { name: STRING }, type: 'object' }, type: 'array' },
    updated_at: timestamp('Date and time of the last namespace modification'),
    visibility: {
      description: 'Scope of namespace accessibility.',
      enum: ['public', 'private'],
      type: 'string',
    },
  },
  ['namespace'],
  PROPERTY_MAP_DEFINITIONS,
);

const OBJECT = member(
  'object',
  {
    created_at: timestamp('Date and time of object creation'),
    description: STRING,
    name: { maxLength: 255, type: 'string' },
    properties: { $ref: '#/definitions/property' },
    required: { $ref: '#/definitions/stringArray' },
    schema: READ_ONLY_STRING,
    self: READ_ONLY_STRING,
    updated_at: timestamp('Date and time of the last object modification'),
  },
  ['name'],
  PROPERTY_MAP_DEFINITIONS,
);

const PROPERTY = member('property', PROPERTY_ATTRIBUTES, ['type', 'title', 'name'], {
  ...POSITIVE_INTEGER_DEFINITIONS,
  stringArray: { items: STRING, minItems: 1, type: 'array', uniqueItems: true },
});

const RESOURCE_TYPE_ASSOCIATION = member(
  'resource_type_association',
  {
    created_at: timestamp('Date and time of resource type association'),
    name: {
      description:
        'Resource type names should be aligned with Heat resource types whenever possible: https://docs.openstack.org/heat/latest/template_guide/openstack.html',
      maxLength: 80,
      type: 'string',
    },
    prefix: {
      description:
        'Specifies the prefix to use for the given resource type. Any properties in the namespace should be prefixed with this prefix when being applied to the specified resource type. Must include prefix separator (e.g. a colon :).',
      maxLength: 80,
      type: 'string',
    },
    properties_target: {
      description:
        'Some resource types allow more than one key / value pair per instance.  For example, Cinder allows user and image metadata on volumes. Only the image properties metadata is evaluated by Nova (scheduling or drivers). This property allows a namespace target to remove the ambiguity.',
      maxLength: 80,
      type: 'string',
    },
    updated_at: timestamp('Date and time of the last resource type association modification'),
  },
  ['name'],
);

const TAG = member(
  'tag',
  {
    created_at: timestamp('Date and time of tag creation'),
    name: { maxLength: 255, type: 'string' },
    updated_at: timestamp('Date and time of the last tag modification'),
  },
  ['name'],
);

export const METADEF_SCHEMAS: Readonly<Record<string, object>> = {
  namespace: NAMESPACE,
  namespaces: collection('namespaces', NAMESPACE),
  object: OBJECT,
  objects: collection('objects', OBJECT),
  // Keyed by name, a member need not repeat it (Glance removes 'name' from required here).
  properties: collection('properties', { ...PROPERTY, required: ['type', 'title'] }, 'dict'),
  property: PROPERTY,
  resource_type: RESOURCE_TYPE_ASSOCIATION,
  resource_types: collection('resource_type_associations', RESOURCE_TYPE_ASSOCIATION),
  tag: TAG,
  tags: collection('tags', TAG),
};

export function isMetadefSchemaName(name: string): boolean {
  return Object.hasOwn(METADEF_SCHEMAS, name);
}
