/** The exit codes of `hangar` (README, "The hangar command"), and the one error type that carries one. */

export const ExitCode = {
  ok: 0,
  error: 1,
  usage: 2,
  notFound: 3,
  /** A conflict (409) or a refused gate (a failed publish). */
  conflict: 4,
  timeout: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = ExitCode.error,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const usageError = (message: string) => new CliError(message, ExitCode.usage);

/** The exit code an HTTP error status means to a script. */
export function exitCodeForStatus(status: number): ExitCode {
  if (status === 404) return ExitCode.notFound;
  if (status === 409) return ExitCode.conflict;
  if (status === 408 || status === 504) return ExitCode.timeout;
  return ExitCode.error;
}
