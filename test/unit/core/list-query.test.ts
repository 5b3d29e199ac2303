import { describe, expect, it } from 'vitest';
import type { ImageRecord } from '#core/images/image';
import {
  buildLinks,
  compareCodePoints,
  compareImages,
  type ImageFilters,
  type ImageSort,
  isAfterMarker,
  matchesFilters,
  parseIsoTime,
  parseListQuery,
  splitInList,
} from '#core/images/list-query';
import { errorOf, makeActiveImage } from './fixtures.ts';

/** Query pairs as URLSearchParams decodes them from a raw query string. */
function q(raw: string): Array<[string, string]> {
  return [...new URLSearchParams(raw)];
}

const parse = (raw: string) => parseListQuery(q(raw));
const badRequest = (raw: string) => errorOf(() => parse(raw));

/** An expected sort order: each key with its direction, in order. */
const by = (...keys: Array<[ImageSort['key'], ImageSort['dir']]>): ImageSort[] =>
  keys.map(([key, dir]) => ({ key, dir }));

/** One test per raw query string: each is refused with its Glance 400 message. */
const refuses = (cases: Array<[raw: string, message: string]>) =>
  it.each(cases)('refuses %s', (raw, message) => {
    expect(badRequest(raw)).toEqual({ kind: 'bad_request', message });
  });

const DEFAULT_FILTERS: ImageFilters = { tags: [], os_hidden: false, properties: {} };

/** The five listing images of the Glance probe (sections 130-183). */
const lst: Record<'a' | 'b' | 'c' | 'd' | 'e', ImageRecord> = {
  a: makeActiveImage({
    id: 'd097d16a-fba6-4d54-95b1-3a9aa90af0f1',
    name: 'lst-a',
    disk_format: 'raw',
    size: 10,
    created_at: '2026-11-22T02:11:38Z',
    updated_at: '2026-11-22T02:11:38Z',
    tags: ['red', 'lst'],
  }),
  b: makeActiveImage({
    id: '8ff11387-6010-48e8-a9a7-0ec28f8df6d5',
    name: 'lst-b',
    disk_format: 'qcow2',
    size: 20,
    created_at: '2026-11-22T02:11:39Z',
    updated_at: '2026-11-22T02:11:39Z',
    tags: ['blue', 'lst'],
  }),
  c: makeActiveImage({
    id: '8e04a111-3d9c-4b1b-9c4a-34f5a394b4b4',
    name: 'lst-c',
    disk_format: 'raw',
    size: 30,
    created_at: '2026-11-22T02:11:40Z',
    updated_at: '2026-11-22T02:11:40Z',
    tags: ['red', 'lst'],
  }),
  d: makeActiveImage({
    id: '1939de77-4409-44a2-908d-44ef2689dd57',
    name: 'lst-d',
    disk_format: 'iso',
    size: 40,
    created_at: '2026-11-22T02:11:41Z',
    updated_at: '2026-11-22T02:11:41Z',
    tags: ['lst'],
  }),
  e: makeActiveImage({
    id: '23a1ebfb-24bb-4c19-aa92-1b2aaf44c0e8',
    name: 'lst-e',
    disk_format: 'qcow2',
    size: 50,
    created_at: '2026-11-22T02:11:42Z',
    updated_at: '2026-11-22T02:11:42Z',
    tags: ['red', 'lst'],
  }),
};
const all = Object.values(lst);

function listNames(raw: string): Array<string | null> {
  const query = parse(raw);
  return all
    .filter((image) => matchesFilters(image, query.filters))
    .sort((x, y) => compareImages(x, y, query.sort))
    .map((image) => image.name);
}

