/**
 * The console in a real browser: a reference created, moved, and rolled back from its timeline
 * (and a move that lost the compare-and-swap race shown as such); an instance created from the
 * reference on a host whose agent (the real claim loop, test/helpers/claiming-agent.ts) runs its
 * jobs through the jobs API, driven through sleep, wake, snapshot (the agent uploads a real qcow2
 * with the job's grant), upgrade, rollback, stop and destroy with the stage updating and only the
 * actions the stage allows enabled; the hosts page for admins.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { launchBrowser, screenshot, signIn, type TestBrowser } from '../helpers/browser.ts';
import { type ClaimingAgent, startClaimingAgent } from '../helpers/claiming-agent.ts';

const HOST = 'host-1';

describe('console: references and instances', () => {
  let t: TestBackend;
  let browser: TestBrowser;
  let agent: ClaimingAgent;
  let page: Page;
  const ids: string[] = [];
  // A real (tiny) qcow2 for the snapshot: the upload's format inspection checks disk_format.
  const scratch = mkdtempSync(join(tmpdir(), 'hangar-console-snap-'));
  const snapshotDisk = join(scratch, 'snap.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', snapshotDisk, '16M']);

  async function activeImage(name: string): Promise<string> {
    const created = await t.request('POST', '/v2/images', {
      token: t.tokens.alice,
      headers: { accept: 'application/json' },
      body: { name, disk_format: 'raw', container_format: 'bare' },
    });
    const { id } = (await created.json()) as { id: string };
    const put = await t.request('PUT', `/v2/images/${id}/file`, {
      token: t.tokens.alice,
      headers: { 'content-type': 'application/octet-stream' },
      body: new TextEncoder().encode(`disk of ${name}`),
    });
    expect(put.status).toBe(204);
    return id;
  }

  beforeAll(async () => {
    t = await startTestBackend({ hosts: [HOST] });
    browser = await launchBrowser();
    ids.push(await activeImage('web-v1'), await activeImage('web-v2'), await activeImage('web-v3'));
    const registered = await t.request('PUT', `/v1/hosts/${HOST}`, {
      token: t.hostTokens[HOST] ?? '',
      body: {
        vcpus: 8,
        ram_mb: 16384,
        disk_gb: 200,
        architecture: 'x86_64',
        hypervisor_type: 'qemu',
        hypervisor_version: 9_000_000,
      },
    });
    expect(registered.status).toBe(200);
    agent = startClaimingAgent({
      serviceUrl: t.url,
      hostId: HOST,
      token: t.hostTokens[HOST] ?? '',
      socketUrl: `${t.url.replace(/^http/, 'ws')}/v1/agent-socket`,
      fallbackMs: 1000,
      disconnectedPollMs: 250,
      // What a booting guest's serial console would have said, as the real agent reports it.
      result: (job) => ({
        console_log: `[    0.000000] Linux version 6.1\n${job.instance.name} login: (${job.kind} done)\n`,
      }),
      work: {
        // A guest that never prints the marker `never-printed`: the agent fails the build as the
        // real one does when its boot check times out; every other build boots.
        build: async (job) => {
          if (job.instance.boot_check?.marker === 'never-printed')
            throw new Error('boot check failed: the console never printed never-printed');
          return {
            console_log: `[    0.000000] Linux version 6.1\n${job.instance.name} login: (build done)\n`,
          };
        },
        // What the real agent does (agent/src/jobs.ts snapshot): upload with the grant, report the digests.
        snapshot: async (job, service, signal) => {
          const spec = job.snapshot;
          if (!spec) throw new Error('snapshot job without its grant');
          const sent = await service.uploadImageFile(spec.image_id, spec.upload_grant, snapshotDisk, signal);
          return {
            snapshot: { size: sent.size, checksum: sent.md5, os_hash_value: sent.sha512, paused_ms: 1 },
          };
        },
      },
    });
  });
  afterAll(async () => {
    await agent?.stop();
    await browser?.close();
    await t?.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  const current = () => page.locator('code.current-image').textContent();

  it('creates a reference, moves it, and rolls it back from the timeline', async () => {
    const [v1, v2] = ids as [string, string];
    page = await browser.newPage();
    await signIn(page, t.url, t.tokens.alice);
    await page.getByRole('link', { name: 'References' }).click();
    await page.getByLabel('Reference', { exact: true }).fill('web:prod');
    await page.getByLabel('Image', { exact: true }).selectOption(v1);
    await page.getByRole('button', { name: 'Create reference' }).click();
    await page.getByRole('heading', { name: 'web:prod' }).waitFor();
    await expect.poll(current).toBe(v1);
    expect(page.url()).toContain('/console/references/web%3Aprod');

    await page.getByLabel('Move to image').selectOption(v2);
    await page.getByRole('button', { name: 'Move', exact: true }).click();
    await expect.poll(current).toBe(v2);
    const timeline = page.locator('ol.timeline li');
    await expect.poll(() => timeline.count()).toBe(2);
    expect(await timeline.nth(0).textContent()).toContain('move');
    expect(await timeline.nth(0).textContent()).toContain('alice');
    await screenshot(page, 'reference');

    // One click on the earlier entry puts the reference back.
    await timeline
      .nth(1)
      .getByRole('button', { name: /Roll back to this/ })
      .click();
    await expect.poll(current).toBe(v1);
    await expect.poll(() => timeline.count()).toBe(3);
    expect(await timeline.nth(0).textContent()).toContain('rollback');
    const resolved = (await (
      await t.request('GET', '/v1/references/web:prod', {
        token: t.tokens.alice,
        headers: { accept: 'application/json' },
      })
    ).json()) as { image_id: string };
    expect(resolved.image_id).toBe(v1);
  });

  it('shows a move that lost the compare-and-swap race as such', async () => {
    const [v1, , v3] = ids as [string, string, string];
    await expect.poll(current).toBe(v1);
    // Someone else (the CLI, another tab) moves it behind the page's back.
    const behind = await t.request('POST', '/v1/references/web:prod/move', {
      token: t.tokens.alice,
      body: { image_id: v3, expect: v1 },
    });
    expect(behind.status).toBe(200);
    await page.getByLabel('Move to image').selectOption(ids[1] ?? '');
    await page.getByRole('button', { name: 'Move', exact: true }).click();
    const alert = page.getByRole('alert');
    await expect.poll(() => alert.textContent()).toContain('Someone else moved web:prod first');
    expect(await alert.textContent()).toContain(`it now points to ${v3}`);
    // The page shows the state the race left, and the service kept the winner's move.
    await expect.poll(current).toBe(v3);
  });

  it('creates an instance from the reference and drives it through sleep, wake, snapshot, upgrade, rollback, stop and destroy', async () => {
    await page.getByRole('link', { name: 'Instances' }).click();
    await page.getByLabel('Image (reference or id)').fill('web:prod');
    await page.getByLabel('Name', { exact: true }).fill('web-1');
    await page.getByLabel('Memory (MB)').fill('256');
    await page.getByLabel('Disk (GB)').fill('1');
    await page.getByRole('button', { name: 'Create instance' }).click();
    await page.getByRole('heading', { name: 'web-1' }).waitFor();
    const stage = page.locator('.instance-stage');
    const instanceId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop() ?? '');
    await expect.poll(() => stage.textContent(), { timeout: 20_000 }).toBe('Running');
    const button = (name: string) => page.getByRole('button', { name, exact: true });
    // Only what Running allows.
    expect(await button('Start').isDisabled()).toBe(true);
    expect(await button('Wake').isDisabled()).toBe(true);
    expect(await button('Sleep').isEnabled()).toBe(true);
    await expect.poll(() => page.locator('pre.log').textContent()).toContain('web-1 login: (build done)');
    await screenshot(page, 'instance');

    const act = async (action: string, expected: string, command?: string) => {
      await button(action).click();
      const dialog = page.getByRole('dialog');
      // The confirmation offers the CLI line for the same action.
      await dialog.getByRole('button', { name: 'Copy as command' }).click();
      const cli = command ?? (action === 'Destroy' ? 'rm' : action.toLowerCase());
      expect(await dialog.locator('code.command').textContent()).toBe(`hangar ${cli} ${instanceId}`);
      await dialog.getByRole('button', { name: action, exact: true }).click();
      await expect.poll(() => stage.textContent(), { timeout: 20_000 }).toBe(expected);
    };
    // Rollback needs a previous disk: none yet.
    expect(await button('Upgrade').isEnabled()).toBe(true);
    expect(await button('Rollback').isDisabled()).toBe(true);
    await act('Sleep', 'Sleep');
    expect(await button('Wake').isEnabled()).toBe(true);
    expect(await button('Reboot').isDisabled()).toBe(true);
    // A sleeping instance can be snapshotted but not upgraded.
    expect(await button('Snapshot').isEnabled()).toBe(true);
    expect(await button('Upgrade').isDisabled()).toBe(true);
    await act('Wake', 'Running');

    // Snapshot: the dialog names the CLI line, the agent uploads, the image shows in the catalogue.
    await button('Snapshot').click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Image name').fill('web-1-snap');
    await dialog.getByLabel(/Reference to point at it/).fill('web:snap');
    await dialog.getByRole('button', { name: 'Copy as command' }).click();
    expect(await dialog.locator('code.command').textContent()).toBe(`hangar snapshot ${instanceId} web:snap`);
    await dialog.getByRole('button', { name: 'Snapshot', exact: true }).click();
    const notice = page.getByRole('status').filter({ hasText: 'Snapshot image' });
    await notice.waitFor();
    const snapId = (await notice.getByRole('link').textContent()) ?? '';
    expect(snapId).toMatch(/^[0-9a-f-]{36}$/);
    await expect.poll(() => stage.textContent(), { timeout: 20_000 }).toBe('Running');
    const catalogue = await browser.newPage();
    await signIn(catalogue, t.url, t.tokens.alice);
    const row = catalogue.locator('tr', { hasText: 'web-1-snap' });
    // The reference moves after the image turns active (the job's completion): reload until both show.
    await expect
      .poll(
        async () => {
          await catalogue.reload();
          await row.waitFor({ timeout: 5_000 }).catch(() => undefined);
          const text = (await row.textContent({ timeout: 1_000 }).catch(() => '')) ?? '';
          return text.includes('active') && text.includes('web:snap');
        },
        { timeout: 20_000, interval: 500 },
      )
      .toBe(true);
    await catalogue.close();
    // A refusal is shown in the API's own words (a malformed reference is a 400, nothing made).
    await button('Snapshot').click();
    await dialog.getByLabel(/Reference to point at it/).fill('not a reference!');
    await dialog.getByRole('button', { name: 'Snapshot', exact: true }).click();
    await expect.poll(() => dialog.getByRole('alert').textContent()).toContain('HTTP 400');
    await dialog.getByRole('button', { name: 'Cancel' }).click();

    // Upgrade to where the reference points now (moved behind the page's back), then roll back.
    const moved = await t.request('POST', '/v1/references/web:prod/move', {
      token: t.tokens.alice,
      body: { image_id: ids[0] ?? '' },
    });
    expect(moved.status).toBe(200);
    await button('Upgrade').click();
    await dialog.getByRole('button', { name: 'Copy as command' }).click();
    expect(await dialog.locator('code.command').textContent()).toBe(`hangar upgrade ${instanceId}`);
    await dialog.getByLabel(/Image \(reference or id/).fill('web:prod');
    await expect
      .poll(() => dialog.locator('code.command').textContent())
      .toBe(`hangar upgrade ${instanceId} --image web:prod`);
    await dialog.getByRole('button', { name: 'Upgrade', exact: true }).click();
    await expect.poll(() => stage.textContent(), { timeout: 20_000 }).toBe('Running');
    const props = page.locator('dl.props');
    await expect.poll(() => props.textContent(), { timeout: 20_000 }).toContain('previous diskweb-v3');
    expect(await props.textContent()).toContain(`(${ids[0]})`);
    expect(await button('Rollback').isEnabled()).toBe(true);
    // The stage stays Running throughout: what shows the rollback done is the disks having swapped.
    await act('Rollback', 'Running', 'rollback-instance');
    await expect.poll(() => props.textContent(), { timeout: 20_000 }).toContain(`(${ids[2]})`);
    expect(await props.textContent()).toContain('previous diskweb-v1');
    expect(await page.locator('.instance-stage').textContent()).toBe('Running');

    await act('Stop', 'Shutoff');
    expect(await button('Start').isEnabled()).toBe(true);
    expect(await button('Sleep').isDisabled()).toBe(true);
    expect(await button('Upgrade').isEnabled()).toBe(true);
    expect(await button('Rollback').isEnabled()).toBe(true);
    await act('Destroy', 'Inexistent');
    for (const name of [
      'Start',
      'Stop',
      'Sleep',
      'Wake',
      'Reboot',
      'Destroy',
      'Snapshot',
      'Upgrade',
      'Rollback',
    ])
      expect(await button(name).isDisabled(), name).toBe(true);
    // Every job went through the host's queue to the agent, in order.
    const kinds = agent.claims.map((claim) => claim.job.kind);
    expect(kinds).toEqual(['build', 'sleep', 'wake', 'snapshot', 'upgrade', 'rollback', 'stop', 'destroy']);

    await page.getByRole('link', { name: 'Instances' }).click();
    await expect.poll(() => page.locator('table.instances tbody').textContent()).toContain('web-1');
    expect(await page.locator('tr', { hasText: 'web-1' }).textContent()).toContain('Inexistent');
  });

  it('shows the hosts to admins only', async () => {
    await page.getByRole('link', { name: 'Hosts' }).click();
    await expect.poll(() => page.locator('main').textContent()).toContain('Only admins see the hosts.');
    const admin = await browser.newPage();
    await signIn(admin, t.url, t.tokens.admin);
    await admin.getByRole('link', { name: 'Hosts' }).click();
    await expect.poll(() => admin.locator('tbody').textContent()).toContain(HOST);
    expect(await admin.locator('tbody').textContent()).toContain('8 vCPU, 16384 MB, 200 GB');
    await screenshot(admin, 'hosts');
  });

  it('publishes a candidate behind the boot gate showing its stages, refuses one whose gate boot fails, and sets the retention policy', async () => {
    const [v1, v2] = ids as [string, string];
    await page.goto(`${t.url}/console/references/web%3Aprod`);
    await expect.poll(current).toBe(v1);
    const claimsBefore = agent.claims.length;
    await page.getByLabel('Candidate image').selectOption(v2);
    await page.getByLabel('Boot marker (optional)').fill('login:');
    await page.getByLabel('Boot timeout (s)').fill('60');
    const panel = page.locator('form', { has: page.getByRole('heading', { name: 'Publish a candidate' }) });
    await panel.getByRole('button', { name: 'Copy as command' }).click();
    expect(await panel.locator('code.command').textContent()).toBe(
      `hangar publish ${v2} web:prod --boot-marker login: --boot-timeout 60s --expect ${v1} --wait`,
    );
    await panel.getByRole('button', { name: 'Publish', exact: true }).click();
    const stages = panel.locator('ol.publish-stages li');
    await expect.poll(() => stages.last().textContent(), { timeout: 30_000 }).toContain('success');
    const seen = (await stages.allTextContents()).map((text) => text.split(' ')[0]);
    // The 202 answers pending or processing; the page saw it to its end.
    expect(['pending', 'processing']).toContain(seen[0]);
    expect(seen.at(-1)).toBe('success');
    expect(await panel.locator('.publish-outcome').textContent()).toContain(`web:prod now points to ${v2}`);
    await expect.poll(current).toBe(v2);
    await expect.poll(() => page.locator('ol.timeline li').first().textContent()).toContain('publish');
    // The gate ran through the host's queue: a build of the candidate, then its removal.
    const gateJobs = agent.claims.slice(claimsBefore).map((claim) => claim.job.kind);
    expect(gateJobs[0]).toBe('build');
    expect(agent.claims[claimsBefore]?.job.instance.image?.id).toBe(v2);
    await screenshot(page, 'publish');

    // A candidate whose gate boot fails: the publication ends in failure with the task's reason,
    // and the reference stays where it was.
    await page.getByLabel('Candidate image').selectOption(v1);
    await page.getByLabel('Boot marker (optional)').fill('never-printed');
    await panel.getByRole('button', { name: 'Publish', exact: true }).click();
    await expect.poll(() => stages.last().textContent(), { timeout: 30_000 }).toContain('failure');
    const outcome = await panel.locator('.publish-outcome').textContent();
    expect(outcome).toContain('Not published');
    expect(outcome).toContain('never printed never-printed');
    expect(outcome).toContain('The reference web:prod was left where it was.');
    await expect.poll(current).toBe(v2);

    // Retention: none yet; set, then still there after a reload.
    const policy = page.locator('.retention-policy');
    await expect.poll(() => policy.textContent()).toContain('No retention policy');
    await page.getByLabel('Versions to keep').fill('2');
    await page.getByLabel('Grace (days)').fill('3');
    await page.getByRole('button', { name: 'Set policy' }).click();
    await expect.poll(() => policy.textContent()).toContain('newest 2 versions');
    await page.reload();
    await expect.poll(() => policy.textContent()).toContain('deactivated after 3 days');
    const stored = (await (
      await t.request('GET', '/v1/names/web/retention', {
        token: t.tokens.alice,
        headers: { accept: 'application/json' },
      })
    ).json()) as { keep: number; grace_seconds: number };
    expect(stored).toMatchObject({ keep: 2, grace_seconds: 3 * 86_400 });
    await page.getByRole('button', { name: 'Apply now' }).click();
    await expect
      .poll(() => page.getByRole('status').filter({ hasText: 'Hidden:' }).textContent())
      .toMatch(/Hidden: \d+, deactivated: \d+, restored: \d+\./);
  });
});
