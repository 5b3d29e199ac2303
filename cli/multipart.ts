/**
 * `hangar push --multipart`: the presigned multipart path, for a service that does not stream
 * `PUT /file` (AWS: API Gateway and Lambda carry at most 6-10 MB). The parts go straight to the
 * presigned URLs, several at once, and the session (image, upload id, part URLs, and the ETag of
 * every part S3 has acknowledged) is kept in a state file of the config dir. Run again after an
 * interruption, the push finds it and sends only the parts without an ETag.
 */
import { createHash } from 'node:crypto';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { type ApiClient, ApiError } from './client.ts';
import { configDir } from './config.ts';
import { CliError } from './errors.ts';
import { meter } from './meter.ts';
import type { Progress } from './progress.ts';

const PushStateSchema = z.object({
  url: z.string(),
  file: z.string(),
  size: z.number(),
  mtime_ms: z.number(),
  reference: z.string(),
  image_id: z.string(),
  upload_id: z.string(),
  part_size: z.number(),
  expires_at: z.string(),
  parts: z.array(z.object({ part_number: z.number(), url: z.string() })),
  /** part number → the ETag S3 answered: the parts that are stored. */
  etags: z.record(z.string(), z.string()),
});
export type PushState = z.infer<typeof PushStateSchema>;

/** A resumed session must have this long left on its URLs, or it is started over. */
const URL_MARGIN_MS = 5 * 60_000;

export function stateFile(url: string, file: string, reference: string): string {
  const key = createHash('sha256')
    .update(`${url}\n${resolve(file)}\n${reference}`)
    .digest('hex')
    .slice(0, 32);
  return join(configDir(), 'pushes', `${key}.json`);
}

export function loadState(path: string): PushState | undefined {
  if (!existsSync(path)) return undefined;
  const parsed = PushStateSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  return parsed.success ? parsed.data : undefined;
}

/** Mode 0600: the part URLs let whoever holds them write the upload. */
export function saveState(path: string, state: PushState): void {
  mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify(state), { mode: 0o600 });
  renameSync(temporary, path);
}

export const dropState = (path: string) => rmSync(path, { force: true });

/** Whether `state` is still a session this push can continue (same bytes, URLs alive, image queued). */
export async function resumable(
  client: ApiClient,
  state: PushState,
  file: { size: number; mtimeMs: number },
): Promise<boolean> {
  if (state.size !== file.size || state.mtime_ms !== file.mtimeMs) return false;
  if (Date.parse(state.expires_at) - Date.now() < URL_MARGIN_MS) return false;
  try {
    return (await client.showImage(state.image_id)).status === 'queued';
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return false;
    throw error;
  }
}

/** The bytes of part `number` (1-based), read whole: S3 wants each part's Content-Length. */
async function readPart(file: string, state: PushState, number: number, limit?: number): Promise<Buffer> {
  const start = (number - 1) * state.part_size;
  const end = Math.min(start + state.part_size, state.size) - 1;
  const chunks: Buffer[] = [];
  if (end < start) return Buffer.alloc(0);
  // The meter only paces (--limit-rate); the bar moves once S3 has the part.
  const paced = createReadStream(file, { start, end }).pipe(meter({ advance() {}, stop() {} }, limit));
  for await (const chunk of paced) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface MultipartResult {
  /** Bytes sent by this run. */
  sent: number;
  /** Parts a previous run had stored, not sent again. */
  skippedParts: number;
  sentParts: number;
}

/**
 * Sends every part of `state` that has no ETag, `parallel` at a time, recording each ETag as it
 * comes, then completes the upload. The state file outlives a failure: the next run resumes.
 */
export async function sendParts(
  client: ApiClient,
  file: string,
  state: PushState,
  statePath: string,
  options: { parallel: number; bar: Progress; limitRate?: number },
): Promise<MultipartResult> {
  const missing = state.parts.filter((part) => !state.etags[String(part.part_number)]);
  const skippedParts = state.parts.length - missing.length;
  let sent = 0;
  let next = 0;
  const perWorker = options.limitRate ? options.limitRate / options.parallel : undefined;
  const worker = async () => {
    for (;;) {
      const part = missing[next++];
      if (!part) return;
      const body = await readPart(file, state, part.part_number, perWorker);
      let response: Response;
      try {
        response = await fetch(part.url, {
          method: 'PUT',
          body,
          headers: { 'content-length': String(body.length) },
        });
      } catch (error) {
        throw new CliError(`part ${part.part_number}: ${(error as Error).message}`);
      }
      const etag = response.headers.get('etag');
      if (!response.ok || !etag)
        throw new CliError(
          `S3 refused part ${part.part_number} (${response.status}): ${(await response.text()).slice(0, 300)}`,
        );
      await response.body?.cancel();
      state.etags[String(part.part_number)] = etag;
      saveState(statePath, state);
      sent += body.length;
      options.bar.advance(body.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel, Math.max(missing.length, 1)) }, worker));
  await client.completeMultipart(
    state.image_id,
    state.upload_id,
    state.parts.map((part) => ({
      part_number: part.part_number,
      etag: state.etags[String(part.part_number)] ?? '',
    })),
  );
  return { sent, skippedParts, sentParts: missing.length };
}

/** The bytes a state's stored parts hold (where a resumed bar starts). */
export function storedBytes(state: PushState): number {
  return Object.keys(state.etags).reduce((total, key) => {
    const start = (Number(key) - 1) * state.part_size;
    return total + Math.max(0, Math.min(state.part_size, state.size - start));
  }, 0);
}

export async function sha512File(file: string): Promise<string> {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
