/**
 * Domain errors. They carry a kind, never an HTTP status: the edge (functions/edge/http.ts)
 * is the only place that maps kinds to status codes.
 */
export type ErrorKind =
  | 'bad_request'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'gone'
  | 'too_large'
  | 'unsupported_media_type'
  | 'range_not_satisfiable'
  | 'unavailable';

export abstract class HangarError extends Error {
  abstract readonly kind: ErrorKind;
  override name = 'HangarError';
}

/**
 * The base of one error class: its kind, and its name spelled out (a bundler may rename classes;
 * logs and clients read `name`). Each call makes its own base, so `instanceof` tells the classes
 * apart even where two share a kind (ConflictError, StaleWriteError).
 */
function errorOf<K extends ErrorKind>(kind: K, name: string) {
  return class extends HangarError {
    readonly kind: K = kind;
    override name = name;
  };
}

export class BadRequestError extends errorOf('bad_request', 'BadRequestError') {}
export class ForbiddenError extends errorOf('forbidden', 'ForbiddenError') {}
export class NotFoundError extends errorOf('not_found', 'NotFoundError') {}
export class ConflictError extends errorOf('conflict', 'ConflictError') {}
export class GoneError extends errorOf('gone', 'GoneError') {}
export class TooLargeError extends errorOf('too_large', 'TooLargeError') {}
export class UnavailableError extends errorOf('unavailable', 'UnavailableError') {}
/** Raised by repositories when a conditional write lost a race (optimistic concurrency). */
export class StaleWriteError extends errorOf('conflict', 'StaleWriteError') {}

export class UnauthorizedError extends errorOf('unauthorized', 'UnauthorizedError') {
  constructor(
    message = 'This server could not verify that you are authorized to access the document you requested.',
  ) {
    super(message);
  }
}

export class UnsupportedMediaTypeError extends errorOf(
  'unsupported_media_type',
  'UnsupportedMediaTypeError',
) {
  /** Media types the resource does accept (sent back as Accept-Patch for PATCH). */
  constructor(
    message: string,
    readonly acceptPatch?: string[],
  ) {
    super(message);
  }
}

export class RangeNotSatisfiableError extends errorOf('range_not_satisfiable', 'RangeNotSatisfiableError') {
  constructor(
    message: string,
    readonly size: number,
  ) {
    super(message);
  }
}

export function assertIsError(error: unknown): asserts error is Error {
  if (!(error instanceof Error)) throw error;
}