describe('parseListQuery', () => {
  describe('defaults', () => {
    it('lists 25 images, newest first, accepted memberships, hidden images left out', () => {
      // Act
      const query = parse('');

      // Assess
      expect(query).toEqual({
        limit: 25,
        sort: by(['created_at', 'desc'], ['id', 'desc']),
        filters: DEFAULT_FILTERS,
        memberStatus: 'accepted',
      });
    });

    it('takes the default and maximum limits from the caller', () => {
      // Act
      const byDefault = parseListQuery([], 50, 10);
      const capped = parseListQuery(q('limit=80'), 50, 10);

      // Assess
      expect(byDefault.limit).toBe(10);
      expect(capped.limit).toBe(50);
    });
  });

  describe('limit and marker', () => {
    it.each([
      ['limit=2', 2],
      ['limit=0', 0],
      ['limit=%205%20', 5],
      ['limit=%2B7', 7],
      ['limit=100000', 1000],
    ])('reads %s as %i', (raw, limit) => {
      // Act
      const query = parse(raw);

      // Assess
      expect(query.limit).toBe(limit);
    });

    refuses([
      ['limit=abc', 'limit param must be an integer'],
      ['limit=1.5', 'limit param must be an integer'],
      ['limit=', 'limit param must be an integer'],
      ['limit=-1', 'limit param must be positive'],
    ]);

    it('passes the marker through for the caller to look up', () => {
      // Act
      const query = parse('marker=1939de77-4409-44a2-908d-44ef2689dd57&limit=2');

      // Assess
      expect(query.marker).toBe('1939de77-4409-44a2-908d-44ef2689dd57');
    });
  });

  describe('sorting', () => {
    it.each<[string, ImageSort[]]>([
      ['sort_key=size&sort_dir=asc', by(['size', 'asc'], ['created_at', 'asc'], ['id', 'asc'])],
      ['sort_key=name', by(['name', 'desc'], ['created_at', 'desc'], ['id', 'desc'])],
      ['sort_dir=asc', by(['created_at', 'asc'], ['id', 'asc'])],
      [
        'sort_key=disk_format&sort_key=size&sort_dir=asc',
        by(['disk_format', 'asc'], ['size', 'asc'], ['created_at', 'asc'], ['id', 'asc']),
      ],
      // With one direction per key, Glance's sqlalchemy layer orders the tiebreakers descending.
      [
        'sort_key=disk_format&sort_key=size&sort_dir=asc&sort_dir=asc',
        by(['disk_format', 'asc'], ['size', 'asc'], ['created_at', 'desc'], ['id', 'desc']),
      ],
      ['sort_key=created_at&sort_dir=asc', by(['created_at', 'asc'], ['id', 'asc'])],
      [
        'sort_key=id&sort_key=status&sort_dir=asc',
        by(['id', 'asc'], ['status', 'asc'], ['created_at', 'asc']),
      ],
      ['sort_key=%20name%20&sort_dir=%20asc%20', by(['name', 'asc'], ['created_at', 'asc'], ['id', 'asc'])],
      ['sort=name', by(['name', 'desc'], ['created_at', 'desc'], ['id', 'desc'])],
      ['sort=name:asc', by(['name', 'asc'], ['created_at', 'asc'], ['id', 'asc'])],
      [
        'sort=disk_format:desc,name:asc',
        by(['disk_format', 'desc'], ['name', 'asc'], ['created_at', 'desc'], ['id', 'desc']),
      ],
      ['sort=%20updated_at%20:%20asc%20', by(['updated_at', 'asc'], ['created_at', 'asc'], ['id', 'asc'])],
    ])('reads %s', (raw, sort) => {
      // Act
      const query = parse(raw);

      // Assess
      expect(query.sort).toEqual(sort);
    });

    refuses([
      ['sort=name:asc&sort_key=size', 'Old and new sorting syntax cannot be combined'],
      ['sort=name&sort_dir=asc', 'Old and new sorting syntax cannot be combined'],
      [
        'sort_key=bogus',
        'Invalid sort key: bogus. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.',
      ],
      [
        'sort=owner:asc',
        'Invalid sort key: owner. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.',
      ],
      [
        'sort=name:asc,',
        'Invalid sort key: . It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.',
      ],
      ['sort_dir=bogus', 'Invalid sort direction: bogus'],
      ['sort=name:up', 'Invalid sort direction: up'],
      [
        'sort_key=name&sort_dir=asc&sort_dir=desc',
        'Number of sort dirs does not match the number of sort keys',
      ],
      ['sort_dir=asc&sort_dir=desc', 'Number of sort dirs does not match the number of sort keys'],
      // Every key is checked before any direction.
      [
        'sort_key=bogus&sort_dir=bogus',
        'Invalid sort key: bogus. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.',
      ],
    ]);
  });

  describe('visibility and member status', () => {
    it.each(['public', 'private', 'shared', 'community', 'all'])('accepts visibility=%s', (visibility) => {
      // Act
      const query = parse(`visibility=${visibility}`);

      // Assess
      expect(query.visibility).toBe(visibility);
      expect(query.filters.properties).toEqual({});
    });

    it.each(['pending', 'accepted', 'rejected', 'all'])('accepts member_status=%s', (status) => {
      // Act
      const query = parse(`member_status=${status}`);

      // Assess
      expect(query.memberStatus).toBe(status);
    });

    refuses([
      ['visibility=bogus', 'Invalid visibility value: bogus'],
      ['visibility=', 'Invalid visibility value: '],
      ['member_status=bogus', 'Invalid status: bogus'],
    ]);
  });

  describe('filters', () => {
    it('refuses changes-since, which v2 dropped', () => {
      // Act
      const error = badRequest('changes-since=2000-01-01T00:00:00Z');

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: 'The "changes-since" filter is no longer available on v2.',
      });
    });

    it('collects every tag', () => {
      // Act
      const query = parse('tag=red&tag=lst&tag=%20padded%20');

      // Assess
      expect(query.filters.tags).toEqual(['red', 'lst', 'padded']);
    });

    it('reads equality filters on base columns and extra properties', () => {
      // Act
      const query = parse(
        'name=lst-c&owner=projA&checksum=abc&os_hash_value=def&os_hash_algo=sha512&min_ram=512&os_distro=debian&kernel_id=k',
      );

      // Assess
      expect(query.filters).toEqual({
        ...DEFAULT_FILTERS,
        name: { op: 'eq', value: 'lst-c' },
        owner: 'projA',
        checksum: 'abc',
        os_hash_value: 'def',
        os_hash_algo: 'sha512',
        min_ram: '512',
        properties: { os_distro: 'debian', kernel_id: 'k' },
      });
    });

    it('lets the last of repeated single-valued parameters count', () => {
      // Act
      const query = parse('name=first&name=second&os_distro=a&os_distro=b');

      // Assess
      expect(query.filters.name).toEqual({ op: 'eq', value: 'second' });
      expect(query.filters.properties).toEqual({ os_distro: 'b' });
    });

    it('ignores a client deleted= parameter, as Glance overrides it', () => {
      // Act
      const query = parse('deleted=true');

      // Assess
      expect(query.filters).toEqual(DEFAULT_FILTERS);
    });

    it.each([
      ['name=in:lst-a,lst-d', 'name', ['lst-a', 'lst-d']],
      ['name=in:%22glass,%20darkly%22,share%20me', 'name', ['glass, darkly', 'share me']],
      ['name=in:%22lst-a%22,lst-b', 'name', ['lst-a', 'lst-b']],
      ['status=in:saving,queued', 'status', ['saving', 'queued']],
      ['disk_format=in:qcow2,iso', 'disk_format', ['qcow2', 'iso']],
      ['container_format=in:bare', 'container_format', ['bare']],
      ['id=in:a,b', 'id', ['a', 'b']],
    ])('reads the in: operator in %s', (raw, key, values) => {
      // Act
      const query = parse(raw);

      // Assess
      expect(query.filters[key as 'name']).toEqual({ op: 'in', values });
    });

    it.each([
      ['name=eq:lst-a', { op: 'eq', value: 'lst-a' }],
      ['name=eq:a:b', { op: 'eq', value: 'a:b' }],
      // A value that is itself an ISO time is an implicit eq, as in Glance's split_filter_op.
      ['name=2020-01-01T10:00:00', { op: 'eq', value: '2020-01-01T10:00:00' }],
    ])('reads %s', (raw, filter) => {
      // Act
      const query = parse(raw);

      // Assess
      expect(query.filters.name).toEqual(filter);
    });

    refuses([
      ['name=neq:lst-a', "Unable to filter by unknown operator 'neq'."],
      ['name=a:b', "Unable to filter by unknown operator 'a'."],
      ['disk_format=gt:raw', "Unable to filter by unknown operator 'gt'."],
      ['status=bogus', 'Invalid status value: bogus'],
      ['status=in:active,bogus', 'Invalid status value: bogus'],
      ['name=in:a%22b%22', 'Invalid filter value a"b". There is no comma before opening quotation mark.'],
      ['name=in:%22a%22b', 'Invalid filter value "a"b. There is no comma after closing quotation mark.'],
      ['name=in:%22a', 'Invalid filter value "a. The quote is not closed.'],
    ]);

    it('reads size and virtual_size ranges', () => {
      // Act
      const query = parse('size_min=20&size_max=40&virtual_size_max=%2B5');

      // Assess
      expect(query.filters.size_range).toEqual({ min: 20, max: 40 });
      expect(query.filters.virtual_size_range).toEqual({ max: 5 });
    });

    it.each(['size_min=abc', 'size_max=1.5', 'size_min=neq:10', 'virtual_size_min='])('refuses %s', (raw) => {
      // Act
      const error = badRequest(raw);

      // Assess
      expect(error).toEqual({
        kind: 'bad_request',
        message: 'Unable to filter on a range with a non-numeric value.',
      });
    });

    it.each([
      ['os_hidden=true', true],
      ['os_hidden=TRUE', true],
      ['os_hidden=false', false],
    ])('reads %s', (raw, hidden) => {
      // Act
      const query = parse(raw);

      // Assess
      expect(query.filters.os_hidden).toBe(hidden);
    });

    it.each([
      ['protected=true', true],
      ['protected=false', false],
    ])('reads %s', (raw, value) => {
      // Act
      const query = parse(raw);

      // Assess
      expect(query.filters.protected).toBe(value);
    });

    refuses([
      [
        'os_hidden=bogus',
        "Invalid value 'bogus' for 'os_hidden' filter. Valid values are 'true' or 'false'.",
      ],
      [
        'protected=bogus',
        "Invalid value 'bogus' for 'protected' filter. Valid values are 'true' or 'false'.",
      ],
      ['protected=True', "Invalid value 'True' for 'protected' filter. Valid values are 'true' or 'false'."],
    ]);

    it.each([
      ['created_at=gt:2026-11-22T02:11:40Z', 'created_at', 'gt', '2026-11-22T02:11:40Z'],
      ['created_at=gte:2026-11-22T02:11:40Z', 'created_at', 'gte', '2026-11-22T02:11:40Z'],
      ['updated_at=lt:2000-01-01', 'updated_at', 'lt', '2000-01-01T00:00:00Z'],
      ['updated_at=neq:2026-11-22T04:11:40%2B02:00', 'updated_at', 'neq', '2026-11-22T02:11:40Z'],
      ['created_at=2026-11-22T02:11:40Z', 'created_at', 'eq', '2026-11-22T02:11:40Z'],
      ['created_at=lte:2026-11-22T02:11:40', 'created_at', 'lte', '2026-11-22T02:11:40Z'],
    ])('reads the time filter %s', (raw, key, op, iso) => {
      // Act
      const query = parse(raw);

      // Assess
      expect(query.filters[key as 'created_at']).toEqual({ op, epochMs: Date.parse(iso) });
    });

    refuses([
      ['created_at=gt:bogus', 'Bad "created_at" query filter format. Use ISO 8601 DateTime notation.'],
      ['updated_at=bogus', 'Bad "updated_at" query filter format. Use ISO 8601 DateTime notation.'],
      ['created_at=zz:2000-01-01T00:00:00Z', 'Unable to filter on a unknown operator.'],
      ['created_at=in:2000-01-01T00:00:00Z', 'Unable to filter on a unknown operator.'],
      // The time is parsed first, so a bad time wins over a bad operator.
      ['created_at=zz:bogus', 'Bad "created_at" query filter format. Use ISO 8601 DateTime notation.'],
    ]);

    it('keeps a "__proto__" property filter as plain data', () => {
      // Act
      const query = parse('__proto__=x&toString=y');

      // Assess
      expect(Object.keys(query.filters.properties)).toEqual(['__proto__', 'toString']);
    });
  });
});

