/**
 * `hangar publish` (move NAME:TAG to a candidate only once it passes the publish gate: re-verified
 * bytes and, with --boot-marker, a boot that prints the marker) and `hangar retention` (how many
 * versions of a name stay visible). See docs/references-api.md.
 */
import type { Command } from 'commander';
import { contextOf } from '../context.ts';
import { CliError, ExitCode, usageError } from '../errors.ts';
import { followTask } from '../follow.ts';
import { span } from '../format.ts';
import { countOption, durationOption, longDurationOption } from '../options.ts';
import type { View } from '../output.ts';
import type { RetentionPolicy } from '../schemas.ts';
import { taskView } from '../views.ts';
import { currentTarget, splitReference } from './transfer.ts';

interface PublishOptions {
  bootMarker?: string;
  bootTimeout?: number;
  expect?: string;
  wait?: boolean;
  timeout: number;
}

/** The service's default grace period when `--grace` is not given and no policy exists yet. */
const DEFAULT_GRACE_MS = 7 * 86_400_000;

type PolicyRow = RetentionPolicy & {
  name: string;
  hidden?: string[];
  deactivated?: string[];
  restored?: string[];
};
const ids = (list: string[] | undefined) => (list?.length ? list.join(',') : '-');
const policyView: View<PolicyRow> = {
  columns: [
    { header: 'NAME', value: (row) => row.name },
    { header: 'KEEP', value: (row) => row.keep },
    { header: 'GRACE', value: (row) => span(row.grace_seconds) },
  ],
  name: (row) => row.name,
  fields: (row) => [
    ['name', row.name],
    ['keep', row.keep],
    ['grace', span(row.grace_seconds)],
    ...(row.hidden
      ? ([
          ['hidden', ids(row.hidden)],
          ['deactivated', ids(row.deactivated)],
          ['restored', ids(row.restored)],
        ] as const)
      : []),
  ],
};

export function registerPublishing(program: Command): void {
  program
    .command('publish')
    .description('point NAME:TAG at an image only once it passes the publish gate')
    .argument('<ref>', 'the candidate: image id or name:tag')
    .argument('<name:tag>', 'the reference to move (or create)')
    .option('--boot-marker <text>', 'the candidate must boot and print this on its serial console')
    .option(
      '--boot-timeout <duration>',
      'how long the boot may take (10s to 1h; default 10m)',
      durationOption,
    )
    .option('--expect <image-id>', 'the image NAME:TAG must still point to (default: what it points to now)')
    .option('--wait', 'wait for the verdict (exit 4 when the gate refuses)')
    .option('--timeout <duration>', 'how long --wait waits', durationOption, 65 * 60_000)
    .action(async (ref: string, target: string, options: PublishOptions, command: Command) => {
      const { client, out } = contextOf(command);
      if (options.bootTimeout !== undefined && !options.bootMarker)
        throw usageError('--boot-timeout needs --boot-marker');
      const candidate = await client.image(ref);
      const { reference } = splitReference(target);
      const task = await client.publish(reference, {
        image_id: candidate.id,
        ...(options.expect ? { expect: options.expect } : {}),
        ...(options.bootMarker
          ? {
              boot: {
                marker: options.bootMarker,
                ...(options.bootTimeout ? { timeout_seconds: Math.round(options.bootTimeout / 1000) } : {}),
              },
            }
          : {}),
      });
      out.notice(`publishing ${candidate.id} as ${reference} (task ${task.id})`);
      if (!options.wait) {
        out.one(task, taskView);
        return;
      }
      const done = await followTask(() => client.publication(task.id), {
        label: `publish ${reference}`,
        timeoutMs: options.timeout,
        out,
      });
      if (done.status !== 'success') {
        if (out.format === 'json' || out.format === 'yaml') out.one(done, taskView);
        throw new CliError(done.message || `The publish of ${reference} failed.`, ExitCode.conflict);
      }
      const resolved = await currentTarget(client, reference);
      out.notice(`${reference} → ${resolved ?? candidate.id}`);
      out.one(done, taskView);
    });

  program
    .command('retention')
    .description(
      'show or set how many versions of a name stay visible (older ones are hidden, then deactivated)',
    )
    .argument('<name>', 'the name (the part before the colon)')
    .option('--keep <n>', 'versions to keep visible', countOption)
    .option(
      '--grace <duration>',
      'how long a hidden version stays before it is deactivated, e.g. 7d',
      longDurationOption,
    )
    .option('--apply', 'apply the policy now and list what it hid, deactivated or restored')
    .action(
      async (name: string, options: { keep?: number; grace?: number; apply?: boolean }, command: Command) => {
        const { client, out } = contextOf(command);
        if (name.includes(':')) throw usageError(`retention is per name, not per tag: ${name.split(':')[0]}`);
        let policy: RetentionPolicy;
        if (options.keep !== undefined || options.grace !== undefined) {
          let keep = options.keep;
          let grace = options.grace;
          // A partial change keeps the other half of what is set.
          if (keep === undefined || grace === undefined) {
            const existing = await client.retention(name).catch(() => undefined);
            keep ??= existing?.keep;
            grace ??= existing ? existing.grace_seconds * 1000 : DEFAULT_GRACE_MS;
          }
          if (keep === undefined) throw usageError(`${name} has no retention policy yet: give --keep`);
          policy = await client.setRetention(name, keep, Math.round(grace / 1000));
          out.notice(`${name}: keep ${policy.keep}, grace ${span(policy.grace_seconds)}`);
        } else policy = await client.retention(name);
        if (options.apply) {
          const run = await client.applyRetention(name);
          out.notice(
            `${name}: hid ${run.hidden.length}, deactivated ${run.deactivated.length}, restored ${run.restored.length}`,
          );
          out.one({ name, ...policy, ...run }, policyView);
          return;
        }
        out.one({ name, ...policy }, policyView);
      },
    );
}
