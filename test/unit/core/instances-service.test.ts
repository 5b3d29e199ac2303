/** InstancesService and HostsService over an in-memory InstanceStore. */
import { describe, expect, it } from 'vitest';
import type { ImageRecord } from '#core/images/image';
import { HostsService, type InstancesDeps, InstancesService } from '#core/instances/instances-service';
import { newInstance } from '#core/instances/lifecycle';
import type { HostRegistration, InstanceRecord } from '#core/instances/records';
import { HangarError, StaleWriteError } from '#core/kernel/errors';
import { makePrincipal } from '#core/kernel/principal';
import { STALE_RETRY_BUDGET_MS } from '#core/kernel/retry';
import {
  FakeImageLookup,
  FakeInstanceStore,
  FakeTaskTokenNotifier,
  type WriteMethod,
} from '../../helpers/fakes/instances.ts';
import { alice, bob, makeActiveImage, NOW } from './fixtures.ts';

const IMAGE = makeActiveImage();
const REGISTRATION: HostRegistration = {
  vcpus: 4,
  ram_mb: 4096,
  disk_gb: 40,
  architecture: 'x86_64',
  hypervisor_type: 'qemu',
  hypervisor_version: 9_000_000,
};
const REQUEST = { name: 'Web 1', image: IMAGE.id, vcpus: 1, ram_mb: 1024, disk_gb: 10 };
const hostToken = (id: string) => makePrincipal('hosts', id, ['host']);
const h1 = hostToken('h1');

function setup(...images: ImageRecord[]) {
  const store = new FakeInstanceStore();
  const lookup = new FakeImageLookup(...(images.length > 0 ? images : [IMAGE]));
  const gates = new FakeTaskTokenNotifier();
  let ids = 0;
  const clock = { now: NOW };
  // The lost-race retries back off on a virtual clock of their own: no test waits for real.
  const retries = { ms: 0, sleeps: [] as number[] };
  const deps: InstancesDeps = {
    store,
    images: lookup,
    hostTimeoutSeconds: 180,
    newId: () => `00000000-0000-4000-8000-${String(++ids).padStart(12, '0')}`,
    newToken: () => `token-${++ids}`,
    gates,
    clock: () => clock.now,
    retry: {
      now: () => retries.ms,
      sleep: async (ms) => {
        retries.ms += ms;
        retries.sleeps.push(ms);
      },
      random: () => 0.5,
    },
  };
  return {
    store,
    lookup,
    gates,
    clock,
    retries,
    instances: new InstancesService(deps),
    hosts: new HostsService(deps),
  };
}
type World = ReturnType<typeof setup>;

async function failure(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof HangarError) return { kind: error.kind, message: error.message };
    throw error;
  }
  throw new Error('expected the call to fail');
}

/**
 * Runs `call` while every write of `method` loses its race: it must keep re-reading and retrying
 * (one write after each backoff) until the whole retry budget is spent, then answer a 503 whose
 * cause is the last lost race.
 */
async function exhausted(
  world: World,
  method: WriteMethod,
  call: () => Promise<unknown>,
): Promise<{ kind: string; message: string }> {
  world.store.failWrites(method, Number.POSITIVE_INFINITY);
  world.retries.sleeps.length = 0;
  const before = world.store.attempts[method];
  const error = await call().then(
    () => new Error('expected the call to fail'),
    (caught: unknown) => caught,
  );
  world.store.failWrites(method, 0);
  const writes = world.store.attempts[method] - before;
  expect(world.retries.sleeps.reduce((sum, ms) => sum + ms, 0)).toBe(STALE_RETRY_BUDGET_MS);
  expect(writes).toBe(world.retries.sleeps.length + 1);
  expect(writes).toBeGreaterThan(30);
  if (!(error instanceof HangarError)) throw error;
  expect(error.cause).toBeInstanceOf(StaleWriteError);
  return { kind: error.kind, message: error.message };
}

async function withHosts(world: World, ...specs: Array<[string, Partial<HostRegistration>]>) {
  for (const [id, overrides] of specs)
    await world.hosts.register(hostToken(id), id, { ...REGISTRATION, ...overrides });
}

/** A Running instance on h1 (its build claimed and completed by the agent). */
async function running(world: World, request: Record<string, unknown> = REQUEST): Promise<InstanceRecord> {
  const built = await world.instances.create(alice, request);
  const claimed = await world.hosts.claim(h1, 'h1', {});
  if (!claimed) throw new Error('nothing to claim');
  await world.hosts.complete(h1, claimed.job.id, { lease_token: claimed.job.lease_token });
  return world.store.instance(built.id);
}

