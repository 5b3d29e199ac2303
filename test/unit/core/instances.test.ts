import { describe, expect, it } from 'vitest';
import { assertActsForHost, assertProjectCaller } from '#core/instances/access';
import {
  ACTION_FROM,
  applyJobOutcome,
  applyObserved,
  hostnameFor,
  newInstance,
  referenceOf,
  requestAction,
} from '#core/instances/lifecycle';
import { demandOf, type ImageRequirements, imageRequirements, place } from '#core/instances/placement';
import { ACTIONS, type Action, type InstanceRecord, STAGES, type Stage } from '#core/instances/records';
import { CreateInstanceRequestSchema, isImageId, parseBody } from '#core/instances/requests';
import { parseVersionPredicate, satisfiesVersion, versionString } from '#core/instances/versions';
import { renderInstance } from '#core/instances/views';
import { makePrincipal } from '#core/kernel/principal';
import { alice, captureError, makeActiveImage, makeHost, NOW } from './fixtures.ts';

const demand = { vcpus: 2, ram_mb: 2048, disk_gb: 10 };
const options = { now: NOW, hostTimeoutSeconds: 180 };
const noRequirements: ImageRequirements = {
  architecture: null,
  hypervisorType: null,
  hypervisorVersion: null,
};

function instance(overrides: Partial<InstanceRecord> = {}): InstanceRecord {
  return {
    ...newInstance({
      id: 'inst-1',
      request: { name: 'Web Server #1', image: 'img', vcpus: 1, ram_mb: 256, disk_gb: 1, user_data: null },
      image: makeActiveImage(),
      principal: alice,
      host: makeHost(),
      buildJobId: 'job-build',
      now: NOW,
    }),
    ...overrides,
  };
}

function baseInput() {
  return {
    id: 'inst-1',
    request: { name: 'Web Server #1', image: 'img', vcpus: 1, ram_mb: 256, disk_gb: 1, user_data: null },
    image: makeActiveImage(),
    principal: alice,
    host: makeHost(),
    buildJobId: 'job-build',
    now: NOW,
  };
}

const settled = (stage: Stage) => instance({ stage, pending_job: null });

