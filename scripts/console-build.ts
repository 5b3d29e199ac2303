/**
 * Builds the web console (console/ → console/dist) with Vite, or, with --if-stale, only when the
 * sources changed since the last build: `npm start` and `npm test` run it so that a fresh clone
 * serves the console without a separate step. A hash of the sources (not their mtimes, which a
 * checkout rewrites) is kept beside the build in dist/.source-hash.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CONSOLE = join(ROOT, 'console');
const DIST = join(CONSOLE, 'dist');
const STAMP = join(DIST, '.source-hash');

function files(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? files(path) : [path];
    });
}

export function consoleSourceHash(): string {
  const hash = createHash('sha256');
  const inputs = [
    ...files(join(CONSOLE, 'src')),
    join(CONSOLE, 'index.html'),
    join(CONSOLE, 'vite.config.ts'),
    join(CONSOLE, 'tsconfig.json'),
    // How it is built.
    fileURLToPath(import.meta.url),
    // The toolchain's versions (vite, react) are part of what is built.
    join(ROOT, 'package-lock.json'),
  ];
  for (const path of inputs)
    hash.update(relative(ROOT, path)).update('\0').update(readFileSync(path)).update('\0');
  return hash.digest('hex');
}

export function consoleBuildIsFresh(): boolean {
  return (
    existsSync(join(DIST, 'index.html')) &&
    existsSync(STAMP) &&
    readFileSync(STAMP, 'utf8') === consoleSourceHash()
  );
}

/** Builds unless fresh (or always, with force); returns whether it built. */
export async function buildConsole({ force = false, quiet = false } = {}): Promise<boolean> {
  if (!force && consoleBuildIsFresh()) return false;
  const hash = consoleSourceHash();
  const { build } = await import('vite');
  // Vite keeps a NODE_ENV it finds (vitest sets `test`), and React's development build would
  // go into the bundle: this is always the production build.
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({
      configFile: join(CONSOLE, 'vite.config.ts'),
      mode: 'production',
      logLevel: quiet ? 'warn' : 'info',
    });
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
  }
  writeFileSync(STAMP, hash);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const ifStale = process.argv.includes('--if-stale');
  const built = await buildConsole({ force: !ifStale, quiet: ifStale });
  if (ifStale && built) process.stdout.write('console: built console/dist\n');
}
