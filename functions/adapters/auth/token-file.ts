/** The `tokens` auth mode: a JSON file of static tokens (HANGAR_TOKENS). */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { type Authenticator, makePrincipal, type Principal } from '#core/kernel/principal';

export const TokenFileSchema = z.object({
  tokens: z.record(
    z.string().min(1),
    z.object({
      project: z.string().min(1).max(255),
      user: z.string().min(1).max(255),
      roles: z.array(z.string().min(1)).default(['member']),
    }),
  ),
});
export type TokenFile = z.infer<typeof TokenFileSchema>;

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * How long a known token is accepted without looking at the file again: a token removed from the
 * file is refused at most this long after the change. An unknown token always re-checks the file,
 * so a token just added works at once.
 */
export const TOKEN_FILE_RECHECK_MS = 1000;

export class TokenFileAuthenticator implements Authenticator {
  private loadedMtime = -1;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private byDigest = new Map<string, Principal>();

  constructor(
    private readonly path: string,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Re-reads the file when it changes, so tokens can be added (and removed) without a restart. */
  private refresh(): void {
    this.checkedAt = this.now();
    const mtime = statSync(this.path).mtimeMs;
    if (mtime === this.loadedMtime) return;
    const parsed = TokenFileSchema.parse(JSON.parse(readFileSync(this.path, 'utf8')));
    const next = new Map<string, Principal>();
    for (const [key, entry] of Object.entries(parsed.tokens)) {
      // Keys are stored by digest either way, so plain and sha256: forms are looked up alike.
      const digest = key.startsWith('sha256:') ? key.slice('sha256:'.length).toLowerCase() : sha256Hex(key);
      next.set(digest, makePrincipal(entry.project, entry.user, entry.roles));
    }
    this.byDigest = next;
    this.loadedMtime = mtime;
  }

  async authenticate(token: string): Promise<Principal | null> {
    // Looked up by the SHA-256 of the token, not the token: how long the lookup takes says
    // something about a digest the caller cannot steer, nothing about a stored token's bytes.
    const digest = sha256Hex(token);
    if (this.now() - this.checkedAt >= TOKEN_FILE_RECHECK_MS) this.refresh();
    const known = this.byDigest.get(digest);
    if (known) return known;
    // Perhaps added since the last look: one stat (and a read if it changed) before refusing.
    this.refresh();
    return this.byDigest.get(digest) ?? null;
  }
}