describe('the stage machine', () => {
  it('starts an instance in Building with its build job pending', () => {
    // Act
    const created = instance();

    // Assess
    expect(created).toMatchObject({
      stage: 'Building',
      pending_job: { id: 'job-build', kind: 'build' },
      host_id: 'h1',
      hostname: 'web-server-1',
      project: 'projA',
      image: { os_hash_algo: 'sha512', os_hash_value: 'ab'.repeat(64), disk_format: 'raw' },
      version: 1,
    });
  });

  it('allows each action only from its stages', () => {
    // The life cycle seen from each stage: what a user may ask of an instance that is in it.
    const allowedIn: Record<Stage, Action[]> = {
      Building: [],
      Running: ['stop', 'sleep', 'reboot', 'destroy', 'upgrade', 'rollback'],
      Sleep: ['stop', 'wake', 'destroy'],
      Shutoff: ['start', 'destroy', 'upgrade', 'rollback'],
      Error: ['destroy'],
      Inexistent: [],
    };
    for (const action of ACTIONS) {
      // In stage order, as the refusal names them.
      expect(ACTION_FROM[action]).toEqual(STAGES.filter((stage) => allowedIn[stage].includes(action)));
      for (const stage of STAGES) {
        // With a previous disk to roll back to and an upgrade's target: only the stage decides here.
        const disk = { ...settled(stage).image, id: 'img-old' };
        const upgrade = { image: { ...disk, id: 'img-new' }, requested_as: 'web:2', reference: 'web:2' };
        const attempt = () =>
          requestAction({ ...settled(stage), previous_image: disk }, action, 'job-2', NOW, upgrade);
        if (allowedIn[stage].includes(action))
          expect(attempt().pending_job).toEqual({ id: 'job-2', kind: action });
        else expect(captureError(attempt).kind, `${action} from ${stage}`).toBe('conflict');
      }
    }
    expect(captureError(() => requestAction(settled('Shutoff'), 'stop', 'job-2', NOW)).message).toBe(
      'Cannot stop instance inst-1 while it is Shutoff (stop needs Running or Sleep).',
    );
  });

  it('refuses every action while a job is pending, saying which', () => {
    // Act
    const error = captureError(() => requestAction(instance({ stage: 'Running' }), 'destroy', 'job-2', NOW));

    // Assess
    expect(error.kind).toBe('conflict');
    expect(error.message).toMatch(/has a build job pending/);
  });

  it('moves to the job kind stage once the pending job is done, and only then', () => {
    const cases: Array<[Stage, Action, Stage]> = [
      ['Running', 'sleep', 'Sleep'],
      ['Sleep', 'wake', 'Running'],
      ['Sleep', 'stop', 'Shutoff'],
      ['Running', 'stop', 'Shutoff'],
      ['Shutoff', 'start', 'Running'],
      ['Running', 'reboot', 'Running'],
      ['Error', 'destroy', 'Inexistent'],
    ];
    for (const [from, action, to] of cases) {
      // Prepare
      const pending = requestAction(settled(from), action, 'job-2', NOW);

      // Act
      const done = applyJobOutcome(pending, { id: 'job-2', kind: action }, { ok: true, result: {} }, NOW);

      // Assess
      expect(done?.stage, `${action} from ${from}`).toBe(to);
      expect(done?.pending_job).toBeNull();
      expect(done?.version).toBe(pending.version + 1);
    }
  });

  it('keeps the console tail and domain uuid a build reports, and marks a destroy', () => {
    // Act
    const built = applyJobOutcome(
      instance(),
      { id: 'job-build', kind: 'build' },
      { ok: true, result: { console_log: `${'x'.repeat(20_000)}END`, domain_uuid: 'inst-1' } },
      NOW,
    );
    const destroyed = applyJobOutcome(
      requestAction(settled('Running'), 'destroy', 'job-3', NOW),
      { id: 'job-3', kind: 'destroy' },
      { ok: true, result: {} },
      NOW,
    );

    // Assess
    expect(built).toMatchObject({ stage: 'Running', domain_uuid: 'inst-1' });
    expect(built?.console_log).toHaveLength(16 * 1024);
    expect(built?.console_log?.endsWith('END')).toBe(true);
    expect(destroyed).toMatchObject({ stage: 'Inexistent', destroyed_at: '2026-11-22T02:11:29Z' });
  });

  it('puts a failed build in Error, and keeps the stage of any other failed job', () => {
    // Act
    const build = applyJobOutcome(
      instance(),
      { id: 'job-build', kind: 'build' },
      { ok: false, reason: 'no kvm' },
      NOW,
    );
    const sleep = applyJobOutcome(
      requestAction(settled('Running'), 'sleep', 'job-2', NOW),
      { id: 'job-2', kind: 'sleep' },
      { ok: false, reason: 'disk full' },
      NOW,
    );

    // Assess
    expect(build).toMatchObject({ stage: 'Error', reason: 'build failed: no kvm', pending_job: null });
    expect(sleep).toMatchObject({
      stage: 'Running',
      reason: null,
      last_error: 'sleep failed: disk full',
      pending_job: null,
    });
  });

  it('ignores the outcome of a job that is not the pending one', () => {
    expect(
      applyJobOutcome(instance(), { id: 'other', kind: 'build' }, { ok: true, result: {} }, NOW),
    ).toBeNull();
    expect(
      applyJobOutcome(settled('Running'), { id: 'job-build', kind: 'build' }, { ok: true, result: {} }, NOW),
    ).toBeNull();
  });
});

