/**
 * How the agent names an image to keep warm (config `prefetch`): an image id (a UUID), or a `name:tag`
 * reference that the service resolves (GET /v1/references/{name:tag}); a bare `name` means `name:latest`.
 *
 * The agent is deployed on its own and imports nothing from functions/, so the name and tag rules are a
 * copy of the service's (functions/core/references/references.ts NAME_PATTERN / TAG_PATTERN). Keep them in step.
 */

/** Lowercase name components with single '.', '_' or '-' between them (at most 128 characters). */
const NAME_PATTERN = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
const NAME_MAX = 128;
/** Letters, digits, '_', '.', '-', not starting with '.' or '-' (at most 128 characters). */
const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type ImageTarget = { kind: 'id'; id: string } | { kind: 'reference'; name: string; tag: string };

/**
 * Parses a prefetch entry, or returns undefined when it is neither form. A UUID is always an image id
 * (it would also pass as a name).
 */
export function parseImageTarget(text: string): ImageTarget | undefined {
  if (UUID_PATTERN.test(text)) return { kind: 'id', id: text };
  const colon = text.lastIndexOf(':');
  const name = colon < 0 ? text : text.slice(0, colon);
  const tag = colon < 0 ? 'latest' : text.slice(colon + 1);
  if (name.length > NAME_MAX || !NAME_PATTERN.test(name) || !TAG_PATTERN.test(tag)) return undefined;
  return { kind: 'reference', name, tag };
}

/** The canonical text of a target: the id, or `name:tag` (so `fedora` and `fedora:latest` are one entry). */
export function formatImageTarget(target: ImageTarget): string {
  return target.kind === 'id' ? target.id : `${target.name}:${target.tag}`;
}
