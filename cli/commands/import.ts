/**
 * `hangar import URL|s3://BUCKET/KEY NAME:TAG`: a new image filled by the service itself through
 * Glance's interoperable import (`POST /v2/images/{id}/import`, method web-download), then NAME:TAG
 * pointed at it. An s3:// source is presigned here with the caller's own AWS credentials (the
 * SDK's usual chain: AWS_PROFILE, AWS_ACCESS_KEY_ID, ~/.aws, AWS_ENDPOINT_URL_S3), so the service
 * needs no access to the caller's bucket and the import stays the interoperable one.
 */
import type { Command } from 'commander';
import { collectPairs, contextOf } from '../context.ts';
import { CliError, ExitCode, usageError } from '../errors.ts';
import { followTask } from '../follow.ts';
import { durationOption } from '../options.ts';
import type { Task } from '../schemas.ts';
import { taskView } from '../views.ts';
import { currentTarget, pointAndShow, splitReference } from './transfer.ts';

interface ImportOptions {
  diskFormat?: string;
  containerFormat: string;
  visibility?: string;
  property?: Record<string, string>;
  wait?: boolean;
  timeout: number;
  urlLifetime: number;
}

const FORMAT_BY_EXTENSION: Record<string, string> = {
  qcow2: 'qcow2',
  img: 'raw',
  raw: 'raw',
  iso: 'iso',
  vmdk: 'vmdk',
  vhd: 'vhd',
  vhdx: 'vhdx',
  vdi: 'vdi',
};

/** The disk format the source's name says (`…/Fedora-40.x86_64.qcow2`), if it says one. */
export function formatFromName(source: string): string | undefined {
  const path = source.split(/[?#]/)[0] ?? '';
  const extension = /\.([a-z0-9]+)$/i.exec(path)?.[1]?.toLowerCase();
  return extension ? FORMAT_BY_EXTENSION[extension] : undefined;
}

/** `s3://bucket/key/with/slashes` → bucket and key; undefined for anything else. */
export function parseS3Url(source: string): { bucket: string; key: string } | undefined {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(source);
  return match?.[1] && match[2] ? { bucket: match[1], key: match[2] } : undefined;
}

/** A GET URL for the object, signed with the caller's credentials, that the service downloads. */
async function presign(bucket: string, key: string, lifetimeSeconds: number): Promise<string> {
  // The SDK warns on every run that releases after January 2027 need Node 22: noise on a
  // terminal, about a dependency pinned here, so off unless the caller set it.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  // Loaded only for s3:// sources: the SDK costs start-up time every other command need not pay.
  const [{ GetObjectCommand, S3Client }, { getSignedUrl }] = await Promise.all([
    import('@aws-sdk/client-s3'),
    import('@aws-sdk/s3-request-presigner'),
  ]);
  const endpoint = process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  const client = new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    // An S3 stand-in on an address (s3rver, MinIO) has no per-bucket host names.
    forcePathStyle: Boolean(endpoint),
  });
  try {
    return await getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn: lifetimeSeconds,
    });
  } catch (error) {
    throw new CliError(`Cannot sign a download of s3://${bucket}/${key}: ${(error as Error).message}`);
  } finally {
    client.destroy();
  }
}

export function registerImport(program: Command): void {
  program
    .command('import')
    .description(
      'have the service download an image (http(s) URL or s3://BUCKET/KEY) and point NAME:TAG at it',
    )
    .argument('<source>', 'an http(s) URL, or s3://BUCKET/KEY (signed with your AWS credentials)')
    .argument('<name:tag>', 'the reference to set once the image is active')
    .option('--disk-format <format>', 'qcow2, raw, iso, ... (default: from the source name)')
    .option('--container-format <format>', 'container format', 'bare')
    .option('--visibility <visibility>', 'private, shared, community or public')
    .option('--property <key=value>', 'an image property (repeatable)', collectPairs)
    .option('--wait', 'follow the import task, then set NAME:TAG (without it, only start the import)')
    .option('--timeout <duration>', 'how long --wait waits', durationOption, 3_600_000)
    .option(
      '--url-lifetime <duration>',
      'how long the presigned s3:// URL is valid',
      durationOption,
      3_600_000,
    )
    .action(async (source: string, target: string, options: ImportOptions, command: Command) => {
      const { client, out } = contextOf(command);
      const { name, reference } = splitReference(target);
      const s3 = parseS3Url(source);
      if (!s3 && !/^https?:\/\//i.test(source))
        throw usageError(`expected an http(s) URL or s3://BUCKET/KEY, got ${source}`);
      const diskFormat = options.diskFormat ?? formatFromName(s3?.key ?? source);
      if (!diskFormat) throw usageError(`cannot tell the disk format from ${source}: give --disk-format`);
      const before = await currentTarget(client, reference);
      const uri = s3 ? await presign(s3.bucket, s3.key, Math.round(options.urlLifetime / 1000)) : source;

      const image = await client.createImage({
        ...options.property,
        name,
        disk_format: diskFormat,
        container_format: options.containerFormat,
        ...(options.visibility ? { visibility: options.visibility } : {}),
      });
      const removeImage = () => client.deleteImage(image.id).catch(() => {});
      try {
        await client.importImage(image.id, { method: { name: 'web-download', uri } });
      } catch (error) {
        await removeImage();
        throw error;
      }
      out.notice(`importing ${s3 ? source : uri} into image ${image.id} (${diskFormat})`);

      const latestTask = async (): Promise<Task> => {
        const [task] = (await client.imageTasks(image.id)).tasks.sort((a, b) =>
          b.created_at.localeCompare(a.created_at),
        );
        if (!task) throw new CliError(`Image ${image.id} has no import task.`);
        return task;
      };
      if (!options.wait) {
        out.notice(`the reference is set by --wait; later: hangar tag ${image.id} ${reference}`);
        out.one(await latestTask(), taskView);
        return;
      }
      const task = await followTask(latestTask, {
        label: `import ${reference}`,
        timeoutMs: options.timeout,
        out,
        describe: async () => `, image ${(await client.showImage(image.id)).status}`,
      });
      if (task.status !== 'success') {
        // A failed import leaves a queued image with no data: litter, as after a failed push.
        await removeImage();
        // The presigned URL carries a signature: the message names the s3:// source instead.
        const reason = (task.message || 'no reason given').split(uri).join(source);
        throw new CliError(`import of ${source} failed: ${reason} (image ${image.id} removed)`);
      }
      const stored = await client.showImage(image.id);
      if (stored.status !== 'active')
        throw new CliError(`Image ${image.id} is ${stored.status} after its import.`, ExitCode.conflict);
      await pointAndShow(client, out, reference, stored, before);
    });
}
