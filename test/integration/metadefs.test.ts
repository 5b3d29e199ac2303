/**
 * The metadata definitions API (/v2/metadefs) against the embedded backend: namespaces, objects,
 * properties, tags, resource type associations and their schemas, with Glance's status codes;
 * visibility (private namespaces only for their owner and admins), protected namespaces,
 * admin-only writes, and the seed catalogue written at first start.
 */
import { DeleteCommand, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metadefNamespaceKey, metadefSeedKey } from '#adapters/dynamo/keys';
import { DynamoMetadefRepository } from '#adapters/dynamo/metadef-repository';
import { MetadefsService } from '#core/metadefs/metadefs';
import { HANGAR_METADEF_SEED, OS_DISTROS } from '#core/metadefs/seeds';
import { serviceConfig } from '#platform/config';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';

let t: TestBackend;

type Json = Record<string, unknown>;

async function call(
  persona: Persona,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Json; text: string }> {
  const response = await t.request(method, path, {
    token: t.tokens[persona],
    headers: { accept: 'application/json', ...headers },
    ...(body === undefined ? {} : { body: body as object }),
  });
  const text = await response.text();
  let json: Json = {};
  try {
    json = text ? (JSON.parse(text) as Json) : {};
  } catch {
    // Not JSON: the assertion on the status says what went wrong.
  }
  return { status: response.status, json, text };
}

