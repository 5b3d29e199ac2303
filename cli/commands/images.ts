/** `hangar images`, `inspect` and `rmi`: the catalogue and single images. */
import type { Command } from 'commander';
import type { ApiClient } from '../client.ts';
import { collectPairs, contextOf } from '../context.ts';
import type { Image } from '../schemas.ts';
import { type ImageRow, imageView } from '../views.ts';

/** Every page of a list (Glance pages with `next`). */
async function allImages(client: ApiClient, query: URLSearchParams): Promise<Image[]> {
  const images: Image[] = [];
  let page = await client.listImages(query);
  images.push(...page.images);
  while (page.next) {
    const next = new URL(page.next, client.baseUrl);
    page = await client.listImages(next.searchParams);
    images.push(...page.images);
  }
  return images;
}

/** The name:tag references the caller resolves (its project's and the public ones), by image id. */
export async function referencesByImage(client: ApiClient): Promise<Map<string, string[]>> {
  const [own, shared] = await Promise.all([client.listReferences(), client.listReferences('public')]);
  const byImage = new Map<string, string[]>();
  for (const ref of [...own.references, ...shared.references]) {
    byImage.set(ref.image_id, [...(byImage.get(ref.image_id) ?? []), ref.reference]);
  }
  return byImage;
}

export function registerImages(program: Command): void {
  program
    .command('images')
    .alias('ls')
    .description('list images with their name:tag references')
    .option('--filter <key=value>', 'a Glance list filter (repeatable), e.g. status=active', collectPairs)
    .option('--all', 'include hidden images (os_hidden)')
    .action(async (options: { filter?: Record<string, string>; all?: boolean }, command: Command) => {
      const { client, out } = contextOf(command);
      const query = new URLSearchParams(options.filter ?? {});
      const lists = [allImages(client, query)];
      if (options.all)
        lists.push(allImages(client, new URLSearchParams({ ...options.filter, os_hidden: 'true' })));
      const [images, refs] = await Promise.all([Promise.all(lists), referencesByImage(client)]);
      const rows: ImageRow[] = images
        .flat()
        .map((image) => ({ ...image, references: refs.get(image.id) ?? [] }));
      out.list(rows, imageView);
    });

  program
    .command('inspect')
    .description('show one image (by id or name:tag)')
    .argument('<ref>', 'image id or name:tag')
    .action(async (ref: string, _options: object, command: Command) => {
      const { client, out } = contextOf(command);
      const image = await client.image(ref);
      const refs = await referencesByImage(client);
      out.one({ ...image, references: refs.get(image.id) ?? [] }, imageView);
    });

  program
    .command('rmi')
    .description('delete images (by id or name:tag) and the references of yours that point to them')
    .argument('<ref...>', 'image ids or name:tag references')
    .option('--force', 'unprotect a protected image first')
    .action(async (refs: string[], options: { force?: boolean }, command: Command) => {
      const { client, out } = contextOf(command);
      for (const ref of refs) {
        const image = await client.image(ref);
        if (image.protected && options.force) await client.unprotect(image.id);
        await client.deleteImage(image.id);
        // A reference to a deleted image would resolve to nothing: remove the caller's with it.
        const own = await client.listReferences();
        for (const pointing of own.references.filter((r) => r.image_id === image.id))
          await client.deleteReference(pointing.reference);
        out.notice(`deleted ${image.id}${ref === image.id ? '' : ` (${ref})`}`);
        if (out.format === 'name' || out.quiet) process.stdout.write(`${image.id}\n`);
      }
    });
}