describe('upgrade and rollback', () => {
  const current = { ...instance().image, id: 'img-1', name: 'web v1' };
  const newer = { ...current, id: 'img-2', name: 'web v2' };
  const upgrading = (extra: Partial<InstanceRecord> = {}) =>
    requestAction({ ...settled('Running'), ...extra, image: current }, 'upgrade', 'job-up', NOW, {
      image: newer,
      requested_as: 'web:2',
      reference: 'web:2',
    });

  it('remembers the reference it was created from; an old record without the field reads it from image_ref', () => {
    // Prepare
    const { reference: _none, ...old } = instance({ image_ref: 'web:1' });

    // Act & Assess
    const byId = '0b0e7f5e-7d58-4c38-9a56-7a3e8c1a2b3c';
    const input = baseInput();
    expect(newInstance({ ...input, request: { ...input.request, image: 'web:1' } }).reference).toBe('web:1');
    expect(newInstance({ ...input, request: { ...input.request, image: byId } }).reference).toBeNull();
    expect(referenceOf(old as InstanceRecord)).toBe('web:1');
    expect(referenceOf({ ...old, image_ref: byId } as InstanceRecord)).toBeNull();
  });

  it('counts the pending new disk and the previous disk against the host, nothing once destroyed', () => {
    // Act
    const pending = upgrading();
    const done = applyJobOutcome(pending, { id: 'job-up', kind: 'upgrade' }, { ok: true, result: {} }, NOW);

    // Assess
    expect(demandOf(settled('Running')).disk_gb).toBe(1);
    expect(demandOf(pending).disk_gb).toBe(2);
    expect(demandOf(upgrading({ previous_image: newer })).disk_gb).toBe(3);
    expect(done && demandOf(done).disk_gb).toBe(2);
    expect(demandOf(settled('Inexistent'))).toEqual({ vcpus: 0, ram_mb: 0, disk_gb: 0 });
  });

  it('a done upgrade moves the disk to the new image and keeps the old one as previous', () => {
    // Act
    const done = applyJobOutcome(
      upgrading(),
      { id: 'job-up', kind: 'upgrade' },
      { ok: true, result: {} },
      NOW,
    );

    // Assess
    expect(done).toMatchObject({
      stage: 'Running',
      image: { id: 'img-2' },
      image_ref: 'web:2',
      reference: 'web:2',
      previous_image: { id: 'img-1' },
      upgrade_to: null,
      pending_job: null,
    });
  });

  it('a failed upgrade (rolled back by the agent) changes no disk and says why in last_error', () => {
    // Act
    const failed = applyJobOutcome(
      upgrading(),
      { id: 'job-up', kind: 'upgrade' },
      { ok: false, reason: 'boot check failed; rolled back to the previous disk' },
      NOW,
    );

    // Assess
    expect(failed).toMatchObject({
      stage: 'Running',
      image: { id: 'img-1' },
      previous_image: null,
      upgrade_to: null,
      last_error: 'upgrade failed: boot check failed; rolled back to the previous disk',
    });
  });

  it('a rollback swaps the disk and the previous disk, and needs a previous disk', () => {
    // Prepare
    const upgraded = { ...settled('Shutoff'), image: newer, previous_image: current };

    // Act
    const pending = requestAction(upgraded, 'rollback', 'job-rb', NOW);
    const done = applyJobOutcome(pending, { id: 'job-rb', kind: 'rollback' }, { ok: true, result: {} }, NOW);

    // Assess
    expect(done).toMatchObject({ stage: 'Running', image: { id: 'img-1' }, previous_image: { id: 'img-2' } });
    const refused = captureError(() => requestAction(settled('Running'), 'rollback', 'job-rb', NOW));
    expect(refused.kind).toBe('conflict');
    expect(refused.message).toMatch(/no previous disk to roll back to/);
  });
});

