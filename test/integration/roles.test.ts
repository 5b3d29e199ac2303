/**
 * The role matrix of README.md ("Roles"), cell by cell, over HTTP against the real local backend.
 * Columns: a reader of the owning project (dave, projA), a member of it (alice, projA), a member
 * of another project (bob, projB), an admin, and a token of projA with no role Hangar knows
 * (oscar). Every cell starts from fresh records, so a write that is allowed in one column
 * cannot change what the next column meets; a refused write must leave the image as it was.
 *
 * The subject is normally one of alice's images, `shared` with projB (accepted), so bob can see
 * it: his refusals are then 403s, as Glance gives a caller that sees an image it may not change
 * (a caller that cannot see it gets 404).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Persona, startTestBackend, type TestBackend } from '../helpers/backend.ts';

type Column = 'reader' | 'member' | 'other' | 'admin' | 'none';
const COLUMNS: readonly Column[] = ['reader', 'member', 'other', 'admin', 'none'];
const PERSONA: Record<Column, Persona> = {
  reader: 'dave',
  member: 'alice',
  other: 'bob',
  admin: 'admin',
  none: 'oscar',
};

const HOST = 'h-roles';
const ARCH = 'arch-roles';
const BYTES = new TextEncoder().encode('a few bytes of disk');

interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
  body: any;
}

/** What a cell's fixture made: the ids the operation acts on. */
interface Fixture {
  image?: string;
  second?: string;
  ref?: string;
  instance?: string;
  publication?: string;
  build?: string;
}

interface Row {
  /** The row's name in README.md's matrix. */
  op: string;
  /** Status per column (for list rows, also how many items the caller sees). */
  expect: Record<Column, number | [number, number]>;
  /** Personas standing for the columns when the "own project" of the row is not projA. */
  personas?: Partial<Record<Column, Persona>>;
  setup: () => Promise<Fixture>;
  run: (persona: Persona, fixture: Fixture) => Promise<Reply>;
  /** What a list row counts in the answer. */
  count?: (body: Reply['body'], fixture: Fixture) => number;
}

