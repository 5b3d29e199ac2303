/**
 * `hangar run`, `ps`, the life-cycle actions (`start`, `stop`, `sleep`, `wake`, `reboot`, `rm`)
 * and `logs`, over the instances API (docs/instances-api.md). An action only queues a job for the
 * host agent; --wait follows the instance until the job is done.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Command, InvalidArgumentError } from 'commander';
import { type ApiClient, isImageId } from '../client.ts';
import { contextOf } from '../context.ts';
import { CliError, ExitCode } from '../errors.ts';
import { parseDuration, parseSize } from '../format.ts';
import type { Instance } from '../schemas.ts';
import { instanceView } from '../views.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const POLL_MS = 1000;

const sizeIn = (unit: number, what: string) => (text: string) => {
  const size = parseSize(/^\d+$/.test(text) ? `${text}${unit === GIB ? 'G' : 'M'}` : text);
  if (!size) throw new InvalidArgumentError(`expected ${what} such as 512M or 2G, got ${text}`);
  return Math.ceil(size / unit);
};
const count = (text: string) => {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new InvalidArgumentError(`expected a whole number, got ${text}`);
  return value;
};
export const duration = (text: string) => {
  const ms = parseDuration(text);
  if (ms === undefined) throw new InvalidArgumentError(`expected a duration such as 90s or 10m, got ${text}`);
  return ms;
};

export async function allInstances(client: ApiClient): Promise<Instance[]> {
  const instances: Instance[] = [];
  let page = await client.listInstances(new URLSearchParams());
  instances.push(...page.instances);
  while (page.next) {
    page = await client.listInstances(new URL(page.next, client.baseUrl).searchParams);
    instances.push(...page.instances);
  }
  return instances;
}

/** An instance by id, or by its name when exactly one live instance has it. */
export async function findInstance(client: ApiClient, which: string): Promise<Instance> {
  if (isImageId(which)) return client.showInstance(which);
  const named = (await allInstances(client)).filter((i) => i.name === which && i.stage !== 'Inexistent');
  if (named.length === 1 && named[0]) return named[0];
  if (named.length > 1)
    throw new CliError(`${named.length} instances are named ${which}: use the id.`, ExitCode.conflict);
  throw new CliError(`No instance ${which}.`, ExitCode.notFound);
}

/** Follows an instance until `settled` holds; a timeout is exit 5. */
export async function waitFor(
  client: ApiClient,
  id: string,
  timeoutMs: number,
  settled: (instance: Instance) => boolean,
): Promise<Instance> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const instance = await client.showInstance(id);
    if (settled(instance)) return instance;
    if (Date.now() > deadline)
      throw new CliError(
        `Instance ${id} is still ${instance.stage}${instance.pending_action ? ` (${instance.pending_action} pending)` : ''} after ${Math.round(timeoutMs / 1000)}s.`,
        ExitCode.timeout,
      );
    await sleep(POLL_MS);
  }
}

interface RunOptions {
  name?: string;
  cpus: number;
  memory: number;
  disk: number;
  userData?: string;
  bootMarker?: string;
  wait?: boolean;
  timeout: number;
}

const ACTIONS: readonly { command: string; action: string; description: string }[] = [
  { command: 'start', action: 'start', description: 'boot stopped instances' },
  { command: 'stop', action: 'stop', description: 'power instances off' },
  { command: 'sleep', action: 'sleep', description: 'save instances to disk (wake resumes them)' },
  { command: 'wake', action: 'wake', description: 'resume sleeping instances' },
  { command: 'reboot', action: 'reboot', description: 'reboot running instances' },
  { command: 'rm', action: 'destroy', description: 'destroy instances (domain and disks)' },
];