describe('applyObserved', () => {
  it('repairs a settled stage from what libvirt shows', () => {
    expect(applyObserved(settled('Running'), 'missing', 'no domain', NOW).next).toMatchObject({
      stage: 'Error',
      reason: 'domain missing on host h1 (no domain)',
    });
    expect(applyObserved(settled('Shutoff'), 'running', null, NOW).next.stage).toBe('Running');
    expect(applyObserved(settled('Running'), 'saved', null, NOW).next.stage).toBe('Sleep');
    expect(applyObserved(settled('Sleep'), 'shutoff', null, NOW).next.stage).toBe('Shutoff');
    expect(applyObserved(settled('Running'), 'running', null, NOW).stageChanged).toBe(false);
  });

  it('records but does not act on observations while building, with a job pending, in Error or destroyed', () => {
    for (const subject of [
      instance(),
      requestAction(settled('Running'), 'stop', 'job-2', NOW),
      settled('Error'),
      settled('Inexistent'),
    ]) {
      // Act
      const { next, stageChanged } = applyObserved(subject, 'missing', null, NOW);

      // Assess
      expect(stageChanged).toBe(false);
      expect(next.stage).toBe(subject.stage);
      expect(next.observed).toEqual({ state: 'missing', reason: null, at: '2026-11-22T02:11:29Z' });
    }
  });
});

describe('imageRequirements', () => {
  it('checks min_ram and min_disk against the request (400)', () => {
    const image = makeActiveImage({ min_ram: 512, min_disk: 20 });
    expect(captureError(() => imageRequirements(image, { ram_mb: 256, disk_gb: 20 })).message).toMatch(
      /needs at least 512 MB of RAM \(min_ram\); 256 MB were asked for/,
    );
    expect(captureError(() => imageRequirements(image, { ram_mb: 512, disk_gb: 10 })).kind).toBe(
      'bad_request',
    );
    expect(imageRequirements(image, { ram_mb: 512, disk_gb: 20 })).toEqual(noRequirements);
  });

  it('needs an active image with a sha512 and a disk format an overlay can sit on', () => {
    const request = { ram_mb: 1024, disk_gb: 10 };
    expect(
      captureError(() => imageRequirements(makeActiveImage({ status: 'deactivated' }), request)).kind,
    ).toBe('conflict');
    expect(
      captureError(() => imageRequirements(makeActiveImage({ os_hash_algo: 'sha256' }), request)).kind,
    ).toBe('conflict');
    expect(captureError(() => imageRequirements(makeActiveImage({ disk_format: 'iso' }), request)).kind).toBe(
      'bad_request',
    );
  });

  it("reads the image's architecture, hypervisor type and version predicate, under either spelling", () => {
    const legacy = makeActiveImage({
      properties: { architecture: 'amd64', hypervisor_type: 'KVM', hypervisor_version_requires: '>=6.1' },
    });
    const nova = makeActiveImage({
      properties: { hw_architecture: 'arm64', img_hv_type: 'qemu', img_hv_requested_version: '<10' },
    });
    expect(imageRequirements(legacy, { ram_mb: 1024, disk_gb: 10 })).toEqual({
      architecture: 'x86_64',
      hypervisorType: 'kvm',
      hypervisorVersion: { text: '>=6.1', clauses: [{ op: '>=', version: [6, 1] }] },
    });
    expect(imageRequirements(nova, { ram_mb: 1024, disk_gb: 10 })).toMatchObject({
      architecture: 'aarch64',
      hypervisorType: 'qemu',
    });
    const bad = makeActiveImage({ properties: { hypervisor_version_requires: 'newest' } });
    expect(captureError(() => imageRequirements(bad, { ram_mb: 1024, disk_gb: 10 })).kind).toBe(
      'bad_request',
    );
  });
});

