/** core/kernel/errors.ts: every class keeps its name, kind, message and place in the hierarchy. */
import { describe, expect, it } from 'vitest';
import { LeaseLost } from '#core/images/lease';
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  GoneError,
  HangarError,
  NotFoundError,
  RangeNotSatisfiableError,
  StaleWriteError,
  TooLargeError,
  UnauthorizedError,
  UnavailableError,
  UnsupportedMediaTypeError,
} from '#core/kernel/errors';

/** Every class takes the message first; the extra arguments of the 415 and the 416 are checked below. */
type ErrorClass = new (message: string) => HangarError;

const CLASSES: ReadonlyArray<readonly [ErrorClass, string, string]> = [
  [BadRequestError, 'BadRequestError', 'bad_request'],
  [UnauthorizedError, 'UnauthorizedError', 'unauthorized'],
  [ForbiddenError, 'ForbiddenError', 'forbidden'],
  [NotFoundError, 'NotFoundError', 'not_found'],
  [ConflictError, 'ConflictError', 'conflict'],
  [GoneError, 'GoneError', 'gone'],
  [TooLargeError, 'TooLargeError', 'too_large'],
  [UnsupportedMediaTypeError, 'UnsupportedMediaTypeError', 'unsupported_media_type'],
  [RangeNotSatisfiableError as unknown as ErrorClass, 'RangeNotSatisfiableError', 'range_not_satisfiable'],
  [UnavailableError, 'UnavailableError', 'unavailable'],
  [StaleWriteError, 'StaleWriteError', 'conflict'],
];

describe('domain errors', () => {
  it.each(CLASSES)('%o is named %s, of kind %s, a HangarError and no other class', (Class, name, kind) => {
    const error = new Class('the message');
    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(HangarError);
    expect(error).toBeInstanceOf(Class);
    expect({ name: error.name, kind: error.kind, message: error.message }).toEqual({
      name,
      kind,
      message: 'the message',
    });
    expect(String(error)).toBe(`${name}: the message`);
    expect(error.stack).toContain('errors.test.ts');
    for (const [Other] of CLASSES) if (Other !== Class) expect(error).not.toBeInstanceOf(Other);
  });

  it('keeps the extra fields and the default 401 message', () => {
    expect(new UnsupportedMediaTypeError('no', ['a/b']).acceptPatch).toEqual(['a/b']);
    expect(new RangeNotSatisfiableError('past the end', 10).size).toBe(10);
    expect(new UnauthorizedError().message).toBe(
      'This server could not verify that you are authorized to access the document you requested.',
    );
  });

  it('lets a subclass name itself and stay what it extends', () => {
    const lost = new LeaseLost('img-1', 'queued');
    expect(lost).toBeInstanceOf(ConflictError);
    expect({ name: lost.name, kind: lost.kind }).toEqual({ name: 'LeaseLost', kind: 'conflict' });
  });
});
