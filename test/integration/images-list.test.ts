/**
 * GET /v2/images through HTTP against the local stand-ins: every filter, both sort syntaxes and
 * their errors, limits and markers, and pagination: walking `next` links page by page must give
 * exactly the one-page answer, which must match an order computed here from the images' values.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageRecord } from '#core/images/image';
import { compareImages, type ImageSort, type ImageSortKey } from '#core/images/list-query';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';
import {
  expectError,
  type ImageList,
  ImagesApi,
  type ImageView,
  imageBytes,
  minImageSize,
  peek,
} from '../helpers/images.ts';

let t: TestBackend;
let api: ImagesApi;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Timestamps have second precision: waiting this long gives the next image a later one. */
const NEXT_SECOND = 1050;

/**
 * Glance's probe data set (transcript before #131): lst-a..lst-e, one second apart. The sizes grow
 * in the same order as Glance's 10..50 bytes, but hold real qcow2 and ISO content.
 */
const lst: Record<'a' | 'b' | 'c' | 'd' | 'e', ImageView> = {} as never;
/** The pagination set: 30 images of four projects with repeated values and nulls. */
let pg: ImageView[] = [];

async function activate(persona: Persona, image: ImageView, size: number): Promise<void> {
  const response = await api.upload(persona, image.id, imageBytes(image.disk_format ?? 'raw', size));
  expect(response.status, await peek(response)).toBe(204);
}

async function createLstSet(): Promise<void> {
  const spec = [
    ['a', 'raw', 100, ['red']],
    ['b', 'qcow2', 200, ['blue']],
    ['c', 'raw', 300, ['red']],
    ['d', 'iso', 40_000, ['green']],
    ['e', 'qcow2', 50_000, ['red']],
  ] as const;
  for (const [suffix, diskFormat, size, tags] of spec) {
    const image = await api.create('alice', {
      name: `lst-${suffix}`,
      disk_format: diskFormat,
      container_format: 'bare',
      tags: [...tags, 'lst'],
      ...(suffix === 'b' ? { os_distro: 'debian' } : {}),
    });
    await activate('alice', image, size);
    lst[suffix] = await api.show('alice', image.id);
    if (suffix !== 'e') await sleep(NEXT_SECOND);
  }
}

async function createPaginationSet(): Promise<void> {
  const names = ['alpha', 'beta', 'beta', null, 'img', 'img-1', 'Zed', 'ünï', 'beta', null];
  const diskFormats = ['raw', 'qcow2', 'iso', null, 'raw'];
  const containerFormats = ['bare', 'ovf', null];
  const sizes = [0, 10, 10, 100, 7, null];
  const owners = ['projA', 'projA', 'projB', 'projC', 'admin'];
  const visibilities = ['shared', 'private', 'public', 'community', 'public', 'shared', 'private'];
  const made: string[] = [];
  // Three batches a second apart: runs of equal created_at, broken by id.
  for (let batch = 0; batch < 3; batch++) {
    if (batch > 0) await sleep(NEXT_SECOND);
    const batchImages = await Promise.all(
      Array.from({ length: 10 }, async (_, j) => {
        const i = batch * 10 + j;
        const image = await api.create('admin', {
          name: names[i % names.length],
          disk_format: diskFormats[i % diskFormats.length],
          container_format: containerFormats[i % containerFormats.length],
          owner: owners[i % owners.length],
          visibility: visibilities[i % visibilities.length],
          tags: ['pg'],
        });
        const size = sizes[i % sizes.length];
        if (image.disk_format && image.container_format && size !== null && size !== undefined) {
          // Equal extra sizes within one format give equal sizes: ties for the size sort.
          await activate('admin', image, minImageSize(image.disk_format) + size);
          if (i % 4 === 0) {
            const response = await t.request('POST', `/v2/images/${image.id}/actions/deactivate`, {
              token: t.tokens.admin,
            });
            expect(response.status).toBe(204);
          }
        }
        return image.id;
      }),
    );
    made.push(...batchImages);
  }
  // Later updates for some, so updated_at differs from created_at.
  await sleep(NEXT_SECOND);
  await Promise.all(
    made
      .filter((_, i) => i % 3 === 1)
      .map(async (id) => {
        const response = await api.patch('admin', id, [{ op: 'add', path: '/touched', value: 'yes' }]);
        expect(response.status).toBe(200);
      }),
  );
  pg = await Promise.all(made.map((id) => api.show('admin', id)));
}