const NS = '/v2/metadefs/namespaces';
let counter = 0;
const unique = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${counter++}`;

async function createNamespace(body: Json = {}): Promise<string> {
  const namespace = (body.namespace as string | undefined) ?? unique('ns');
  const out = await call('admin', 'POST', NS, { namespace, visibility: 'public', ...body });
  expect(out.status, out.text).toBe(201);
  return namespace;
}

beforeAll(async () => {
  t = await startTestBackend();
}, 120_000);

afterAll(async () => {
  await t?.stop();
});

describe('namespaces', () => {
  it('creates, lists, shows, updates and deletes a namespace as Glance does', async () => {
    const name = unique('OS::Test');
    const created = await call('admin', 'POST', NS, {
      namespace: name,
      display_name: 'Test',
      description: 'Tempest-like',
      visibility: 'public',
      protected: true,
      resource_type_associations: [{ name: 'OS::Glance::Image', prefix: 'hw_' }],
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json).toMatchObject({
      namespace: name,
      display_name: 'Test',
      visibility: 'public',
      protected: true,
      owner: 'admin',
      schema: '/v2/schemas/metadefs/namespace',
      self: `/v2/metadefs/namespaces/${name}`,
    });
    expect(created.json.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const list = await call('admin', 'GET', NS);
    expect(list.status).toBe(200);
    expect((list.json.namespaces as Json[]).map((n) => n.namespace)).toContain(name);
    expect(list.json.schema).toBe('/v2/schemas/metadefs/namespaces');
    expect(list.json.first).toBe('/v2/metadefs/namespaces');

    const shown = await call('alice', 'GET', `${NS}/${encodeURIComponent(name)}`);
    expect(shown.status).toBe(200);
    expect(shown.json.resource_type_associations).toEqual([
      expect.objectContaining({ name: 'OS::Glance::Image', prefix: 'hw_' }),
    ]);

    // Protected: 403, and still there.
    const refused = await call('admin', 'DELETE', `${NS}/${name}`);
    expect(refused.status).toBe(403);
    expect(refused.json.message).toBe(
      `Metadata definition namespace ${name} is protected and cannot be deleted.`,
    );
    expect((await call('admin', 'GET', `${NS}/${name}`)).status).toBe(200);

    // PUT replaces the fields: left-out ones fall back to the create defaults.
    const updated = await call('admin', 'PUT', `${NS}/${name}`, {
      namespace: name,
      visibility: 'private',
      protected: false,
    });
    expect(updated.status, updated.text).toBe(200);
    expect(updated.json).toMatchObject({ visibility: 'private', protected: false });
    expect(updated.json).not.toHaveProperty('display_name');
    // Associations survive an update.
    expect(updated.json.resource_type_associations).toHaveLength(1);

    expect((await call('admin', 'DELETE', `${NS}/${name}`)).status).toBe(204);
    const gone = await call('admin', 'GET', `${NS}/${name}`);
    expect(gone.status).toBe(404);
    expect(gone.json.message).toBe(`Metadata definition namespace=${name} was not found.`);
  });

  it('answers 409 for a name in use, 400 for a bad body, 403 for read-only attributes', async () => {
    const name = await createNamespace();
    const dup = await call('admin', 'POST', NS, { namespace: name });
    expect(dup.status).toBe(409);
    expect(dup.json.message).toBe(`The metadata definition namespace=${name} already exists.`);

    const missing = await call('admin', 'POST', NS, { display_name: 'x' });
    expect(missing.status).toBe(400);
    expect(missing.json.message).toContain("'namespace' is a required property");
    expect((await call('admin', 'POST', NS, { namespace: 'x'.repeat(81) })).status).toBe(400);
    expect((await call('admin', 'POST', NS, { namespace: unique('n'), visibility: 'shared' })).status).toBe(
      400,
    );
    expect((await call('admin', 'POST', NS, { namespace: unique('n'), bogus: 1 })).status).toBe(400);
    expect((await call('admin', 'POST', NS, [1, 2])).status).toBe(400);
    expect((await call('admin', 'POST', NS, 'not json', { 'content-type': 'application/json' })).status).toBe(
      400,
    );
    const readOnly = await call('admin', 'POST', NS, { namespace: unique('n'), created_at: 'x' });
    expect(readOnly.status).toBe(403);
    expect(readOnly.json.message).toBe("Attribute 'created_at' is read-only.");
  });

  it('renames a namespace and keeps what it holds; a taken name is a 409', async () => {
    const name = await createNamespace({ tags: [{ name: 'keep-me' }] });
    const other = await createNamespace();
    const clash = await call('admin', 'PUT', `${NS}/${name}`, { namespace: other, visibility: 'public' });
    expect(clash.status).toBe(409);
    const renamed = unique('renamed');
    const out = await call('admin', 'PUT', `${NS}/${name}`, { namespace: renamed, visibility: 'public' });
    expect(out.status, out.text).toBe(200);
    expect((await call('admin', 'GET', `${NS}/${name}`)).status).toBe(404);
    const shown = await call('admin', 'GET', `${NS}/${renamed}`);
    expect(shown.json.tags).toEqual([{ name: 'keep-me' }]);
  });

  it('lists with limit, marker, sort and filters, and refuses bad parameters with 400', async () => {
    const names = [unique('page-a'), unique('page-b'), unique('page-c')];
    for (const name of names)
      await createNamespace({ namespace: name, resource_type_associations: [{ name: 'OS::Test::Paged' }] });
    const first = await call(
      'alice',
      'GET',
      `${NS}?resource_types=OS::Test::Paged&sort_key=namespace&sort_dir=asc&limit=2`,
    );
    expect(first.status).toBe(200);
    expect((first.json.namespaces as Json[]).map((n) => n.namespace)).toEqual(names.slice(0, 2));
    expect(first.json.next).toContain(`marker=${encodeURIComponent(names[1] ?? '')}`);
    const second = await call('alice', 'GET', String(first.json.next));
    expect((second.json.namespaces as Json[]).map((n) => n.namespace)).toEqual(names.slice(2));
    expect(second.json).not.toHaveProperty('next');

    // Default order is newest first (created_at has second resolution; ties keep a fixed order).
    const newest = (await call('alice', 'GET', `${NS}?resource_types=OS::Test::Paged`)).json
      .namespaces as Json[];
    const times = newest.map((n) => String(n.created_at));
    expect(times).toEqual([...times].sort().reverse());
    expect(newest.map((n) => n.namespace).sort()).toEqual(names);
    const oldest = (await call('alice', 'GET', `${NS}?resource_types=OS::Test::Paged&sort_dir=asc`)).json
      .namespaces as Json[];
    expect(oldest.map((n) => n.namespace)).toEqual(newest.map((n) => n.namespace).reverse());

    expect((await call('bob', 'GET', `${NS}?visibility=private`)).json.namespaces).toEqual([]);
    expect((await call('alice', 'GET', `${NS}?visibility=shared`)).status).toBe(400);
    expect((await call('alice', 'GET', `${NS}?sort_dir=up`)).status).toBe(400);
    expect((await call('alice', 'GET', `${NS}?limit=-1`)).status).toBe(400);
    expect((await call('alice', 'GET', `${NS}?limit=abc`)).status).toBe(400);
    expect((await call('alice', 'GET', `${NS}?sort_key=nope`)).status).toBe(400);
    expect((await call('alice', 'GET', `${NS}?marker=no-such-namespace`)).status).toBe(404);
  });

  it('shows private namespaces only to their owner project and admins', async () => {
    const name = await createNamespace({ visibility: 'private', owner: 'projA' });
    expect((await call('alice', 'GET', `${NS}/${name}`)).status).toBe(200);
    expect((await call('bob', 'GET', `${NS}/${name}`)).status).toBe(404);
    expect((await call('admin', 'GET', `${NS}/${name}`)).status).toBe(200);
    const listed = async (persona: Persona) =>
      ((await call(persona, 'GET', `${NS}?limit=1000`)).json.namespaces as Json[]).map((n) => n.namespace);
    expect(await listed('alice')).toContain(name);
    expect(await listed('bob')).not.toContain(name);
    // Children of an invisible namespace are invisible too.
    expect((await call('bob', 'GET', `${NS}/${name}/objects`)).status).toBe(404);
    expect((await call('bob', 'GET', `${NS}/${name}/tags`)).status).toBe(404);
    // Writes by anyone but an admin: 404 where the namespace is invisible, 403 where it is seen.
    expect((await call('bob', 'DELETE', `${NS}/${name}`)).status).toBe(404);
    expect((await call('alice', 'DELETE', `${NS}/${name}`)).status).toBe(403);
  });

  it('lets a reader read what its project sees, and a token with no recognised role read nothing', async () => {
    const name = await createNamespace({ visibility: 'private', owner: 'projA' });
    const listed = async (persona: Persona) =>
      ((await call(persona, 'GET', `${NS}?limit=1000`)).json.namespaces as Json[]).map((n) => n.namespace);
    // dave: projA reader; oscar: projA with a role Glance does not know.
    expect((await call('dave', 'GET', `${NS}/${name}`)).status).toBe(200);
    expect(await listed('dave')).toEqual(expect.arrayContaining([name, 'Hangar::OperatingSystem']));
    expect((await call('dave', 'DELETE', `${NS}/${name}`)).status).toBe(403);
    expect((await call('oscar', 'GET', `${NS}/${name}`)).status).toBe(404);
    expect((await call('oscar', 'GET', `${NS}/Hangar::OperatingSystem`)).status).toBe(404);
    expect(await listed('oscar')).toEqual([]);
  });

  it('refuses every write to non-admins (Glance secure defaults)', async () => {
    const name = await createNamespace();
    const create = await call('alice', 'POST', NS, { namespace: unique('mine') });
    expect(create.status).toBe(403);
    expect(create.json.message).toBe('You are not authorized to complete add_metadef_namespace action.');
    const writes: Array<[string, string, unknown]> = [
      ['PUT', `${NS}/${name}`, { namespace: name }],
      ['DELETE', `${NS}/${name}`, undefined],
      ['POST', `${NS}/${name}/objects`, { name: 'o' }],
      ['POST', `${NS}/${name}/properties`, { name: 'p', title: 'P', type: 'string' }],
      ['POST', `${NS}/${name}/tags`, { tags: [{ name: 't' }] }],
      ['POST', `${NS}/${name}/tags/t`, undefined],
      ['POST', `${NS}/${name}/resource_types`, { name: 'OS::Nova::Flavor' }],
      ['DELETE', `${NS}/${name}/objects`, undefined],
      ['DELETE', `${NS}/${name}/tags`, undefined],
    ];
    for (const [method, path, body] of writes) {
      const out = await call('alice', method, path, body);
      expect(out.status, `${method} ${path}`).toBe(403);
    }
    const shown = await call('admin', 'GET', `${NS}/${name}`);
    expect(shown.json).not.toHaveProperty('objects');
    expect(shown.json).not.toHaveProperty('tags');
    expect(shown.json).not.toHaveProperty('resource_type_associations');
  });
});

describe('objects, properties and tags', () => {
  it('creates, renames, shows, lists and deletes objects', async () => {
    const name = await createNamespace();
    const created = await call('admin', 'POST', `${NS}/${name}/objects`, {
      name: 'CPU Limits',
      required: ['cpu_shares'],
      properties: { cpu_shares: { title: 'Shares', type: 'integer', minimum: 0 } },
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json).toMatchObject({
      name: 'CPU Limits',
      schema: '/v2/schemas/metadefs/object',
      self: `/v2/metadefs/namespaces/${name}/objects/CPU Limits`,
    });
    expect((await call('admin', 'POST', `${NS}/${name}/objects`, { name: 'CPU Limits' })).status).toBe(409);
    expect((await call('admin', 'POST', `${NS}/${name}/objects`, { description: 'x' })).status).toBe(400);

    const renamed = await call('admin', 'PUT', `${NS}/${name}/objects/CPU%20Limits`, { name: 'CPU Quota' });
    expect(renamed.status, renamed.text).toBe(200);
    expect(renamed.json.name).toBe('CPU Quota');
    expect(renamed.json.created_at).toBe(created.json.created_at);
    expect((await call('admin', 'GET', `${NS}/${name}/objects/CPU%20Limits`)).status).toBe(404);
    expect((await call('alice', 'GET', `${NS}/${name}/objects/CPU%20Quota`)).json.name).toBe('CPU Quota');

    const list = await call('alice', 'GET', `${NS}/${name}/objects`);
    expect((list.json.objects as Json[]).map((o) => o.name)).toEqual(['CPU Quota']);
    expect(list.json.schema).toBe('v2/schemas/metadefs/objects');

    expect((await call('admin', 'DELETE', `${NS}/${name}/objects/CPU%20Quota`)).status).toBe(204);
    expect((await call('admin', 'DELETE', `${NS}/${name}/objects/CPU%20Quota`)).status).toBe(404);
    expect((await call('alice', 'GET', `${NS}/${name}/objects`)).json.objects).toEqual([]);
  });

  it('manages property definitions like tempest does (a resource type name as the property name)', async () => {
    const types = await call('alice', 'GET', '/v2/metadefs/resource_types');
    const resourceName = (types.json.resource_types as Json[])[0]?.name as string;
    const name = await createNamespace();
    const assoc = await call('admin', 'POST', `${NS}/${name}/resource_types`, { name: resourceName });
    expect(assoc.status, assoc.text).toBe(201);
    const enumValues = ['xen', 'qemu', 'kvm'];
    const created = await call('admin', 'POST', `${NS}/${name}/properties`, {
      name: resourceName,
      title: 'Property',
      type: 'string',
      enum: enumValues,
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json).toEqual({ name: resourceName, title: 'Property', type: 'string', enum: enumValues });
    const path = `${NS}/${name}/properties/${encodeURIComponent(resourceName)}`;
    expect((await call('alice', 'GET', path)).json.name).toBe(resourceName);
    const updated = await call('admin', 'PUT', path, {
      name: resourceName,
      title: 'Updated',
      type: 'string',
    });
    expect(updated.status).toBe(200);
    expect(updated.json.title).toBe('Updated');
    const listed = await call('alice', 'GET', `${NS}/${name}/properties`);
    expect(listed.json.properties).toEqual({ [resourceName]: { title: 'Updated', type: 'string' } });
    expect(
      (await call('admin', 'POST', `${NS}/${name}/properties`, { name: 'x', type: 'string' })).status,
    ).toBe(400);
    expect(
      (await call('admin', 'POST', `${NS}/${name}/properties`, { name: 'x', title: 'X', type: 'date' }))
        .status,
    ).toBe(400);
    expect((await call('admin', 'DELETE', path)).status).toBe(204);
    expect((await call('alice', 'GET', `${NS}/${name}/properties`)).json.properties).toEqual({});
  });

  it('applies a resource type prefix when asked (show with resource_type)', async () => {
    const name = await createNamespace({
      resource_type_associations: [{ name: 'OS::Nova::Flavor', prefix: 'hw:' }],
      properties: { cpu_policy: { title: 'CPU policy', type: 'string' } },
    });
    const shown = await call('alice', 'GET', `${NS}/${name}?resource_type=OS::Nova::Flavor`);
    expect(Object.keys(shown.json.properties as Json)).toEqual(['hw:cpu_policy']);
    const prop = await call(
      'alice',
      'GET',
      `${NS}/${name}/properties/hw:cpu_policy?resource_type=OS::Nova::Flavor`,
    );
    expect(prop.status).toBe(200);
    expect(prop.json.name).toBe('cpu_policy');
    expect(
      (await call('alice', 'GET', `${NS}/${name}/properties/cpu_policy?resource_type=OS::Nova::Flavor`))
        .status,
    ).toBe(404);
  });

  it('creates tags in bulk (replacing, or appending), singly, renames and deletes them', async () => {
    const name = await createNamespace();
    const bulk = await call('admin', 'POST', `${NS}/${name}/tags`, {
      tags: [{ name: 'sample-tag1' }, { name: 'sample-tag2' }, { name: 'sample-tag3' }],
    });
    expect(bulk.status, bulk.text).toBe(201);
    expect(bulk.json.tags).toHaveLength(3);
    let list = await call('alice', 'GET', `${NS}/${name}/tags`);
    expect((list.json.tags as Json[]).map((tag) => tag.name).sort()).toEqual([
      'sample-tag1',
      'sample-tag2',
      'sample-tag3',
    ]);
    // Without X-Openstack-Append the body replaces the tags; with it, they are added.
    await call('admin', 'POST', `${NS}/${name}/tags`, { tags: [{ name: 'only' }] });
    list = await call('alice', 'GET', `${NS}/${name}/tags`);
    expect((list.json.tags as Json[]).map((tag) => tag.name)).toEqual(['only']);
    const appended = await call(
      'admin',
      'POST',
      `${NS}/${name}/tags`,
      { tags: [{ name: 'more' }] },
      {
        'x-openstack-append': 'true',
      },
    );
    expect(appended.status).toBe(201);
    const clash = await call(
      'admin',
      'POST',
      `${NS}/${name}/tags`,
      { tags: [{ name: 'ONLY' }] },
      {
        'x-openstack-append': 'true',
      },
    );
    expect(clash.status).toBe(409);
    expect(
      (await call('admin', 'POST', `${NS}/${name}/tags`, { tags: [{ name: 'a' }, { name: 'A' }] })).status,
    ).toBe(409);

    const single = await call('admin', 'POST', `${NS}/${name}/tags/tag_name`);
    expect(single.status, single.text).toBe(201);
    expect(single.json.name).toBe('tag_name');
    expect((await call('admin', 'POST', `${NS}/${name}/tags/Tag_Name`)).status).toBe(409);
    expect((await call('alice', 'GET', `${NS}/${name}/tags/TAG_NAME`)).json.name).toBe('tag_name');
    const renamed = await call('admin', 'PUT', `${NS}/${name}/tags/tag_name`, { name: 'update-tag' });
    expect(renamed.status).toBe(200);
    expect(renamed.json.name).toBe('update-tag');
    expect((await call('admin', 'PUT', `${NS}/${name}/tags/update-tag`, { name: 'more' })).status).toBe(409);
    expect((await call('admin', 'DELETE', `${NS}/${name}/tags/update-tag`)).status).toBe(204);
    expect((await call('admin', 'GET', `${NS}/${name}/tags/update-tag`)).status).toBe(404);

    // Paged listing.
    const page = await call('alice', 'GET', `${NS}/${name}/tags?sort_key=name&sort_dir=asc&limit=1`);
    expect((page.json.tags as Json[]).map((tag) => tag.name)).toEqual(['more']);

    expect((await call('admin', 'DELETE', `${NS}/${name}/tags`)).status).toBe(204);
    expect((await call('alice', 'GET', `${NS}/${name}/tags`)).json.tags).toEqual([]);
  });

  it('keeps what a protected namespace holds (403) until it is unprotected', async () => {
    const name = await createNamespace({
      protected: true,
      resource_type_associations: [{ name: 'OS::Glance::Image' }],
      objects: [{ name: 'obj' }],
      properties: { prop: { title: 'Prop', type: 'string' } },
      tags: [{ name: 'tag' }],
    });
    const refusals: Array<[string, string]> = [
      [`${NS}/${name}/objects/obj`, 'Metadata definition object obj is protected and cannot be deleted.'],
      [
        `${NS}/${name}/properties/prop`,
        'Metadata definition property prop is protected and cannot be deleted.',
      ],
      [`${NS}/${name}/tags/tag`, 'Metadata definition tag tag is protected and cannot be deleted.'],
      [`${NS}/${name}/objects`, `Metadata definition namespace ${name} is protected and cannot be deleted.`],
      [
        `${NS}/${name}/properties`,
        `Metadata definition namespace ${name} is protected and cannot be deleted.`,
      ],
      [`${NS}/${name}/tags`, `Metadata definition namespace ${name} is protected and cannot be deleted.`],
      [
        `${NS}/${name}/resource_types/OS::Glance::Image`,
        'Metadata definition resource-type-association OS::Glance::Image is protected and cannot be deleted.',
      ],
    ];
    for (const [path, message] of refusals) {
      const out = await call('admin', 'DELETE', path);
      expect(out.status, path).toBe(403);
      expect(out.json.message).toBe(message);
    }
    const shown = await call('admin', 'GET', `${NS}/${name}`);
    expect(shown.json).toMatchObject({
      objects: [expect.objectContaining({ name: 'obj' })],
      properties: { prop: { title: 'Prop', type: 'string' } },
      tags: [{ name: 'tag' }],
      resource_type_associations: [expect.objectContaining({ name: 'OS::Glance::Image' })],
    });
    await call('admin', 'PUT', `${NS}/${name}`, { namespace: name, protected: false, visibility: 'public' });
    expect((await call('admin', 'DELETE', `${NS}/${name}/objects/obj`)).status).toBe(204);
    expect((await call('admin', 'DELETE', `${NS}/${name}`)).status).toBe(204);
  });

  it('deleting a namespace removes everything it held from the table', async () => {
    const name = await createNamespace({ objects: [{ name: 'o1' }, { name: 'o2' }], tags: [{ name: 't' }] });
    const { Item } = await t.backend.clients.dynamo.send(
      new GetCommand({ TableName: serviceConfig().tableName, Key: metadefNamespaceKey(name) }),
    );
    const id = Item?.id as string;
    expect((await call('admin', 'DELETE', `${NS}/${name}`)).status).toBe(204);
    const left = await t.backend.clients.dynamo.send(
      new QueryCommand({
        TableName: serviceConfig().tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': `MDNSC#${id}` },
      }),
    );
    expect(left.Items).toEqual([]);
    // A new namespace of the same name starts empty.
    await createNamespace({ namespace: name });
    const shown = await call('admin', 'GET', `${NS}/${name}`);
    expect(shown.json).not.toHaveProperty('objects');
  });

  it('answers 404 for missing namespaces and children, also for names too long to store', async () => {
    const name = await createNamespace();
    const long = 'x'.repeat(3000);
    for (const path of [
      `${NS}/${long}`,
      `${NS}/${long}/objects`,
      `${NS}/${name}/objects/${long}`,
      `${NS}/${name}/properties/${long}`,
      `${NS}/${name}/tags/${long}`,
      `${NS}/nope/tags`,
    ]) {
      const out = await call('admin', 'GET', path);
      expect(out.status, path.slice(0, 80)).toBe(404);
    }
    expect((await call('admin', 'POST', `${NS}/${name}/tags/${'y'.repeat(256)}`)).status).toBe(400);
    expect((await call('admin', 'DELETE', `${NS}/${name}/resource_types/OS::Nope`)).status).toBe(404);
  });
});

