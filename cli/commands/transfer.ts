/**
 * `hangar push` (create, stream the file, point NAME:TAG at it) and `hangar pull` (resumable from
 * FILE.part, always verified against the image's sha512, nothing kept on a mismatch).
 */
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open, rename, rm, truncate } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { type ApiClient, ApiError } from '../client.ts';
import { collectPairs, contextOf } from '../context.ts';
import { CliError, ExitCode, usageError } from '../errors.ts';
import { bytes } from '../format.ts';
import { meter } from '../meter.ts';
import { countOption, durationOption, sizeOption } from '../options.ts';
import type { Output } from '../output.ts';
import { type ProgressMode, startProgress } from '../progress.ts';
import type { Image, Reference } from '../schemas.ts';
import { pointedReferenceView, type Transfer } from '../views.ts';
import { multipartPush, type Pushed } from './multipart-push.ts';

/** `NAME:TAG` (a bare NAME means NAME:latest, as the API reads it). The server checks the rules. */
export function splitReference(text: string): { name: string; tag: string; reference: string } {
  const at = text.lastIndexOf(':');
  const name = at < 0 ? text : text.slice(0, at);
  const tag = at < 0 ? 'latest' : text.slice(at + 1);
  if (!name || !tag) throw usageError(`expected NAME:TAG, got ${text}`);
  return { name, tag, reference: `${name}:${tag}` };
}

/** The disk format a file declares in its first bytes, as far as the CLI can tell without qemu-img. */
async function sniffDiskFormat(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(8);
    await handle.read(head, 0, 8, 0);
    if (head.subarray(0, 4).equals(Buffer.from('QFI\xfb', 'latin1'))) return 'qcow2';
    if (head.subarray(0, 4).toString('latin1') === 'KDMV') return 'vmdk';
    if (head.toString('latin1') === 'conectix') return 'vhd';
  } finally {
    await handle.close();
  }
  return /\.iso$/i.test(path) ? 'iso' : 'raw';
}

/** What `reference` points to now in the caller's project, or undefined when it does not exist. */
export async function currentTarget(client: ApiClient, reference: string): Promise<string | undefined> {
  try {
    const current = await client.resolveReference(reference);
    // A public reference resolves too, but ours is made in our own project, beside it.
    return current.namespace === 'public' ? undefined : current.image_id;
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return undefined;
    throw error;
  }
}

/**
 * Points `reference` at `imageId`: a create, or a compare-and-swap move from `expect` (what it
 * pointed to when the command began), so a concurrent move is a conflict, not a lost update.
 */
export async function pointReference(
  client: ApiClient,
  reference: string,
  imageId: string,
  expect: string | undefined,
): Promise<Reference> {
  if (expect === undefined) return client.createReference(reference, imageId);
  return client.moveReference(reference, imageId, expect);
}

/**
 * What `push` and `import` end with: `reference` pointed at the stored image (see pointReference),
 * a notice of the move, and the reference with that image (and how a multipart push sent it).
 */
export async function pointAndShow(
  client: ApiClient,
  out: Output,
  reference: string,
  stored: Image,
  before: string | undefined,
  transfer?: Transfer,
): Promise<void> {
  const ref = await pointReference(client, reference, stored.id, before);
  out.notice(`${ref.reference} → ${stored.id}`);
  out.one(
    {
      ...ref,
      image: {
        id: stored.id,
        status: stored.status,
        size: stored.size,
        os_hash_value: stored.os_hash_value,
        disk_format: stored.disk_format,
      },
      ...(transfer ? { transfer } : {}),
    },
    pointedReferenceView,
  );
}

export async function waitForActive(client: ApiClient, id: string, timeoutMs: number): Promise<Image> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const image = await client.showImage(id);
    if (image.status === 'active') return image;
    // A failed import puts the image back to queued with the reason here.
    const failed = image.os_glance_failed_import;
    if (typeof failed === 'string' && failed) throw new CliError(`The import of ${id} failed: ${failed}`);
    if (['killed', 'deleted', 'deactivated'].includes(image.status))
      throw new CliError(`Image ${id} is ${image.status}.`);
    if (Date.now() > deadline)
      throw new CliError(
        `Image ${id} is still ${image.status} after ${timeoutMs / 1000}s.`,
        ExitCode.timeout,
      );
    await sleep(500);
  }
}