describe('parseIsoTime', () => {
  it.each([
    ['2026-11-22T02:11:40Z', '2026-11-22T02:11:40.000Z'],
    ['2026-11-22 02:11:40', '2026-11-22T02:11:40.000Z'],
    ['2026-11-22T02:11:40.25Z', '2026-11-22T02:11:40.250Z'],
    ['2026-11-22T04:11:40+02:00', '2026-11-22T02:11:40.000Z'],
    ['2026-11-22T01:11:40-0100', '2026-11-22T02:11:40.000Z'],
    ['2026-11-22T02:11', '2026-11-22T02:11:00.000Z'],
    ['20261122T021140Z', '2026-11-22T02:11:40.000Z'],
    ['2026-11-22', '2026-11-22T00:00:00.000Z'],
    ['2026-11', '2026-11-01T00:00:00.000Z'],
    ['2026', '2026-01-01T00:00:00.000Z'],
    ['0099-01-01T00:00:00Z', '0099-01-01T00:00:00.000Z'],
  ])('reads %s', (text, iso) => {
    // Act
    const ms = parseIsoTime(text);

    // Assess
    expect(ms).toBe(Date.parse(iso));
  });

  it.each([
    'bogus',
    '',
    '2026-13-01',
    '2026-02-30',
    '2026-11-22T24:00:00',
    '2026-11-22T02:60',
    '202611',
    '2026-11-22Z',
  ])('refuses %j', (text) => {
    // Act
    const ms = parseIsoTime(text);

    // Assess
    expect(ms).toBeUndefined();
  });
});

