/**
 * The web console's first load: the bundle's size (what a browser downloads before the first
 * render), and the time from navigation to the first catalogue rows on screen against a project
 * of 1,000 images, in Debian's headless chromium (test/helpers/browser.ts). Cold loads clear the
 * browser's cache first; warm loads keep the immutable assets cached, as a returning user has
 * them. `tsx bench/console.ts` runs it alone.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { launchBrowser } from '../test/helpers/browser.ts';
import { type BenchBackend, round, seedImages, startBenchBackend } from './lib.ts';

const DIST = join(import.meta.dirname, '..', 'console', 'dist', 'assets');

export function bundleSize(): { files: number; bytes: number; gzipBytes: number } {
  let bytes = 0;
  let gzipBytes = 0;
  const files = readdirSync(DIST).filter((f) => f.endsWith('.js') || f.endsWith('.css'));
  for (const file of files) {
    const content = readFileSync(join(DIST, file));
    bytes += content.length;
    gzipBytes += gzipSync(content).length;
  }
  return { files: files.length, bytes, gzipBytes };
}

const percentile = (samples: number[], q: number) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN, 0);
};

export async function benchConsole(b: BenchBackend, samples = 10) {
  await seedImages(b.backend.clients.dynamo, 'projA', 1000);
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    // Signed in before the page's own scripts run; records when the first catalogue row appears.
    // Browser-side code as text: this file is compiled for Node, without the DOM's types.
    await page.addInitScript({
      content: `
        sessionStorage.setItem('hangar.console.token', ${JSON.stringify(b.tokens.alice)});
        new MutationObserver((_, observer) => {
          if (document.querySelector('table.catalogue tbody tr[data-image-id]')) {
            window.firstRowAt = performance.now();
            observer.disconnect();
          }
        }).observe(document, { childList: true, subtree: true });`,
    });
    const load = async (cold: boolean) => {
      if (cold) await cdp.send('Network.clearBrowserCache');
      await page.goto(`${b.url}/console/`);
      // A function, not a string: the console's CSP forbids eval.
      await page.waitForFunction(() => (globalThis as { firstRowAt?: number }).firstRowAt !== undefined);
      const rows = await page.locator('table.catalogue tbody tr').count();
      if (rows !== 25) throw new Error(`expected a first page of 25 rows, saw ${rows}`);
      return (await page.evaluate('window.firstRowAt')) as number;
    };
    await load(true); // warms the backend's handlers, not measured
    const cold: number[] = [];
    const warm: number[] = [];
    for (let i = 0; i < samples; i++) {
      cold.push(await load(true));
      warm.push(await load(false));
    }
    return {
      images: 1000,
      samples,
      coldFirstRenderMs: { p50: percentile(cold, 0.5), p90: percentile(cold, 0.9) },
      warmFirstRenderMs: { p50: percentile(warm, 0.5), p90: percentile(warm, 0.9) },
    };
  } finally {
    await browser.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const bench = await startBenchBackend();
  try {
    const render = await benchConsole(bench);
    const bundle = bundleSize();
    console.log(JSON.stringify({ bundle, render }, null, 2));
    console.log(
      `console bundle ${round(bundle.bytes / 1024, 1)} KiB (${round(bundle.gzipBytes / 1024, 1)} KiB gzip) in ${bundle.files} files; first catalogue render with 1,000 images p50/p90 ms: cold ${render.coldFirstRenderMs.p50}/${render.coldFirstRenderMs.p90}, warm ${render.warmFirstRenderMs.p50}/${render.warmFirstRenderMs.p90}`,
    );
  } catch (error) {
    console.error(error);
    process.exitCode = 1;
  } finally {
    await Promise.race([bench.stop(), sleep(15_000)]);
    process.exit(process.exitCode ?? 0);
  }
}