/** The put path of `push`: the file streamed through PUT /file into `image` (removed if it fails). */
async function streamPush(
  client: ApiClient,
  progress: ProgressMode,
  image: Image,
  file: string,
  reference: string,
  size: number,
  options: { limitRate?: number },
): Promise<Pushed> {
  // A queued image with no data is litter, whether the upload failed or was stopped.
  const removeImage = () => client.deleteImage(image.id).catch(() => {});
  const bar = startProgress(progress, `push ${reference}`, size, {
    interruptHint: `image ${image.id} removed`,
    cleanup: removeImage,
  });
  const bytesPath = meter(bar, options.limitRate);
  try {
    await client.uploadImage(image.id, createReadStream(file).pipe(bytesPath), size);
    bar.stop(true);
  } catch (error) {
    bar.stop(false);
    await removeImage();
    throw error;
  }
  return {
    image,
    sent: bytesPath.hash.digest('hex'),
    transfer: { method: 'put', sent_bytes: bytesPath.moved },
  };
}

interface PushOptions {
  diskFormat?: string;
  containerFormat: string;
  visibility?: string;
  property?: Record<string, string>;
  wait?: boolean;
  timeout: number;
  limitRate?: number;
  multipart?: boolean;
  partSize?: number;
  parallel: number;
}

interface PullOptions {
  outputDocument?: string;
  limitRate?: number;
}

/** What `pull` leaves beside FILE.part, so a resume continues the same image and not another. */
interface PartInfo {
  image_id: string;
  os_hash_value: string;
}

