/**
 * NotifyingInstanceStore under the instances services: every call that enqueues a job (create,
 * a publish gate's create, actions, destroy) tells the job's host once its write has committed,
 * and a write that did not commit tells nobody.
 */
import { describe, expect, it } from 'vitest';
import { HostsService, type InstancesDeps, InstancesService } from '#core/instances/instances-service';
import { NotifyingInstanceStore } from '#core/instances/notifying-store';
import type { JobNotifier } from '#core/instances/ports';
import type { HostRegistration } from '#core/instances/records';
import { makePrincipal } from '#core/kernel/principal';
import { FakeImageLookup, FakeInstanceStore, FakeTaskTokenNotifier } from '../../helpers/fakes/instances.ts';
import { alice, makeActiveImage, makeHost, NOW } from './fixtures.ts';

const IMAGE = makeActiveImage();
// What the fixtures' host registered with.
const { vcpus, ram_mb, disk_gb, architecture, hypervisor_type, hypervisor_version } = makeHost();
const REGISTRATION: HostRegistration = {
  vcpus,
  ram_mb,
  disk_gb,
  architecture,
  hypervisor_type,
  hypervisor_version,
};
const REQUEST = { name: 'Web 1', image: IMAGE.id, vcpus: 1, ram_mb: 1024, disk_gb: 10 };
const h1 = makePrincipal('hosts', 'h1', ['host']);

/** Records each notification with the jobs the store held at that moment (committed or not). */
class RecordingNotifier implements JobNotifier {
  readonly told: Array<{ hostId: string; pendingJobs: number }> = [];
  constructor(private readonly store: FakeInstanceStore) {}
  async jobsQueued(hostId: string): Promise<void> {
    const pendingJobs = [...this.store.jobs.values()].filter(
      (job) => job.host_id === hostId && job.status === 'pending',
    ).length;
    this.told.push({ hostId, pendingJobs });
  }
}

function setup() {
  const store = new FakeInstanceStore();
  const notifier = new RecordingNotifier(store);
  let ids = 0;
  const deps: InstancesDeps = {
    store: new NotifyingInstanceStore(store, notifier),
    images: new FakeImageLookup(IMAGE),
    hostTimeoutSeconds: 180,
    newId: () => `00000000-0000-4000-8000-${String(++ids).padStart(12, '0')}`,
    newToken: () => `token-${++ids}`,
    gates: new FakeTaskTokenNotifier(),
    clock: () => NOW,
    // Lost-race retries back off on a virtual clock: no test waits for real.
    retry: { now: () => 0, sleep: async () => {}, random: () => 0.5 },
  };
  return { store, notifier, instances: new InstancesService(deps), hosts: new HostsService(deps) };
}

describe('NotifyingInstanceStore', () => {
  it('tells the host after each enqueue has been written: create, gate, action, destroy', async () => {
    // Arrange
    const world = setup();
    await world.hosts.register(h1, 'h1', REGISTRATION);

    // Act
    const created = await world.instances.create(alice, REQUEST);
    const afterCreate = [...world.notifier.told];
    const claimed = await world.hosts.claim(h1, 'h1', {});
    await world.hosts.complete(h1, claimed?.job.id ?? '', { lease_token: claimed?.job.lease_token });
    await world.instances.act(alice, created.id, 'stop');
    const stop = await world.hosts.claim(h1, 'h1', {});
    await world.hosts.complete(h1, stop?.job.id ?? '', { lease_token: stop?.job.lease_token });
    await world.instances.act(alice, created.id, 'destroy');
    await world.instances.createGate(alice, REQUEST, {
      id: 'a2222222-2222-4222-8222-222222222222',
      gateToken: 'tok',
    });

    // Assess: each notification saw its job already stored; claims and completions tell nobody.
    expect(afterCreate).toEqual([{ hostId: 'h1', pendingJobs: 1 }]);
    expect(world.notifier.told).toEqual([
      { hostId: 'h1', pendingJobs: 1 },
      { hostId: 'h1', pendingJobs: 1 },
      { hostId: 'h1', pendingJobs: 1 },
      { hostId: 'h1', pendingJobs: 2 },
    ]);
  });

  it('tells nobody of a write that lost its race, and once for the retry that landed', async () => {
    // Arrange
    const world = setup();
    await world.hosts.register(h1, 'h1', REGISTRATION);
    world.store.failWrites('createInstance', 2);

    // Act
    await world.instances.create(alice, REQUEST);

    // Assess
    expect(world.store.attempts.createInstance).toBe(3);
    expect(world.notifier.told).toEqual([{ hostId: 'h1', pendingJobs: 1 }]);
  });

  it('tells nobody of an update without a job (an observation, a gate token)', async () => {
    // Arrange
    const world = setup();
    await world.hosts.register(h1, 'h1', REGISTRATION);
    const created = await world.instances.create(alice, REQUEST);
    const claimed = await world.hosts.claim(h1, 'h1', {});
    await world.hosts.complete(h1, claimed?.job.id ?? '', { lease_token: claimed?.job.lease_token });
    world.notifier.told.length = 0;

    // Act
    await world.hosts.observed(h1, 'h1', created.id, { state: 'shutoff' });

    // Assess
    expect(world.notifier.told).toEqual([]);
  });
});
