/** What callers send: the request bodies (zod at the boundary) and how a request names its image. */
import { z } from 'zod';
import { BadRequestError } from '../kernel/errors.ts';

export const MAX_USER_DATA_BYTES = 65535;

/**
 * A boot that counts only once the serial console prints `marker` (literal text), within
 * `timeout_seconds` of the domain's start; otherwise the build (or start, reboot) fails.
 */
export const BootCheckSchema = z.strictObject({
  marker: z.string().min(1).max(200),
  timeout_seconds: z.number().int().min(10).max(3600),
});
export type BootCheck = z.infer<typeof BootCheckSchema>;

export const CreateInstanceRequestSchema = z.strictObject({
  name: z.string().trim().min(1).max(255),
  /** An image id, or a name:tag reference (see isImageId). */
  image: z.string().min(1).max(300),
  vcpus: z.number().int().min(1).max(1024),
  // The agent refuses less than 16 MiB (agent/src/service-client.ts JobSchema).
  ram_mb: z
    .number()
    .int()
    .min(16)
    .max(16 * 1024 * 1024),
  disk_gb: z
    .number()
    .int()
    .min(1)
    .max(64 * 1024),
  user_data: z
    .string()
    .refine((text) => Buffer.byteLength(text, 'utf8') <= MAX_USER_DATA_BYTES, {
      message: `user_data is limited to ${MAX_USER_DATA_BYTES} bytes`,
    })
    .nullish(),
  boot_check: BootCheckSchema.nullish(),
});
export type CreateInstanceRequest = z.infer<typeof CreateInstanceRequestSchema>;

export const HostRegistrationSchema = z.object({
  vcpus: z.number().int().min(1),
  ram_mb: z.number().int().min(1),
  disk_gb: z.number().int().min(0),
  architecture: z.string().min(1).max(64),
  hypervisor_type: z.enum(['qemu', 'kvm']),
  hypervisor_version: z.number().int().nonnegative(),
});

/** zod's verdict as one 400 line, naming the fields. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown, what: string): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const path = issue.path.join('.');
    return path ? `${path}: ${issue.message}` : issue.message;
  });
  throw new BadRequestError(`Invalid ${what}: ${problems.join('; ')}`);
}

/**
 * Image ids are UUIDs (Glance's id schema); anything else names a reference, `name:tag` or a bare
 * `name` (= name:latest), as in docs/references-api.md.
 */
export function isImageId(ref: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(ref);
}

/** POST /v1/instances/{id}/actions/upgrade: the image to move to (default: where its reference points). */
export const UpgradeRequestSchema = z.strictObject({
  image: z.string().min(1).max(300).optional(),
});
