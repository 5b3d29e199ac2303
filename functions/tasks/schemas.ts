/** The inputs the state machines hand their task functions, checked at the function's edge. */
import { z } from 'zod';
import { EXPORT_FORMATS } from '#core/transfer/export';

export const StepErrorSchema = z
  .object({ Error: z.string().optional(), Cause: z.string().optional() })
  .optional();

export const ImportInputSchema = z.object({
  task_id: z.string().min(1),
  image_id: z.string().min(1),
  source: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('s3'), bucket: z.string(), key: z.string(), delete: z.boolean() }),
    z.object({ kind: z.literal('url'), uri: z.string() }),
  ]),
});

export const CopyResultSchema = z.object({
  blob_key: z.string(),
  size: z.number().int().nonnegative(),
  /** null: the content was not the declared disk_format and the format match is off. */
  virtual_size: z.number().int().nonnegative().nullable(),
  checksum: z.string(),
  os_hash_algo: z.literal('sha512'),
  os_hash_value: z.string(),
  format: z.string(),
});

export const ActivateInputSchema = ImportInputSchema.extend({ data: CopyResultSchema });
export const FailInputSchema = ImportInputSchema.extend({
  data: CopyResultSchema.optional(),
  error: StepErrorSchema,
});

export const ExportInputSchema = z.object({
  task_id: z.string().min(1),
  image_id: z.string().min(1),
  format: z.enum(EXPORT_FORMATS),
});

export const ExportFinishInputSchema = ExportInputSchema.extend({
  result: z.record(z.string(), z.unknown()).optional(),
  error: StepErrorSchema,
});