describe('InstancesService.create', () => {
  it('places the instance on the host with the most free RAM, with its build job pending', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}], ['h2', { ram_mb: 8192 }]);
    const instance = await world.instances.create(alice, REQUEST);
    expect(instance).toMatchObject({ host_id: 'h2', stage: 'Building', project: 'projA', version: 1 });
    expect(world.store.instance(instance.id)).toEqual(instance);
    const jobId = instance.pending_job?.id as string;
    expect(world.store.job(jobId)).toMatchObject({ kind: 'build', status: 'pending', host_id: 'h2' });
    expect(world.store.host('h2')).toMatchObject({ used_vcpus: 1, used_ram_mb: 1024, used_disk_gb: 10 });
  });

  it('resolves a name:tag reference to its image', async () => {
    const world = setup();
    world.lookup.references.set('debian:12', IMAGE.id);
    await withHosts(world, ['h1', {}]);
    expect((await world.instances.create(alice, { ...REQUEST, image: 'debian:12' })).image.id).toBe(IMAGE.id);
  });

  it('refuses when no host can take it, an unknown image, bad bodies and callers who may not', async () => {
    const world = setup();
    expect(await failure(world.instances.create(alice, REQUEST))).toEqual({
      kind: 'conflict',
      message: 'No host can take it: no hosts are registered',
    });
    await withHosts(world, ['h1', {}]);
    expect((await failure(world.instances.create(alice, { ...REQUEST, ram_mb: 8192 }))).message).toMatch(
      /^No host can take it: host h1: no room: 4096 of 4096 MB RAM free/,
    );
    expect(await failure(world.instances.create(alice, { ...REQUEST, image: 'nope:1' }))).toEqual({
      kind: 'bad_request',
      message: 'Reference nope:1 not found.',
    });
    expect((await failure(world.instances.create(alice, { ...REQUEST, colour: 'red' }))).kind).toBe(
      'bad_request',
    );
    expect((await failure(world.instances.create(h1, REQUEST))).kind).toBe('forbidden');
    const reader = makePrincipal('projA', 'ro', ['reader']);
    expect((await failure(world.instances.create(reader, REQUEST))).kind).toBe('forbidden');
    expect(world.store.instances.size).toBe(0);
  });

  it('places again on fresh reads when another create took the room first', async () => {
    const world = setup();
    await withHosts(world, ['h1', { ram_mb: 8192 }], ['h2', {}]);
    // A concurrent create fills h1 between the placement and the write.
    world.store.interfere('createInstance', (store) => {
      const host = store.hosts.get('h1');
      if (host) host.used_ram_mb = 8192;
    });
    const instance = await world.instances.create(alice, REQUEST);
    expect(instance.host_id).toBe('h2');
    expect(world.store.attempts.createInstance).toBe(2);
    expect(world.store.host('h2').used_ram_mb).toBe(1024);
  });

  it('retries after a transaction conflict, and gives up with a 503 once the retry budget is spent', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    world.store.failWrites('createInstance', 1);
    expect((await world.instances.create(alice, REQUEST)).stage).toBe('Building');
    expect(world.store.attempts.createInstance).toBe(2);

    expect(await exhausted(world, 'createInstance', () => world.instances.create(alice, REQUEST))).toEqual({
      kind: 'unavailable',
      message: 'Too many concurrent requests for the same hosts; try again.',
    });
    expect(world.store.instances.size).toBe(1);
    expect(world.store.jobs.size).toBe(1);
    expect(world.store.host('h1').used_ram_mb).toBe(1024);
  });
});