export function registerTransfer(program: Command): void {
  program
    .command('push')
    .description('upload FILE as a new image and point NAME:TAG at it')
    .argument('<file>', 'the image file')
    .argument('<name:tag>', 'the reference to set (a bare name means name:latest)')
    .option('--disk-format <format>', 'qcow2, raw, vmdk, iso, ... (default: from the file)')
    .option('--container-format <format>', 'container format', 'bare')
    .option('--visibility <visibility>', 'private, shared, community or public')
    .option('--property <key=value>', 'an image property (repeatable)', collectPairs)
    .option('--wait', 'wait until the image is active')
    .option('--timeout <duration>', 'how long --wait waits', durationOption, 600_000)
    .option('--limit-rate <size>', 'at most this many bytes a second, e.g. 10M', sizeOption)
    .option('--multipart', 'send presigned parts straight to S3, resumable (default: as the service says)')
    .option('--no-multipart', 'stream through PUT /file even where the service asks for multipart')
    .option('--part-size <size>', 'multipart part size, 5M to 5G (default: the service picks)', sizeOption)
    .option('--parallel <n>', 'multipart parts sent at once', countOption, 4)
    .action(async (file: string, target: string, options: PushOptions, command: Command) => {
      const { client, out, progress } = contextOf(command);
      const { name, reference } = splitReference(target);
      if (!existsSync(file)) throw new CliError(`${file}: no such file`, ExitCode.notFound);
      const size = statSync(file).size;
      // Before any byte is sent: a bad name or an unreadable reference fails now, not after the upload.
      const before = await currentTarget(client, reference);
      const createImage = async () => {
        const diskFormat = options.diskFormat ?? (await sniffDiskFormat(file));
        const image = await client.createImage({
          ...options.property,
          name,
          disk_format: diskFormat,
          container_format: options.containerFormat,
          ...(options.visibility ? { visibility: options.visibility } : {}),
        });
        out.notice(`created image ${image.id} (${diskFormat}, ${bytes(size)})`);
        return image;
      };
      const method =
        options.multipart === undefined
          ? await client.uploadMethod()
          : options.multipart
            ? 'multipart'
            : 'put';
      const viaMultipart = () =>
        multipartPush(client, out, progress, { file, reference, size, createImage, ...options });
      let pushed: Pushed;
      if (method === 'multipart') pushed = await viaMultipart();
      else
        try {
          pushed = await streamPush(client, progress, await createImage(), file, reference, size, options);
        } catch (error) {
          // A gateway that caps bodies (API Gateway's 10 MB) in front of a service that said put.
          if (!(options.multipart === undefined && error instanceof ApiError && error.status === 413))
            throw error;
          out.notice(`${error.message}; sending it as presigned multipart parts instead`);
          pushed = await viaMultipart();
        }
      const { image, sent, transfer } = pushed;
      let stored = await client.showImage(image.id);
      // The multipart path ends in an import: only an active image can be referenced.
      if (options.wait || transfer.method === 'multipart')
        stored = await waitForActive(client, image.id, options.timeout);
      if (stored.os_hash_value && stored.os_hash_value !== sent)
        throw new CliError(
          `The service stored sha512 ${stored.os_hash_value} for ${image.id}, but ${bytes(size)} with sha512 ${sent} were sent.`,
        );
      await pointAndShow(client, out, reference, stored, before, transfer);
    });

  program
    .command('pull')
    .description('download an image (resumable, verified against its sha512)')
    .argument('<ref>', 'image id or name:tag')
    .option('-O, --output-document <file>', 'where to write it (default: NAME-TAG.FORMAT)')
    .option('--limit-rate <size>', 'at most this many bytes a second, e.g. 10M', sizeOption)
    .action(async (ref: string, options: PullOptions, command: Command) => {
      const { client, out, progress } = contextOf(command);
      const image = await client.image(ref);
      if (image.status !== 'active')
        throw new CliError(
          `Image ${image.id} is ${image.status}: there is nothing to pull.`,
          ExitCode.conflict,
        );
      const expected = image.os_hash_value;
      if (!expected || (image.os_hash_algo ?? 'sha512') !== 'sha512')
        throw new CliError(`Image ${image.id} has no sha512 to verify against.`);
      const total = image.size ?? 0;
      const file = options.outputDocument ?? `${ref.replace(/[:/]/g, '-')}.${image.disk_format ?? 'img'}`;
      const part = `${file}.part`;
      const info = `${file}.part.json`;
      const mine: PartInfo = { image_id: image.id, os_hash_value: expected };

      let offset = 0;
      if (existsSync(part) && existsSync(info)) {
        const left = JSON.parse(readFileSync(info, 'utf8')) as Partial<PartInfo>;
        const partSize = statSync(part).size;
        if (left.image_id === mine.image_id && left.os_hash_value === mine.os_hash_value && partSize <= total)
          offset = partSize;
      }
      if (offset === 0) await rm(part, { force: true });
      writeFileSync(info, JSON.stringify(mine));

      // What is already there counts towards the hash: read it once, rather than trusting it.
      let hash = createHash('sha512');
      if (offset > 0)
        for await (const chunk of createReadStream(part, { end: offset - 1 })) hash.update(chunk);

      const download = await client.downloadImage(image.id, offset);
      if (download.offset !== offset) {
        // The server sent the whole image instead of the rest: start the file over.
        await truncate(part, 0);
        offset = 0;
        hash = createHash('sha512');
      }
      if (offset > 0) out.notice(`resuming ${file} at ${bytes(offset)} of ${bytes(total)}`);
      const bar = startProgress(progress, `pull ${ref}`, total, {
        start: offset,
        interruptHint: 'run the same pull again to resume',
      });
      const bytesPath = meter(bar, options.limitRate, hash);
      const body = download.response.body;
      try {
        if (body)
          await pipeline(
            Readable.fromWeb(body as WebReadableStream),
            bytesPath,
            createWriteStream(part, { flags: 'a' }),
          );
        else writeFileSync(part, '', { flag: 'a' });
        bar.stop(true);
      } catch (error) {
        bar.stop(false);
        throw new CliError(
          `${ref}: the download stopped (${(error as Error).message}); run the same pull again to resume.`,
        );
      }
      const received = bytesPath.moved;
      const actual = bytesPath.hash.digest('hex');
      const size = statSync(part).size;
      if (actual !== expected || size !== total) {
        await rm(part, { force: true });
        await rm(info, { force: true });
        throw new CliError(
          `${ref}: verification FAILED (sha512 ${actual.slice(0, 16)}…, ${size} bytes; the image has ${expected.slice(0, 16)}…, ${total} bytes). Nothing was kept.`,
        );
      }
      await rename(part, file);
      await rm(info, { force: true });
      out.notice(`${file}: sha512 verified`);
      out.one(
        {
          file,
          image_id: image.id,
          size: total,
          resumed_from: offset,
          received,
          sha512: actual,
          verified: true,
        },
        { columns: [], name: () => file },
      );
    });
}