describe('splitInList', () => {
  it.each([
    ['a,b', ['a', 'b']],
    ['a,,b', ['a', '', 'b']],
    ['"x,y",z', ['x,y', 'z']],
    ['"with \\" quote",z', ['with \\" quote', 'z']],
  ])('splits %s', (value, items) => {
    // Act
    const result = splitInList(value);

    // Assess
    expect(result).toEqual(items);
  });
});

describe('matchesFilters', () => {
  const base = makeActiveImage({
    name: 'lst-a',
    owner: 'projA',
    tags: ['red', 'lst'],
    size: 10,
    virtual_size: 100,
    min_ram: 512,
    properties: { os_distro: 'debian' },
    created_at: '2026-11-22T02:11:38Z',
    updated_at: '2026-11-22T02:11:40Z',
  });
  const matchesQuery = (raw: string, image = base) => matchesFilters(image, parse(raw).filters);

  it.each([
    ['', true],
    ['name=lst-a', true],
    ['name=lst-b', false],
    ['name=in:lst-b,lst-a', true],
    ['name=in:lst-b,lst-c', false],
    ['status=active', true],
    ['status=in:queued,saving', false],
    ['disk_format=raw&container_format=bare', true],
    ['disk_format=qcow2', false],
    [`id=${base.id}`, true],
    ['owner=projA', true],
    ['owner=projB', false],
    [`checksum=${base.checksum}`, true],
    ['checksum=0', false],
    [`os_hash_value=${base.os_hash_value}`, true],
    ['os_hash_algo=md5', false],
    ['min_ram=512', true],
    ['min_ram=512.0', true],
    ['min_ram=256', false],
    ['min_ram=', false],
    ['size=10', true],
    ['tag=red', true],
    ['tag=red&tag=lst', true],
    ['tag=red&tag=blue', false],
    ['size_min=10&size_max=10', true],
    ['size_min=11', false],
    ['size_max=9', false],
    ['virtual_size_min=100', true],
    ['virtual_size_max=99', false],
    ['os_distro=debian', true],
    ['os_distro=ubuntu', false],
    ['architecture=x86_64', false],
    ['protected=false', true],
    ['protected=true', false],
    ['os_hidden=true', false],
    ['created_at=gt:2026-11-22T02:11:37Z', true],
    ['created_at=gt:2026-11-22T02:11:38Z', false],
    ['created_at=gte:2026-11-22T02:11:38Z', true],
    ['created_at=eq:2026-11-22T02:11:38Z', true],
    ['created_at=neq:2026-11-22T02:11:38Z', false],
    ['created_at=lt:2026-11-22T02:11:38Z', false],
    ['created_at=lte:2026-11-22T02:11:38Z', true],
    ['updated_at=gt:2026-11-22T02:11:39Z', true],
    ['updated_at=lt:2026-11-22T02:11:39Z', false],
  ])('%s -> %s', (raw, expected) => {
    // Act
    const result = matchesQuery(raw);

    // Assess
    expect(result).toBe(expected);
  });

  it('lists hidden images only when os_hidden=true is asked for', () => {
    // Prepare
    const hidden = makeActiveImage({ os_hidden: true });

    // Act
    const byDefault = matchesQuery('', hidden);
    const asked = matchesQuery('os_hidden=true', hidden);

    // Assess
    expect(byDefault).toBe(false);
    expect(asked).toBe(true);
  });

  it('never matches a null column with an equality or a range', () => {
    // Prepare
    const queued = makeActiveImage({ status: 'queued', size: null, name: null, owner: null });

    // Act
    const results = ['size_min=0', 'size=0', 'name=in:a', 'owner=projA'].map((raw) =>
      matchesQuery(raw, queued),
    );

    // Assess
    expect(results).toEqual([false, false, false, false]);
  });

  it.each(['deleted', 'killed'] as const)('never lists %s images, even when asked by status', (status) => {
    // Prepare
    const image = makeActiveImage({ status });

    // Act
    const plain = matchesQuery('', image);
    const byStatus = matchesQuery(`status=${status}`, image);

    // Assess
    expect(plain).toBe(false);
    expect(byStatus).toBe(false);
  });
});

