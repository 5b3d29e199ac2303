/** The multipart branch of `hangar push`: start or resume a session, send the missing parts. */
import { statSync } from 'node:fs';
import type { ApiClient } from '../client.ts';
import { CliError } from '../errors.ts';
import { bytes } from '../format.ts';
import {
  dropState,
  loadState,
  type PushState,
  resumable,
  saveState,
  sendParts,
  sha512File,
  stateFile,
  storedBytes,
} from '../multipart.ts';
import type { Output } from '../output.ts';
import { type ProgressMode, startProgress } from '../progress.ts';
import type { Image } from '../schemas.ts';
import type { Transfer } from '../views.ts';

/** What a push sent: into which image, the sha512 of the file as read, and how. */
export interface Pushed {
  image: Image;
  sent: string;
  transfer: Transfer;
}

export interface MultipartPushOptions {
  file: string;
  reference: string;
  size: number;
  createImage: () => Promise<Image>;
  partSize?: number;
  parallel: number;
  limitRate?: number;
}

export async function multipartPush(
  client: ApiClient,
  out: Output,
  progress: ProgressMode,
  options: MultipartPushOptions,
): Promise<Pushed> {
  const { file, reference, size } = options;
  const { mtimeMs } = statSync(file);
  const statePath = stateFile(client.baseUrl, file, reference);
  let state = loadState(statePath);
  if (state && !(await resumable(client, state, { size, mtimeMs }))) {
    // The file changed, the URLs are (nearly) expired or the image moved on: start over, and
    // leave nothing of the old session behind.
    out.notice(`the earlier push of ${file} cannot be resumed; starting over`);
    await client.abortMultipart(state.image_id, state.upload_id).catch(() => {});
    await client.deleteImage(state.image_id).catch(() => {});
    dropState(statePath);
    state = undefined;
  }
  let image: Image;
  if (state) {
    image = await client.showImage(state.image_id);
    out.notice(
      `resuming the push into image ${image.id}: ${Object.keys(state.etags).length} of ${state.parts.length} parts already stored (${bytes(storedBytes(state))})`,
    );
  } else {
    image = await options.createImage();
    try {
      const session = await client.startMultipart(image.id, size, options.partSize);
      state = {
        url: client.baseUrl,
        file,
        size,
        mtime_ms: mtimeMs,
        reference,
        image_id: image.id,
        upload_id: session.upload_id,
        part_size: session.part_size,
        expires_at: session.expires_at,
        parts: session.parts,
        etags: {},
      } satisfies PushState;
      saveState(statePath, state);
    } catch (error) {
      await client.deleteImage(image.id).catch(() => {});
      throw error;
    }
  }
  const bar = startProgress(progress, `push ${reference}`, size, {
    start: storedBytes(state),
    interruptHint: 'run the same push again to resume',
  });
  // The local hash runs beside the upload: the parts go out of order, the hash reads in order.
  const hashing = sha512File(file);
  hashing.catch(() => {});
  let result: Awaited<ReturnType<typeof sendParts>>;
  try {
    result = await sendParts(client, file, state, statePath, {
      parallel: options.parallel,
      bar,
      ...(options.limitRate ? { limitRate: options.limitRate } : {}),
    });
    bar.stop(true);
  } catch (error) {
    bar.stop(false);
    throw new CliError(`${(error as Error).message}; run the same push again to resume`);
  }
  dropState(statePath);
  return {
    image,
    sent: await hashing,
    transfer: {
      method: 'multipart',
      parts: state.parts.length,
      sent_parts: result.sentParts,
      skipped_parts: result.skippedParts,
      sent_bytes: result.sent,
    },
  };
}
