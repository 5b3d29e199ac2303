/**
 * The web console's files (console/dist, built by `npm run build:console`) under /console/, as
 * CloudFront serves them from S3 on AWS: hashed assets are immutable, index.html is revalidated on
 * every load (so a new build is picked up at once), and any other path under /console/ is a deep
 * link of the single-page app and gets index.html. Nothing outside the directory is ever read.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

export const CONSOLE_PREFIX = '/console';
export const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../console/dist', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

/** Vite puts every hashed file here (build.assetsDir); only they may be cached for good. */
const ASSETS = 'assets/';
const IMMUTABLE = 'public, max-age=31536000, immutable';
const REVALIDATE = 'no-cache';

export function isConsolePath(rawPath: string): boolean {
  return rawPath === CONSOLE_PREFIX || rawPath.startsWith(`${CONSOLE_PREFIX}/`);
}

type Resolved =
  | { kind: 'redirect'; location: string }
  | { kind: 'refused'; status: number; message: string }
  | { kind: 'file'; relative: string };

/**
 * The file a console path names, relative to the console directory, or why it is refused. Each
 * segment is decoded once; a decoded segment that is `..`, `.`, or holds a slash, a backslash or
 * a NUL is a traversal attempt and refused outright rather than normalised away.
 */
export function resolveConsolePath(rawPath: string): Resolved {
  if (rawPath === CONSOLE_PREFIX) return { kind: 'redirect', location: `${CONSOLE_PREFIX}/` };
  const segments: string[] = [];
  for (const raw of rawPath.slice(CONSOLE_PREFIX.length + 1).split('/')) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return { kind: 'refused', status: 400, message: 'Bad console path.' };
    }
    if (segment === '..' || segment === '.' || /[/\\\0]/.test(segment))
      return { kind: 'refused', status: 400, message: 'Bad console path.' };
    if (segment !== '') segments.push(segment);
  }
  return { kind: 'file', relative: segments.join('/') };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function plain(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': REVALIDATE,
    ...headers,
  });
  res.end(`${message}\n`);
}

export interface ConsoleSite {
  /** The built console; default console/dist. */
  directory?: string;
  /**
   * Origins the page may send requests to besides its own: where presigned upload URLs point (the
   * embedded S3), for the multipart upload's parts. Nothing else is allowed (CSP connect-src).
   */
  connect?: readonly string[];
}

export async function serveConsole(
  req: IncomingMessage,
  res: ServerResponse,
  rawPath: string,
  site: ConsoleSite = {},
): Promise<void> {
  const directory = site.directory ?? DEFAULT_CONSOLE_DIR;
  const method = (req.method ?? 'GET').toUpperCase();
  if (method !== 'GET' && method !== 'HEAD') {
    plain(res, 405, `The method ${method} is not allowed for this resource.`, { allow: 'GET, HEAD' });
    return;
  }
  const target = resolveConsolePath(rawPath);
  if (target.kind === 'redirect') {
    res.writeHead(301, { location: target.location, 'cache-control': REVALIDATE });
    res.end();
    return;
  }
  if (target.kind === 'refused') {
    plain(res, target.status, target.message);
    return;
  }
  const root = resolve(directory);
  const index = join(root, 'index.html');
  if (!(await isFile(index))) {
    plain(res, 503, 'The console is not built: run `npm run build:console`.');
    return;
  }
  let relative = target.relative;
  let file = relative === '' ? index : resolve(root, relative);
  // Belt and braces after the segment check: the file must lie inside the directory.
  if (file !== index && !file.startsWith(root + sep)) {
    plain(res, 400, 'Bad console path.');
    return;
  }
  if (!(await isFile(file))) {
    // A missing hashed asset is a stale page asking for an old build: 404, not the app's HTML.
    if (relative.startsWith(ASSETS)) {
      plain(res, 404, 'No such console file.');
      return;
    }
    file = index;
    relative = 'index.html';
  }
  const info = await stat(file);
  res.writeHead(200, {
    'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
    'content-length': String(info.size),
    'cache-control': relative.startsWith(ASSETS) ? IMMUTABLE : REVALIDATE,
    'x-content-type-options': 'nosniff',
    // The app loads only its own scripts and styles and talks only to its own origin (and S3's, for parts).
    'content-security-policy': `default-src 'self'; connect-src ${["'self'", ...(site.connect ?? [])].join(' ')}; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'self'`,
    'referrer-policy': 'same-origin',
  });
  if (method === 'HEAD') {
    res.end();
    return;
  }
  await pipeline(createReadStream(file), res);
}
