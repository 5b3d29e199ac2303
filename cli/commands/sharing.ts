/**
 * `hangar share`, `unshare`, `members` (the owner's side) and `accept`, `reject` (the member's),
 * over Glance's image members. A member sees only its own membership, which is how `accept` learns
 * its project id.
 */
import type { Command } from 'commander';
import type { ApiClient } from '../client.ts';
import { contextOf } from '../context.ts';
import { CliError, ExitCode } from '../errors.ts';
import { memberView } from '../views.ts';

async function answer(client: ApiClient, ref: string, status: 'accepted' | 'rejected') {
  const image = await client.image(ref);
  const [own] = (await client.members(image.id)).members;
  if (!own) throw new CliError(`${ref} is not shared with your project.`, ExitCode.notFound);
  return client.setMemberStatus(image.id, own.member_id, status);
}

export function registerSharing(program: Command): void {
  program
    .command('share')
    .description('share an image with another project (which then accepts it)')
    .argument('<ref>', 'image id or name:tag')
    .argument('<project...>', 'project ids')
    .action(async (ref: string, projects: string[], _options: object, command: Command) => {
      const { client, out } = contextOf(command);
      const image = await client.image(ref);
      const added = [];
      for (const project of projects) added.push(await client.addMember(image.id, project));
      out.list(added, memberView);
    });

  program
    .command('unshare')
    .description('stop sharing an image with projects')
    .argument('<ref>', 'image id or name:tag')
    .argument('<project...>', 'project ids')
    .action(async (ref: string, projects: string[], _options: object, command: Command) => {
      const { client, out } = contextOf(command);
      const image = await client.image(ref);
      for (const project of projects) {
        await client.removeMember(image.id, project);
        out.notice(`${image.id} is no longer shared with ${project}`);
      }
    });

  program
    .command('members')
    .description("an image's members and their answers")
    .argument('<ref>', 'image id or name:tag')
    .action(async (ref: string, _options: object, command: Command) => {
      const { client, out } = contextOf(command);
      const image = await client.image(ref);
      out.list((await client.members(image.id)).members, memberView);
    });

  for (const [name, status] of [
    ['accept', 'accepted'],
    ['reject', 'rejected'],
  ] as const)
    program
      .command(name)
      .description(
        `${name} an image shared with your project (it then ${status === 'accepted' ? 'shows in' : 'stays out of'} your images)`,
      )
      .argument('<image-id>', 'the shared image (its id: references are per project)')
      .action(async (ref: string, _options: object, command: Command) => {
        const { client, out } = contextOf(command);
        out.list([await answer(client, ref, status)], memberView);
      });
}