describe('InstancesService.createGate (publish boot gates)', () => {
  it('creates once under the given id; a retried state with a new token hands it to the build', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const id = 'a1111111-1111-4111-8111-111111111111';
    const made = await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-1' });
    expect(made).toMatchObject({ id, gate_token: 'tok-1' });
    expect(await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-1' })).toEqual(made);

    world.store.failWrites('updateInstance', 1);
    const handed = await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-2' });
    expect(handed.gate_token).toBe('tok-2');
    expect(world.store.instances.size).toBe(1);

    // The build ends: the gate hears it, with the latest token.
    const claimed = await world.hosts.claim(h1, 'h1', {});
    await world.hosts.complete(h1, claimed?.job.id as string, { lease_token: claimed?.job.lease_token });
    expect(world.gates.answers).toMatchObject([{ token: 'tok-2', ok: true, output: { instance_id: id } }]);
  });

  it('hands the new token over on a fresh read when another write to the instance landed first', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const id = 'a3333333-3333-4333-8333-333333333333';
    const made = await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-1' });
    // The agent's console report bumps the version between this request's read and its write.
    world.store.interfere('updateInstance', (store) => {
      const stored = store.instances.get(id) as InstanceRecord;
      store.instances.set(id, { ...stored, console_log: 'booting', version: stored.version + 1 });
    });
    const handed = await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-2' });
    expect(handed).toMatchObject({ gate_token: 'tok-2', console_log: 'booting', version: made.version + 2 });
    expect(world.store.instance(id)).toEqual(handed);
    expect(world.store.attempts.updateInstance).toBe(2);
  });

  it('returns the instance another request made under the same id when that one wins the create', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const id = 'a4444444-4444-4444-8444-444444444444';
    const theirs = newInstance({
      id,
      request: REQUEST,
      image: IMAGE,
      principal: alice,
      host: world.store.host('h1'),
      buildJobId: 'b0000000-0000-4000-8000-000000000001',
      now: NOW,
      gateToken: 'tok-1',
    });
    // A retried step running twice at once: the other one's create lands between read and write.
    world.store.interfere('createInstance', (store) => {
      store.instances.set(id, structuredClone(theirs));
    });
    expect(await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-1' })).toEqual(theirs);
    expect(world.store.attempts.createInstance).toBe(1);
    expect(world.store.instances.size).toBe(1);
  });

  it('gives up with a 503 once the retry budget is spent, on the create and on the token handover', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const id = 'a5555555-5555-4555-8555-555555555555';
    expect(
      await exhausted(world, 'createInstance', () =>
        world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-1' }),
      ),
    ).toEqual({
      kind: 'unavailable',
      message: 'Too many concurrent requests for the same hosts; try again.',
    });
    expect(world.store.instances.size).toBe(0);

    const made = await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-1' });
    expect(
      await exhausted(world, 'updateInstance', () =>
        world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok-2' }),
      ),
    ).toEqual({ kind: 'unavailable', message: `Instance ${id} is changing too often; try again.` });
    expect(world.store.instance(id)).toEqual(made);
  });
});

