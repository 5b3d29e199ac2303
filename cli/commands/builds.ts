/**
 * `hangar build BASE NAME:TAG --recipe FILE`: boot BASE with the recipe as its user-data, wait
 * for the guest to power itself off, snapshot it, test the image (with --boot-marker: it must
 * boot and print the marker) and publish it to NAME:TAG (docs/builds-api.md). --wait follows the
 * build's stages; a failed build is exit 4 with its reason. `hangar builds NAME:TAG` lists a
 * target's builds.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { ApiClient } from '../client.ts';
import { contextOf } from '../context.ts';
import { CliError, ExitCode, usageError } from '../errors.ts';
import { seconds } from '../format.ts';
import { durationOption } from '../options.ts';
import type { Output } from '../output.ts';
import type { Build } from '../schemas.ts';
import { buildView } from '../views.ts';
import { splitReference } from './transfer.ts';

const POLL_MS = 1_000;
/** What --wait allows beyond the build's own timeout: the snapshot, the gate's boot, the move. */
const WAIT_MARGIN_MS = 30 * 60_000;

interface BuildOptions {
  recipe: string;
  bootMarker?: string;
  bootTimeout?: number;
  timeout?: number;
  wait?: boolean;
}

/** Polls the build until it succeeded or failed; a line on stderr for each new stage. */
async function followBuild(client: ApiClient, id: string, timeoutMs: number, out: Output): Promise<Build> {
  const began = Date.now();
  let last = '';
  for (;;) {
    const build = await client.build(id);
    if (build.stage !== last) {
      out.notice(`build ${id}: ${build.stage} (${seconds(Date.now() - began)})`);
      last = build.stage;
    }
    if (build.stage === 'succeeded' || build.stage === 'failed') return build;
    if (Date.now() - began > timeoutMs)
      throw new CliError(
        `build ${id} is still ${build.stage} after ${seconds(timeoutMs)}.`,
        ExitCode.timeout,
      );
    await sleep(POLL_MS);
  }
}

export function registerBuilds(program: Command): void {
  program
    .command('build')
    .description('build an image from BASE with a recipe, test it and publish it to NAME:TAG')
    .argument('<base>', 'the base image: id or name:tag')
    .argument('<name:tag>', 'the reference to publish the built image to')
    .requiredOption(
      '--recipe <file>',
      'the recipe, given to the guest as its user-data (it powers the guest off last)',
    )
    .option('--boot-marker <text>', 'the built image must boot and print this on its serial console')
    .option(
      '--boot-timeout <duration>',
      'how long that boot may take (10s to 1h; default 10m)',
      durationOption,
    )
    .option(
      '--timeout <duration>',
      'how long the recipe may run until the guest is off (default 30m)',
      durationOption,
    )
    .option('--wait', 'wait until the build succeeded or failed (exit 4 when it failed)')
    .action(async (base: string, target: string, options: BuildOptions, command: Command) => {
      const { client, out } = contextOf(command);
      if (options.bootTimeout !== undefined && !options.bootMarker)
        throw usageError('--boot-timeout needs --boot-marker');
      const userData = await readFile(options.recipe, 'utf8').catch((error: unknown) => {
        throw usageError(`cannot read the recipe ${options.recipe}: ${(error as Error).message}`);
      });
      const { reference } = splitReference(target);
      const asked = await client.startBuild({
        base,
        recipe: { user_data: userData },
        target: reference,
        ...(options.timeout ? { timeout_seconds: Math.round(options.timeout / 1000) } : {}),
        ...(options.bootMarker
          ? {
              boot: {
                marker: options.bootMarker,
                ...(options.bootTimeout ? { timeout_seconds: Math.round(options.bootTimeout / 1000) } : {}),
              },
            }
          : {}),
      });
      out.notice(`building ${reference} from ${base} (build ${asked.id})`);
      if (!options.wait) {
        out.one(asked, buildView);
        return;
      }
      const done = await followBuild(
        client,
        asked.id,
        (options.timeout ?? 30 * 60_000) + WAIT_MARGIN_MS,
        out,
      );
      if (done.stage === 'failed') {
        if (out.format === 'json' || out.format === 'yaml') out.one(done, buildView);
        throw new CliError(done.reason ?? `The build of ${reference} failed.`, ExitCode.conflict);
      }
      out.notice(`${reference} → ${done.image_id}`);
      out.one(done, buildView);
    });

  program
    .command('builds')
    .description("a target's builds, newest first")
    .argument('<name:tag>', 'the target reference')
    .action(async (target: string, _options: unknown, command: Command) => {
      const { client, out } = contextOf(command);
      out.list((await client.builds(splitReference(target).reference)).builds, buildView);
    });
}