export function registerInstances(program: Command): void {
  program
    .command('run')
    .description('boot an instance of an image (id or name:tag)')
    .argument('<ref>', 'image id or name:tag')
    .option('--name <name>', 'instance name (default: from the image reference)')
    .option('--cpus <n>', 'virtual CPUs', count, 1)
    .option('--memory <size>', 'memory, e.g. 512M or 1G', sizeIn(MIB, 'a memory size'), 1024)
    .option('--disk <size>', 'disk, e.g. 10G', sizeIn(GIB, 'a disk size'), 10)
    .option('--user-data <file>', 'cloud-init user data')
    .option('--boot-marker <text>', 'the build counts only once the serial console prints this')
    .option('--wait', 'wait until it runs (or fails)')
    .option('--timeout <duration>', 'how long --wait (and the boot marker) may take', duration, 600_000)
    .action(async (ref: string, options: RunOptions, command: Command) => {
      const { client, out } = contextOf(command);
      const instance = await client.createInstance({
        name: options.name ?? ref.replace(/[^a-z0-9]+/gi, '-'),
        image: ref,
        vcpus: options.cpus,
        ram_mb: options.memory,
        disk_gb: options.disk,
        ...(options.userData ? { user_data: readFileSync(options.userData, 'utf8') } : {}),
        ...(options.bootMarker
          ? {
              boot_check: { marker: options.bootMarker, timeout_seconds: Math.round(options.timeout / 1000) },
            }
          : {}),
      });
      out.notice(`instance ${instance.id} is ${instance.stage} on ${instance.host_id ?? 'no host yet'}`);
      let shown = instance;
      if (options.wait) {
        shown = await waitFor(client, instance.id, options.timeout, (i) => i.stage !== 'Building');
        if (shown.stage !== 'Running')
          throw new CliError(
            `Instance ${shown.id} is ${shown.stage}: ${shown.reason ?? shown.last_error ?? 'no reason given'}`,
          );
      }
      out.one(shown, instanceView);
    });

  program
    .command('ps')
    .description("your project's instances")
    .option('-a, --all', 'include destroyed ones')
    .option('-w, --watch', 'keep the list up to date until Ctrl+C')
    .option('--interval <duration>', 'how often --watch looks', duration, 2000)
    .action(async (options: { all?: boolean; watch?: boolean; interval: number }, command: Command) => {
      const { client, out } = contextOf(command);
      const shown = async () => {
        const instances = await allInstances(client);
        return options.all ? instances : instances.filter((instance) => instance.stage !== 'Inexistent');
      };
      if (!options.watch) {
        out.list(await shown(), instanceView);
        return;
      }
      // On a terminal the table is redrawn in place; into a pipe or a file, a new one is printed
      // only when something changed, so a log of it reads as a history of the changes.
      const redraw = Boolean(process.stdout.isTTY) && out.format === 'table';
      let last = '';
      for (;;) {
        const rows = await shown();
        // JSON: one array a line (NDJSON), which a reader can take line by line.
        const text = out.format === 'json' ? `${JSON.stringify(rows)}\n` : out.renderList(rows, instanceView);
        if (text !== last) {
          if (redraw)
            process.stdout.write(
              `\x1b[H\x1b[2Jchanged ${new Date().toISOString()}, checked every ${options.interval / 1000}s (Ctrl+C to stop)\n\n`,
            );
          else if (last && out.format !== 'json') process.stdout.write('\n');
          process.stdout.write(text);
          last = text;
        }
        await sleep(options.interval);
      }
    });

  for (const { command: name, action, description } of ACTIONS)
    program
      .command(name)
      .description(description)
      .argument('<instance...>', 'instance ids or names')
      .option('--wait', 'wait until the host agent has done it')
      .option('--timeout <duration>', 'how long --wait waits', duration, 600_000)
      .action(async (which: string[], options: { wait?: boolean; timeout: number }, command: Command) => {
        const { client, out } = contextOf(command);
        const results: Instance[] = [];
        for (const one of which) {
          const instance = await findInstance(client, one);
          let after = await client.instanceAction(instance.id, action);
          if (options.wait) {
            after = await waitFor(client, instance.id, options.timeout, (i) => i.pending_action === null);
            if (after.last_error?.startsWith(`${action} failed`))
              throw new CliError(`Instance ${after.id}: ${after.last_error}`);
          }
          out.notice(
            `${name} ${after.id}: ${after.pending_action ? `${after.pending_action} queued` : after.stage}`,
          );
          results.push(after);
        }
        out.list(results, instanceView);
      });

  program
    .command('logs')
    .description("an instance's serial console (the tail its host last sent)")
    .argument('<instance>', 'instance id or name')
    .option('-f, --follow', 'keep printing what is new')
    .action(async (which: string, options: { follow?: boolean }, command: Command) => {
      const { client } = contextOf(command);
      const { id } = await findInstance(client, which);
      let printed = '';
      for (;;) {
        const log = (await client.showInstance(id)).console_log ?? '';
        // The service keeps a tail: print what follows what was printed, or all of it if it moved on.
        const at = printed ? log.lastIndexOf(printed.slice(-200)) : -1;
        const fresh = at >= 0 ? log.slice(at + Math.min(printed.length, 200)) : log;
        process.stdout.write(fresh);
        printed = log;
        if (!options.follow) return;
        await sleep(POLL_MS * 2);
      }
    });
}
