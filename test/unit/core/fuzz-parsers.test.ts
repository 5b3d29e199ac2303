/**
 * Property-based fuzz of the pure parsers that take client input (fast-check): JSON-patch bodies,
 * create bodies, list query strings, ids, Range headers and JSON nesting. Whatever the input, a
 * parser either succeeds with a well-formed result or throws a HangarError (a 4xx at the edge):
 * any other exception would be a 500.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseByteRange } from '#core/data/image-data';
import { parseCreateRequest } from '#core/images/create';
import { parseListQuery } from '#core/images/list-query';
import { applyPatch } from '#core/images/patch';
import { pyRepr, UUID_PATTERN } from '#core/images/validation';
import { HangarError } from '#core/kernel/errors';
import { isUuid } from '#core/kernel/ids';
import { jsonDepth } from '#edge/http';
import { junkText, listQueryKey } from '../../helpers/arbitraries.ts';
import { admin, alice, makeImage, NOW, QUOTAS } from './fixtures.ts';

const RUNS = { numRuns: 400 };
const PATCH_TYPES = [
  'application/openstack-images-v2.1-json-patch',
  'application/openstack-images-v2.0-json-patch',
];

/** Only HangarErrors may escape: the edge maps them to 4xx; anything else would be a 500. */
function outcome(run: () => unknown): { ok: true; value: unknown } | { ok: false; error: HangarError } {
  try {
    return { ok: true, value: run() };
  } catch (error) {
    if (error instanceof HangarError) return { ok: false, error };
    throw error;
  }
}

const anyText = junkText({
  graphemes: 40,
  binary: 40,
  specials: [
    '',
    '~',
    '~0',
    '~1',
    '~2',
    '/',
    '//',
    '%00',
    '\u0000',
    'x'.repeat(300),
    '__proto__',
    'constructor',
  ],
});

const pointer = fc.oneof(
  fc.constantFrom(
    '/name',
    '/tags',
    '/tags/0',
    '/tags/-',
    '/min_ram',
    '/min_disk',
    '/visibility',
    '/protected',
    '/os_hidden',
    '/owner',
    '/id',
    '/status',
    '/locations',
    '/locations/-',
    '/custom_prop',
    '/__proto__',
    '/a~1b',
    '/a~0b',
    '/',
    '',
  ),
  fc.array(anyText, { maxLength: 4 }).map((parts) => `/${parts.join('/')}`),
  anyText,
  fc.jsonValue({ maxDepth: 2 }),
);

const patchOperation = fc.record(
  {
    op: fc.oneof(fc.constantFrom('add', 'remove', 'replace', 'test', 'move', 'copy'), anyText, fc.integer()),
    path: pointer,
    value: fc.jsonValue({ maxDepth: 3 }),
    from: pointer,
  },
  { requiredKeys: [] },
);

const patchBody = fc.oneof(
  fc.array(patchOperation, { maxLength: 6 }),
  fc.array(fc.dictionary(anyText, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), { maxLength: 4 }),
  fc.jsonValue({ maxDepth: 4 }),
);

describe('fuzz: PATCH bodies (applyPatch)', () => {
  it('returns a well-formed image or throws a HangarError, whatever the body and media type', () => {
    fc.assert(
      fc.property(
        patchBody,
        fc.oneof(fc.constantFrom(...PATCH_TYPES, undefined), anyText),
        fc.constantFrom(alice, admin),
        (body, mediaType, principal) => {
          const image = makeImage();
          const result = outcome(() => applyPatch(image, mediaType, body, principal, QUOTAS, NOW));
          if (!result.ok) return;
          const next = result.value as typeof image;
          expect(next.id).toBe(image.id);
          expect(next.status).toBe(image.status);
          expect(new Set(next.tags).size).toBe(next.tags.length);
          expect(next.tags.length).toBeLessThanOrEqual(QUOTAS.tags);
          expect(Object.keys(next.properties).length).toBeLessThanOrEqual(QUOTAS.properties);
          expect(() => JSON.stringify(next)).not.toThrow();
        },
      ),
      RUNS,
    );
  });
});