describe('resource types', () => {
  it('lists the seeded types, associates (creating unknown types) and dissociates', async () => {
    const types = await call('alice', 'GET', '/v2/metadefs/resource_types');
    expect(types.status).toBe(200);
    const names = (types.json.resource_types as Json[]).map((r) => r.name);
    for (const seeded of HANGAR_METADEF_SEED.resourceTypes) expect(names).toContain(seeded);

    const name = await createNamespace();
    const created = await call('admin', 'POST', `${NS}/${name}/resource_types`, {
      name: 'OS::Hangar::Custom',
      prefix: 'custom_',
    });
    expect(created.status, created.text).toBe(201);
    expect(created.json).toMatchObject({ name: 'OS::Hangar::Custom', prefix: 'custom_' });
    expect(
      (await call('admin', 'POST', `${NS}/${name}/resource_types`, { name: 'OS::Hangar::Custom' })).status,
    ).toBe(409);
    const after = await call('alice', 'GET', '/v2/metadefs/resource_types');
    expect((after.json.resource_types as Json[]).map((r) => r.name)).toContain('OS::Hangar::Custom');
    const assocs = await call('alice', 'GET', `${NS}/${name}/resource_types`);
    expect((assocs.json.resource_type_associations as Json[]).map((a) => a.name)).toEqual([
      'OS::Hangar::Custom',
    ]);
    expect((await call('admin', 'DELETE', `${NS}/${name}/resource_types/OS::Hangar::Custom`)).status).toBe(
      204,
    );
    expect(
      (await call('alice', 'GET', `${NS}/${name}/resource_types`)).json.resource_type_associations,
    ).toEqual([]);
  });
});

