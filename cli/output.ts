/**
 * The one place that prints results. Data goes to stdout in the chosen format (-o table|json|yaml|
 * name); notices go to stderr and -q silences them. Colour only on a terminal, never with NO_COLOR.
 */
import Table from 'cli-table3';
import { stringify } from 'yaml';
import { usageError } from './errors.ts';

export const FORMATS = ['table', 'json', 'yaml', 'name'] as const;
export type Format = (typeof FORMATS)[number];

export interface Column<T> {
  header: string;
  value: (row: T) => string | number | null | undefined;
}

/** How one kind of resource is shown: its table columns and its one-word name (`-o name`). */
export interface View<T> {
  columns: readonly Column<T>[];
  name: (row: T) => string;
  /** The field/value rows `one` prints as a table (default: every field, nested ones as JSON). */
  fields?: (row: T) => readonly (readonly [string, string | number | boolean | null | undefined])[];
}

const BORDERLESS = {
  top: '',
  'top-mid': '',
  'top-left': '',
  'top-right': '',
  bottom: '',
  'bottom-mid': '',
  'bottom-left': '',
  'bottom-right': '',
  left: '',
  'left-mid': '',
  mid: '',
  'mid-mid': '',
  right: '',
  'right-mid': '',
  middle: '  ',
};

/** cli-table3 pads the last column to its widest cell: no trailing blanks on a terminal. */
const trimLines = (text: string) =>
  `${text
    .split('\n')
    .map((line) => line.trimEnd())
    .join('\n')}\n`;

export class Output {
  readonly color: boolean;

  constructor(
    readonly format: Format,
    readonly quiet: boolean,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    // https://no-color.org: any non-empty NO_COLOR turns colour off.
    this.color = Boolean(stdout.isTTY) && !env.NO_COLOR;
  }

  static parseFormat(text: string): Format {
    if ((FORMATS as readonly string[]).includes(text)) return text as Format;
    throw usageError(`-o must be one of ${FORMATS.join(', ')} (got ${text})`);
  }

  /** Several resources: rows of a table, a JSON/YAML array, or one name a line. */
  list<T>(rows: readonly T[], view: View<T>): void {
    this.write(this.renderList(rows, view));
  }

  /** The text `list` prints. */
  renderList<T>(rows: readonly T[], view: View<T>): string {
    if (this.format === 'json') return `${JSON.stringify(rows, null, 2)}\n`;
    if (this.format === 'yaml') return stringify(rows);
    if (this.format === 'name' || this.quiet) return rows.map((row) => `${view.name(row)}\n`).join('');
    const table = new Table({
      head: view.columns.map((column) => this.bold(column.header)),
      chars: BORDERLESS,
      style: { head: [], border: [], 'padding-left': 0, 'padding-right': 1 },
    });
    for (const row of rows) table.push(view.columns.map((column) => String(column.value(row) ?? '')));
    return trimLines(table.toString());
  }

  /** One resource: a field/value table of all its fields (or its JSON/YAML/name). */
  one<T extends object>(row: T, view: View<T>): void {
    this.write(this.renderOne(row, view));
  }

  private renderOne<T extends object>(row: T, view: View<T>): string {
    if (this.format === 'json') return `${JSON.stringify(row, null, 2)}\n`;
    if (this.format === 'yaml') return stringify(row);
    if (this.format === 'name' || this.quiet) return `${view.name(row)}\n`;
    const table = new Table({
      chars: BORDERLESS,
      style: { head: [], border: [], 'padding-left': 0, 'padding-right': 1 },
    });
    const fields = view.fields ? view.fields(row) : Object.entries(row);
    for (const [key, value] of fields)
      table.push([
        this.bold(key),
        typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value ?? '-'),
      ]);
    return trimLines(table.toString());
  }

  /** A human's line on stderr (not data): silenced by -q. */
  notice(message: string): void {
    if (!this.quiet) this.stderr.write(`${message}\n`);
  }

  error(message: string): void {
    const prefix = this.stderr.isTTY && !process.env.NO_COLOR ? '\x1b[31merror:\x1b[0m' : 'error:';
    this.stderr.write(`${prefix} ${message}\n`);
  }

  private bold(text: string): string {
    return this.color ? `\x1b[1m${text}\x1b[22m` : text;
  }

  private write(text: string): void {
    this.stdout.write(text);
  }
}
