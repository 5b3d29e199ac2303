/** `hangar tag`, `untag`, `history` and `rollback`: the name:tag pointers (docs/references-api.md). */
import type { Command } from 'commander';
import { contextOf } from '../context.ts';
import { historyView, referenceView } from '../views.ts';
import { currentTarget, pointReference, splitReference } from './transfer.ts';

export function registerReferences(program: Command): void {
  program
    .command('tag')
    .description('point NAME:TAG at an image (creating or moving the reference)')
    .argument('<ref>', 'image id or name:tag of the image')
    .argument('<name:tag>', 'the reference to set')
    .action(async (ref: string, target: string, _options: object, command: Command) => {
      const { client, out } = contextOf(command);
      const image = await client.image(ref);
      const { reference } = splitReference(target);
      const before = await currentTarget(client, reference);
      out.one(await pointReference(client, reference, image.id, before), referenceView);
    });

  program
    .command('untag')
    .description('delete name:tag references (the images stay)')
    .argument('<name:tag...>', 'references to delete')
    .action(async (targets: string[], _options: object, command: Command) => {
      const { client, out } = contextOf(command);
      for (const target of targets) {
        const { reference } = splitReference(target);
        await client.deleteReference(reference);
        out.notice(`untagged ${reference}`);
      }
    });

  program
    .command('history')
    .description('the moves of a reference, newest first')
    .argument('<name:tag>', 'the reference')
    .action(async (target: string, _options: object, command: Command) => {
      const { client, out } = contextOf(command);
      out.list((await client.history(splitReference(target).reference)).history, historyView);
    });

  program
    .command('rollback')
    .description('move a reference back to its previous image (or to --to ID)')
    .argument('<name:tag>', 'the reference')
    .option('--to <image-id>', 'an earlier image of this reference')
    .action(async (target: string, options: { to?: string }, command: Command) => {
      const { client, out } = contextOf(command);
      const ref = await client.rollbackReference(splitReference(target).reference, options.to);
      out.notice(`${ref.reference} → ${ref.image_id}`);
      out.one(ref, referenceView);
    });
}
