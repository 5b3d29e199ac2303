import { describe, expect, it } from 'vitest';
import {
  dedupeTags,
  enforcePropertyQuota,
  enforceTagQuota,
  isWritableBaseProperty,
  pyRepr,
  validatePropertyValue,
} from '#core/images/validation';
import { errorOf } from './fixtures.ts';

describe('pyRepr', () => {
  it.each([
    [null, 'None'],
    [undefined, 'None'],
    [true, 'True'],
    [false, 'False'],
    [5, '5'],
    [-1.5, '-1.5'],
    ['abc', "'abc'"],
    ["it's", '"it\'s"'],
    ['say "hi"', '\'say "hi"\''],
    ['both \' and "', "'both \\' and \"'"],
    ['back\\slash', "'back\\\\slash'"],
    ['line\nbreak\ttab\r', "'line\\nbreak\\ttab\\r'"],
    ['\u0001', "'\\x01'"],
    ['café', "'café'"],
    [[1, 'a', null], "[1, 'a', None]"],
    [{ a: [true] }, "{'a': [True]}"],
  ])('renders %j as Python would', (value, expected) => {
    // Act
    const text = pyRepr(value);

    // Assess
    expect(text).toBe(expected);
  });
});

describe('validatePropertyValue', () => {
  it.each([
    ['name', 'ok'],
    ['owner', null],
    ['tags', []],
    ['os_distro', 'debian'],
    ['constructor', 'x'],
    ['__proto__', 'x'],
  ])('accepts %s = %j', (key, value) => {
    // Act
    const act = () => validatePropertyValue(key, value);

    // Assess
    expect(act).not.toThrow();
  });

  it('refuses an object-typed extra property named like an Object method', () => {
    // Act
    const error = errorOf(() => validatePropertyValue('toString', 5));

    // Assess
    expect(error).toEqual({
      kind: 'bad_request',
      message: "Provided object does not match schema 'image': 5 is not of type 'string'",
    });
  });
});

describe('isWritableBaseProperty', () => {
  it.each([
    ['name', true],
    ['tags', true],
    ['owner', true],
    ['status', false],
    ['os_distro', false],
  ])('%s -> %s', (key, expected) => {
    // Act
    const result = isWritableBaseProperty(key);

    // Assess
    expect(result).toBe(expected);
  });
});

describe('quotas and tags', () => {
  it('keeps the first occurrence order when removing duplicate tags', () => {
    // Act
    const tags = dedupeTags(['b', 'a', 'b', 'c', 'a']);

    // Assess
    expect(tags).toEqual(['b', 'a', 'c']);
  });

  it('accepts counts up to the quota and refuses one more', () => {
    // Prepare
    const quotas = { properties: 3, tags: 3 };

    // Act
    const within = () => {
      enforcePropertyQuota(3, quotas);
      enforceTagQuota(3, quotas);
    };
    const properties = errorOf(() => enforcePropertyQuota(4, quotas));
    const tags = errorOf(() => enforceTagQuota(4, quotas));

    // Assess
    expect(within).not.toThrow();
    expect(properties.kind).toBe('too_large');
    expect(tags).toEqual({
      kind: 'too_large',
      message: 'The limit has been exceeded on the number of allowed image tags. Attempted: 4, Maximum: 3',
    });
  });
});

describe('length limits', () => {
  it('counts characters, not UTF-16 units, as Glance does', () => {
    // Prepare
    const emoji = '\u{1F600}'.repeat(255);

    // Act
    const accepted = () => validatePropertyValue('name', emoji);
    const refused = errorOf(() => validatePropertyValue('name', `${emoji}x`));

    // Assess
    expect(accepted).not.toThrow();
    expect(refused.kind).toBe('bad_request');
  });
});