describe('InstancesService.show, list and act', () => {
  it("shows and lists a project's instances, newest first, and hides them from other projects", async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const first = await world.instances.create(alice, REQUEST);
    world.clock.now = new Date(NOW.getTime() + 5000);
    const second = await world.instances.create(alice, { ...REQUEST, name: 'Web 2' });
    expect((await world.instances.list(alice, { limit: 10 })).map((i) => i.id)).toEqual([
      second.id,
      first.id,
    ]);
    expect(await world.instances.list(alice, { limit: 10, marker: second.id })).toEqual([first]);
    expect(await world.instances.list(bob, { limit: 10 })).toEqual([]);
    expect((await failure(world.instances.show(bob, first.id))).kind).toBe('not_found');
    expect((await failure(world.instances.list(bob, { limit: 10, marker: first.id }))).kind).toBe(
      'bad_request',
    );
  });

  it('queues the action job, and refuses while one is pending', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await running(world);
    const stopping = await world.instances.act(alice, instance.id, 'stop');
    expect(stopping.pending_job).toMatchObject({ kind: 'stop' });
    expect(world.store.job(stopping.pending_job?.id as string)).toMatchObject({
      kind: 'stop',
      status: 'pending',
    });
    expect(await failure(world.instances.act(alice, instance.id, 'reboot'))).toEqual({
      kind: 'conflict',
      message: `Instance ${instance.id} has a stop job pending; try again once it has finished.`,
    });
    expect((await failure(world.instances.act(bob, instance.id, 'stop'))).kind).toBe('not_found');
  });

  it('re-decides an action over a write that landed first, and retries a transaction conflict', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await running(world);
    // Another request's stop lands first: this one's stop is now refused on the fresh record.
    world.store.interfere('updateInstance', (store) => {
      const stored = store.instances.get(instance.id) as InstanceRecord;
      store.instances.set(instance.id, {
        ...stored,
        pending_job: { id: 'other-job', kind: 'stop' },
        version: stored.version + 1,
      });
    });
    expect((await failure(world.instances.act(alice, instance.id, 'sleep'))).message).toMatch(
      /has a stop job pending/,
    );

    const other = await running(world, { ...REQUEST, name: 'Web 2' });
    world.store.failWrites('updateInstance', 1);
    expect((await world.instances.act(alice, other.id, 'sleep')).pending_job?.kind).toBe('sleep');
  });

  it('gives up an action with a 503 once the retry budget is spent', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await running(world);
    const jobs = world.store.jobs.size;
    expect(
      await exhausted(world, 'updateInstance', () => world.instances.act(alice, instance.id, 'stop')),
    ).toEqual({
      kind: 'unavailable',
      message: `Instance ${instance.id} is changing too often; try again.`,
    });
    expect(world.store.instance(instance.id)).toEqual(instance);
    expect(world.store.jobs.size).toBe(jobs);
  });

  it('destroys at once on a lost host: capacity released, pending job abandoned, gate told', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const id = 'a2222222-2222-4222-8222-222222222222';
    const building = await world.instances.createGate(alice, REQUEST, { id, gateToken: 'tok' });
    world.clock.now = new Date(NOW.getTime() + 600_000);
    world.store.failWrites('destroyWithoutHost', 1);
    const destroyed = await world.instances.act(alice, id, 'destroy');
    expect(destroyed).toMatchObject({ stage: 'Inexistent', pending_job: null });
    expect(world.store.host('h1')).toMatchObject({ used_vcpus: 0, used_ram_mb: 0, used_disk_gb: 0 });
    expect(world.store.job(building.pending_job?.id as string).status).toBe('failed');
    expect(world.gates.answers).toMatchObject([{ token: 'tok', ok: false, error: 'BootFailed' }]);
  });

  it('destroys on a lost host over a claim that landed first, and gives up with a 503 once the budget is spent', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const building = await world.instances.create(alice, REQUEST);
    const buildJob = building.pending_job?.id as string;
    world.clock.now = new Date(NOW.getTime() + 600_000);
    const untouched = world.store.instance(building.id);
    expect(
      await exhausted(world, 'destroyWithoutHost', () => world.instances.act(alice, building.id, 'destroy')),
    ).toEqual({ kind: 'unavailable', message: `Instance ${building.id} is changing too often; try again.` });
    expect(world.store.instance(building.id)).toEqual(untouched);
    expect(world.store.host('h1').used_ram_mb).toBe(1024);

    // The host's last claim of the build lands between this request's reads and its write.
    world.store.interfere('destroyWithoutHost', (store) => {
      const job = store.job(buildJob);
      store.jobs.set(buildJob, { ...job, status: 'claimed', attempt: 1, version: job.version + 1 });
    });
    expect(await world.instances.act(alice, building.id, 'destroy')).toMatchObject({ stage: 'Inexistent' });
    expect(world.store.job(buildJob)).toMatchObject({ status: 'failed', attempt: 1 });
    expect(world.store.host('h1').used_ram_mb).toBe(0);
  });
});

