/**
 * The token lookups are cached (issue 13: no file stat per request, no Keystone call per request),
 * but a revoked token is still refused within a bounded time: TOKEN_FILE_RECHECK_MS for the token
 * file, cacheSeconds for Keystone.
 */
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KeystoneAuthenticator, type KeystoneRequest, type KeystoneResponse } from '#adapters/auth/keystone';
import { TOKEN_FILE_RECHECK_MS, TokenFileAuthenticator } from '#adapters/auth/token-file';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tokenFile(tokens: Record<string, string>, mtimeSeconds: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'hangar-auth-cache-'));
  dirs.push(dir);
  const path = join(dir, 'tokens.json');
  write(path, tokens, mtimeSeconds);
  return path;
}

function write(path: string, tokens: Record<string, string>, mtimeSeconds: number): void {
  const file = {
    tokens: Object.fromEntries(Object.entries(tokens).map(([t, project]) => [t, { project, user: project }])),
  };
  writeFileSync(path, JSON.stringify(file));
  // An explicit mtime: two writes within one timestamp tick would look like no change.
  utimesSync(path, mtimeSeconds, mtimeSeconds);
}

describe('TokenFileAuthenticator caching', () => {
  it('refuses a token removed from the file once TOKEN_FILE_RECHECK_MS has passed, not before', async () => {
    // Prepare
    let now = 0;
    const path = tokenFile({ a: 'projA', b: 'projB' }, 1000);
    const auth = new TokenFileAuthenticator(path, () => now);
    expect((await auth.authenticate('a'))?.project).toBe('projA');

    // Act: a is revoked
    write(path, { b: 'projB' }, 2000);
    now += TOKEN_FILE_RECHECK_MS - 1;
    const withinWindow = await auth.authenticate('a');
    now += 1;
    const afterWindow = await auth.authenticate('a');

    // Assess
    expect(withinWindow?.project).toBe('projA');
    expect(afterWindow).toBeNull();
    expect((await auth.authenticate('b'))?.project).toBe('projB');
  });

  it('accepts a token added to the file at once (an unknown token re-checks the file)', async () => {
    // Prepare
    const path = tokenFile({ a: 'projA' }, 1000);
    const auth = new TokenFileAuthenticator(path, () => 0);
    expect(await auth.authenticate('c')).toBeNull();

    // Act
    write(path, { a: 'projA', c: 'projC' }, 2000);

    // Assess
    expect((await auth.authenticate('c'))?.project).toBe('projC');
    expect(await auth.authenticate('nope')).toBeNull();
  });
});

describe('KeystoneAuthenticator caching', () => {
  function keystone(now: () => number, revoked: Set<string>) {
    const calls: KeystoneRequest[] = [];
    const far = new Date(Date.UTC(2100, 0, 1)).toISOString();
    const auth = new KeystoneAuthenticator(
      {
        url: 'http://keystone.invalid/v3',
        user: 'hangar',
        password: 'pw',
        project: 'service',
        userDomain: 'Default',
        projectDomain: 'Default',
        cacheSize: 100,
        cacheSeconds: 60,
        timeoutMs: 1000,
      },
      {
        now,
        transport: async (request): Promise<KeystoneResponse> => {
          calls.push(request);
          if (request.method === 'POST')
            return {
              status: 201,
              headers: { 'x-subject-token': 'service-token' },
              body: JSON.stringify({ token: { expires_at: far } }),
            };
          const subject = request.headers['x-subject-token'] ?? '';
          if (revoked.has(subject)) return { status: 404, headers: {}, body: '' };
          return {
            status: 200,
            headers: {},
            body: JSON.stringify({
              token: { expires_at: far, project: { id: 'projA' }, user: { id: 'alice' }, roles: [] },
            }),
          };
        },
      },
    );
    return { auth, checks: () => calls.filter((c) => c.method === 'GET').length };
  }

  it('asks Keystone once per token within cacheSeconds and refuses a revoked token after it', async () => {
    // Prepare
    let now = Date.UTC(2026, 0, 1);
    const revoked = new Set<string>();
    const { auth, checks } = keystone(() => now, revoked);
    expect((await auth.authenticate('user-token'))?.project).toBe('projA');
    expect((await auth.authenticate('user-token'))?.project).toBe('projA');
    expect(checks()).toBe(1);

    // Act: revoked in Keystone; the cache still trusts it until 60 s have passed
    revoked.add('user-token');
    now += 59_000;
    const cached = await auth.authenticate('user-token');
    now += 1_000;
    const rechecked = await auth.authenticate('user-token');

    // Assess
    expect(cached?.project).toBe('projA');
    expect(rechecked).toBeNull();
    expect(checks()).toBe(2);
  });
});
