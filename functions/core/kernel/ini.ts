/**
 * A strict reader for the INI dialect of Python's configparser (what Glance reads its
 * property-protection file with), for the subset such files use: `[section]` headers, `key = value`
 * (or `key: value`) entries, whole-line `#` and `;` comments, and a `[DEFAULT]` section whose
 * entries every other section inherits. Keys are case-insensitive (lower-cased), section names are
 * kept exactly as written.
 *
 * What configparser would read in a surprising way is refused instead, with the line number:
 * continuation lines, text after a section header, something that looks like an inline comment
 * (configparser keeps it as part of the value), and `%` interpolation other than `%%`.
 */

export const DEFAULT_SECTION = 'DEFAULT';

export interface IniSection {
  /** The header between the brackets, exactly as written (not trimmed). */
  readonly name: string;
  /** 1-based line of the header. */
  readonly line: number;
  /** Lower-cased key → value, in file order. */
  readonly entries: ReadonlyMap<string, string>;
}

export interface IniDocument {
  /** Sections in file order, without [DEFAULT]. */
  readonly sections: readonly IniSection[];
  /** The [DEFAULT] section's entries (empty when there is none). */
  readonly defaults: ReadonlyMap<string, string>;
}

export class IniSyntaxError extends Error {
  override name = 'IniSyntaxError';
  constructor(
    readonly line: number,
    detail: string,
  ) {
    super(`line ${line}: ${detail}`);
  }
}

/** configparser's `%%` is a literal `%`; any other `%` starts an interpolation (not supported). */
function uninterpolate(value: string, line: number): string {
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const ch = value[i];
    if (ch !== '%') {
      out += ch;
      continue;
    }
    if (value[i + 1] !== '%')
      throw new IniSyntaxError(line, `'%' must be written '%%' (interpolation is not supported)`);
    out += '%';
    i++;
  }
  return out;
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

export function parseIni(text: string): IniDocument {
  const sections: IniSection[] = [];
  const defaults = new Map<string, string>();
  const seen = new Set<string>();
  let current: Map<string, string> | undefined;
  let lastKey: string | undefined;
  let indent = 0;

  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    const value = raw.trim();
    if (value === '' || value.startsWith('#') || value.startsWith(';')) return;

    // configparser appends a line indented deeper than the entry before it to that entry's value.
    if (lastKey !== undefined && indentOf(raw) > indent)
      throw new IniSyntaxError(line, 'continuation lines are not supported');
    indent = indentOf(raw);

    if (value.startsWith('[')) {
      if (!value.endsWith(']') || value.length < 3)
        throw new IniSyntaxError(line, `a section header is '[name]' alone on its line: ${value}`);
      const name = value.slice(1, -1);
      if (seen.has(name)) throw new IniSyntaxError(line, `section [${name}] appears twice`);
      seen.add(name);
      if (name === DEFAULT_SECTION) current = defaults;
      else {
        current = new Map();
        sections.push({ name, line, entries: current });
      }
      lastKey = undefined;
      return;
    }

    if (current === undefined) throw new IniSyntaxError(line, 'an entry before any [section] header');
    const delimiter = value.search(/[=:]/);
    if (delimiter < 0) throw new IniSyntaxError(line, `expected 'key = value': ${value}`);
    const key = value.slice(0, delimiter).trimEnd().toLowerCase();
    if (key === '') throw new IniSyntaxError(line, `an entry without a key: ${value}`);
    if (current.has(key)) throw new IniSyntaxError(line, `'${key}' appears twice in the same section`);
    const entry = value.slice(delimiter + 1).trim();
    // configparser has no inline comments: "admin  # note" would be the value, role and all.
    if (/\s[#;]/.test(entry))
      throw new IniSyntaxError(line, 'inline comments are not supported (put the comment on its own line)');
    current.set(key, uninterpolate(entry, line));
    lastKey = key;
  });

  return { sections, defaults };
}
