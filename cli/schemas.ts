/**
 * The shapes of the answers the CLI reads, parsed with zod so a changed server fails with a clear
 * message instead of printing undefined. Loose objects: fields the CLI does not know are kept and
 * printed by `-o json|yaml`.
 */
import { z } from 'zod';

export const ImageSchema = z.looseObject({
  id: z.string(),
  name: z.string().nullable(),
  status: z.string(),
  disk_format: z.string().nullable(),
  container_format: z.string().nullable(),
  visibility: z.string(),
  size: z.number().nullable(),
  checksum: z.string().nullable(),
  os_hash_algo: z.string().nullable(),
  os_hash_value: z.string().nullable(),
  owner: z.string().nullable(),
  protected: z.boolean(),
  created_at: z.string(),
  updated_at: z.string(),
  tags: z.array(z.string()),
});
export type Image = z.infer<typeof ImageSchema>;

export const ImageListSchema = z.looseObject({
  images: z.array(ImageSchema),
  next: z.string().optional(),
});

export const ReferenceSchema = z.looseObject({
  reference: z.string(),
  namespace: z.string(),
  name: z.string(),
  tag: z.string(),
  image_id: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
  updated_by: z.string().optional(),
  version: z.number(),
});
export type Reference = z.infer<typeof ReferenceSchema>;

export const ResolvedReferenceSchema = ReferenceSchema.extend({ image: ImageSchema });
export type ResolvedReference = z.infer<typeof ResolvedReferenceSchema>;

export const ReferenceListSchema = z.object({ references: z.array(ReferenceSchema) });

export const HistoryEntrySchema = z.looseObject({
  seq: z.number(),
  action: z.string(),
  from: z.string().nullable().optional(),
  to: z.string().nullable().optional(),
  by: z.string().optional(),
  at: z.string(),
});
export type HistoryEntry = z.infer<typeof HistoryEntrySchema>;
export const HistorySchema = z.object({ history: z.array(HistoryEntrySchema) });

export const MemberSchema = z.looseObject({
  image_id: z.string(),
  member_id: z.string(),
  status: z.string(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type Member = z.infer<typeof MemberSchema>;
export const MemberListSchema = z.looseObject({ members: z.array(MemberSchema) });

/** Glance's JSON error body (`Accept: application/json`). */
export const ErrorBodySchema = z.looseObject({ message: z.string() });

export const InstanceSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  hostname: z.string().optional(),
  image_id: z.string(),
  image: z.looseObject({
    id: z.string(),
    name: z.string().nullable().optional(),
    requested_as: z.string().nullish(),
  }),
  vcpus: z.number(),
  ram_mb: z.number(),
  disk_gb: z.number(),
  host_id: z.string().nullable(),
  stage: z.string(),
  reason: z.string().nullable().optional(),
  last_error: z.string().nullable().optional(),
  pending_action: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
  console_log: z.string().nullable().optional(),
});
export type Instance = z.infer<typeof InstanceSchema>;
/** The answer to a snapshot action: the queued image and the instance (whose job makes it). */
export const SnapshotAnswerSchema = z.looseObject({ image_id: z.string(), instance: InstanceSchema });
export const InstanceListSchema = z.looseObject({
  instances: z.array(InstanceSchema),
  next: z.string().optional(),
});

/** A Glance task (imports) or a Hangar publish task: the same shape. */
export const TaskSchema = z.looseObject({
  id: z.string(),
  type: z.string(),
  status: z.string(),
  message: z.string().nullable().optional(),
  result: z.record(z.string(), z.unknown()).nullable().optional(),
  image_id: z.string().optional(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type Task = z.infer<typeof TaskSchema>;
export const TaskListSchema = z.looseObject({ tasks: z.array(TaskSchema) });

export const BuildSchema = z.looseObject({
  id: z.string(),
  stage: z.string(),
  target: z.string(),
  namespace: z.string(),
  base: z.looseObject({ requested: z.string(), image_id: z.string() }),
  stages: z.array(
    z.looseObject({
      stage: z.string(),
      started_at: z.string(),
      ended_at: z.string().nullable(),
      seconds: z.number().nullable(),
    }),
  ),
  image_id: z.string().nullable(),
  publication_id: z.string().nullable(),
  console_tail: z.string().nullable(),
  reason: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type Build = z.infer<typeof BuildSchema>;
export const BuildListSchema = z.looseObject({ builds: z.array(BuildSchema) });

export const RetentionPolicySchema = z.looseObject({ keep: z.number(), grace_seconds: z.number() });
export type RetentionPolicy = z.infer<typeof RetentionPolicySchema>;
export const RetentionRunSchema = z.looseObject({
  hidden: z.array(z.string()),
  deactivated: z.array(z.string()),
  restored: z.array(z.string()),
});

const Capacity = z.looseObject({ vcpus: z.number(), ram_mb: z.number(), disk_gb: z.number() });
export const HostSchema = z.looseObject({
  id: z.string(),
  vcpus: z.number(),
  ram_mb: z.number(),
  disk_gb: z.number(),
  architecture: z.string().optional(),
  hypervisor_type: z.string().optional(),
  used: Capacity,
  free: Capacity.optional(),
  heartbeat_at: z.string().nullable().optional(),
  registered_at: z.string().optional(),
});
export type Host = z.infer<typeof HostSchema>;
export const HostListSchema = z.looseObject({ hosts: z.array(HostSchema) });

/** The answer to POST /v2/images/{id}/multipart-upload (docs/import-export.md). */
export const MultipartSessionSchema = z.looseObject({
  upload_id: z.string(),
  part_size: z.number(),
  part_count: z.number(),
  expires_at: z.string(),
  parts: z.array(z.object({ part_number: z.number(), url: z.string() })),
});
export type MultipartSession = z.infer<typeof MultipartSessionSchema>;

/** GET /v2/info/upload (Hangar's): the ways the service takes image bytes, the preferred first. */
export const UploadInfoSchema = z.looseObject({
  'upload-methods': z.looseObject({ value: z.array(z.string()) }),
});