describe('HostsService', () => {
  it('registers and heartbeats a host acting for itself only', async () => {
    const world = setup();
    const host = await world.hosts.register(h1, 'h1', REGISTRATION);
    expect(host).toMatchObject({ id: 'h1', used_vcpus: 0, heartbeat_at: NOW.toISOString() });
    await world.hosts.heartbeat(h1, 'h1');
    expect((await failure(world.hosts.heartbeat(hostToken('h9'), 'h9'))).kind).toBe('not_found');
    expect((await failure(world.hosts.register(h1, 'h2', REGISTRATION))).kind).toBe('forbidden');
    expect((await failure(world.hosts.list(alice))).kind).toBe('forbidden');
  });

  it('hands the oldest claimable job out once, leased, and nothing after', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await world.instances.create(alice, REQUEST);
    const claimed = await world.hosts.claim(h1, 'h1', { lease_seconds: 30 });
    expect(claimed?.instance.id).toBe(instance.id);
    expect(claimed?.job).toMatchObject({
      status: 'claimed',
      attempt: 1,
      lease_expires_at: new Date(NOW.getTime() + 30_000).toISOString(),
    });
    expect(await world.hosts.claim(h1, 'h1', {})).toBeNull();
  });

  it('moves on when another agent claimed the job first', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    await world.instances.create(alice, REQUEST);
    world.store.failWrites('claimJob', 1);
    expect(await world.hosts.claim(h1, 'h1', {})).toBeNull();
    expect((await world.hosts.claim(h1, 'h1', {}))?.job.status).toBe('claimed');
  });

  it('gives a job up after its lease expired five times, failing the build', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await world.instances.create(alice, REQUEST);
    for (let round = 0; round < 5; round++) {
      expect(await world.hosts.claim(h1, 'h1', { lease_seconds: 1 })).not.toBeNull();
      world.clock.now = new Date(world.clock.now.getTime() + 2000);
      await world.hosts.heartbeat(h1, 'h1');
    }
    expect(await world.hosts.claim(h1, 'h1', {})).toBeNull();
    expect(world.store.instance(instance.id)).toMatchObject({ stage: 'Error', pending_job: null });
  });

  it('leaves a job it gives up to a finisher that got there first, and gives it up on a later claim', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await world.instances.create(alice, REQUEST);
    for (let round = 0; round < 5; round++) {
      await world.hosts.claim(h1, 'h1', { lease_seconds: 1 });
      world.clock.now = new Date(world.clock.now.getTime() + 2000);
    }
    world.store.failWrites('finishJob', 1);
    expect(await world.hosts.claim(h1, 'h1', {})).toBeNull();
    expect(world.store.instance(instance.id)).toMatchObject({ stage: 'Building' });
    expect(await world.hosts.claim(h1, 'h1', {})).toBeNull();
    expect(world.store.instance(instance.id)).toMatchObject({ stage: 'Error', pending_job: null });
    expect(world.store.attempts.finishJob).toBe(2);
  });

  it('renews a lease for its holder; retries a lost race, gives up with a 503 once the budget is spent', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    await world.instances.create(alice, REQUEST);
    const claimed = await world.hosts.claim(h1, 'h1', { lease_seconds: 30 });
    const jobId = claimed?.job.id as string;
    const token = claimed?.job.lease_token;
    world.clock.now = new Date(NOW.getTime() + 10_000);
    world.store.failWrites('updateJob', 1);
    expect((await world.hosts.heartbeatJob(h1, jobId, { lease_token: token })).lease_expires_at).toBe(
      new Date(NOW.getTime() + 40_000).toISOString(),
    );
    // Another heartbeat of the same lease lands between this one's read and its write.
    const version = world.store.job(jobId).version;
    world.store.interfere('updateJob', (store) => {
      const stored = world.store.job(jobId);
      store.jobs.set(jobId, { ...stored, version: stored.version + 1 });
    });
    expect(await world.hosts.heartbeatJob(h1, jobId, { lease_token: token })).toMatchObject({
      version: version + 2,
      lease_expires_at: new Date(NOW.getTime() + 40_000).toISOString(),
    });
    expect(world.store.job(jobId).version).toBe(version + 2);
    expect((await failure(world.hosts.heartbeatJob(h1, jobId, { lease_token: 'stolen' }))).kind).toBe(
      'conflict',
    );
    const renewed = world.store.job(jobId);
    expect(
      await exhausted(world, 'updateJob', () => world.hosts.heartbeatJob(h1, jobId, { lease_token: token })),
    ).toEqual({ kind: 'unavailable', message: `Job ${jobId} is changing too often; try again.` });
    expect(world.store.job(jobId)).toEqual(renewed);
  });

  it('applies a completed build once (a repeat changes nothing) and a failed one as Error', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await world.instances.create(alice, REQUEST);
    const claimed = await world.hosts.claim(h1, 'h1', {});
    const body = {
      lease_token: claimed?.job.lease_token,
      result: { console_log: 'login:', domain_uuid: 'd-1' },
    };
    await world.hosts.complete(h1, claimed?.job.id as string, body);
    const done = world.store.instance(instance.id);
    expect(done).toMatchObject({
      stage: 'Running',
      pending_job: null,
      console_log: 'login:',
      domain_uuid: 'd-1',
    });
    await world.hosts.complete(h1, claimed?.job.id as string, body);
    expect(world.store.instance(instance.id)).toEqual(done);

    const other = await world.instances.create(alice, { ...REQUEST, name: 'Web 2' });
    const second = await world.hosts.claim(h1, 'h1', {});
    await world.hosts.fail(h1, second?.job.id as string, {
      lease_token: second?.job.lease_token,
      reason: 'no kvm',
    });
    expect(world.store.instance(other.id)).toMatchObject({ stage: 'Error', reason: 'build failed: no kvm' });
  });

  it('releases the capacity when a destroy job completes', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await running(world);
    await world.instances.act(alice, instance.id, 'destroy');
    const claimed = await world.hosts.claim(h1, 'h1', {});
    await world.hosts.complete(h1, claimed?.job.id as string, { lease_token: claimed?.job.lease_token });
    expect(world.store.instance(instance.id).stage).toBe('Inexistent');
    expect(world.store.host('h1')).toMatchObject({ used_vcpus: 0, used_ram_mb: 0, used_disk_gb: 0 });
    expect(await world.hosts.instances(h1, 'h1')).toEqual([]);
  });

  it('re-reads and applies a finish after a lost race, and gives up with a 503 once the budget is spent', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await world.instances.create(alice, REQUEST);
    const claimed = await world.hosts.claim(h1, 'h1', {});
    const jobId = claimed?.job.id as string;
    const body = { lease_token: claimed?.job.lease_token };
    // A reconcile report lands on the instance first.
    world.store.interfere('finishJob', (store) => {
      const stored = store.instances.get(instance.id) as InstanceRecord;
      store.instances.set(instance.id, { ...stored, version: stored.version + 1 });
    });
    world.store.failWrites('finishJob', 1);
    await world.hosts.complete(h1, jobId, body);
    expect(world.store.instance(instance.id).stage).toBe('Running');
    expect(world.store.attempts.finishJob).toBe(3);

    await world.instances.act(alice, instance.id, 'stop');
    const stop = await world.hosts.claim(h1, 'h1', {});
    expect(
      await exhausted(world, 'finishJob', () =>
        world.hosts.complete(h1, stop?.job.id as string, { lease_token: stop?.job.lease_token }),
      ),
    ).toEqual({ kind: 'unavailable', message: `Job ${stop?.job.id} is changing too often; try again.` });
    expect(world.store.job(stop?.job.id as string).status).toBe('claimed');
    expect(world.store.instance(instance.id)).toMatchObject({
      stage: 'Running',
      pending_job: { kind: 'stop' },
    });
  });

  it('applies observations of its own instances; retries a lost race, gives up with a 503 once the budget is spent', async () => {
    const world = setup();
    await withHosts(world, ['h1', {}]);
    const instance = await running(world);
    world.store.failWrites('updateInstance', 1);
    expect((await world.hosts.observed(h1, 'h1', instance.id, { state: 'shutoff' })).stage).toBe('Shutoff');
    // A user's action lands between this report's read and its write: the report waits for its job.
    world.store.interfere('updateInstance', (store) => {
      const stored = world.store.instance(instance.id);
      store.instances.set(instance.id, {
        ...stored,
        pending_job: { id: 'other-job', kind: 'start' },
        version: stored.version + 1,
      });
    });
    expect(await world.hosts.observed(h1, 'h1', instance.id, { state: 'running' })).toMatchObject({
      stage: 'Shutoff',
      pending_job: { kind: 'start' },
      observed: { state: 'running' },
    });
    world.store.instances.set(instance.id, { ...world.store.instance(instance.id), pending_job: null });
    expect(
      (await failure(world.hosts.observed(hostToken('h2'), 'h2', instance.id, { state: 'running' }))).kind,
    ).toBe('not_found');
    expect(
      await exhausted(world, 'updateInstance', () =>
        world.hosts.observed(h1, 'h1', instance.id, { state: 'running' }),
      ),
    ).toEqual({ kind: 'unavailable', message: `Instance ${instance.id} is changing too often; try again.` });
    expect(world.store.instance(instance.id).stage).toBe('Shutoff');
  });
});