beforeAll(async () => {
  t = await startTestBackend();
  api = new ImagesApi(t);
  await Promise.all([createLstSet(), createPaginationSet()]);
}, 120_000);
afterAll(async () => {
  await t?.stop();
});

function names(list: ImageList | ImageView[]): (string | null)[] {
  return ('images' in list ? list.images : list).map((image) => image.name);
}

function ids(list: ImageList | ImageView[]): string[] {
  return ('images' in list ? list.images : list).map((image) => image.id);
}

async function listError(persona: Persona, query: string, message: string | RegExp): Promise<void> {
  const response = await t.request('GET', `/v2/images?${query}`, { token: t.tokens[persona] });
  await expectError(response, 400, message);
}

describe('GET /v2/images: filters', () => {
  it('lists with Glance’s body shape, newest first by default', async () => {
    const list = await api.list('alice', 'tag=lst');
    expect(Object.keys(list).sort()).toEqual(['first', 'images', 'schema']);
    expect(list.schema).toBe('/v2/schemas/images');
    expect(list.first).toBe('/v2/images?tag=lst');
    expect(names(list)).toEqual(['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']);
    expect(list.images[0]).toEqual(lst.e);
  });

  it.each([
    ['name=lst-c', ['lst-c']],
    ['name=in:lst-a,lst-d', ['lst-d', 'lst-a']],
    ['name=in:"lst-a",lst-b', ['lst-b', 'lst-a']],
    ['name=nope', []],
    ['tag=lst&status=active', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['tag=lst&status=in:queued,active', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['tag=lst&status=queued', []],
    ['tag=lst&disk_format=in:qcow2,iso', ['lst-e', 'lst-d', 'lst-b']],
    ['tag=lst&disk_format=raw', ['lst-c', 'lst-a']],
    ['tag=lst&container_format=bare', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['tag=red', ['lst-e', 'lst-c', 'lst-a']],
    ['tag=red&tag=lst', ['lst-e', 'lst-c', 'lst-a']],
    ['tag=red&tag=blue', []],
    ['tag=lst&size_min=200&size_max=40000', ['lst-d', 'lst-c', 'lst-b']],
    ['tag=lst&size_min=40001', ['lst-e']],
    ['tag=lst&size_max=100', ['lst-a']],
    ['tag=lst&size=300', ['lst-c']],
    ['tag=lst&os_distro=debian', ['lst-b']],
    ['tag=lst&os_distro=ubuntu', []],
    ['tag=lst&owner=projA', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['tag=lst&owner=projB', []],
    ['tag=lst&protected=false', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['tag=lst&protected=true', []],
    ['tag=lst&visibility=shared', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['tag=lst&visibility=private', []],
    ['tag=lst&visibility=all', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
  ])('filters %s', async (query, expected) => {
    const list = await api.list('alice', query);
    expect(names(list)).toEqual(expected);
    expect(list.first).toBe(`/v2/images?${new URLSearchParams(query).toString()}`);
  });

  it('filters by id with in:', async () => {
    const list = await api.list('alice', `id=in:${lst.a.id},${lst.b.id}`);
    expect(names(list)).toEqual(['lst-b', 'lst-a']);
  });

  it('filters by checksum and os_hash_value', async () => {
    expect(names(await api.list('alice', `checksum=${lst.c.checksum}`))).toEqual(['lst-c']);
    expect(names(await api.list('alice', `os_hash_value=${lst.d.os_hash_value}`))).toEqual(['lst-d']);
  });

  it('leaves hidden images out unless os_hidden=true, which lists only them', async () => {
    // Prepare
    const hidden = await api.create('alice', { name: 'hidden-one', tags: ['hid'], os_hidden: true });
    await api.create('alice', { name: 'visible-one', tags: ['hid'] });
    // Act / Assess
    expect(names(await api.list('alice', 'tag=hid'))).toEqual(['visible-one']);
    expect(names(await api.list('alice', 'tag=hid&os_hidden=false'))).toEqual(['visible-one']);
    expect(names(await api.list('alice', 'tag=hid&os_hidden=true'))).toEqual(['hidden-one']);
    expect(names(await api.list('alice', 'tag=hid&os_hidden=TRUE'))).toEqual(['hidden-one']);
    await listError(
      'alice',
      'os_hidden=bogus',
      "Invalid value 'bogus' for 'os_hidden' filter. Valid values are 'true' or 'false'.",
    );
    // Hidden images are still readable by id.
    expect((await api.show('alice', hidden.id)).os_hidden).toBe(true);
  });

  it('filters protected=true, and refuses other values with 400', async () => {
    await api.create('alice', { name: 'guarded', tags: ['prot'], protected: true });
    await api.create('alice', { name: 'open', tags: ['prot'] });
    expect(names(await api.list('alice', 'tag=prot&protected=true'))).toEqual(['guarded']);
    expect(names(await api.list('alice', 'tag=prot&protected=false'))).toEqual(['open']);
    await listError(
      'alice',
      'protected=bogus',
      "Invalid value 'bogus' for 'protected' filter. Valid values are 'true' or 'false'.",
    );
    await listError(
      'alice',
      'protected=TRUE',
      "Invalid value 'TRUE' for 'protected' filter. Valid values are 'true' or 'false'.",
    );
  });

  it('leaves deleted images out', async () => {
    const doomed = await api.create('alice', { name: 'doomed', tags: ['del'] });
    await api.create('alice', { name: 'kept', tags: ['del'] });
    expect((await t.request('DELETE', `/v2/images/${doomed.id}`, { token: t.tokens.alice })).status).toBe(
      204,
    );
    expect(names(await api.list('alice', 'tag=del'))).toEqual(['kept']);
    expect(names(await api.list('admin', 'tag=del&visibility=all'))).toEqual(['kept']);
  });

  it.each(['created_at', 'updated_at'] as const)('filters %s with every operator', async (key) => {
    const all = [lst.a, lst.b, lst.c, lst.d, lst.e];
    const threshold = lst.c[key];
    const at = Date.parse(threshold);
    const ops: Record<string, (v: number) => boolean> = {
      gt: (v) => v > at,
      gte: (v) => v >= at,
      lt: (v) => v < at,
      lte: (v) => v <= at,
      eq: (v) => v === at,
      neq: (v) => v !== at,
    };
    for (const [op, keep] of Object.entries(ops)) {
      const expected = all.filter((image) => keep(Date.parse(image[key]))).map((image) => image.name);
      // The data set spreads the times, so no operator may keep everything or nothing except eq.
      if (op !== 'eq') expect(expected.length, op).toBeGreaterThan(0);
      expect(expected.length, op).toBeLessThan(all.length);
      const list = await api.list('alice', `tag=lst&sort_key=name&sort_dir=asc&${key}=${op}:${threshold}`);
      expect(names(list), `${key}=${op}`).toEqual(expected.sort());
    }
    // Without an operator, a time means eq.
    expect(names(await api.list('alice', `tag=lst&${key}=${threshold}`))).toEqual(['lst-c']);
  });

  it('orders lst-* by a spread of created_at: gt/lt split the set around lst-c', async () => {
    const gt = await api.list('alice', `tag=lst&created_at=gt:${lst.c.created_at}`);
    expect(names(gt)).toEqual(['lst-e', 'lst-d']);
    const lte = await api.list('alice', `tag=lst&created_at=lte:${lst.c.created_at}`);
    expect(names(lte)).toEqual(['lst-c', 'lst-b', 'lst-a']);
  });

  it.each([
    ['created_at=gt:bogus', 'Bad "created_at" query filter format. Use ISO 8601 DateTime notation.'],
    [
      'updated_at=lt:2020-13-01T00:00:00Z',
      'Bad "updated_at" query filter format. Use ISO 8601 DateTime notation.',
    ],
    ['created_at=zz:2000-01-01T00:00:00Z', 'Unable to filter on a unknown operator.'],
    ['changes-since=2000-01-01T00:00:00Z', 'The "changes-since" filter is no longer available on v2.'],
    ['status=bogus', 'Invalid status value: bogus'],
    ['status=in:active,bogus', 'Invalid status value: bogus'],
    ['visibility=bogus', 'Invalid visibility value: bogus'],
    ['size_min=abc', 'Unable to filter on a range with a non-numeric value.'],
    ['size_max=neq:10', 'Unable to filter on a range with a non-numeric value.'],
    ['name=neq:lst-a', "Unable to filter by unknown operator 'neq'."],
    ['member_status=bogus', 'Invalid status: bogus'],
  ])('refuses %s with 400', async (query, message) => {
    await listError('alice', query, message);
  });
});

describe('GET /v2/images: who sees what', () => {
  it('shows an admin every project’s images, a member only its own and public ones', async () => {
    // Prepare
    const visibleTo = (persona: 'admin' | 'alice' | 'bob' | 'carol') =>
      pg.filter((image) => {
        if (persona === 'admin') return true;
        const project = { alice: 'projA', bob: 'projB', carol: 'projC' }[persona];
        return image.owner === project || image.visibility === 'public';
      });
    // Act / Assess
    for (const persona of ['admin', 'alice', 'bob', 'carol'] as const) {
      const list = await api.list(persona, 'tag=pg&limit=1000');
      expect(new Set(ids(list)), persona).toEqual(new Set(ids(visibleTo(persona))));
    }
    // The admin's list spans every owner.
    const owners = new Set((await api.list('admin', 'tag=pg&limit=1000')).images.map((image) => image.owner));
    expect(owners).toEqual(new Set(['projA', 'projB', 'projC', 'admin']));
  });

  it('lists another project’s community images only when asked for visibility=community', async () => {
    const community = pg.filter((image) => image.visibility === 'community' && image.owner !== 'projA');
    expect(community.length).toBeGreaterThan(0);
    const defaultList = new Set(ids(await api.list('alice', 'tag=pg&limit=1000')));
    for (const image of community) expect(defaultList.has(image.id)).toBe(false);
    const asked = await api.list('alice', 'tag=pg&limit=1000&visibility=community');
    expect(new Set(ids(asked))).toEqual(new Set(ids(pg.filter((image) => image.visibility === 'community'))));
  });

  it.each(['private', 'shared', 'public'] as const)(
    'filters visibility=%s for a member and for an admin',
    async (visibility) => {
      const mine = pg.filter(
        (image) => image.visibility === visibility && (visibility === 'public' || image.owner === 'projA'),
      );
      expect(new Set(ids(await api.list('alice', `tag=pg&limit=1000&visibility=${visibility}`)))).toEqual(
        new Set(ids(mine)),
      );
      const every = pg.filter((image) => image.visibility === visibility);
      expect(new Set(ids(await api.list('admin', `tag=pg&limit=1000&visibility=${visibility}`)))).toEqual(
        new Set(ids(every)),
      );
    },
  );

  it('filters owner= for an admin over every project, for a member over what it may see', async () => {
    const projB = pg.filter((image) => image.owner === 'projB');
    expect(new Set(ids(await api.list('admin', 'tag=pg&limit=1000&owner=projB')))).toEqual(
      new Set(ids(projB)),
    );
    const projBPublic = projB.filter((image) => image.visibility === 'public');
    expect(projBPublic.length).toBeLessThan(projB.length);
    expect(new Set(ids(await api.list('alice', 'tag=pg&limit=1000&owner=projB')))).toEqual(
      new Set(ids(projBPublic)),
    );
  });

  it('follows visibility and owner changes: the lists drop an image the caller may no longer see', async () => {
    // Prepare
    const image = await api.create('alice', { name: 'moving', tags: ['moving'] });
    const listed = async (persona: Persona) => names(await api.list(persona, 'tag=moving'));
    const change = async (path: string, value: string) => {
      const response = await api.patch('admin', image.id, [{ op: 'replace', path, value }]);
      expect(response.status, await peek(response)).toBe(200);
    };
    expect(await listed('carol')).toEqual([]);
    // Act / Assess
    await change('/visibility', 'public');
    expect(await listed('carol')).toEqual(['moving']);
    await change('/visibility', 'private');
    expect(await listed('carol')).toEqual([]);
    expect(await listed('alice')).toEqual(['moving']);
    await change('/owner', 'projB');
    expect(await listed('alice')).toEqual([]);
    expect(await listed('bob')).toEqual(['moving']);
    expect(names(await api.list('admin', 'tag=moving&owner=projA'))).toEqual([]);
    expect(names(await api.list('admin', 'tag=moving&owner=projB'))).toEqual(['moving']);
  });

  it('filters status=deactivated and status=in:queued,deactivated', async () => {
    const deactivated = pg.filter((image) => image.status === 'deactivated');
    const queued = pg.filter((image) => image.status === 'queued');
    expect(deactivated.length).toBeGreaterThan(0);
    expect(queued.length).toBeGreaterThan(0);
    expect(new Set(ids(await api.list('admin', 'tag=pg&limit=1000&status=deactivated')))).toEqual(
      new Set(ids(deactivated)),
    );
    expect(new Set(ids(await api.list('admin', 'tag=pg&limit=1000&status=in:queued,deactivated')))).toEqual(
      new Set(ids([...queued, ...deactivated])),
    );
  });
});

describe('GET /v2/images: sorting', () => {
  it.each([
    ['sort_key=size&sort_dir=asc', ['lst-a', 'lst-b', 'lst-c', 'lst-d', 'lst-e']],
    ['sort_key=name&sort_dir=desc', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    [
      'sort_key=disk_format&sort_key=size&sort_dir=asc&sort_dir=desc',
      ['lst-d', 'lst-e', 'lst-b', 'lst-c', 'lst-a'],
    ],
    ['sort=disk_format:desc,name:asc', ['lst-a', 'lst-c', 'lst-b', 'lst-e', 'lst-d']],
    ['sort=name', ['lst-e', 'lst-d', 'lst-c', 'lst-b', 'lst-a']],
    ['sort=created_at:asc', ['lst-a', 'lst-b', 'lst-c', 'lst-d', 'lst-e']],
    ['sort_key=disk_format&sort_dir=asc', ['lst-d', 'lst-b', 'lst-e', 'lst-a', 'lst-c']],
  ])('orders %s as Glance does (transcripts #152-#156)', async (query, expected) => {
    expect(names(await api.list('alice', `${query}&tag=lst`))).toEqual(expected);
  });

  it.each([
    ['sort=name:asc&sort_key=size', 'Old and new sorting syntax cannot be combined'],
    ['sort=name:asc&sort_dir=asc', 'Old and new sorting syntax cannot be combined'],
    [
      'sort_key=bogus',
      'Invalid sort key: bogus. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.',
    ],
    [
      'sort=owner:asc',
      'Invalid sort key: owner. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.',
    ],
    ['sort_dir=bogus', 'Invalid sort direction: bogus'],
    ['sort=name:up', 'Invalid sort direction: up'],
    [
      'sort_key=name&sort_dir=asc&sort_dir=desc',
      'Number of sort dirs does not match the number of sort keys',
    ],
    [
      'sort_key=name&sort_key=size&sort_key=id&sort_dir=asc&sort_dir=desc',
      'Number of sort dirs does not match the number of sort keys',
    ],
  ])('refuses %s with 400', async (query, message) => {
    await listError('alice', query, message);
  });
});

describe('GET /v2/images: limit, marker and links', () => {
  it('pages 25 at a time by default, with a next link', async () => {
    const list = await api.list('admin');
    expect(list.images).toHaveLength(25);
    expect(list.first).toBe('/v2/images');
    expect(list.next).toBe(`/v2/images?marker=${list.images[24]?.id}`);
  });

  it('answers limit=0 with an empty page and no next link', async () => {
    const list = await api.list('alice', 'limit=0&tag=lst');
    expect(list.images).toEqual([]);
    expect(list.next).toBeUndefined();
  });

  it('offers next only when the page is full, so the last page may be empty', async () => {
    const five = await api.list('alice', 'tag=lst&limit=5');
    expect(five.images).toHaveLength(5);
    expect(five.next).toBe(`/v2/images?tag=lst&limit=5&marker=${lst.a.id}`);
    const after = await api.list('alice', five.next?.split('?')[1] ?? '');
    expect(after.images).toEqual([]);
    expect(after.next).toBeUndefined();
    expect(after.first).toBe('/v2/images?tag=lst&limit=5');
    expect((await api.list('alice', 'tag=lst&limit=6')).next).toBeUndefined();
  });

  it('starts after the marker and keeps every parameter in the links, encoded as Glance does', async () => {
    const list = await api.list('alice', `sort=name:asc&tag=lst&limit=2&marker=${lst.b.id}`);
    expect(names(list)).toEqual(['lst-c', 'lst-d']);
    expect(list.first).toBe('/v2/images?sort=name%3Aasc&tag=lst&limit=2');
    expect(list.next).toBe(`/v2/images?sort=name%3Aasc&tag=lst&limit=2&marker=${lst.d.id}`);
  });

  it.each([
    ['limit=-1', 'limit param must be positive'],
    ['limit=abc', 'limit param must be an integer'],
    ['limit=1.5', 'limit param must be an integer'],
  ])('refuses %s with 400', async (query, message) => {
    await listError('alice', query, message);
  });

  it('refuses an unknown, deleted or invisible marker with 400', async () => {
    const missing = '00000000-0000-0000-0000-000000000000';
    await listError('alice', `marker=${missing}`, `No image found with ID ${missing}`);
    const doomed = await api.create('alice', { name: 'doomed-marker' });
    expect((await t.request('DELETE', `/v2/images/${doomed.id}`, { token: t.tokens.alice })).status).toBe(
      204,
    );
    await listError('alice', `marker=${doomed.id}`, `No image found with ID ${doomed.id}`);
    const bobs = await api.create('bob', { name: 'bobs-private', visibility: 'private' });
    await listError('alice', `marker=${bobs.id}`, `No image found with ID ${bobs.id}`);
  });
});

/** A full sort order written out by hand: `key:dir` items, Glance's tiebreakers included. */
function order(...items: string[]): ImageSort[] {
  return items.map((item) => {
    const [key, dir] = item.split(':');
    return { key: key as ImageSortKey, dir: dir as 'asc' | 'desc' };
  });
}

/** Follows `next` links from `query` with `limit`, checking the links on every page. */
async function walk(persona: Persona, query: string, limit: number): Promise<ImageView[]> {
  const firstQuery = `${query}&limit=${limit}`;
  let list = await api.list(persona, firstQuery);
  const first = list.first;
  const seen: ImageView[] = [...list.images];
  for (let page = 0; list.next; page++) {
    expect(page, 'too many pages').toBeLessThan(100);
    expect(list.images).toHaveLength(limit);
    expect(list.first).toBe(first);
    expect(list.next).toBe(`${first}&marker=${list.images.at(-1)?.id}`);
    list = await api.list(persona, list.next.slice('/v2/images?'.length));
    seen.push(...list.images);
  }
  expect(list.images.length).toBeLessThan(limit);
  return seen;
}

const PAGINATION_CASES: Array<[string, ImageSort[]]> = [
  // One key: Glance adds created_at and id, in the one given direction.
  ...(['name', 'status', 'container_format', 'disk_format', 'size', 'updated_at'] as const).flatMap((key) =>
    (['asc', 'desc'] as const).map((dir): [string, ImageSort[]] => [
      `sort_key=${key}&sort_dir=${dir}`,
      order(`${key}:${dir}`, `created_at:${dir}`, `id:${dir}`),
    ]),
  ),
  ['sort_key=id&sort_dir=asc', order('id:asc')],
  ['sort_key=id&sort_dir=desc', order('id:desc')],
  ['sort_key=created_at&sort_dir=asc', order('created_at:asc', 'id:asc')],
  ['sort_key=created_at&sort_dir=desc', order('created_at:desc', 'id:desc')],
  ['', order('created_at:desc', 'id:desc')],
  ['sort=name', order('name:desc', 'created_at:desc', 'id:desc')],
  ['sort=size:asc', order('size:asc', 'created_at:asc', 'id:asc')],
  // Several keys, one direction each: the tiebreakers go descending.
  ['sort=disk_format:desc,name:asc', order('disk_format:desc', 'name:asc', 'created_at:desc', 'id:desc')],
  ['sort=status:asc,size:asc', order('status:asc', 'size:asc', 'created_at:desc', 'id:desc')],
  ['sort=size:asc,created_at:asc', order('size:asc', 'created_at:asc', 'id:desc')],
  ['sort=created_at:asc,name:desc', order('created_at:asc', 'name:desc', 'id:desc')],
  [
    'sort=updated_at:asc,container_format:desc,name:asc',
    order('updated_at:asc', 'container_format:desc', 'name:asc', 'created_at:desc', 'id:desc'),
  ],
  ['sort=id:asc,name:asc', order('id:asc', 'name:asc', 'created_at:desc')],
  // Several keys, no direction: all descending.
  ['sort_key=status&sort_key=size', order('status:desc', 'size:desc', 'created_at:desc', 'id:desc')],
  // Several keys, one direction: it applies to every key and to the tiebreakers.
  [
    'sort_key=name&sort_key=disk_format&sort_dir=asc',
    order('name:asc', 'disk_format:asc', 'created_at:asc', 'id:asc'),
  ],
  // One direction per key.
  [
    'sort_key=container_format&sort_key=name&sort_dir=asc&sort_dir=desc',
    order('container_format:asc', 'name:desc', 'created_at:desc', 'id:desc'),
  ],
];

describe('GET /v2/images: pagination across pages', () => {
  it('has a data set with ties and nulls in every sort key', () => {
    for (const key of [
      'name',
      'status',
      'container_format',
      'disk_format',
      'size',
      'created_at',
      'updated_at',
    ] as const) {
      const values = pg.map((image) => image[key]);
      expect(new Set(values).size, key).toBeLessThan(values.length);
      expect(new Set(values).size, key).toBeGreaterThan(1);
    }
    for (const key of ['name', 'container_format', 'disk_format', 'size'] as const)
      expect(
        pg.some((image) => image[key] === null),
        key,
      ).toBe(true);
  });

  it.each(PAGINATION_CASES)(
    'walks "%s" 4 at a time exactly as one page, in the expected order',
    async (query, sort) => {
      for (const persona of ['admin', 'alice'] as const) {
        // Prepare
        const visible = pg.filter(
          (image) => persona === 'admin' || image.owner === 'projA' || image.visibility === 'public',
        );
        const expected = [...visible].sort((a, b) =>
          compareImages(a as unknown as ImageRecord, b as unknown as ImageRecord, sort),
        );
        const base = query ? `${query}&tag=pg` : 'tag=pg';
        // Act
        const whole = await api.list(persona, `${base}&limit=1000`);
        const walked = await walk(persona, base, 4);
        // Assess
        expect(new Set(ids(walked)).size, `${persona}: duplicates`).toBe(walked.length);
        expect(ids(whole), `${persona}: one page`).toEqual(ids(expected));
        expect(ids(walked), `${persona}: walked`).toEqual(ids(expected));
      }
    },
  );

  it('walks with limit=1 and limit=7 too (page breaks inside every run of equal values)', async () => {
    const sort = order('disk_format:desc', 'name:asc', 'created_at:desc', 'id:desc');
    const expected = [...pg].sort((a, b) =>
      compareImages(a as unknown as ImageRecord, b as unknown as ImageRecord, sort),
    );
    for (const limit of [1, 7]) {
      const walked = await walk('admin', 'sort=disk_format:desc,name:asc&tag=pg', limit);
      expect(ids(walked), `limit=${limit}`).toEqual(ids(expected));
    }
  });
});

describe('GET /v2/images: the 1000 cap (last: it adds many images)', () => {
  it('caps limit at 1000', async () => {
    // Prepare: more than 1000 images visible to the admin
    const have = (await api.list('admin', 'limit=1000')).images.length;
    const missing = 1001 - have;
    for (let done = 0; done < missing; ) {
      const batch = Math.min(25, missing - done);
      await Promise.all(
        Array.from({ length: batch }, () => api.create('admin', { name: 'filler', tags: ['filler'] })),
      );
      done += batch;
    }
    // Act
    const list = await api.list('admin', 'limit=100000');
    // Assess
    expect(list.images).toHaveLength(1000);
    expect(list.next).toBeDefined();
    const rest = await api.list('admin', list.next?.split('?')[1] ?? '');
    expect(rest.images.length).toBeGreaterThanOrEqual(1);
    expect(new Set([...ids(list), ...ids(rest)]).size).toBe(1000 + rest.images.length);
  });
});
