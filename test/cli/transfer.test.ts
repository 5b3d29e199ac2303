/**
 * `hangar pull` resumes: a pull killed mid-way leaves FILE.part, and the next run asks only for
 * the rest (Range), verifies the whole file, and keeps nothing when the bytes are wrong. Progress
 * is a bar on a terminal (a pseudo-terminal from `script`) and plain lines without one.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBackend, type TestBackend } from '../helpers/backend.ts';
import { baseEnv, freshConfigDir, HANGAR_BIN, hangar, startHangar } from '../helpers/hangar.ts';

const SIZE = 12 * 1024 * 1024;

describe('hangar pull: resume, verification and progress', () => {
  let t: TestBackend;
  let dir: string;
  let bytes: Buffer;
  let env: Record<string, string>;

  beforeAll(async () => {
    t = await startTestBackend();
    dir = mkdtempSync(join(tmpdir(), 'hangar-cli-transfer-'));
    env = { HANGAR_URL: t.url, HANGAR_TOKEN: t.tokens.alice, HANGAR_CONFIG_DIR: freshConfigDir() };
    bytes = randomBytes(SIZE);
    writeFileSync(join(dir, 'big.raw'), bytes);
    const pushed = await hangar(['push', join(dir, 'big.raw'), 'big:1', '-q'], { env });
    expect(pushed.code, pushed.stderr).toBe(0);
  });
  afterAll(async () => {
    await t?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Starts a slow pull of big:1 into `target` and kills it once `atLeast` bytes are in the part file. */
  async function interruptedPull(target: string, atLeast: number): Promise<number> {
    const child = startHangar(['pull', 'big:1', '-O', target, '--limit-rate', '2M', '-q'], { env });
    const exited = new Promise((resolve) => child.on('close', resolve));
    const part = `${target}.part`;
    const deadline = Date.now() + 30_000;
    while (!(existsSync(part) && statSync(part).size >= atLeast)) {
      if (Date.now() > deadline) throw new Error('the pull never got going');
      await sleep(20);
    }
    child.kill('SIGKILL');
    await exited;
    return statSync(part).size;
  }

  it('a killed pull, run again, receives only the rest and verifies the whole file', async () => {
    const target = join(dir, 'resumed.raw');
    const kept = await interruptedPull(target, 3 * 1024 * 1024);
    expect(kept).toBeGreaterThanOrEqual(3 * 1024 * 1024);
    expect(kept).toBeLessThan(SIZE);
    expect(existsSync(target)).toBe(false);

    const again = await hangar(['pull', 'big:1', '-O', target, '-o', 'json'], { env });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      size: SIZE,
      resumed_from: kept,
      received: SIZE - kept,
      verified: true,
      sha512: createHash('sha512').update(bytes).digest('hex'),
    });
    expect(again.stderr).toContain('resuming');
    expect(readFileSync(target).equals(bytes)).toBe(true);
    expect(existsSync(`${target}.part`)).toBe(false);
    expect(existsSync(`${target}.part.json`)).toBe(false);
  });

  it('fails loudly and keeps nothing when the resumed bytes do not match the sha512', async () => {
    const target = join(dir, 'corrupt.raw');
    await interruptedPull(target, 1024 * 1024);
    // One flipped byte in what the first run kept.
    const fd = openSync(`${target}.part`, 'r+');
    writeSync(fd, Buffer.from([bytes[4096]! ^ 0xff]), 0, 1, 4096);
    const failed = await hangar(['pull', 'big:1', '-O', target], { env });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/verification FAILED.*Nothing was kept/);
    expect(failed.stdout).toBe('');
    for (const left of [target, `${target}.part`, `${target}.part.json`])
      expect(existsSync(left)).toBe(false);
  });

  it('starts over when the part file belongs to another image', async () => {
    const target = join(dir, 'moved.raw');
    await interruptedPull(target, 1024 * 1024);
    const other = randomBytes(4096);
    writeFileSync(join(dir, 'other.raw'), other);
    expect((await hangar(['push', join(dir, 'other.raw'), 'big:1', '-q'], { env })).code).toBe(0);
    const fresh = await hangar(['pull', 'big:1', '-O', target, '-o', 'json'], { env });
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(JSON.parse(fresh.stdout)).toMatchObject({ resumed_from: 0, received: 4096, verified: true });
    expect(readFileSync(target).equals(other)).toBe(true);
    expect((await hangar(['rollback', 'big:1', '-q'], { env })).code).toBe(0);
  });

  it('draws a bar on a terminal and prints plain lines without one, always on stderr', async () => {
    const onTty = join(dir, 'tty.raw');
    const tty = await onTerminal(['pull', 'big:1', '-O', onTty, '--limit-rate', '8M']);
    expect(tty.code, tty.output).toBe(0);
    expect(tty.output).toContain('\u2588'); // the bar's full block
    expect(tty.output).toMatch(/pull big:1 \|[\u2588\u2591]{30}\| 100% /);
    expect(tty.output).toMatch(/ETA/);
    expect(tty.output).toContain('\r');

    const piped = await hangar(['pull', 'big:1', '-O', join(dir, 'piped.raw'), '--limit-rate', '8M'], {
      env,
    });
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).not.toContain('\u2588');
    expect(piped.stderr).not.toContain('\r');
    expect(piped.stderr).not.toContain('\u001b[');
    expect(piped.stderr).toMatch(/^pull big:1: \d+% .*\/s$/m);
    expect(piped.stderr).toMatch(/^pull big:1: done 12\.0 MiB in /m);
    // stdout carries the result, not the progress.
    expect(piped.stdout).not.toMatch(/\d+%/);
    expect(piped.stdout).toContain('verified');

    // --progress none and -q print no progress at all.
    const quiet = await hangar(['pull', 'big:1', '-O', join(dir, 'quiet.raw'), '--progress', 'none'], {
      env,
    });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).not.toMatch(/%/);
  });

  /** `hangar ARGS` under a pseudo-terminal (`script`): what it printed there, stdout and stderr together. */
  function onTerminal(args: string[], extraEnv: Record<string, string | undefined> = {}) {
    const command = [process.execPath, HANGAR_BIN, ...args].map((word) => `'${word}'`).join(' ');
    return new Promise<{ code: number; output: string }>((resolve) => {
      execFile(
        'script',
        ['-qec', command, '/dev/null'],
        { env: baseEnv({ ...env, ...extraEnv }), timeout: 60_000 },
        (error, stdout) =>
          resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, output: stdout }),
      );
    });
  }

  it('colours table headers on a terminal, and not with NO_COLOR or through a pipe', async () => {
    const bold = '\u001b[1mID';
    const coloured = await onTerminal(['images'], { NO_COLOR: undefined });
    expect(coloured.code, coloured.output).toBe(0);
    expect(coloured.output).toContain(bold);
    const plain = await onTerminal(['images'], { NO_COLOR: '1' });
    expect(plain.output).toMatch(/^ID\s+NAME/m);
    expect(plain.output).not.toContain('\u001b[');
    const piped = await hangar(['images'], { env: { ...env, NO_COLOR: undefined } });
    expect(piped.stdout).not.toContain('\u001b[');
  });

  it('an interrupted push (Ctrl+C) exits 130 and leaves no image behind', async () => {
    const child = startHangar(['push', join(dir, 'big.raw'), 'stopped:1', '--limit-rate', '2M'], { env });
    let stderr = '';
    child.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    while (!/\d+% /.test(stderr)) {
      if (Date.now() > deadline) throw new Error(`the push never got going: ${stderr}`);
      await sleep(50);
    }
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/interrupted at .* of 12\.0 MiB; image .* removed/);
    const images = await hangar(['images', '--all', '-o', 'json'], { env });
    expect((JSON.parse(images.stdout) as { name: string }[]).map((image) => image.name)).not.toContain(
      'stopped',
    );
    expect((await hangar(['inspect', 'stopped:1'], { env })).code).toBe(3);
  });

  it('prints completion scripts for bash, zsh and fish that name the commands', async () => {
    for (const shell of ['bash', 'zsh', 'fish']) {
      const script = await hangar(['completion', shell], { env });
      expect(script.code).toBe(0);
      for (const command of ['push', 'pull', 'images', 'rollback']) expect(script.stdout).toContain(command);
    }
    const bash = await hangar(['completion', 'bash'], { env });
    const checked = await new Promise<number>((resolve) => {
      const child = execFile('bash', ['-n'], (error) => resolve(error ? 1 : 0));
      child.stdin?.end(bash.stdout);
    });
    expect(checked).toBe(0);
    expect((await hangar(['completion', 'tcsh'], { env })).code).toBe(2);
  });
});
