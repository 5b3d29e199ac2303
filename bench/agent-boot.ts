/**
 * `tsx bench/agent-boot.ts`: the host agent's build overhead.
 *
 * agent: time from "build job claimed" (the fake service hands out the job) to the agent reporting it
 *        complete, which it does as soon as libvirt runs the domain (no boot marker configured), with the
 *        image already in the agent's cache. Includes the agent's own work: instance dir, cache check,
 *        overlay, NoCloud seed, define, start, and the HTTP round trips.
 * floor: the same hypervisor steps by hand in the same run: `qemu-img create` overlay on the same cached
 *        base + `virsh define` (same domain shape) + `virsh start`.
 * Runs alternate (agent, floor, agent, ...) so machine noise falls on both; every domain is destroyed right
 * after its sample so a booting guest never competes with the next one. N=5 each (HANGAR_BENCH_AGENT_N).
 * Target: agent median < 1.2 x floor median.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../agent/src/exec.ts';
import { buildDomainXml } from '../agent/src/hypervisor/domain-xml.ts';
import { FakeHangarService } from '../test/helpers/agent-fake-service.ts';
import {
  ensureLibvirt,
  ensureTestGuest,
  removeDomains,
  SYSTEM_URI,
  sha512Of,
  startAgent,
  virsh,
} from '../test/helpers/agent-libvirt.ts';

const N = Number(process.env['HANGAR_BENCH_AGENT_N'] ?? 5);
// Unique per run, so a concurrent run's reconcile never takes this run's domains for its own orphans.
const HOST_ID = `bench-agent-${randomUUID().slice(0, 8)}`;
const TOKEN = 'bench-token';

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

await ensureLibvirt();
const guest = await ensureTestGuest();
const service = new FakeHangarService({ hostId: HOST_ID, token: TOKEN });
await service.start();
service.addImage({
  id: 'guest',
  path: guest,
  disk_format: 'qcow2',
  os_hash_value: await sha512Of(guest),
  size: (await stat(guest)).size,
});
const dir = await mkdtemp(join(tmpdir(), 'hangar-bench-agent-'));
await chmod(dir, 0o755);
const dataDir = join(dir, 'data');
const agent = await startAgent(
  {
    service_url: service.url,
    host_id: HOST_ID,
    token: TOKEN,
    libvirt_uri: SYSTEM_URI,
    data_dir: dataDir,
    domain_type: 'auto',
    poll_interval_ms: 50,
    network: 'user',
    log_level: 'info',
  },
  join(dir, 'agent.json'),
);
const domains: string[] = [];
const agentPhases: Array<Record<string, number>> = [];

async function agentBuild(): Promise<number> {
  const id = randomUUID();
  domains.push(`hangar-${id}`);
  service.addInstance({
    id,
    name: 'bench',
    hostname: 'bench',
    vcpus: 1,
    ram_mb: 256,
    disk_gb: 1,
    user_data: null,
    image_id: 'guest',
  });
  const job = await service.waitForJob(service.enqueue('build', id), 120_000);
  if (job.status !== 'done') throw new Error(`agent build failed: ${job.reason}`);
  const ms = (job.finishedAt ?? 0) - (job.claimedAt[0] ?? 0);
  const phases = agent.logs.find(
    (line) => line['message'] === 'domain started' && line['instance_id'] === id,
  );
  if (phases) {
    agentPhases.push(
      Object.fromEntries(Object.entries(phases).filter(([key]) => key.endsWith('_ms'))) as Record<
        string,
        number
      >,
    );
  }
  const destroy = await service.waitForJob(service.enqueue('destroy', id), 120_000);
  if (destroy.status !== 'done') throw new Error(`agent destroy failed: ${destroy.reason}`);
  return ms;
}

let floorSeed: string | undefined;
async function floorBuild(): Promise<number> {
  const id = randomUUID();
  const name = `hangar-${id}`;
  domains.push(name);
  const instanceDir = join(dir, 'floor', id);
  await mkdir(instanceDir, { recursive: true, mode: 0o755 });
  await chmod(join(dir, 'floor'), 0o755);
  if (!floorSeed) {
    // The seed is not part of the floor (the agent makes one per instance; that is agent overhead).
    floorSeed = join(dir, 'floor', 'seed.img');
    await writeFile(join(dir, 'floor', 'meta-data'), 'instance-id: floor\n');
    await writeFile(join(dir, 'floor', 'user-data'), '#cloud-config\n{}\n');
    await run(
      'genisoimage',
      ['-quiet', '-output', floorSeed, '-volid', 'cidata', '-joliet', '-rock', 'user-data', 'meta-data'],
      {
        cwd: join(dir, 'floor'),
      },
    );
  }
  const overlay = join(instanceDir, 'overlay.qcow2');
  const xmlPath = join(instanceDir, 'domain.xml');
  const base = join(dataDir, 'cache', 'guest.img');
  await writeFile(
    xmlPath,
    buildDomainXml({
      name,
      uuid: id,
      type: (service.host?.['hypervisor_type'] as 'qemu' | 'kvm' | undefined) ?? 'qemu',
      vcpus: 1,
      memoryMib: 256,
      disk: { path: overlay },
      seed: { path: floorSeed, device: 'disk' },
      consoleLogPath: join(instanceDir, 'console.log'),
      network: 'user',
      metadata: { instanceId: id, hostId: 'bench-floor' },
    }),
  );
  const started = performance.now();
  await run('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    'qcow2',
    '-b',
    base,
    overlay,
    String(1024 ** 3),
  ]);
  await virsh(SYSTEM_URI, 'define', xmlPath);
  await virsh(SYSTEM_URI, 'start', name);
  const ms = performance.now() - started;
  await removeDomains(SYSTEM_URI, name);
  return ms;
}

try {
  await agent
    .waitForLog((line) => line['message'] === 'agent ready', 120_000)
    .catch(async () => {
      throw new Error('agent did not start');
    });
  // Warm-up, not counted: fills the agent's image cache and warms libvirt and the page cache.
  await agentBuild();
  await floorBuild();
  const agentMs: number[] = [];
  const floorMs: number[] = [];
  for (let i = 0; i < N; i += 1) {
    agentMs.push(await agentBuild());
    floorMs.push(await floorBuild());
  }
  const agentMedian = median(agentMs);
  const floorMedian = median(floorMs);
  const overhead = agentMedian / floorMedian - 1;
  // Adjacent samples share the machine's load at that moment: their ratio is the steadier figure.
  const pairedOverhead = median(agentMs.map((a, i) => a / (floorMs[i] ?? Number.NaN))) - 1;
  const phaseNames = [...new Set(agentPhases.flatMap((p) => Object.keys(p)))];
  const agentPhaseMediansMs = Object.fromEntries(
    phaseNames.map((phase) => [phase, round(median(agentPhases.map((p) => p[phase] ?? Number.NaN)))]),
  );
  const result = {
    benchmark: 'agent-boot',
    n: N,
    hypervisorType: service.host?.['hypervisor_type'],
    agentMs: agentMs.map((v) => round(v)),
    floorMs: floorMs.map((v) => round(v)),
    agentMedianMs: round(agentMedian),
    floorMedianMs: round(floorMedian),
    overheadRatio: round(overhead, 3),
    pairedOverheadRatio: round(pairedOverhead, 3),
    agentPhaseMediansMs,
    targetOverheadRatio: 0.2,
    withinTarget: overhead < 0.2,
    // Other work on the machine moves these figures: the 1-minute load average when the run ended.
    loadAverage1m: round(loadavg()[0] ?? 0, 2),
  };
  console.log(JSON.stringify(result, null, 2));
  console.log(
    `agent build (claimed -> running, image cached): median ${round(agentMedian)} ms vs floor (qemu-img create + virsh define + virsh start) ${round(floorMedian)} ms: overhead ${round(overhead * 100)}% (paired ${round(pairedOverhead * 100)}%; target < 20%)`,
  );
} finally {
  await agent.stop('SIGTERM');
  for (const name of domains) await removeDomains(SYSTEM_URI, name);
  await service.stop();
  await rm(dir, { recursive: true, force: true });
}
