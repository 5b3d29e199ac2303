/**
 * POST /v2/images: turns a request body into a new image record, with Glance's checks in Glance's
 * order (RequestDeserializer.create, then the policy, quota and domain layers of new_image).
 */
import { randomUUID } from 'node:crypto';
import { ForbiddenError } from '../kernel/errors.ts';
import { canWriteProject, type Principal } from '../kernel/principal.ts';
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
  BASE_PROPERTY_SCHEMAS,
  DISALLOWED_ON_CREATE,
  dedupeTags,
  enforcePropertyQuota,
  enforceTagQuota,
  idSchema,
  publicizeDenied,
  pyRepr,
  type Quotas,
  readOnlyError,
  reservedError,
  schemaError,
  validateExtraPropertyKey,
  validateNonNegative,
  validatePropertyValue,
  WritableFieldsSchema,
} from './validation.ts';

/** Keys Glance takes as image attributes on create; every other key is an extra property. */
const CREATE_BASE_KEYS = new Set([...Object.keys(BASE_PROPERTY_SCHEMAS)]);

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Python's '%s' of the requested owner, as Glance's message shows it. */
function ownerText(owner: unknown): string {
  return owner === null ? 'None' : String(owner);
}

/**
 * Validates a create body and builds the new record (status queued, version 1, no data).
 * Throws BadRequestError (400), ForbiddenError (403) or TooLargeError (413) as Glance would.
 */
export function parseCreateRequest(
  body: unknown,
  principal: Principal,
  quotas: Quotas,
  now: Date,
  protections: PropertyProtections = PropertyProtections.NONE,
  formats: AllowedFormats = GLANCE_FORMATS,
): ImageRecord {
  // Glance answers 500 to a non-object body; a schema-style 400 is what it means to say.
  if (!isJsonObject(body)) throw schemaError(`${pyRepr(body)} is not of type 'object'`);

  for (const key of DISALLOWED_ON_CREATE) if (Object.hasOwn(body, key)) throw readOnlyError(key);

  // The whole body is checked against the image schema before any permission check.
  for (const [key, value] of Object.entries(body)) validatePropertyValue(key, value, formats);

  const extraEntries: Array<[string, string]> = [];
  for (const [key, value] of Object.entries(body)) {
    if (CREATE_BASE_KEYS.has(key)) continue;
    validateExtraPropertyKey(key);
    if (isReservedProperty(key)) throw reservedError(key);
    // validatePropertyValue has already refused anything but a string.
    extraEntries.push([key, String(value)]);
  }

  // Glance's add_image (ADMIN_OR_PROJECT_MEMBER): a reader may not create, whatever the owner.
  if (!canWriteProject(principal, principal.project))
    throw new ForbiddenError('You are not authorized to complete add_image action.');
  if (Object.hasOwn(body, 'owner') && !principal.isAdmin && body.owner !== principal.project)
    throw new ForbiddenError(`You are not permitted to create images owned by '${ownerText(body.owner)}'.`);
  if (body.visibility === 'public' && !principal.isAdmin) throw publicizeDenied();
  // Glance's ProtectedImageFactoryProxy, inside the authorization proxy and outside the quotas:
  // every extra property needs `create`, and the first refused one (in body order) is the 403.
  for (const [key] of extraEntries) protections.enforce(principal, key, 'create');

  const fields = WritableFieldsSchema.parse(body);
  const tags = dedupeTags(fields.tags ?? []);
  enforceTagQuota(tags.length, quotas);

  // The id may be chosen by the client; every other read-only attribute is refused.
  for (const key of Object.keys(body))
    if (key !== 'id' && READ_ONLY_PROPERTIES.has(key)) throw readOnlyError(key);
  // Locations are out of scope for Hangar: refused as Glance refuses them on create.
  if (Object.hasOwn(body, 'locations')) throw reservedError('locations');

  if (fields.min_disk !== undefined) validateNonNegative('min_disk', fields.min_disk);
  if (fields.min_ram !== undefined) validateNonNegative('min_ram', fields.min_ram);

  enforcePropertyQuota(extraEntries.length, quotas);

  const timestamp = isoSeconds(now);
  return {
    id: body.id === undefined ? randomUUID() : idSchema.parse(body.id),
    name: fields.name ?? null,
    status: 'queued',
    visibility: fields.visibility ?? 'shared',
    protected: fields.protected ?? false,
    os_hidden: fields.os_hidden ?? false,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    owner: Object.hasOwn(body, 'owner') ? (fields.owner ?? null) : principal.project,
    size: null,
    virtual_size: null,
    min_ram: fields.min_ram ?? 0,
    min_disk: fields.min_disk ?? 0,
    container_format: fields.container_format ?? null,
    disk_format: fields.disk_format ?? null,
    created_at: timestamp,
    updated_at: timestamp,
    tags,
    // fromEntries keeps any key (even "__proto__") as plain data.
    properties: Object.fromEntries(extraEntries),
    version: 1,
    blob_key: null,
  };
}