describe('role matrix (Glance secure-RBAC defaults)', () => {
  let t: TestBackend;
  let serial = 0;
  const unique = (prefix: string) => `${prefix}${++serial}`;

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [HOST] });
    const registered = await call('host', 'PUT', `/v1/hosts/${HOST}`, {
      vcpus: 512,
      ram_mb: 1_048_576,
      disk_gb: 100_000,
      architecture: ARCH,
      hypervisor_type: 'qemu',
      hypervisor_version: 9_000_000,
    });
    expect(registered.status, JSON.stringify(registered.body)).toBe(200);
  });
  afterAll(async () => {
    await t?.stop();
  });

  async function call(
    who: Persona | 'host',
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<Reply> {
    const token = who === 'host' ? (t.hostTokens[HOST] ?? '') : t.tokens[who];
    const raw = body instanceof Uint8Array;
    const response = await t.request(method, path, {
      token,
      headers: {
        accept: 'application/json',
        ...(raw ? { 'content-type': 'application/octet-stream' } : {}),
        ...headers,
      },
      ...(body === undefined ? {} : { body: body as object }),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Image data, or an HTML error page: kept as text.
    }
    return { status: response.status, body: parsed };
  }

  async function ok(reply: Promise<Reply>, status: number): Promise<Reply> {
    const done = await reply;
    expect(done.status, JSON.stringify(done.body)).toBe(status);
    return done;
  }

  const patch = (persona: Persona, id: string, ops: unknown) =>
    call(persona, 'PATCH', `/v2/images/${id}`, JSON.stringify(ops), {
      'content-type': 'application/openstack-images-v2.1-json-patch',
    });

  // ---------------------------------------------------------------------------------------------
  // Fixtures

  interface ImageOptions {
    owner?: Persona;
    /** The project it is shared with (accepted); none: private. */
    sharedWith?: { project: string; persona: Persona } | null;
    data?: boolean;
    deactivated?: boolean;
    staged?: boolean;
    architecture?: string;
  }

  async function image(options: ImageOptions = {}): Promise<string> {
    const owner = options.owner ?? 'alice';
    const sharedWith =
      options.sharedWith === undefined ? { project: 'projB', persona: 'bob' as Persona } : options.sharedWith;
    const created = await ok(
      call(owner, 'POST', '/v2/images', {
        name: unique('img'),
        disk_format: 'raw',
        container_format: 'bare',
        visibility: sharedWith ? 'shared' : 'private',
        tags: ['keep'],
        ...(options.architecture ? { architecture: options.architecture } : {}),
      }),
      201,
    );
    const id: string = created.body.id;
    if (sharedWith) {
      await ok(call(owner, 'POST', `/v2/images/${id}/members`, { member: sharedWith.project }), 200);
      await ok(
        call(sharedWith.persona, 'PUT', `/v2/images/${id}/members/${sharedWith.project}`, {
          status: 'accepted',
        }),
        200,
      );
    }
    if (options.data) await ok(call(owner, 'PUT', `/v2/images/${id}/file`, BYTES), 204);
    if (options.deactivated) await ok(call(owner, 'POST', `/v2/images/${id}/actions/deactivate`), 204);
    if (options.staged) await ok(call(owner, 'PUT', `/v2/images/${id}/stage`, BYTES), 204);
    return id;
  }

  /** A reference of projA (name:v1) pointing to one of alice's active images; `second` is another. */
  async function reference(): Promise<Fixture> {
    const first = await image({ data: true, sharedWith: null });
    const second = await image({ data: true, sharedWith: null });
    const ref = `${unique('app')}:v1`;
    await ok(call('alice', 'POST', '/v1/references', { reference: ref, image_id: first }), 201);
    return { image: first, second, ref };
  }

  const buildBody = (f: Fixture) => ({
    base: f.image,
    recipe: { user_data: '#!/bin/sh\npoweroff -f\n' },
    target: f.ref,
    namespace: 'projA',
  });
  /** A build of alice's (here it fails at Begin Build: its base has not the host's architecture). */
  async function aliceBuild(): Promise<Fixture> {
    const fixture = { image: await image({ data: true }), ref: `${unique('built')}:1` };
    const started = await ok(call('alice', 'POST', '/v1/builds', buildBody(fixture)), 202);
    return { ...fixture, build: started.body.id };
  }

  /** One of alice's instances, built (Running), on the matrix's host. */
  async function runningInstance(): Promise<Fixture> {
    const source = await image({ data: true, sharedWith: null, architecture: ARCH });
    const created = await ok(
      call('alice', 'POST', '/v1/instances', {
        name: unique('vm'),
        image: source,
        vcpus: 1,
        ram_mb: 64,
        disk_gb: 1,
      }),
      202,
    );
    const id: string = created.body.id;
    // The host runs every job it has (other cells' builds included) until this one is built; a
    // heartbeat keeps it from counting as lost (a destroy on a lost host is immediate).
    await ok(call('host', 'POST', `/v1/hosts/${HOST}/heartbeat`), 204);
    for (let round = 0; round < 50; round++) {
      const claimed = await call('host', 'POST', `/v1/hosts/${HOST}/jobs/claim`, { lease_seconds: 60 });
      if (claimed.status === 200) {
        const job = claimed.body.job;
        await ok(
          call('host', 'POST', `/v1/jobs/${job.id}/complete`, { lease_token: job.lease_token, result: {} }),
          204,
        );
        continue;
      }
      const shown = await ok(call('alice', 'GET', `/v1/instances/${id}`), 200);
      if (shown.body.stage === 'Running' && !shown.body.pending_action)
        return { image: source, instance: id };
    }
    throw new Error(`instance ${id} never ran`);
  }

  const ns = '?namespace=projA';

  // ---------------------------------------------------------------------------------------------
  // The matrix (README.md, "Roles"): one row per operation.

  const ROWS: Row[] = [
    // Images API
    {
      op: 'list images',
      expect: { reader: 200, member: 200, other: 200, admin: 200, none: 403 },
      setup: async () => ({}),
      run: (p) => call(p, 'GET', '/v2/images'),
    },
    {
      op: 'show a private image',
      expect: { reader: 200, member: 200, other: 404, admin: 200, none: 404 },
      setup: async () => ({ image: await image({ sharedWith: null }) }),
      run: (p, f) => call(p, 'GET', `/v2/images/${f.image}`),
    },
    {
      op: 'create an image (owned by projA)',
      expect: { reader: 403, member: 201, other: 403, admin: 201, none: 403 },
      setup: async () => ({}),
      run: (p) =>
        call(p, 'POST', '/v2/images', {
          name: unique('new'),
          owner: 'projA',
          disk_format: 'raw',
          container_format: 'bare',
        }),
    },
    {
      op: 'update (PATCH)',
      expect: { reader: 403, member: 200, other: 403, admin: 200, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => patch(p, f.image ?? '', [{ op: 'replace', path: '/name', value: 'renamed' }]),
    },
    {
      op: 'delete',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'DELETE', `/v2/images/${f.image}`),
    },
    {
      op: 'add a tag',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'PUT', `/v2/images/${f.image}/tags/extra`),
    },
    {
      op: 'remove a tag',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'DELETE', `/v2/images/${f.image}/tags/keep`),
    },
    {
      op: 'upload data',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'PUT', `/v2/images/${f.image}/file`, BYTES),
    },
    {
      op: 'download data',
      expect: { reader: 403, member: 200, other: 200, admin: 200, none: 404 },
      setup: async () => ({ image: await image({ data: true }) }),
      run: (p, f) => call(p, 'GET', `/v2/images/${f.image}/file`),
    },
    {
      op: 'deactivate',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image({ data: true }) }),
      run: (p, f) => call(p, 'POST', `/v2/images/${f.image}/actions/deactivate`),
    },
    {
      op: 'reactivate',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image({ data: true, deactivated: true }) }),
      run: (p, f) => call(p, 'POST', `/v2/images/${f.image}/actions/reactivate`),
    },
    {
      op: 'stage data (import)',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'PUT', `/v2/images/${f.image}/stage`, BYTES),
    },
    {
      op: 'import (glance-direct)',
      expect: { reader: 403, member: 202, other: 403, admin: 202, none: 404 },
      setup: async () => ({ image: await image({ staged: true }) }),
      run: (p, f) => call(p, 'POST', `/v2/images/${f.image}/import`, { method: { name: 'glance-direct' } }),
    },
    {
      op: 'start a multipart upload',
      expect: { reader: 403, member: 201, other: 403, admin: 201, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'POST', `/v2/images/${f.image}/multipart-upload`, { size: BYTES.length }),
    },
    {
      op: 'share: add a member',
      expect: { reader: 403, member: 200, other: 403, admin: 200, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'POST', `/v2/images/${f.image}/members`, { member: 'projC' }),
    },
    {
      // Shared with projB (accepted) and projC (pending): producers see both, a consumer itself.
      op: 'list members (count seen)',
      expect: { reader: [200, 2], member: [200, 2], other: [200, 1], admin: [200, 2], none: 404 },
      setup: async () => {
        const id = await image();
        await ok(call('alice', 'POST', `/v2/images/${id}/members`, { member: 'projC' }), 200);
        return { image: id };
      },
      run: (p, f) => call(p, 'GET', `/v2/images/${f.image}/members`),
      count: (body) => body.members.length,
    },
    {
      op: 'share: remove a member',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 404 },
      setup: async () => ({ image: await image() }),
      run: (p, f) => call(p, 'DELETE', `/v2/images/${f.image}/members/projB`),
    },
    {
      // Here the own project is the consumer's: bob's image is offered to projA.
      op: "accept or reject a share (the consumer's project)",
      expect: { reader: 403, member: 200, other: 403, admin: 200, none: 404 },
      setup: async () => ({
        image: await image({ owner: 'bob', sharedWith: { project: 'projA', persona: 'alice' } }),
      }),
      run: (p, f) => call(p, 'PUT', `/v2/images/${f.image}/members/projA`, { status: 'rejected' }),
    },
    {
      op: 'tasks API (GET /v2/tasks)',
      expect: { reader: 403, member: 403, other: 403, admin: 200, none: 403 },
      setup: async () => ({}),
      run: (p) => call(p, 'GET', '/v2/tasks'),
    },
    // References, retention, publishing (in projA's namespace)
    {
      op: 'create a reference',
      expect: { reader: 403, member: 201, other: 403, admin: 201, none: 403 },
      setup: async () => ({ image: await image({ data: true, sharedWith: null }) }),
      run: (p, f) =>
        call(p, 'POST', '/v1/references', {
          reference: `${unique('new')}:v1`,
          image_id: f.image,
          namespace: 'projA',
        }),
    },
    {
      op: 'show / resolve a reference',
      expect: { reader: 200, member: 200, other: 404, admin: 200, none: 404 },
      setup: reference,
      run: (p, f) => call(p, 'GET', `/v1/references/${f.ref}${ns}`),
    },
    {
      op: 'list references (count seen)',
      expect: { reader: [200, 1], member: [200, 1], other: [200, 0], admin: [200, 1], none: [200, 0] },
      setup: reference,
      run: (p, f) => call(p, 'GET', `/v1/references${ns}&name=${f.ref?.split(':')[0]}`),
      count: (body) => body.references.length,
    },
    {
      op: 'reference history',
      expect: { reader: 200, member: 200, other: 404, admin: 200, none: 404 },
      setup: reference,
      run: (p, f) => call(p, 'GET', `/v1/references/${f.ref}/history${ns}`),
    },
    {
      op: 'move a reference',
      expect: { reader: 403, member: 200, other: 403, admin: 200, none: 403 },
      setup: reference,
      run: (p, f) => call(p, 'POST', `/v1/references/${f.ref}/move${ns}`, { image_id: f.second }),
    },
    {
      op: 'roll a reference back',
      expect: { reader: 403, member: 200, other: 403, admin: 200, none: 403 },
      setup: async () => {
        const fixture = await reference();
        await ok(
          call('alice', 'POST', `/v1/references/${fixture.ref}/move`, { image_id: fixture.second }),
          200,
        );
        return fixture;
      },
      run: (p, f) => call(p, 'POST', `/v1/references/${f.ref}/rollback${ns}`, {}),
    },
    {
      op: 'delete a reference',
      expect: { reader: 403, member: 204, other: 403, admin: 204, none: 403 },
      setup: reference,
      run: (p, f) => call(p, 'DELETE', `/v1/references/${f.ref}${ns}`),
    },
    {
      op: 'set a retention policy',
      expect: { reader: 403, member: 200, other: 403, admin: 200, none: 403 },
      setup: reference,
      run: (p, f) =>
        call(p, 'PUT', `/v1/names/${f.ref?.split(':')[0]}/retention${ns}`, { keep: 2, grace_seconds: 60 }),
    },
    {
      op: 'show a retention policy',
      expect: { reader: 200, member: 200, other: 404, admin: 200, none: 404 },
      setup: async () => {
        const fixture = await reference();
        const name = fixture.ref?.split(':')[0];
        await ok(call('alice', 'PUT', `/v1/names/${name}/retention`, { keep: 2, grace_seconds: 60 }), 200);
        return fixture;
      },
      run: (p, f) => call(p, 'GET', `/v1/names/${f.ref?.split(':')[0]}/retention${ns}`),
    },
    {
      op: 'apply retention now',
      expect: { reader: 403, member: 200, other: 403, admin: 200, none: 403 },
      setup: reference,
      run: (p, f) => call(p, 'POST', `/v1/names/${f.ref?.split(':')[0]}/retention/apply${ns}`, {}),
    },
    {
      op: 'publish',
      expect: { reader: 403, member: 202, other: 403, admin: 202, none: 403 },
      setup: reference,
      run: (p, f) => call(p, 'POST', `/v1/references/${f.ref}/publish${ns}`, { image_id: f.second }),
    },
    {
      op: 'show a publication',
      expect: { reader: 200, member: 200, other: 404, admin: 200, none: 404 },
      setup: async () => {
        const fixture = await reference();
        const started = await ok(
          call('alice', 'POST', `/v1/references/${fixture.ref}/publish`, { image_id: fixture.second }),
          202,
        );
        return { ...fixture, publication: started.body.id };
      },
      run: (p, f) => call(p, 'GET', `/v1/publications/${f.publication}`),
    },
    // Builds: the build is the caller's project's; its target is named in projA's namespace.
    {
      op: 'create a build',
      expect: { reader: 403, member: 202, other: 403, admin: 202, none: 403 },
      setup: async () => ({ image: await image({ data: true }), ref: `${unique('built')}:1` }),
      run: (p, f) => call(p, 'POST', '/v1/builds', buildBody(f)),
    },
    {
      op: 'show a build',
      expect: { reader: 200, member: 200, other: 404, admin: 200, none: 404 },
      setup: aliceBuild,
      run: (p, f) => call(p, 'GET', `/v1/builds/${f.build}`),
    },
    {
      op: 'list builds of a target (sees it)',
      expect: { reader: [200, 1], member: [200, 1], other: [200, 0], admin: [200, 1], none: [200, 0] },
      setup: aliceBuild,
      run: (p, f) => call(p, 'GET', `/v1/builds?target=${f.ref}&namespace=projA`),
      count: (body, f) => body.builds.filter((b: { id: string }) => b.id === f.build).length,
    },
    // Instances
    {
      // Instances are always created in the caller's own project: bob's column is his own
      // project's, from an image shared with it.
      op: 'create an instance',
      expect: { reader: 403, member: 202, other: 202, admin: 202, none: 403 },
      setup: async () => ({ image: await image({ data: true, architecture: ARCH }) }),
      run: (p, f) =>
        call(p, 'POST', '/v1/instances', {
          name: unique('vm'),
          image: f.image,
          vcpus: 1,
          ram_mb: 64,
          disk_gb: 1,
        }),
    },
    {
      op: 'show an instance',
      expect: { reader: 200, member: 200, other: 404, admin: 200, none: 404 },
      setup: runningInstance,
      run: (p, f) => call(p, 'GET', `/v1/instances/${f.instance}`),
    },
    {
      op: 'list instances (sees it)',
      expect: { reader: [200, 1], member: [200, 1], other: [200, 0], admin: [200, 1], none: 403 },
      setup: runningInstance,
      run: (p) => call(p, 'GET', '/v1/instances?limit=1000'),
      count: (body, f) => body.instances.filter((i: { id: string }) => i.id === f.instance).length,
    },
    {
      op: 'instance action (stop)',
      expect: { reader: 403, member: 202, other: 404, admin: 202, none: 404 },
      setup: runningInstance,
      run: (p, f) => call(p, 'POST', `/v1/instances/${f.instance}/actions/stop`),
    },
    {
      op: 'destroy an instance',
      expect: { reader: 403, member: 202, other: 404, admin: 202, none: 404 },
      setup: runningInstance,
      run: (p, f) => call(p, 'POST', `/v1/instances/${f.instance}/actions/destroy`),
    },
  ];

  it.each(ROWS.map((row) => [row.op, row] as const))('%s', async (_op, row) => {
    for (const column of COLUMNS) {
      const persona = row.personas?.[column] ?? PERSONA[column];
      const fixture = await row.setup();
      const before = fixture.image
        ? (await ok(call('admin', 'GET', `/v2/images/${fixture.image}`), 200)).body
        : null;
      const reply = await row.run(persona, fixture);
      const wanted = row.expect[column];
      const [status, count] = Array.isArray(wanted) ? wanted : [wanted, undefined];
      const where = `${row.op}, ${column} (${persona}): ${JSON.stringify(reply.body)}`;
      expect(reply.status, where).toBe(status);
      if (count !== undefined) expect(row.count?.(reply.body, fixture), where).toBe(count);
      if (status >= 400 && before) {
        // A refused request changed nothing.
        const after = await call('admin', 'GET', `/v2/images/${fixture.image}`);
        expect(after.body, where).toEqual(before);
      }
    }
  });

  it('answers a reader that writes with the reason, as Glance does', async () => {
    const created = await call('dave', 'POST', '/v2/images', { name: 'nope' });
    expect(created.status).toBe(403);
    expect(JSON.stringify(created.body)).toContain('You are not authorized to complete add_image action.');
    const own = await image({ sharedWith: null });
    const renamed = await patch('dave', own, [{ op: 'replace', path: '/name', value: 'x' }]);
    expect(renamed.status).toBe(403);
    expect(JSON.stringify(renamed.body)).toContain(`You are not permitted to modify image ${own}.`);
    const ref = await call('dave', 'POST', '/v1/references', { reference: 'x:y', image_id: own });
    expect(JSON.stringify(ref.body)).toContain('Only members of project projA may change its references');
  });
});
