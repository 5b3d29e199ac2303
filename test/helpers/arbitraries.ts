/**
 * fast-check arbitraries shared by the unit fuzz of the parsers (test/unit/core/fuzz-parsers.test.ts)
 * and the integration fuzz of the whole API (test/integration/fuzz-requests.test.ts).
 */
import fc from 'fast-check';

/** The query parameter names the listings read (images, tasks, references, members). */
export const LIST_QUERY_KEYS = [
  'limit',
  'marker',
  'sort',
  'sort_key',
  'sort_dir',
  'visibility',
  'member_status',
  'status',
  'name',
  'tag',
  'owner',
  'size_min',
  'size_max',
  'created_at',
  'updated_at',
  'os_hidden',
  'protected',
  'id',
  'container_format',
  'disk_format',
  'changes-since',
  'reference',
  'namespace',
  'project',
] as const;

/** A query parameter name: one a listing reads, or `other`. */
export function listQueryKey(other: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.oneof(fc.constantFrom(...LIST_QUERY_KEYS), other);
}

export interface JunkTextOptions {
  /** Strings that broke (or could break) a parser: escapes, dot segments, prototype names... */
  specials: readonly string[];
  /** Of the arbitrary code units (fast-check's default length when absent). */
  maxLength?: number;
  /** Whole graphemes (emoji, combining marks), up to this many. */
  graphemes: number;
  /** Also any code points, lone surrogates included, up to this many. */
  binary?: number;
}

/** Text a client might send, most of it malformed. */
export function junkText(options: JunkTextOptions): fc.Arbitrary<string> {
  const kinds: fc.Arbitrary<string>[] = [
    fc.string(options.maxLength === undefined ? {} : { maxLength: options.maxLength }),
    fc.string({ unit: 'grapheme', maxLength: options.graphemes }),
  ];
  if (options.binary !== undefined) kinds.push(fc.string({ unit: 'binary', maxLength: options.binary }));
  return fc.oneof(...kinds, fc.constantFrom(...options.specials));
}