describe('schemas', () => {
  it('serves every metadefs schema under its Glance name', async () => {
    const expected: Record<string, string> = {
      namespace: 'namespace',
      namespaces: 'namespaces',
      object: 'object',
      objects: 'objects',
      property: 'property',
      properties: 'properties',
      tag: 'tag',
      tags: 'tags',
      resource_type: 'resource_type_association',
      resource_types: 'resource_type_associations',
    };
    for (const [path, name] of Object.entries(expected)) {
      const out = await call('alice', 'GET', `/v2/schemas/metadefs/${path}`);
      expect(out.status, path).toBe(200);
      expect(out.json.name).toBe(name);
    }
    expect((await call('alice', 'GET', '/v2/schemas/metadefs/nope')).status).toBe(404);
    // The image schemas are still where they were.
    expect((await call('alice', 'GET', '/v2/schemas/image')).json.name).toBe('image');
  });
});

describe('seed catalogue', () => {
  it('offers the specification properties with their values at first start', async () => {
    const list = await call('bob', 'GET', `${NS}?resource_types=OS::Glance::Image&limit=100`);
    const names = (list.json.namespaces as Json[]).map((n) => n.namespace);
    expect(names).toEqual(expect.arrayContaining(['Hangar::OperatingSystem', 'Hangar::ComputeRequirements']));
    const os = await call('bob', 'GET', `${NS}/Hangar::OperatingSystem`);
    expect(os.json).toMatchObject({ visibility: 'public', protected: true });
    const properties = os.json.properties as Record<string, Json>;
    expect(properties.os_distro?.enum).toEqual(OS_DISTROS.map(([value]) => value));
    expect(properties.os_distro?.enum).toContain('ubuntu');
    expect(properties.os_version?.type).toBe('string');
    const compute = await call('bob', 'GET', `${NS}/Hangar::ComputeRequirements/properties`);
    expect(Object.keys(compute.json.properties as Json).sort()).toEqual([
      'architecture',
      'auto_disk_config',
      'hypervisor_type',
      'hypervisor_version_requires',
      'min_disk',
      'min_ram',
    ]);
    expect((compute.json.properties as Record<string, Json>).architecture?.enum).toContain('x86_64');
    expect((compute.json.properties as Record<string, Json>).hypervisor_type?.enum).toContain('kvm');
  });

  it('is written once: a repeated or concurrent seeding changes nothing, a deleted seed stays deleted', async () => {
    const table = serviceConfig().tableName;
    const before = await call('admin', 'GET', `${NS}/Hangar::ComputeRequirements`);
    expect(
      (
        await t.backend.clients.dynamo.send(
          new GetCommand({ TableName: table, Key: metadefSeedKey(HANGAR_METADEF_SEED.version) }),
        )
      ).Item,
    ).toBeDefined();

    // Lose the marker (as if a first start had crashed after the namespaces) and start twice at once.
    await t.backend.clients.dynamo.send(
      new DeleteCommand({ TableName: table, Key: metadefSeedKey(HANGAR_METADEF_SEED.version) }),
    );
    const fresh = () =>
      new MetadefsService(
        new DynamoMetadefRepository(t.backend.clients.dynamo, serviceConfig().tableName),
        HANGAR_METADEF_SEED,
      );
    await Promise.all([fresh().ensureSeeded(), fresh().ensureSeeded()]);
    const after = await call('admin', 'GET', `${NS}/Hangar::ComputeRequirements`);
    expect(after.json).toEqual(before.json);
    const all = ((await call('admin', 'GET', `${NS}?limit=1000`)).json.namespaces as Json[]).filter(
      (n) => n.namespace === 'Hangar::ComputeRequirements',
    );
    expect(all).toHaveLength(1);

    // An admin removes a seeded namespace: a later start does not bring it back.
    await call('admin', 'PUT', `${NS}/Hangar::OperatingSystem`, {
      namespace: 'Hangar::OperatingSystem',
      visibility: 'public',
      protected: false,
    });
    expect((await call('admin', 'DELETE', `${NS}/Hangar::OperatingSystem`)).status).toBe(204);
    await fresh().ensureSeeded();
    expect((await call('admin', 'GET', `${NS}/Hangar::OperatingSystem`)).status).toBe(404);
  });
});