describe('hypervisor_version_requires', () => {
  it('parses comma-separated clauses, a bare version meaning ==', () => {
    expect(parseVersionPredicate('>=6.1, <7')).toEqual([
      { op: '>=', version: [6, 1] },
      { op: '<', version: [7] },
    ]);
    expect(parseVersionPredicate('(9.0.0)')).toEqual([{ op: '==', version: [9, 0, 0] }]);
    expect(parseVersionPredicate('>= 6.x')).toBeNull();
    expect(parseVersionPredicate('')).toBeNull();
  });

  it("compares libvirt's integer version as Nova does", () => {
    expect(versionString(9_001_002)).toBe('9.1.2');
    expect(versionString(6_002_000)).toBe('6.2.0');
    const predicate = (text: string) => parseVersionPredicate(text) ?? [];
    expect(satisfiesVersion(6_002_000, predicate('>=6.1,<7'))).toBe(true);
    expect(satisfiesVersion(7_000_000, predicate('>=6.1,<7'))).toBe(false);
    expect(satisfiesVersion(6_001_000, predicate('6.1'))).toBe(true);
    expect(satisfiesVersion(6_001_000, predicate('!=6.1'))).toBe(false);
    expect(satisfiesVersion(10_000_000, predicate('>9.9.9'))).toBe(true);
    expect(satisfiesVersion(9_000_000, predicate('<=8'))).toBe(false);
  });
});

describe('place', () => {
  it('takes the fitting host with the most free RAM', () => {
    // Prepare
    const hosts = [
      makeHost({ id: 'a', used_ram_mb: 8000 }),
      makeHost({ id: 'b', used_ram_mb: 1000 }),
      makeHost({ id: 'c', used_vcpus: 7 }),
    ];

    // Act
    const placement = place(hosts, demand, noRequirements, options);

    // Assess
    expect(placement).toEqual({ host: hosts[1] });
  });

  it('counts what is already used: exactly full fits, one more does not', () => {
    const full = makeHost({ used_vcpus: 6, used_ram_mb: 14336, used_disk_gb: 90 });
    expect('host' in place([full], demand, noRequirements, options)).toBe(true);
    expect(place([full], { ...demand, disk_gb: 11 }, noRequirements, options)).toEqual({
      refused: 'host h1: no room: 10 of 100 GB disk free',
    });
    expect(place([makeHost({ used_vcpus: 7, used_ram_mb: 16000 })], demand, noRequirements, options)).toEqual(
      {
        refused: 'host h1: no room: 1 of 8 vCPUs free, 384 of 16384 MB RAM free',
      },
    );
  });

  it('matches architecture (with aliases) and hypervisor type, a KVM host also running qemu guests', () => {
    const kvm = makeHost({ id: 'kvm', hypervisor_type: 'kvm', architecture: 'AMD64' });
    const tcg = makeHost({ id: 'tcg' });
    const needs = (req: Partial<ImageRequirements>) => ({ ...noRequirements, ...req });
    expect(place([kvm, tcg], demand, needs({ hypervisorType: 'kvm' }), options)).toEqual({ host: kvm });
    expect(place([tcg], demand, needs({ hypervisorType: 'qemu' }), options)).toEqual({ host: tcg });
    expect(place([kvm], demand, needs({ architecture: 'x86_64', hypervisorType: 'qemu' }), options)).toEqual({
      host: kvm,
    });
    expect(place([kvm, tcg], demand, needs({ architecture: 'aarch64' }), options)).toEqual({
      refused:
        'host kvm: architecture AMD64, the image needs aarch64; host tcg: architecture x86_64, the image needs aarch64',
    });
    expect(place([tcg], demand, needs({ hypervisorType: 'kvm' }), options)).toEqual({
      refused: 'host tcg: hypervisor qemu, the image needs kvm',
    });
  });

  it('refuses hosts whose hypervisor version does not satisfy the image', () => {
    // Prepare
    const requirements = {
      ...noRequirements,
      hypervisorVersion: { text: '>=9.1', clauses: parseVersionPredicate('>=9.1') ?? [] },
    };

    // Act
    const placement = place(
      [makeHost({ id: 'old' }), makeHost({ id: 'new', hypervisor_version: 9_001_000 })],
      demand,
      requirements,
      options,
    );
    const none = place([makeHost({ id: 'old' })], demand, requirements, options);

    // Assess
    expect(placement).toMatchObject({ host: { id: 'new' } });
    expect(none).toEqual({
      refused:
        "host old: hypervisor version 9.0.0 does not satisfy the image's hypervisor_version_requires '>=9.1'",
    });
  });

  it('skips hosts not heard from, and says when there are no hosts at all', () => {
    const silent = makeHost({ heartbeat_at: '2026-11-22T02:00:00.000Z' });
    expect(place([silent], demand, noRequirements, options)).toEqual({
      refused: 'host h1: not heard from for 689 s',
    });
    expect(place([], demand, noRequirements, options)).toEqual({ refused: 'no hosts are registered' });
  });

  it('lists at most ten refusals', () => {
    const hosts = Array.from({ length: 12 }, (_, i) =>
      makeHost({ id: `h${String(i).padStart(2, '0')}`, vcpus: 1 }),
    );
    const placement = place(hosts, demand, noRequirements, options);
    expect('refused' in placement && placement.refused).toMatch(/host h09: no room.*; and 2 more$/);
  });
});

