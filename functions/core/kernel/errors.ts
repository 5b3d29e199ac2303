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

export class BadRequestError extends HangarError {
  readonly kind = 'bad_request';
  override name = 'BadRequestError';
}

export class UnauthorizedError extends HangarError {
  readonly kind = 'unauthorized';
  override name = 'UnauthorizedError';
  constructor(
    message = 'This server could not verify that you are authorized to access the document you requested.',
  ) {
    super(message);
  }
}

export class ForbiddenError extends HangarError {
  readonly kind = 'forbidden';
  override name = 'ForbiddenError';
}

export class NotFoundError extends HangarError {
  readonly kind = 'not_found';
  override name = 'NotFoundError';
}

export class ConflictError extends HangarError {
  readonly kind = 'conflict';
  override name = 'ConflictError';
}

export class GoneError extends HangarError {
  readonly kind = 'gone';
  override name = 'GoneError';
}

export class TooLargeError extends HangarError {
  readonly kind = 'too_large';
  override name = 'TooLargeError';
}

export class UnsupportedMediaTypeError extends HangarError {
  readonly kind = 'unsupported_media_type';
  override name = 'UnsupportedMediaTypeError';
  /** Media types the resource does accept (sent back as Accept-Patch for PATCH). */
  constructor(
    message: string,
    readonly acceptPatch?: string[],
  ) {
    super(message);
  }
}

export class RangeNotSatisfiableError extends HangarError {
  readonly kind = 'range_not_satisfiable';
  override name = 'RangeNotSatisfiableError';
  constructor(
    message: string,
    readonly size: number,
  ) {
    super(message);
  }
}

export class UnavailableError extends HangarError {
  readonly kind = 'unavailable';
  override name = 'UnavailableError';
}

/** Raised by repositories when a conditional write lost a race (optimistic concurrency). */
export class StaleWriteError extends HangarError {
  readonly kind = 'conflict';
  override name = 'StaleWriteError';
}

export function assertIsError(error: unknown): asserts error is Error {
  if (!(error instanceof Error)) throw error;
}
