/**
 * `hangar snapshot`, `upgrade` and `rollback-instance`: an instance's disk to a new image, and an
 * instance onto another image and back (docs/instances-api.md "Snapshots", "Upgrade and
 * rollback"). Each only queues a job for the host agent; --wait follows it as start/stop do.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { type ApiClient, ApiError } from '../client.ts';
import { collectPairs, contextOf } from '../context.ts';
import { CliError, ExitCode, usageError } from '../errors.ts';
import type { Image, Instance } from '../schemas.ts';
import { imageView, instanceView } from '../views.ts';
import { duration, findInstance, waitFor } from './instances.ts';

const POLL_MS = 500;

/** `NAME` (an image name only) or `NAME:TAG` (that name, and the reference NAME:TAG moved to it). */
function splitSnapshotTarget(text: string): { name: string; reference?: string } {
  const at = text.lastIndexOf(':');
  if (at < 0) return { name: text };
  const name = text.slice(0, at);
  if (!name || at === text.length - 1) throw usageError(`expected NAME or NAME:TAG, got ${text}`);
  return { name, reference: text };
}

/**
 * Follows a snapshot's image until it is active. A failed snapshot deletes its image: then the
 * instance's last_error says why.
 */
async function waitForSnapshot(
  client: ApiClient,
  imageId: string,
  instanceId: string,
  timeoutMs: number,
): Promise<Image> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let image: Image | undefined;
    try {
      image = await client.showImage(imageId);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
    if (image?.status === 'active') return image;
    if (!image || ['killed', 'deleted', 'deactivated'].includes(image.status)) {
      const instance = await client.showInstance(instanceId);
      throw new CliError(
        `Snapshot ${imageId} of ${instanceId} is ${image?.status ?? 'gone'}: ${instance.last_error ?? 'no reason given'}`,
      );
    }
    if (Date.now() > deadline)
      throw new CliError(
        `Snapshot ${imageId} is still ${image.status} after ${Math.round(timeoutMs / 1000)}s.`,
        ExitCode.timeout,
      );
    await sleep(POLL_MS);
  }
}

/** After --wait: the job's failure, if this action's job failed. */
function failureOf(instance: Instance, action: string): CliError | undefined {
  const error = instance.last_error;
  if (!error?.startsWith(`${action} failed`)) return undefined;
  // A boot check that refused the upgraded disk is a refused gate, as a failed publish is.
  const code = /UpgradeRolledBackError/.test(error) ? ExitCode.conflict : ExitCode.error;
  return new CliError(`Instance ${instance.id}: ${error}`, code);
}

interface WaitOptions {
  wait?: boolean;
  timeout: number;
}

export function registerLifecycle(program: Command): void {
  program
    .command('snapshot')
    .description("an instance's disk as a new image (NAME:TAG also points that reference at it)")
    .argument('<instance>', 'instance id or name')
    .argument('<name>', 'NAME or NAME:TAG')
    .option('--property <key=value>', 'an image property (repeatable)', collectPairs)
    .option('--wait', 'wait until the image is active')
    .option('--timeout <duration>', 'how long --wait waits', duration, 600_000)
    .action(
      async (
        which: string,
        target: string,
        options: WaitOptions & { property?: Record<string, string> },
        command: Command,
      ) => {
        const { client, out } = contextOf(command);
        const { name, reference } = splitSnapshotTarget(target);
        const instance = await findInstance(client, which);
        const asked = await client.snapshotInstance(instance.id, {
          name,
          ...(reference ? { reference } : {}),
          ...(options.property ? { properties: options.property } : {}),
        });
        out.notice(`snapshot of ${instance.id} queued as image ${asked.image_id}`);
        const image = options.wait
          ? await waitForSnapshot(client, asked.image_id, instance.id, options.timeout)
          : await client.showImage(asked.image_id);
        if (options.wait && reference) {
          // The reference moves once the job is done; someone else's move meanwhile wins, and says so.
          const after = await waitFor(client, instance.id, options.timeout, (i) => i.pending_action === null);
          if (after.last_error) out.notice(`instance ${after.id}: ${after.last_error}`);
        }
        out.one({ ...image, references: reference ? [reference] : [] }, imageView);
      },
    );

  program
    .command('upgrade')
    .description('rebuild an instance on a new image (default: where its reference points now)')
    .argument('<instance>', 'instance id or name')
    .option('--image <ref>', 'the image to upgrade to: id or name:tag')
    .option('--wait', 'wait until the upgraded instance booted (or was rolled back)')
    .option('--timeout <duration>', 'how long --wait waits', duration, 600_000)
    .action(async (which: string, options: WaitOptions & { image?: string }, command: Command) => {
      const { client, out } = contextOf(command);
      const instance = await findInstance(client, which);
      let after = await client.instanceAction(
        instance.id,
        'upgrade',
        options.image ? { image: options.image } : {},
      );
      out.notice(
        `upgrade ${after.id}: ${after.pending_action ? `${after.pending_action} queued` : after.stage}`,
      );
      if (options.wait) {
        after = await waitFor(client, instance.id, options.timeout, (i) => i.pending_action === null);
        const failed = failureOf(after, 'upgrade');
        if (failed) throw failed;
      }
      out.one(after, instanceView);
    });

  program
    .command('rollback-instance')
    .description('return an instance to its previous disk (the one before its last upgrade)')
    .argument('<instance>', 'instance id or name')
    .option('--wait', 'wait until it booted the previous disk')
    .option('--timeout <duration>', 'how long --wait waits', duration, 600_000)
    .action(async (which: string, options: WaitOptions, command: Command) => {
      const { client, out } = contextOf(command);
      const instance = await findInstance(client, which);
      let after = await client.instanceAction(instance.id, 'rollback');
      out.notice(
        `rollback ${after.id}: ${after.pending_action ? `${after.pending_action} queued` : after.stage}`,
      );
      if (options.wait) {
        after = await waitFor(client, instance.id, options.timeout, (i) => i.pending_action === null);
        const failed = failureOf(after, 'rollback');
        if (failed) throw failed;
      }
      out.one(after, instanceView);
    });
}
