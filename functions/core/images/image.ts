/** The image record as stored and as the domain sees it. API rendering is in image-view.ts. */
export const IMAGE_STATUSES = [
  'queued',
  'saving',
  'uploading',
  'importing',
  'active',
  'killed',
  'deleted',
  'pending_delete',
  'deactivated',
] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

export const VISIBILITIES = ['public', 'community', 'shared', 'private'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/** An image member's answer to the offer (Glance's image member statuses). */
export const MEMBER_STATUSES = ['pending', 'accepted', 'rejected'] as const;
export type MemberStatus = (typeof MEMBER_STATUSES)[number];

export const DISK_FORMATS = [
  'ami',
  'ari',
  'aki',
  'vhd',
  'vhdx',
  'vmdk',
  'raw',
  'qcow2',
  'vdi',
  'iso',
  'ploop',
] as const;
export const CONTAINER_FORMATS = ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'] as const;

/** The disk_format and container_format values images may take: Glance's [image_format] lists. */
export interface AllowedFormats {
  disk: readonly string[];
  container: readonly string[];
}

/** Glance's defaults for [image_format] disk_formats and container_formats. */
export const GLANCE_FORMATS: AllowedFormats = { disk: DISK_FORMATS, container: CONTAINER_FORMATS };

export interface ImageRecord {
  id: string;
  name: string | null;
  status: ImageStatus;
  visibility: Visibility;
  protected: boolean;
  os_hidden: boolean;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  owner: string | null;
  size: number | null;
  virtual_size: number | null;
  min_ram: number;
  min_disk: number;
  container_format: string | null;
  disk_format: string | null;
  /** ISO 8601 with second precision and a Z, as Glance shows it. */
  created_at: string;
  updated_at: string;
  tags: string[];
  /** Extra (user-defined) properties, plus reserved os_glance_* ones set by the service. */
  properties: Record<string, string>;
  /** Optimistic-concurrency counter, bumped by every write. Never shown to clients. */
  version: number;
  /** Object key of the image data once it exists. Never shown to clients. */
  blob_key: string | null;
  /**
   * The members (consumer projects) and their statuses, in the order they were added. Only
   * membership writes change it (image-members.ts); kept on the record so access checks and the
   * listing index need no second read. Never shown to clients (members have their own resource).
   */
  member_statuses?: Array<[member: string, status: MemberStatus]>;
  /**
   * Held while bytes are being written for the image (an upload, a stage or an import): set in
   * the write that moves it to saving/uploading/importing, renewed by the holder's heartbeat, and
   * gone with any other status. A lease past `expires_at` means its holder died: the recovery
   * (core/images/recovery.ts) removes what it names and puts the image back to queued. Never
   * shown to clients.
   */
  lease?: ImageLease;
}

export const LEASE_KINDS = ['upload', 'stage', 'import'] as const;
export type LeaseKind = (typeof LEASE_KINDS)[number];

export interface ImageLease {
  /** One upload or stage attempt (a random id), or the import task holding the import lock. */
  holder: string;
  kind: LeaseKind;
  /** ISO 8601 with milliseconds: when the lease lapses unless renewed. */
  expires_at: string;
  /** The object being written in the images bucket, once its key is chosen. */
  blob_key?: string;
  /** The multipart upload of `blob_key`, once S3 gave its id. */
  multipart_upload_id?: string;
  /**
   * An object the holder consumes or writes outside the images bucket (the staging object of a
   * stage, an import's S3 source), removed on recovery as a failed import removes it.
   */
  source?: { bucket: string; key: string };
  /** The import task to fail when the lease is recovered. */
  task_id?: string;
}

/**
 * Why the last upload or stage of a queued image did not complete (its server died mid-way, see
 * core/images/recovery.ts); removed by the next successful upload. Reserved, like every os_glance_*
 * key; imports report in Glance's own os_glance_failed_import instead.
 */
export const FAILED_UPLOAD = 'os_glance_failed_upload';

/** Statuses in which bytes are in flight, so a lease may be held. */
export const LEASED_STATUSES: ReadonlySet<ImageStatus> = new Set(['saving', 'uploading', 'importing']);

/** Base properties: always present in the API view, and never removable by PATCH. */
export const BASE_PROPERTIES = [
  'id',
  'name',
  'status',
  'visibility',
  'protected',
  'os_hidden',
  'checksum',
  'os_hash_algo',
  'os_hash_value',
  'owner',
  'size',
  'virtual_size',
  'min_ram',
  'min_disk',
  'container_format',
  'disk_format',
  'created_at',
  'updated_at',
  'tags',
  'self',
  'file',
  'schema',
  'direct_url',
  'locations',
  'stores',
] as const;

export const READ_ONLY_PROPERTIES = new Set([
  'created_at',
  'updated_at',
  'status',
  'checksum',
  'size',
  'virtual_size',
  'direct_url',
  'self',
  'file',
  'schema',
  'id',
  'os_hash_algo',
  'os_hash_value',
]);

/** Reserved keys: nobody sets them through the API. Any os_glance* key is reserved too. */
export const RESERVED_PROPERTIES = new Set(['location', 'locations', 'deleted', 'deleted_at']);

export function isReservedProperty(key: string): boolean {
  return RESERVED_PROPERTIES.has(key) || key.startsWith('os_glance');
}
