/**
 * "Copy as command": the `hangar` CLI line for an action (README, "The `hangar` command"), or curl
 * where the CLI has no command for it. The token is never put in the text: the CLI uses its
 * profile (or HANGAR_TOKEN), curl reads $HANGAR_TOKEN.
 */
const origin = () => window.location.origin;

/** Single-quotes a shell word unless it is plainly safe. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function hangar(...words: string[]): string {
  return ['hangar', ...words.map(shellQuote)].join(' ');
}

export function curl(method: string, path: string, body?: unknown, contentType = 'application/json'): string {
  const parts = ['curl', '-sS'];
  if (method !== 'GET') parts.push('-X', method);
  parts.push('-H', '"X-Auth-Token: $HANGAR_TOKEN"');
  if (body !== undefined) {
    parts.push('-H', shellQuote(`Content-Type: ${contentType}`), '-d', shellQuote(JSON.stringify(body)));
  }
  parts.push(shellQuote(`${origin()}${path}`));
  return parts.join(' ');
}
