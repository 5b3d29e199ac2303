/** The `tokens` auth mode: a JSON file of static tokens (HANGAR_TOKENS). */
import { createHash, timingSafeEqual } from 'node:crypto';
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

export class TokenFileAuthenticator implements Authenticator {
  private loadedMtime = -1;
  private byDigest = new Map<string, Principal>();

  constructor(private readonly path: string) {}

  /** Re-reads the file when it changes, so tokens can be added without a restart. */
  private refresh(): void {
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
    this.refresh();
    const digest = sha256Hex(token);
    for (const [known, principal] of this.byDigest) {
      if (known.length === digest.length && timingSafeEqual(Buffer.from(known), Buffer.from(digest)))
        return principal;
    }
    return null;
  }
}
