/**
 * The agent's error hierarchy: one base class, one subclass per thing that can go wrong, each carrying
 * `cause` so a job's failure reason can be traced to the process or request underneath.
 */
export class AgentError extends Error {
  override name = 'AgentError';
}

/** The base of an AgentError subclass with its name spelled out (a bundler may rename classes). */
function agentError(name: string) {
  return class extends AgentError {
    override name = name;
  };
}

export class ConfigError extends agentError('ConfigError') {}

/** A child process could not be run, was killed, or exited with a code the caller did not accept. */
export class ExecError extends AgentError {
  override name = 'ExecError';
  constructor(
    message: string,
    readonly details: {
      command: string;
      args: readonly string[];
      reason: 'exit' | 'timeout' | 'aborted' | 'spawn';
      exitCode: number | null;
      signal: string | null;
      stdout: string;
      stderr: string;
    },
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * What libvirt said, reduced to the cases the agent acts on. virsh prints English messages only when
 * LC_ALL=C, which exec.ts always sets.
 */
export type LibvirtErrorCode =
  | 'not_found'
  | 'not_running'
  | 'already_running'
  | 'no_managed_save'
  | 'busy'
  | 'uuid_conflict'
  | 'other';

export class LibvirtError extends AgentError {
  override name = 'LibvirtError';
  constructor(
    message: string,
    readonly code: LibvirtErrorCode,
    readonly domain: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A downloaded (or cached) image's sha512 is not the one the service published. Never booted. */
export class ImageChecksumError extends AgentError {
  override name = 'ImageChecksumError';
  constructor(
    readonly imageId: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `image ${imageId}: sha512 mismatch (expected ${expected.slice(0, 16)}…, got ${actual.slice(0, 16)}…)`,
    );
  }
}

export class ImageDownloadError extends agentError('ImageDownloadError') {}
/** The image is not something the agent will put under a guest (unknown format, backing file, ...). */
export class ImageFormatError extends agentError('ImageFormatError') {}
export class BootTimeoutError extends agentError('BootTimeoutError') {}
/** An upgraded boot failed its check and the agent put the instance back on its previous disk. */
export class UpgradeRolledBackError extends agentError('UpgradeRolledBackError') {}
/** The service answered 409 to a lease heartbeat: another agent (or the service) owns the job now. */
export class LeaseLostError extends agentError('LeaseLostError') {}

export class ServiceError extends AgentError {
  override name = 'ServiceError';
  constructor(
    message: string,
    readonly status: number | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A job that cannot be carried out as asked (e.g. wake without a saved state). */
export class JobRejectedError extends agentError('JobRejectedError') {}

export function assertIsError(error: unknown): asserts error is Error {
  if (!(error instanceof Error)) throw error;
}

/** Message plus the chain of causes, for failure reasons and logs. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth += 1) {
    if (current instanceof Error) {
      parts.push(`${current.name}: ${current.message}`);
      current = current.cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return parts.join(' <- ');
}