describe('InstancesService upgrade and rollback', () => {
  const V2 = makeActiveImage({ id: '00000000-0000-4000-8000-0000000000b2', name: 'v2' });
  const V3 = makeActiveImage({ id: '00000000-0000-4000-8000-0000000000b3', name: 'v3' });

  /** Claims h1's next job, which must be `kind`, and completes or fails it. */
  async function finishNext(world: World, kind: string, ok = true): Promise<void> {
    const claimed = await world.hosts.claim(h1, 'h1', {});
    expect(claimed?.job.kind).toBe(kind);
    const id = claimed?.job.id as string;
    const lease_token = claimed?.job.lease_token as string;
    if (ok) await world.hosts.complete(h1, id, { lease_token });
    else await world.hosts.fail(h1, id, { lease_token, reason: 'boot check failed; rolled back' });
  }

  it('counts the new disk while the upgrade runs and the kept previous disk after, one previous disk only', async () => {
    // Prepare
    const world = setup(IMAGE, V2, V3);
    await withHosts(world, ['h1', {}]);
    const instance = await running(world);
    const used = () => world.store.host('h1').used_disk_gb;
    expect(used()).toBe(10);

    // Act & Assess: the first upgrade adds the previous disk
    const pending = await world.instances.act(alice, instance.id, 'upgrade', { image: V2.id });
    expect(pending.upgrade_to?.image.id).toBe(V2.id);
    expect(used()).toBe(20);
    const job = world.store.job(pending.pending_job?.id as string);
    expect(job.kind).toBe('upgrade');
    await finishNext(world, 'upgrade');
    expect(world.store.instance(instance.id)).toMatchObject({
      image: { id: V2.id },
      previous_image: { id: IMAGE.id },
    });
    expect(used()).toBe(20);

    // A second upgrade: three disks while it runs, two after (the older previous one goes)
    await world.instances.act(alice, instance.id, 'upgrade', { image: V3.id });
    expect(used()).toBe(30);
    await finishNext(world, 'upgrade');
    expect(world.store.instance(instance.id)).toMatchObject({
      image: { id: V3.id },
      previous_image: { id: V2.id },
    });
    expect(used()).toBe(20);

    // A failed one gives its disk back and changes no disk; a rollback changes no use
    await world.instances.act(alice, instance.id, 'upgrade', { image: IMAGE.id });
    await finishNext(world, 'upgrade', false);
    expect(world.store.instance(instance.id)).toMatchObject({
      image: { id: V3.id },
      previous_image: { id: V2.id },
      last_error: 'upgrade failed: boot check failed; rolled back',
    });
    expect(used()).toBe(20);
    await world.instances.act(alice, instance.id, 'rollback');
    await finishNext(world, 'rollback');
    expect(world.store.instance(instance.id).image.id).toBe(V2.id);
    expect(used()).toBe(20);

    // Destroyed: both disks back
    await world.instances.act(alice, instance.id, 'destroy');
    await finishNext(world, 'destroy');
    expect(used()).toBe(0);
  });

  it('refuses an upgrade the host has no room for, and one of a caller who may not, changing nothing', async () => {
    // Prepare: 40 GB, a 30 GB disk
    const world = setup(IMAGE, V2);
    await withHosts(world, ['h1', {}]);
    const instance = await running(world, { ...REQUEST, disk_gb: 30 });
    const before = world.store.instance(instance.id);

    // Act & Assess
    expect(await failure(world.instances.act(alice, instance.id, 'upgrade', { image: V2.id }))).toEqual({
      kind: 'conflict',
      message: 'Host h1 cannot take the upgrade: no room: 10 of 40 GB disk free',
    });
    expect((await failure(world.instances.act(bob, instance.id, 'upgrade', { image: V2.id }))).kind).toBe(
      'not_found',
    );
    expect(world.store.instance(instance.id)).toEqual(before);
    expect(world.store.host('h1').used_disk_gb).toBe(30);
  });

  it('re-decides an upgrade over a write that landed first, and retries a transaction conflict', async () => {
    // Prepare
    const world = setup(IMAGE, V2);
    await withHosts(world, ['h1', {}]);
    const instance = await running(world);
    world.store.interfere('updateInstance', (store) => {
      const stored = store.instances.get(instance.id) as InstanceRecord;
      store.instances.set(instance.id, {
        ...stored,
        pending_job: { id: 'other-job', kind: 'stop' },
        version: stored.version + 1,
      });
    });

    // Act & Assess
    expect(
      (await failure(world.instances.act(alice, instance.id, 'upgrade', { image: V2.id }))).message,
    ).toMatch(/has a stop job pending/);
    expect(world.store.host('h1').used_disk_gb).toBe(10);
    const other = await running(world, { ...REQUEST, name: 'Web 2' });
    world.store.failWrites('updateInstance', 1);
    expect((await world.instances.act(alice, other.id, 'upgrade', { image: V2.id })).pending_job?.kind).toBe(
      'upgrade',
    );
    expect(world.store.host('h1').used_disk_gb).toBe(30);
  });
});
