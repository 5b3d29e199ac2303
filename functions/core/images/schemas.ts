/**
 * The JSON-Schema documents served at GET /v2/schemas/{name}, as Glance 25 serves them (the
 * structure, names, types and enums are Glance's; enums come from the same constants the
 * validation uses, so the schema and the behaviour cannot drift apart).
 */
import { type AllowedFormats, CONTAINER_FORMATS, DISK_FORMATS } from './image.ts';
import { SCHEMA_STATUSES, SCHEMA_VISIBILITIES, UUID_PATTERN } from './validation.ts';

export type SchemaName = 'image' | 'images' | 'member' | 'members' | 'task' | 'tasks';

const IMAGE_PROPERTIES = {
  id: {
    type: 'string',
    description: 'An identifier for the image',
    pattern: UUID_PATTERN,
  },
  name: {
    type: ['null', 'string'],
    description: 'Descriptive name for the image',
    maxLength: 255,
  },
  status: {
    type: 'string',
    readOnly: true,
    description: 'Status of the image',
    enum: [...SCHEMA_STATUSES],
  },
  visibility: {
    type: 'string',
    description: 'Scope of image accessibility',
    enum: [...SCHEMA_VISIBILITIES],
  },
  protected: {
    type: 'boolean',
    description: 'If true, image will not be deletable.',
  },
  os_hidden: {
    type: 'boolean',
    description: 'If true, image will not appear in default image list response.',
  },
  checksum: {
    type: ['null', 'string'],
    readOnly: true,
    description: 'md5 hash of image contents.',
    maxLength: 32,
  },
  os_hash_algo: {
    type: ['null', 'string'],
    readOnly: true,
    description: 'Algorithm to calculate the os_hash_value',
    maxLength: 64,
  },
  os_hash_value: {
    type: ['null', 'string'],
    readOnly: true,
    description: 'Hexdigest of the image contents using the algorithm specified by the os_hash_algo',
    maxLength: 128,
  },
  owner: {
    type: ['null', 'string'],
    description: 'Owner of the image',
    maxLength: 255,
  },
  size: {
    type: ['null', 'integer'],
    readOnly: true,
    description: 'Size of image file in bytes',
  },
  virtual_size: {
    type: ['null', 'integer'],
    readOnly: true,
    description: 'Virtual size of image in bytes',
  },
  container_format: {
    type: ['null', 'string'],
    description: 'Format of the container',
    enum: [null, ...CONTAINER_FORMATS],
  },
  disk_format: {
    type: ['null', 'string'],
    description: 'Format of the disk',
    enum: [null, ...DISK_FORMATS],
  },
  created_at: {
    type: 'string',
    readOnly: true,
    description: 'Date and time of image registration',
  },
  updated_at: {
    type: 'string',
    readOnly: true,
    description: 'Date and time of the last image modification',
  },
  tags: {
    type: 'array',
    description: 'List of strings related to the image',
    items: {
      type: 'string',
      maxLength: 255,
    },
  },
  direct_url: {
    type: 'string',
    readOnly: true,
    description: 'URL to access the image file kept in external store',
  },
  min_ram: {
    type: 'integer',
    description: 'Amount of ram (in MB) required to boot image.',
  },
  min_disk: {
    type: 'integer',
    description: 'Amount of disk space (in GB) required to boot image.',
  },
  self: {
    type: 'string',
    readOnly: true,
    description: 'An image self url',
  },
  file: {
    type: 'string',
    readOnly: true,
    description: 'An image file url',
  },
  // No `stores`: Glance documents it for multi-store sites only, and Debian's glanceclient 4.1
  // crashes on every command once a cached schema names it (it clashes with its --stores option).
  schema: {
    type: 'string',
    readOnly: true,
    description: 'An image schema url',
  },
  locations: {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        url: {
          type: 'string',
          maxLength: 255,
        },
        metadata: {
          type: 'object',
        },
        validation_data: {
          description:
            "Values to be used to populate the corresponding image properties. If the image status is not 'queued', values must exactly match those already contained in the image properties.",
          type: 'object',
          writeOnly: true,
          additionalProperties: false,
          properties: {
            checksum: {
              type: 'string',
              minLength: 32,
              maxLength: 32,
            },
            os_hash_algo: {
              type: 'string',
              maxLength: 64,
            },
            os_hash_value: {
              type: 'string',
              maxLength: 128,
            },
          },
          required: ['os_hash_algo', 'os_hash_value'],
        },
      },
      required: ['url', 'metadata'],
    },
    description: 'A set of URLs to access the image file kept in external store',
  },
  kernel_id: {
    type: ['null', 'string'],
    pattern: UUID_PATTERN,
    description:
      'ID of image stored in Glance that should be used as the kernel when booting an AMI-style image.',
    is_base: false,
  },
  ramdisk_id: {
    type: ['null', 'string'],
    pattern: UUID_PATTERN,
    description:
      'ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image.',
    is_base: false,
  },
  instance_uuid: {
    type: 'string',
    description:
      'Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)',
    is_base: false,
  },
  architecture: {
    description:
      'Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html',
    type: 'string',
    is_base: false,
  },
  os_distro: {
    description:
      'Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html',
    type: 'string',
    is_base: false,
  },
  os_version: {
    description: 'Operating system version as specified by the distributor.',
    type: 'string',
    is_base: false,
  },
  description: {
    description: 'A human-readable string describing this image.',
    type: 'string',
    is_base: false,
  },
  cinder_encryption_key_id: {
    description:
      'Identifier in the OpenStack Key Management Service for the encryption key for the Block Storage Service to use when mounting a volume created from this image',
    type: 'string',
    is_base: false,
  },
  cinder_encryption_key_deletion_policy: {
    description:
      "States the condition under which the Image Service will delete the object associated with the 'cinder_encryption_key_id' image property.  If this property is missing, the Image Service will take no action",
    type: 'string',
    enum: ['on_image_deletion', 'do_not_delete'],
    is_base: false,
  },
};