describe('fuzz: create bodies (parseCreateRequest)', () => {
  const createBody = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }),
    fc.record(
      {
        id: fc.oneof(fc.uuid(), anyText),
        name: fc.oneof(anyText, fc.jsonValue({ maxDepth: 1 })),
        disk_format: fc.oneof(fc.constantFrom('raw', 'qcow2', 'iso'), anyText),
        container_format: fc.oneof(fc.constantFrom('bare', 'ovf'), anyText),
        visibility: fc.oneof(fc.constantFrom('public', 'private', 'shared', 'community'), anyText),
        min_ram: fc.oneof(fc.integer(), fc.double(), anyText),
        tags: fc.oneof(fc.array(anyText, { maxLength: 5 }), fc.jsonValue({ maxDepth: 2 })),
        protected: fc.jsonValue({ maxDepth: 1 }),
        extra: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: [] },
    ),
  );

  it('returns an image with a UUID id or throws a HangarError', () => {
    fc.assert(
      fc.property(createBody, fc.constantFrom(alice, admin), (body, principal) => {
        const result = outcome(() => parseCreateRequest(body, principal, QUOTAS, NOW));
        if (result.ok) expect(isUuid((result.value as { id: string }).id)).toBe(true);
      }),
      RUNS,
    );
  });
});

describe('fuzz: list query strings (parseListQuery)', () => {
  const key = listQueryKey(anyText);
  const value = fc.oneof(
    anyText,
    fc.integer().map(String),
    fc.constantFrom(
      'in:a,b',
      'in:"a,b",c',
      'gte:2020-01-01T00:00:00Z',
      'lt:x',
      'name:asc,size:desc',
      '-1',
      '1e3',
    ),
    fc.bigInt().map(String),
  );

  it('returns a sane query or throws a HangarError, for any parameters (raw or URL-decoded)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(fc.tuple(key, value), { maxLength: 8 }),
          fc.string().map((raw) => [...new URLSearchParams(raw)] as Array<[string, string]>),
        ),
        (pairs) => {
          const result = outcome(() => parseListQuery(pairs));
          if (!result.ok) return;
          const query = result.value as ReturnType<typeof parseListQuery>;
          expect(query.limit).toBeGreaterThanOrEqual(0);
          expect(query.limit).toBeLessThanOrEqual(1000);
          expect(query.sort.length).toBeGreaterThan(0);
        },
      ),
      RUNS,
    );
  });
});

describe('fuzz: ids', () => {
  const uuidRe = new RegExp(UUID_PATTERN);
  it('accepts every UUID and nothing that is not one', () => {
    fc.assert(
      fc.property(fc.uuid(), (id) => {
        expect(isUuid(id)).toBe(true);
        expect(isUuid(id.toUpperCase())).toBe(true);
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.oneof(anyText, fc.string({ minLength: 37, maxLength: 5000 })), (id) => {
        expect(isUuid(id)).toBe(uuidRe.test(id) && id.length === 36);
      }),
      RUNS,
    );
  });
});

describe('fuzz: Range headers (parseByteRange)', () => {
  const header = fc.oneof(
    anyText,
    fc
      .tuple(
        fc.constantFrom('bytes=', 'bytes ', 'Bytes=', 'bytes=-', ''),
        fc.oneof(fc.nat().map(String), fc.constant(''), fc.bigInt({ min: 0n }).map(String)),
        fc.constantFrom('-', '', '--', ','),
        fc.oneof(fc.nat().map(String), fc.constant(''), fc.bigInt({ min: 0n }).map(String)),
        fc.constantFrom('', '/*', '/100', ', 0-1'),
      )
      .map((parts) => parts.join('')),
  );

  it('gives nothing, unsatisfiable, or a range inside the image', () => {
    fc.assert(
      fc.property(header, fc.nat({ max: 2 ** 40 }), (text, size) => {
        const range = parseByteRange(text, size);
        if (range === undefined || range === 'unsatisfiable') return;
        expect(Number.isSafeInteger(range.start)).toBe(true);
        expect(Number.isSafeInteger(range.end)).toBe(true);
        expect(range.start).toBeGreaterThanOrEqual(0);
        expect(range.start).toBeLessThanOrEqual(range.end);
        expect(range.end).toBeLessThan(size);
      }),
      RUNS,
    );
  });
});

describe('fuzz: JSON nesting (jsonDepth, pyRepr)', () => {
  const depthOf = (value: unknown): number =>
    value !== null && typeof value === 'object'
      ? 1 + Math.max(0, ...Object.values(value as Record<string, unknown>).map(depthOf))
      : 0;

  it('measures the nesting of any JSON text exactly, and never throws on other text', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), (value) => {
        expect(jsonDepth(JSON.stringify(value))).toBe(depthOf(value));
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expect(jsonDepth(text)).toBeGreaterThanOrEqual(0);
      }),
      RUNS,
    );
  });

  it('quotes values of any depth without running out of stack', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 20_000; i++) deep = i % 2 ? [deep] : { k: deep };
    expect(pyRepr(deep)).toContain('...');
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        expect(typeof pyRepr(value)).toBe('string');
      }),
      RUNS,
    );
  });
});
