import { describe, expect, it } from 'vitest';
import { ExecError } from '../../../agent/src/errors.ts';
import { run } from '../../../agent/src/exec.ts';

async function execError(promise: Promise<unknown>): Promise<ExecError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ExecError)) throw new Error(`expected an ExecError, got ${String(error)}`);
  return error;
}

describe('run (exec wrapper)', () => {
  it('returns stdout, stderr and the exit code of a successful command', async () => {
    // Act
    const result = await run('sh', ['-c', 'echo out; echo err >&2']);

    // Assess
    expect(result).toEqual({ stdout: 'out\n', stderr: 'err\n', exitCode: 0 });
  });

  it('passes arguments verbatim, with no shell to interpret them', async () => {
    // Act
    const { stdout } = await run('printf', ['%s|', '$(id)', 'a;b', '*']);

    // Assess
    expect(stdout).toBe('$(id)|a;b|*|');
  });

  it('rejects a non-zero exit with a typed error that keeps stderr and the exit code', async () => {
    // Act
    const error = await execError(run('sh', ['-c', 'echo boom >&2; exit 3']));

    // Assess
    expect(error.details).toMatchObject({ reason: 'exit', exitCode: 3, stderr: 'boom\n', command: 'sh' });
    expect(error.message).toContain('exit code 3: boom');
  });

  it('accepts exit codes the caller declares as success', async () => {
    // Act
    const result = await run('sh', ['-c', 'exit 67'], { okExitCodes: [67] });

    // Assess
    expect(result.exitCode).toBe(67);
  });

  it('kills a command that outlives its timeout', async () => {
    // Prepare
    const started = Date.now();

    // Act
    const error = await execError(run('sleep', ['10'], { timeoutMs: 200 }));

    // Assess
    expect(error.details.reason).toBe('timeout');
    expect(error.details.signal).toBe('SIGTERM');
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('SIGKILLs a command that ignores SIGTERM after the grace period', async () => {
    // Prepare
    const started = Date.now();

    // Act
    const error = await execError(run('sh', ['-c', "trap '' TERM; sleep 10"], { timeoutMs: 200 }));

    // Assess
    expect(error.details.reason).toBe('timeout');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('stops a command when its AbortSignal fires', async () => {
    // Prepare
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);

    // Act
    const error = await execError(run('sleep', ['10'], { signal: controller.signal }));

    // Assess
    expect(error.details.reason).toBe('aborted');
  });

  it('does not start at all when the signal is already aborted', async () => {
    // Act
    const error = await execError(run('touch', ['/nonexistent/never'], { signal: AbortSignal.abort() }));

    // Assess
    expect(error.details.reason).toBe('aborted');
  });

  it('reports a missing binary as a spawn failure', async () => {
    // Act
    const error = await execError(run('/nonexistent/binary', []));

    // Assess
    expect(error.details.reason).toBe('spawn');
    expect(error.message).toContain('ENOENT');
  });

  it('forces the C locale so tool messages can be matched', async () => {
    // Act
    const { stdout } = await run('sh', ['-c', 'echo "$LC_ALL/$LANG"'], { env: { LC_ALL: 'de_DE.UTF-8' } });

    // Assess
    expect(stdout.trim()).toBe('C/C');
  });
});