describe('requests and access', () => {
  it('validates the create body strictly', () => {
    const parse = (body: unknown) => () => parseBody(CreateInstanceRequestSchema, body, 'instance');
    expect(parse({ name: 'a', image: 'i', vcpus: 1, ram_mb: 64, disk_gb: 1 })()).toMatchObject({ name: 'a' });
    expect(captureError(parse({ name: 'a', image: 'i', vcpus: 1, ram_mb: 8, disk_gb: 1 })).message).toMatch(
      /ram_mb/,
    );
    expect(
      captureError(parse({ name: 'a', image: 'i', vcpus: 1, ram_mb: 64, disk_gb: 1, gpu: true })).message,
    ).toMatch(/gpu/);
    expect(
      captureError(
        parse({ name: 'a', image: 'i', vcpus: 1, ram_mb: 64, disk_gb: 1, user_data: 'x'.repeat(70_000) }),
      ).message,
    ).toMatch(/user_data is limited to 65535 bytes/);
    expect(captureError(parse(null)).kind).toBe('bad_request');
  });

  it('tells image ids from references', () => {
    expect(isImageId('dec8c320-a25d-4809-a4d9-96f9d61a425b')).toBe(true);
    expect(isImageId('fedora:40')).toBe(false);
    expect(isImageId('fedora')).toBe(false);
  });

  it('makes a DNS label of the name', () => {
    expect(hostnameFor('Web Server #1', 'abcdef012345')).toBe('web-server-1');
    expect(hostnameFor('---', 'abcdef012345')).toBe('instance-abcdef01');
    expect(hostnameFor('x'.repeat(100), 'i')).toHaveLength(63);
  });

  it('lets a host token act only for its own host, and manage no instances', () => {
    const agent = makePrincipal('hosts', 'h1', ['host']);
    expect(() => assertActsForHost(agent, 'h1')).not.toThrow();
    expect(captureError(() => assertActsForHost(agent, 'h2')).kind).toBe('forbidden');
    expect(captureError(() => assertActsForHost(alice, 'h1')).kind).toBe('forbidden');
    expect(captureError(() => assertProjectCaller(agent)).kind).toBe('forbidden');
    expect(() => assertProjectCaller(alice)).not.toThrow();
  });

  it('never shows user_data back, only that there is one', () => {
    const view = renderInstance(instance({ user_data: '#cloud-config\npassword: x\n' }), { console: true });
    expect(JSON.stringify(view)).not.toContain('password');
    expect(view).toMatchObject({ has_user_data: true, console_log: null, self: '/v1/instances/inst-1' });
  });
});