const IMAGE_SCHEMA = {
  name: 'image',
  properties: IMAGE_PROPERTIES,
  // Glance's PermissiveSchema: any other property is a string.
  additionalProperties: { type: 'string' },
  links: [
    { rel: 'self', href: '{self}' },
    { rel: 'enclosure', href: '{file}' },
    { rel: 'describedby', href: '{schema}' },
  ],
};

const MEMBER_SCHEMA = {
  name: 'member',
  properties: {
    member_id: {
      type: 'string',
      description: 'An identifier for the image member (tenantId)',
    },
    image_id: {
      type: 'string',
      description: 'An identifier for the image',
      pattern: UUID_PATTERN,
    },
    created_at: {
      type: 'string',
      description: 'Date and time of image member creation',
    },
    updated_at: {
      type: 'string',
      description: 'Date and time of last modification of image member',
    },
    status: {
      type: 'string',
      description: 'The status of this image member',
      enum: ['pending', 'accepted', 'rejected'],
    },
    schema: {
      readOnly: true,
      type: 'string',
    },
  },
};

const TASK_PROPERTIES = {
  id: {
    description: 'An identifier for the task',
    pattern: UUID_PATTERN,
    type: 'string',
  },
  type: {
    description: 'The type of task represented by this content',
    // export and publish are Hangar's own task types (conversion to the export bucket; name:tag publishing).
    enum: ['import', 'api_image_import', 'export', 'publish'],
    type: 'string',
  },
  status: {
    description: 'The current status of this task',
    enum: ['pending', 'processing', 'success', 'failure'],
    type: 'string',
  },
  input: {
    description: 'The parameters required by task, JSON blob',
    type: ['null', 'object'],
  },
  result: {
    description: 'The result of current task, JSON blob',
    type: ['null', 'object'],
  },
  owner: {
    description: 'An identifier for the owner of this task',
    type: 'string',
  },
  message: {
    description: 'Human-readable informative message only included when appropriate (usually on failure)',
    type: 'string',
  },
  image_id: {
    description: 'Image associated with the task',
    type: 'string',
  },
  request_id: {
    description: 'Human-readable informative request-id',
    type: 'string',
  },
  user_id: {
    description: 'User associated with the task',
    type: 'string',
  },
  expires_at: {
    description: 'Datetime when this resource would be subject to removal',
    type: ['null', 'string'],
  },
  created_at: {
    description: 'Datetime when this resource was created',
    type: 'string',
  },
  updated_at: {
    description: 'Datetime when this resource was updated',
    type: 'string',
  },
  self: {
    readOnly: true,
    type: 'string',
  },
  schema: {
    readOnly: true,
    type: 'string',
  },
};

/** The list view of a task leaves out the bulky and per-task fields. */
const TASK_LIST_PROPERTIES = Object.fromEntries(
  Object.entries(TASK_PROPERTIES).filter(([key]) => !['input', 'result', 'message'].includes(key)),
);

export const SCHEMAS: Readonly<Record<SchemaName, object>> = {
  image: IMAGE_SCHEMA,
  images: {
    name: 'images',
    properties: {
      images: { type: 'array', items: IMAGE_SCHEMA },
      first: { type: 'string' },
      next: { type: 'string' },
      schema: { type: 'string' },
    },
    links: [
      { rel: 'first', href: '{first}' },
      { rel: 'next', href: '{next}' },
      { rel: 'describedby', href: '{schema}' },
    ],
  },
  member: MEMBER_SCHEMA,
  members: {
    name: 'members',
    properties: {
      members: { type: 'array', items: MEMBER_SCHEMA },
      schema: { type: 'string' },
    },
    links: [{ rel: 'describedby', href: '{schema}' }],
  },
  task: { name: 'task', properties: TASK_PROPERTIES },
  tasks: {
    name: 'tasks',
    properties: {
      tasks: { type: 'array', items: { name: 'task', properties: TASK_LIST_PROPERTIES } },
      schema: { type: 'string' },
    },
    links: [{ rel: 'describedby', href: '{schema}' }],
  },
};

export function isSchemaName(name: string): name is SchemaName {
  return Object.hasOwn(SCHEMAS, name);
}

/**
 * The document served for `name` with this deployment's disk_format and container_format lists
 * (Glance builds those enums from its [image_format] settings). SCHEMAS has Glance's defaults.
 */
export function schemaDocument(name: SchemaName, formats: AllowedFormats): object {
  if (name !== 'image' && name !== 'images') return SCHEMAS[name];
  const image = {
    ...IMAGE_SCHEMA,
    properties: {
      ...IMAGE_PROPERTIES,
      container_format: { ...IMAGE_PROPERTIES.container_format, enum: [null, ...formats.container] },
      disk_format: { ...IMAGE_PROPERTIES.disk_format, enum: [null, ...formats.disk] },
    },
  };
  if (name === 'image') return image;
  const images = SCHEMAS.images as { properties: object };
  return { ...images, properties: { ...images.properties, images: { type: 'array', items: image } } };
}