describe('compareImages', () => {
  it.each([
    ['', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['sort_key=size&sort_dir=asc&tag=lst', ['lst-a', 'lst-b', 'lst-c', 'lst-d', 'lst-e']],
    ['sort_key=name&sort_dir=desc&tag=lst', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    [
      'sort_key=disk_format&sort_key=size&sort_dir=asc&sort_dir=desc&tag=lst',
      ['lst-d', 'lst-e', 'lst-b', 'lst-c', 'lst-a'],
    ],
    ['sort=disk_format:desc,name:asc&tag=lst', ['lst-a', 'lst-c', 'lst-b', 'lst-e', 'lst-d']],
    ['sort=name&tag=lst', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['tag=red', ['lst-e', 'lst-c', 'lst-a']],
    ['size_min=20&size_max=40', ['lst-d', 'lst-c', 'lst-b']],
    ['disk_format=in:qcow2,iso&tag=lst', ['lst-e', 'lst-d', 'lst-b']],
    ['created_at=gt:2026-11-22T02:11:39Z&tag=lst', ['lst-e', 'lst-d', 'lst-c']],
  ])('reproduces the order Glance answered to %s', (raw, names) => {
    // Act
    const result = listNames(raw);

    // Assess
    expect(result).toEqual(names);
  });

  it('sorts nulls lowest ascending and last descending', () => {
    // Prepare
    const unnamed = makeActiveImage({ id: 'x', name: null });
    const named = makeActiveImage({ id: 'y', name: 'a' });

    // Act
    const asc = compareImages(unnamed, named, [{ key: 'name', dir: 'asc' }]);
    const desc = compareImages(unnamed, named, [{ key: 'name', dir: 'desc' }]);

    // Assess
    expect(asc).toBeLessThan(0);
    expect(desc).toBeGreaterThan(0);
  });

  it('compares numbers as numbers', () => {
    // Prepare
    const small = makeActiveImage({ size: 9 });
    const large = makeActiveImage({ size: 10 });

    // Act
    const order = compareImages(small, large, [{ key: 'size', dir: 'asc' }]);

    // Assess
    expect(order).toBeLessThan(0);
  });

  it('falls through to later keys on ties and returns 0 for equal images', () => {
    // Prepare
    const first = makeActiveImage({ id: 'a', name: 'same' });
    const second = makeActiveImage({ id: 'b', name: 'same' });
    const sort: ImageSort[] = by(['name', 'asc'], ['id', 'desc']);

    // Act
    const order = compareImages(first, second, sort);
    const self = compareImages(first, first, sort);

    // Assess
    expect(order).toBeGreaterThan(0);
    expect(self).toBe(0);
  });

  it('decides page boundaries with isAfterMarker', () => {
    // Prepare
    const sort = parse('sort_key=name&sort_dir=asc').sort;

    // Act
    const after = all.filter((image) => isAfterMarker(image, lst.b, sort)).map((image) => image.name);

    // Assess
    expect(after).toEqual(['lst-c', 'lst-d', 'lst-e']);
  });
});

describe('compareCodePoints', () => {
  it.each([
    ['a', 'b', -1],
    ['b', 'a', 1],
    ['a', 'a', 0],
    ['a', 'ab', -1],
    ['B', 'a', -1],
    // U+FFFF is below U+1F600 by code point although its UTF-16 unit is above the surrogate.
    ['\uffff', '\u{1F600}', -1],
    ['\u{1F600}', '\uffff', 1],
    ['\u{1F600}', '\u{1F601}', -1],
  ])('compares %j with %j', (a, b, expected) => {
    // Act
    const order = compareCodePoints(a, b);

    // Assess
    expect(order).toBe(expected);
  });
});

describe('buildLinks', () => {
  it('links to the bare collection when there is no query', () => {
    // Act
    const links = buildLinks([], undefined);

    // Assess
    expect(links).toEqual({ first: '/v2/images' });
  });

  const GLANCE_QUERY = 'limit=2&tag=lst&sort_key=name&sort_dir=asc';
  it.each([
    ['#161', GLANCE_QUERY, '8ff11387-6010-48e8-a9a7-0ec28f8df6d5'],
    // The incoming marker is dropped wherever it was.
    [
      '#163',
      `marker=8ff11387-6010-48e8-a9a7-0ec28f8df6d5&${GLANCE_QUERY}`,
      '1939de77-4409-44a2-908d-44ef2689dd57',
    ],
  ])('builds first and next exactly as Glance did in transcript %s', (_transcript, raw, marker) => {
    // Act
    const links = buildLinks(q(raw), marker);

    // Assess
    expect(links).toEqual({
      first: '/v2/images?limit=2&tag=lst&sort_key=name&sort_dir=asc',
      next: `/v2/images?limit=2&tag=lst&sort_key=name&sort_dir=asc&marker=${marker}`,
    });
  });

  it('gives next with only the marker when the query had nothing else', () => {
    // Act
    const links = buildLinks(q('marker=a'), 'b');

    // Assess
    expect(links).toEqual({ first: '/v2/images', next: '/v2/images?marker=b' });
  });

  it.each([
    ['name=in:lst-a,lst-d', '/v2/images?name=in%3Alst-a%2Clst-d'],
    ['name=in:"lst-a",lst-b', '/v2/images?name=in%3A%22lst-a%22%2Clst-b'],
    ['sort=disk_format:desc,name:asc&tag=lst', '/v2/images?sort=disk_format%3Adesc%2Cname%3Aasc&tag=lst'],
    ['name=share me&x=a~b_c.d-e', '/v2/images?name=share+me&x=a~b_c.d-e'],
    ["name=(it's)!*", '/v2/images?name=%28it%27s%29%21%2A'],
    ['name=caf%C3%A9', '/v2/images?name=caf%C3%A9'],
  ])('encodes %s as Python urlencode does', (raw, first) => {
    // Act
    const links = buildLinks(q(raw.replaceAll(' ', '%20').replaceAll('"', '%22')), undefined);

    // Assess
    expect(links.first).toBe(first);
  });

  it('keeps repeated parameters, unlike Glance, so next repeats the same query', () => {
    // Act
    const links = buildLinks(q('tag=red&tag=lst'), 'x');

    // Assess
    expect(links.next).toBe('/v2/images?tag=red&tag=lst&marker=x');
  });
});
