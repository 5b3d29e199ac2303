/** Start-up reconciliation with an in-memory hypervisor, real instance dirs and a recording service. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InstanceFiles } from '../../../agent/src/instance-files.ts';
import { silentLogger } from '../../../agent/src/log.ts';
import { observe, observedStateOf, reconcile } from '../../../agent/src/reconcile.ts';
import type { ObservedState, ServiceInstance, ServicePort } from '../../../agent/src/service-client.ts';
import { MemoryHypervisor } from '../../helpers/agent-memory-hypervisor.ts';

class RecordingService implements Partial<ServicePort> {
  observed: Array<{ id: string; state: ObservedState; reason?: string }> = [];
  constructor(private readonly instances: ServiceInstance[] | Error) {}
  async listInstances() {
    if (this.instances instanceof Error) throw this.instances;
    return this.instances;
  }
  async reportObserved(id: string, state: ObservedState, reason?: string) {
    this.observed.push(reason ? { id, state, reason } : { id, state });
  }
}

describe('reconcile', () => {
  let dir: string;
  let files: InstanceFiles;
  let hv: MemoryHypervisor;

  const record = (id: string) => ({
    instance_id: id,
    image_id: 'img',
    domain_name: `hangar-${id}`,
    domain_uuid: '6f1c3a52-8f0e-4a55-9d0c-0b6a3c1f2e4d',
    created_at: '',
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hangar-reconcile-'));
    files = new InstanceFiles(join(dir, 'instances'));
    await files.init();
    hv = new MemoryHypervisor();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the real state of known instances, missing ones, and skips a build in progress', async () => {
    // Prepare
    hv.add('hangar-run', 'running', 'host-a');
    hv.add('hangar-off', 'shutoff', 'host-a');
    hv.add('hangar-zzz', 'saved', 'host-a');
    const service = new RecordingService([
      { id: 'run', stage: 'Running' },
      { id: 'off', stage: 'Running' },
      { id: 'zzz', stage: 'Sleep' },
      { id: 'gone', stage: 'Running' },
      { id: 'new', stage: 'Building' },
    ]);

    // Act
    const report = await reconcile({
      service: service as unknown as ServicePort,
      hypervisor: hv,
      files,
      hostId: 'host-a',
      log: silentLogger,
    });

    // Assess
    expect(service.observed).toEqual([
      { id: 'run', state: 'running' },
      { id: 'off', state: 'shutoff' },
      { id: 'zzz', state: 'saved' },
      { id: 'gone', state: 'missing', reason: 'no libvirt domain hangar-gone on this host' },
    ]);
    expect(report.skipped).toEqual(['new']);
    expect(hv.domains.size).toBe(3);
  });

  it('removes domains and dirs of this host that the service does not know; leaves foreign domains alone', async () => {
    // Prepare
    hv.add('hangar-orphan', 'running', 'host-a');
    hv.add('hangar-neighbour', 'running', 'host-b');
    hv.add('hangar-unlabelled', 'running', null);
    await files.prepare(record('orphan'));
    await files.prepare(record('stray-dir'));
    await files.prepare(record('known'));
    hv.add('hangar-known', 'running', 'host-a');
    const service = new RecordingService([{ id: 'known', stage: 'Running' }]);

    // Act
    const report = await reconcile({
      service: service as unknown as ServicePort,
      hypervisor: hv,
      files,
      hostId: 'host-a',
      log: silentLogger,
    });

    // Assess
    expect([...hv.domains.keys()].sort()).toEqual(['hangar-known', 'hangar-neighbour', 'hangar-unlabelled']);
    expect(await files.list()).toEqual(['known']);
    expect(report.removed.sort()).toEqual(['orphan', 'stray-dir']);
    expect(report.skipped.sort()).toEqual(['neighbour', 'unlabelled']);
  });

  it('touches nothing when the service list cannot be read', async () => {
    // Prepare
    hv.add('hangar-orphan', 'running', 'host-a');
    await files.prepare(record('orphan'));
    const service = new RecordingService(new Error('service down'));

    // Act
    const outcome = reconcile({
      service: service as unknown as ServicePort,
      hypervisor: hv,
      files,
      hostId: 'host-a',
      log: silentLogger,
    });

    // Assess
    await expect(outcome).rejects.toThrow('service down');
    expect(hv.domains.has('hangar-orphan')).toBe(true);
    expect(await files.list()).toEqual(['orphan']);
  });

  it('maps libvirt states to the observed vocabulary', () => {
    expect(observedStateOf('paused')).toEqual({ state: 'running', reason: 'paused' });
    expect(observedStateOf('crashed')).toEqual({ state: 'shutoff', reason: 'crashed' });
    expect(observedStateOf('shutting_down')).toEqual({ state: 'running' });
  });

  it('observe: reports only built instances whose domain changed state by itself, and removes nothing', async () => {
    // Prepare: a guest that powered itself off, one still running, one saved as Sleep, a build, an orphan
    hv.add('hangar-off', 'shutoff', 'h1');
    hv.add('hangar-on', 'running', 'h1');
    hv.add('hangar-asleep', 'saved', 'h1');
    hv.add('hangar-new', 'running', 'h1');
    hv.add('hangar-orphan', 'running', 'h1');
    const service = new RecordingService([
      { id: 'off', stage: 'Running' },
      { id: 'on', stage: 'Running' },
      { id: 'asleep', stage: 'Sleep' },
      { id: 'new', stage: 'Building' },
      { id: 'gone', stage: 'Running' },
    ]);

    // Act
    const reported = await observe({
      service: service as unknown as ServicePort,
      hypervisor: hv,
      log: silentLogger,
    });

    // Assess
    expect(reported).toBe(1);
    expect(service.observed).toEqual([{ id: 'off', state: 'shutoff' }]);
    expect(hv.domains.has('hangar-orphan')).toBe(true);
    expect(hv.count('destroy')).toBe(0);
  });
});
