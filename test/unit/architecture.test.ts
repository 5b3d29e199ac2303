/**
 * The layering of functions/ (README, "map of the code"), checked on the import graph:
 *   core/      the domain: imports only core/, plus the few packages listed in CORE_PACKAGES
 *              (no AWS SDK, no node I/O);
 *   platform/  config, logger: may use core/'s pure parsers (config validates the disk formats
 *              and the property-protections file with them), nothing of adapters/, edge/ or the
 *              entry points;
 *   adapters/  may import core/ and platform/;
 *   edge/      composition and HTTP; api/, tasks/, triggers/, auth/ are the entry points.
 * Nothing in core/, adapters/ or platform/ imports edge/ or an entry point, and no module of
 * functions/ takes part in an import cycle (type-only imports count: they are dependencies too).
 */
import { describe, expect, it } from 'vitest';
import { type ImportEdge, importCycles, importGraph } from '../helpers/import-graph.ts';

/**
 * Packages core/ may import, and why. Everything else (the AWS SDK, node:fs, node:http, ...) is an
 * adapter's business.
 */
const CORE_PACKAGES: Record<string, string> = {
  zod: 'request and record schemas',
  'node:crypto': 'randomUUID for new ids, createHash for the image-data digests',
  'node:stream': 'the Readable type in the BlobStore port (type only)',
};

const TOP = ['edge', 'api', 'tasks', 'triggers', 'auth', 'sockets'];
const BOTTOM = ['core', 'adapters', 'platform'];

/**
 * Violations on the tree as it was when this test was written, to be cleared by the renovation
 * (issue 12) and then removed from here: each entry is one printed violation, exactly. A listed
 * entry that no longer occurs fails the test too, so this list can only shrink.
 */
const KNOWN_EXCEPTIONS: readonly string[] = [];

const layerOf = (path: string | undefined) =>
  path?.startsWith('functions/') ? (path.split('/')[1] ?? '') : undefined;

const describeEdge = (edge: ImportEdge) =>
  `${edge.from} -> ${edge.specifier}${edge.typeOnly ? ' (type)' : ''}`;

function violations(edges: readonly ImportEdge[]): string[] {
  const found: string[] = [];
  for (const cycle of importCycles(edges)) found.push(`cycle: ${cycle.join(' -> ')}`);
  for (const edge of edges) {
    const from = layerOf(edge.from) as string;
    const to = layerOf(edge.to);
    if (from === 'core') {
      if (edge.to === undefined) {
        if (!(edge.specifier in CORE_PACKAGES)) found.push(`core imports a package: ${describeEdge(edge)}`);
      } else if (to !== 'core') found.push(`core imports outside core: ${describeEdge(edge)}`);
    }
    if (to !== undefined && BOTTOM.includes(from) && TOP.includes(to))
      found.push(`${from} imports up into ${to}: ${describeEdge(edge)}`);
    if (from === 'platform' && to === 'adapters') found.push(`platform imports ${to}: ${describeEdge(edge)}`);
    if (edge.to !== undefined && to === undefined && edge.to.startsWith('functions/') === false)
      found.push(`imports outside functions/: ${describeEdge(edge)}`);
  }
  return found.sort();
}

describe('architecture of functions/', () => {
  const edges = importGraph('functions');

  it('reads a plausible graph (every relative and #alias import resolves to a file)', () => {
    expect(edges.length).toBeGreaterThan(300);
    const unresolved = edges.filter((edge) => edge.to !== undefined && !edge.to.endsWith('.ts'));
    expect(unresolved.map(describeEdge)).toEqual([]);
  });

  it('has no import cycle, no core import outside core, nothing importing up into the edge', () => {
    const found = violations(edges);
    const fresh = found.filter((violation) => !KNOWN_EXCEPTIONS.includes(violation));
    const cleared = KNOWN_EXCEPTIONS.filter((violation) => !found.includes(violation));
    if (fresh.length > 0) console.error(`Architecture violations:\n  ${fresh.join('\n  ')}`);
    if (cleared.length > 0)
      console.error(`Known exceptions that no longer occur (remove them):\n  ${cleared.join('\n  ')}`);
    expect(fresh, 'new violations').toEqual([]);
    expect(cleared, 'known exceptions that no longer occur').toEqual([]);
  });

  it('lets core use only the packages it is known to need', () => {
    const used = new Set(
      edges.filter((edge) => layerOf(edge.from) === 'core' && edge.to === undefined).map((e) => e.specifier),
    );
    // An allowance nobody uses any more should go.
    expect([...used].sort()).toEqual(Object.keys(CORE_PACKAGES).sort());
  });
});

describe('the checks themselves', () => {
  const edge = (from: string, specifier: string, to: string | undefined): ImportEdge => ({
    from,
    specifier,
    to,
    typeOnly: false,
  });

  it('find a cycle, a core import of the SDK and of an adapter, and imports up into the edge', () => {
    const found = violations([
      edge('functions/core/a.ts', './b.ts', 'functions/core/b.ts'),
      edge('functions/core/b.ts', './c.ts', 'functions/core/c.ts'),
      edge('functions/core/c.ts', './a.ts', 'functions/core/a.ts'),
      edge('functions/core/d.ts', '@aws-sdk/client-s3', undefined),
      edge('functions/core/d.ts', '#adapters/s3/objects', 'functions/adapters/s3/objects.ts'),
      edge('functions/adapters/x.ts', '#edge/services', 'functions/edge/services.ts'),
      edge('functions/platform/config.ts', '#api/routes', 'functions/api/routes.ts'),
      edge('functions/platform/config.ts', '#adapters/s3/objects', 'functions/adapters/s3/objects.ts'),
      edge('functions/edge/services.ts', '#adapters/s3/objects', 'functions/adapters/s3/objects.ts'),
      edge('functions/api/images.ts', '#core/images/view', 'functions/core/images/view.ts'),
    ]);
    expect(found).toEqual([
      'adapters imports up into edge: functions/adapters/x.ts -> #edge/services',
      'core imports a package: functions/core/d.ts -> @aws-sdk/client-s3',
      'core imports outside core: functions/core/d.ts -> #adapters/s3/objects',
      'cycle: functions/core/a.ts -> functions/core/b.ts -> functions/core/c.ts -> functions/core/a.ts',
      'platform imports adapters: functions/platform/config.ts -> #adapters/s3/objects',
      'platform imports up into api: functions/platform/config.ts -> #api/routes',
    ]);
  });
});
