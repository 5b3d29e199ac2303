import { describe, expect, it } from 'vitest';
import { IniSyntaxError, parseIni } from '#core/kernel/ini';

function syntaxErrorOf(text: string): { line: number; message: string } {
  try {
    parseIni(text);
  } catch (error) {
    if (error instanceof IniSyntaxError) return { line: error.line, message: error.message };
    throw error;
  }
  throw new Error('expected an IniSyntaxError');
}

describe('parseIni', () => {
  it('reads sections in file order, with lower-cased keys and trimmed values', () => {
    // Prepare
    const text = [
      '# a comment',
      '; another comment',
      '',
      '[^x_.*]',
      'Create = admin, member',
      'read: @',
      '',
      '[.*]',
      '  # an indented comment',
      'delete=!',
    ].join('\r\n');

    // Act
    const document = parseIni(text);

    // Assess
    expect(document.sections.map((s) => [s.name, s.line, [...s.entries]])).toEqual([
      [
        '^x_.*',
        4,
        [
          ['create', 'admin, member'],
          ['read', '@'],
        ],
      ],
      ['.*', 8, [['delete', '!']]],
    ]);
    expect(document.defaults.size).toBe(0);
  });

  it('keeps section names exactly as written, brackets inside included', () => {
    // Act
    const document = parseIni('[[a-z]+_id]\ncreate = @\n[ spaced ]\nread = @\n');

    // Assess
    expect(document.sections.map((s) => s.name)).toEqual(['[a-z]+_id', ' spaced ']);
  });

  it('puts [DEFAULT] entries apart from the sections', () => {
    // Act
    const document = parseIni('[DEFAULT]\ndelete = admin\n[foo]\ncreate = @\n');

    // Assess
    expect(document.sections.map((s) => s.name)).toEqual(['foo']);
    expect([...document.defaults]).toEqual([['delete', 'admin']]);
  });

  it('accepts entries indented as deep as the one before them, and an empty value', () => {
    // Act
    const document = parseIni('[foo]\n  create = @\n  read =\n');

    // Assess
    expect([...(document.sections[0]?.entries ?? [])]).toEqual([
      ['create', '@'],
      ['read', ''],
    ]);
  });

  it('reads %% as a literal %', () => {
    // Act
    const document = parseIni('[foo]\ncreate = 100%%\n');

    // Assess
    expect(document.sections[0]?.entries.get('create')).toBe('100%');
  });

  it.each([
    ['an entry before any section', 'create = @\n[foo]\n', 1, /before any \[section\] header/],
    ['a line without a delimiter', '[foo]\ncreate admin\n', 2, /expected 'key = value'/],
    ['an entry without a key', '[foo]\n= admin\n', 2, /without a key/],
    ['a duplicate section', '[foo]\ncreate = @\n[foo]\n', 3, /section \[foo\] appears twice/],
    ['a duplicate key', '[foo]\ncreate = @\nCREATE = !\n', 3, /'create' appears twice/],
    ['text after a section header', '[foo] # note\n', 1, /alone on its line/],
    ['an empty section header', '[]\n', 1, /alone on its line/],
    ['an unterminated section header', '[foo\n', 1, /alone on its line/],
    ['an inline comment', '[foo]\ncreate = admin  # only admins\n', 2, /inline comments are not supported/],
    ['a continuation line', '[foo]\ncreate = admin,\n    member\n', 3, /continuation lines/],
    ['an interpolation', '[foo]\ncreate = %(roles)s\n', 2, /'%' must be written '%%'/],
  ])('refuses %s, naming the line', (_case, text, line, message) => {
    // Act
    const error = syntaxErrorOf(text);

    // Assess
    expect(error.line).toBe(line);
    expect(error.message).toMatch(new RegExp(`^line ${line}: `));
    expect(error.message).toMatch(message);
  });
});
