/**
 * The agent's only door to child processes (lint bans node:child_process elsewhere in agent/).
 * spawn with an argument array and no shell, a timeout, an AbortSignal, a checked exit code, and a typed
 * ExecError that keeps stderr. LC_ALL=C so libvirt's messages can be matched (hypervisor/virsh.ts).
 */
import { spawn } from 'node:child_process';
import { ExecError } from './errors.ts';

export interface ExecOptions {
  /** Kill the process group (SIGTERM, then SIGKILL 2 s later) after this long. Default 60 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  cwd?: string;
  /** Extra environment on top of process.env (LC_ALL=C is always forced). */
  env?: Record<string, string>;
  /** Exit codes that count as success. Default [0]. */
  okExitCodes?: readonly number[];
  /** Output beyond this (per stream) fails the call, as execFile's maxBuffer does. */
  maxBufferBytes?: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const KILL_GRACE_MS = 2_000;

export function run(
  command: string,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const okExitCodes = options.okExitCodes ?? [0];
  const maxBuffer = options.maxBufferBytes ?? 16 * 1024 * 1024;
  const describe = `${command} ${args.join(' ')}`.slice(0, 300);
  const base = { command, args: [...args] };

  return new Promise<ExecResult>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(
        new ExecError(
          `${describe}: aborted before start`,
          { ...base, reason: 'aborted', exitCode: null, signal: null, stdout: '', stderr: '' },
          { cause: options.signal.reason },
        ),
      );
      return;
    }
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env, LC_ALL: 'C', LANG: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: false,
      windowsHide: true,
      // Own process group, so a timeout also kills grandchildren (which would otherwise hold the output
      // pipes open and keep the call waiting long after its deadline).
      detached: true,
    });

    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let reason: 'timeout' | 'aborted' | 'overflow' | undefined;
    let spawnError: Error | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // The group is gone already.
      }
    };
    const stop = (why: 'timeout' | 'aborted' | 'overflow') => {
      if (reason !== undefined || child.exitCode !== null || child.signalCode !== null) return;
      reason = why;
      killGroup('SIGTERM');
      // A process that ignores SIGTERM must not outlive its deadline for long.
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    };
    const onAbort = () => stop('aborted');
    const timer = setTimeout(() => stop('timeout'), timeoutMs);
    options.signal?.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes > maxBuffer) stop('overflow');
      else out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      errBytes += chunk.length;
      if (errBytes > maxBuffer) stop('overflow');
      else err.push(chunk);
    });
    child.on('error', (error) => {
      spawnError = error;
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const details = { ...base, stdout, stderr, exitCode: code, signal };
      if (spawnError) {
        reject(
          new ExecError(
            `${describe}: ${spawnError.message}`,
            { ...details, reason: 'spawn' },
            { cause: spawnError },
          ),
        );
        return;
      }
      if (reason === 'timeout' || reason === 'aborted') {
        const what = reason === 'timeout' ? `timed out after ${timeoutMs} ms` : 'aborted';
        reject(
          new ExecError(`${describe}: ${what}`, { ...details, reason }, { cause: options.signal?.reason }),
        );
        return;
      }
      if (reason === 'overflow') {
        reject(new ExecError(`${describe}: output over ${maxBuffer} bytes`, { ...details, reason: 'exit' }));
        return;
      }
      if (code === null || !okExitCodes.includes(code)) {
        const tail = stderr.trim().split('\n').slice(-3).join(' | ');
        const how = code === null ? `killed by ${signal ?? 'a signal'}` : `exit code ${code}`;
        reject(
          new ExecError(`${describe}: ${how}${tail ? `: ${tail}` : ''}`, { ...details, reason: 'exit' }),
        );
        return;
      }
      resolve({ stdout, stderr, exitCode: code });
    });
  });
}
