/**
 * The API entity of an image, exactly as Glance's ResponseSerializer._format_image builds it:
 * extra properties first, then the base attributes (null when unset), tags and the links.
 * Internal fields (version, blob_key) never leave the service. Every render is for a caller, so it
 * takes the caller's PropertyFilter: extra properties the caller may not read (property
 * protections) are left out, as Glance's ExtraPropertiesProxy leaves them out.
 */
import type { ImageRecord } from './image.ts';
import type { PropertyFilter } from './property-protections.ts';

/** Extra properties Glance keeps to itself (ResponseSerializer._hidden_properties). */
const HIDDEN_PROPERTIES = new Set(['os_glance_stage_host']);

export const IMAGE_SCHEMA_PATH = '/v2/schemas/image';
export const IMAGES_SCHEMA_PATH = '/v2/schemas/images';

export function imagePath(id: string): string {
  return `/v2/images/${id}`;
}

export function renderImage(image: ImageRecord, readable: PropertyFilter): Record<string, unknown> {
  // fromEntries defines own properties, so even a key like "__proto__" survives as data.
  const view: Record<string, unknown> = Object.fromEntries(
    Object.entries(image.properties).filter(([key]) => !HIDDEN_PROPERTIES.has(key) && readable(key)),
  );
  // Attribute order follows Glance's serializer so answers diff cleanly against real Glance.
  view.name = image.name;
  view.disk_format = image.disk_format;
  view.container_format = image.container_format;
  view.visibility = image.visibility;
  view.size = image.size;
  view.virtual_size = image.virtual_size;
  view.status = image.status;
  view.checksum = image.checksum;
  view.protected = image.protected;
  view.min_ram = image.min_ram;
  view.min_disk = image.min_disk;
  view.owner = image.owner;
  view.os_hidden = image.os_hidden;
  view.os_hash_algo = image.os_hash_algo;
  view.os_hash_value = image.os_hash_value;
  view.id = image.id;
  view.created_at = image.created_at;
  view.updated_at = image.updated_at;
  view.tags = [...image.tags];
  view.self = imagePath(image.id);
  view.file = `${imagePath(image.id)}/file`;
  view.schema = IMAGE_SCHEMA_PATH;
  return view;
}

export interface ListLinks {
  first: string;
  next?: string | undefined;
}

/** The body of GET /v2/images: `next` only when there may be another page. */
export function renderImageList(
  images: readonly ImageRecord[],
  links: ListLinks,
  readable: PropertyFilter,
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    images: images.map((image) => renderImage(image, readable)),
    first: links.first,
    schema: IMAGES_SCHEMA_PATH,
  };
  if (links.next !== undefined) body.next = links.next;
  return body;
}
