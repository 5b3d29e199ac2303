/**
 * GET /v2/images query handling: parsing and validating the query string the way Glance's
 * RequestDeserializer.index, ImagesController.index and the sqlalchemy layer do, then the pure
 * pieces a repository needs: a filter predicate, the sort comparator and the pagination links.
 *
 * Deliberate differences from Glance:
 * - an unknown `status` filter value is a 400 (Glance silently returns an empty list);
 * - links keep repeated parameters (Glance's links keep only the last `tag`/`sort_key`, so
 *   following its `next` changes the query);
 * - a repeated single-valued parameter counts with its last value;
 * - range filters exist for size and virtual_size only (Glance 500s on unknown `*_min` keys).
 */
import { BadRequestError } from '../kernel/errors.ts';
import { IMAGE_STATUSES, type ImageRecord, type ImageStatus } from './image.ts';

export const SORT_KEYS = [
  'name',
  'status',
  'container_format',
  'disk_format',
  'size',
  'id',
  'created_at',
  'updated_at',
] as const;
export type ImageSortKey = (typeof SORT_KEYS)[number];
export type SortDirection = 'asc' | 'desc';
export interface ImageSort {
  key: ImageSortKey;
  dir: SortDirection;
}

export const LIST_VISIBILITIES = ['public', 'private', 'shared', 'community', 'all'] as const;
export type ListVisibility = (typeof LIST_VISIBILITIES)[number];
export const MEMBER_STATUS_FILTERS = ['pending', 'accepted', 'rejected', 'all'] as const;
export type MemberStatusFilter = (typeof MEMBER_STATUS_FILTERS)[number];

/** `name=x` or `name=in:x,"y,z"`. */
export type MatchFilter = { op: 'eq'; value: string } | { op: 'in'; values: string[] };
export const TIME_OPERATORS = ['gt', 'gte', 'eq', 'neq', 'lt', 'lte'] as const;
export type TimeOperator = (typeof TIME_OPERATORS)[number];
export interface TimeFilter {
  op: TimeOperator;
  /** The threshold in milliseconds since the epoch (fractions keep sub-millisecond input). */
  epochMs: number;
}
export interface RangeFilter {
  min?: number;
  max?: number;
}

export interface ImageFilters {
  name?: MatchFilter;
  id?: MatchFilter;
  status?: MatchFilter;
  container_format?: MatchFilter;
  disk_format?: MatchFilter;
  /** Plain equality on base columns. */
  owner?: string;
  checksum?: string;
  os_hash_algo?: string;
  os_hash_value?: string;
  /** Equality on numeric columns, kept as the text the client sent. */
  min_ram?: string;
  min_disk?: string;
  size?: string;
  virtual_size?: string;
  /** `size_min`/`size_max` and `virtual_size_min`/`virtual_size_max`, in bytes. */
  size_range?: RangeFilter;
  virtual_size_range?: RangeFilter;
  created_at?: TimeFilter;
  updated_at?: TimeFilter;
  /** Every tag must be present (repeated `tag=`). */
  tags: string[];
  /** Hidden images are listed only when asked for, and then only they are. */
  os_hidden: boolean;
  protected?: boolean;
  /** Extra-property equality (any other key). */
  properties: Record<string, string>;
}

export interface ListQuery {
  limit: number;
  marker?: string;
  /** The full order, Glance's created_at/id tiebreakers included. */
  sort: ImageSort[];
  filters: ImageFilters;
  visibility?: ListVisibility;
  memberStatus: MemberStatusFilter;
}

const MATCH_KEYS = ['name', 'id', 'status', 'container_format', 'disk_format'] as const;
const STRING_COLUMNS = ['owner', 'checksum', 'os_hash_algo', 'os_hash_value'] as const;
const NUMBER_COLUMNS = ['min_ram', 'min_disk', 'size', 'virtual_size'] as const;
const RANGE_KEYS = {
  size_min: ['size_range', 'min'],
  size_max: ['size_range', 'max'],
  virtual_size_min: ['virtual_size_range', 'min'],
  virtual_size_max: ['virtual_size_range', 'max'],
} as const;
/** Parameters that steer the listing rather than filter it. */
const CONTROL_KEYS = new Set([
  'limit',
  'marker',
  'member_status',
  'tag',
  'sort',
  'sort_key',
  'sort_dir',
  'visibility',
  'os_hidden',
  'protected',
  'changes-since',
  // Glance overrides any client value with deleted=False.
  'deleted',
]);

function includes<T extends string>(list: readonly T[], value: string): value is T {
  return (list as readonly string[]).includes(value);
}

function bad(message: string): BadRequestError {
  return new BadRequestError(message);
}

/** Python's int(): optional sign and surrounding blanks, digits only. */
function parsePyInt(text: string): number | undefined {
  return /^\s*[+-]?\d+\s*$/.test(text) ? Number.parseInt(text.trim(), 10) : undefined;
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

// The grammar of the iso8601 package Glance's parse_isotime uses: YYYY[-MM[-DD[Thh[:mm[:ss[.f]]][tz]]]]
// with the basic (no separator) forms too; a time zone needs a time, and a missing one means UTC.
const ISO_RE =
  /^(\d{4})(?:(?:-(\d{1,2})|(\d{2})(?!$))(?:(?:-(\d{1,2})|(\d{2}))(?:[ T](\d{2})(?::?(\d{2}))?(?::?(\d{1,2})(?:[.,](\d+))?)?(Z|([-+])(\d{2}):?(\d{2})?)?)?)?)?$/;

/** Milliseconds since the epoch for an ISO 8601 text Glance would accept, else undefined. */
export function parseIsoTime(text: string): number | undefined {
  const m = ISO_RE.exec(text);
  if (!m) return undefined;
  const num = (s: string | undefined, fallback: number) => (s === undefined ? fallback : Number(s));
  const year = Number(m[1]);
  const month = num(m[2] ?? m[3], 1);
  const day = num(m[4] ?? m[5], 1);
  const hour = num(m[6], 0);
  const minute = num(m[7], 0);
  const second = num(m[8], 0);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMinutes = 0;
  if (m[11] !== undefined) {
    const tzHour = Number(m[12]);
    const tzMinute = num(m[13], 0);
    if (tzHour > 23 || tzMinute > 59) return undefined;
    offsetMinutes = (m[11] === '-' ? -1 : 1) * (tzHour * 60 + tzMinute);
  }
  const fraction = m[9] === undefined ? 0 : Number(`0.${m[9]}`) * 1000;
  const base = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC maps years 0-99 to 1900-1999; set the year explicitly to keep them literal.
  const exact = new Date(base);
  exact.setUTCFullYear(year);
  return exact.getTime() + fraction - offsetMinutes * 60_000;
}

/**
 * Glance's utils.split_filter_op: "op:value", except that a value which is itself an ISO time
 * (and so contains ':') is an implicit "eq".
 */
function splitFilterOp(expression: string): { op: string; threshold: string } {
  const at = expression.indexOf(':');
  if (at < 0) return { op: 'eq', threshold: expression };
  if (parseIsoTime(expression) !== undefined) return { op: 'eq', threshold: expression };
  return { op: expression.slice(0, at), threshold: expression.slice(at + 1) };
}

/** Glance's utils.validate_quotes for `in:` lists. */
function validateQuotes(value: string): void {
  let open = true;
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== '"') continue;
    if (i > 0 && value[i - 1] === '\\') continue;
    if (open) {
      if (i > 0 && value[i - 1] !== ',')
        throw bad(`Invalid filter value ${value}. There is no comma before opening quotation mark.`);
    } else if (i + 1 !== value.length && value[i + 1] !== ',') {
      throw bad(`Invalid filter value ${value}. There is no comma after closing quotation mark.`);
    }
    open = !open;
  }
  if (!open) throw bad(`Invalid filter value ${value}. The quote is not closed.`);
}

/** Glance's utils.split_filter_value_for_quotes: comma list, double-quoted items may hold commas. */
export function splitInList(value: string): string[] {
  validateQuotes(value);
  const re = /"([^"\\]*(?:\\.[^"\\]*)*)",?|([^,]+),?|,/g;
  return [...value.matchAll(re)].map((m) => m[1] || m[2] || '');
}

function parseMatchFilter(key: (typeof MATCH_KEYS)[number], expression: string): MatchFilter {
  const { op, threshold } = splitFilterOp(expression);
  let filter: MatchFilter;
  if (op === 'in') filter = { op: 'in', values: splitInList(threshold) };
  else if (op === 'eq') filter = { op: 'eq', value: threshold };
  else throw bad(`Unable to filter by unknown operator '${op}'.`);
  if (key === 'status') {
    // Deliberately stricter than Glance, which answers an unknown status with an empty list.
    const values = filter.op === 'in' ? filter.values : [filter.value];
    for (const value of values)
      if (!includes(IMAGE_STATUSES, value)) throw bad(`Invalid status value: ${value}`);
  }
  return filter;
}

function parseTimeFilter(key: 'created_at' | 'updated_at', expression: string): TimeFilter {
  const { op, threshold } = splitFilterOp(expression);
  // Glance parses the time before it looks at the operator, so a bad time wins.
  const epochMs = parseIsoTime(threshold);
  if (epochMs === undefined) throw bad(`Bad "${key}" query filter format. Use ISO 8601 DateTime notation.`);
  if (!includes(TIME_OPERATORS, op)) throw bad('Unable to filter on a unknown operator.');
  return { op, epochMs };
}

function parseSort(params: Map<string, string[]>): ImageSort[] {
  const keys: string[] = [];
  const dirs: string[] = [];
  const validateKey = (key: string) => {
    if (!includes(SORT_KEYS, key))
      throw bad(`Invalid sort key: ${key}. It must be one of the following: ${SORT_KEYS.join(', ')}.`);
    return key;
  };
  const validateDir = (dir: string) => {
    if (dir !== 'asc' && dir !== 'desc') throw bad(`Invalid sort direction: ${dir}`);
    return dir;
  };
  const sort = params.get('sort');
  if (sort !== undefined) {
    if (params.has('sort_key') || params.has('sort_dir'))
      throw bad('Old and new sorting syntax cannot be combined');
    for (const part of (sort.at(-1) ?? '').trim().split(',')) {
      const at = part.indexOf(':');
      const key = at < 0 ? part : part.slice(0, at);
      const dir = at < 0 ? '' : part.slice(at + 1);
      keys.push(validateKey(key.trim()));
      dirs.push(validateDir(dir.trim() || 'desc'));
    }
  } else {
    for (const key of params.get('sort_key') ?? []) keys.push(validateKey(key.trim()));
    for (const dir of params.get('sort_dir') ?? []) dirs.push(validateDir(dir.trim()));
    // One direction applies to every key; several must pair up with the keys.
    if (dirs.length > 1 && dirs.length !== keys.length)
      throw bad('Number of sort dirs does not match the number of sort keys');
  }
  if (keys.length === 0) keys.push('created_at');
  // As Glance's sqlalchemy layer: a single direction is broadcast and also orders the tiebreakers;
  // with one direction per key (or none) the tiebreakers go descending.
  const tiebreakDir = (dirs.length === 1 ? dirs[0] : 'desc') as SortDirection;
  const order: ImageSort[] = keys.map((key, i) => ({
    key: key as ImageSortKey,
    dir: (dirs.length === keys.length ? dirs[i] : tiebreakDir) as SortDirection,
  }));
  for (const key of ['created_at', 'id'] as const)
    if (!order.some((s) => s.key === key)) order.push({ key, dir: tiebreakDir });
  return order;
}

function parseBoolFilter(name: 'os_hidden' | 'protected', value: string): boolean {
  if (value !== 'true' && value !== 'false')
    throw bad(`Invalid value '${value}' for '${name}' filter. Valid values are 'true' or 'false'.`);
  return value === 'true';
}

/**
 * Parses the query of GET /v2/images. `pairs` are the decoded query parameters in order.
 * Throws BadRequestError with Glance's messages; the marker's existence is the caller's check.
 */
export function parseListQuery(
  pairs: ReadonlyArray<readonly [string, string]>,
  maxLimit = 1000,
  defaultLimit = 25,
): ListQuery {
  const params = new Map<string, string[]>();
  for (const [key, value] of pairs) params.set(key, [...(params.get(key) ?? []), value]);
  const last = (key: string) => params.get(key)?.at(-1);

  const visibility = last('visibility');
  if (visibility !== undefined && !includes(LIST_VISIBILITIES, visibility))
    throw bad(`Invalid visibility value: ${visibility}`);
  if (params.has('changes-since')) throw bad('The "changes-since" filter is no longer available on v2.');

  const memberStatus = last('member_status') ?? 'accepted';
  if (!includes(MEMBER_STATUS_FILTERS, memberStatus)) throw bad(`Invalid status: ${memberStatus}`);

  let limit = defaultLimit;
  const rawLimit = last('limit');
  if (rawLimit !== undefined) {
    const parsed = parsePyInt(rawLimit);
    if (parsed === undefined) throw bad('limit param must be an integer');
    if (parsed < 0) throw bad('limit param must be positive');
    limit = parsed;
  }
  limit = Math.min(limit, maxLimit);

  const sort = parseSort(params);

  // Glance lower-cases os_hidden (but not protected) before checking it.
  const osHidden = parseBoolFilter('os_hidden', (last('os_hidden') ?? 'false').toLowerCase());
  const rawProtected = last('protected');

  const filters: ImageFilters = {
    tags: (params.get('tag') ?? []).map((tag) => tag.trim()),
    os_hidden: osHidden,
    properties: {},
  };
  if (rawProtected !== undefined) filters.protected = parseBoolFilter('protected', rawProtected);

  const properties: Array<[string, string]> = [];
  for (const [key, values] of params) {
    if (CONTROL_KEYS.has(key)) continue;
    const value = values.at(-1) ?? '';
    if (Object.hasOwn(RANGE_KEYS, key)) {
      const [target, bound] = RANGE_KEYS[key as keyof typeof RANGE_KEYS];
      const parsed = parsePyInt(value);
      if (parsed === undefined) throw bad('Unable to filter on a range with a non-numeric value.');
      filters[target] = { ...filters[target], [bound]: parsed };
    } else if (key === 'created_at' || key === 'updated_at') {
      filters[key] = parseTimeFilter(key, value);
    } else if (includes(MATCH_KEYS, key)) {
      filters[key] = parseMatchFilter(key, value);
    } else if (includes(STRING_COLUMNS, key) || includes(NUMBER_COLUMNS, key)) {
      filters[key] = value;
    } else {
      properties.push([key, value]);
    }
  }
  // fromEntries keeps any key (even "__proto__") as plain data.
  filters.properties = Object.fromEntries(properties);

  const query: ListQuery = { limit, sort, filters, memberStatus };
  const marker = last('marker');
  if (marker !== undefined) query.marker = marker;
  if (visibility !== undefined) query.visibility = visibility;
  return query;
}

function matches(filter: MatchFilter | undefined, value: string | null): boolean {
  if (!filter) return true;
  if (value === null) return false;
  return filter.op === 'eq' ? value === filter.value : filter.values.includes(value);
}

function inRange(range: RangeFilter | undefined, value: number | null): boolean {
  if (!range) return true;
  // SQL compares NULL as unknown: an image without a size never matches a size range.
  if (value === null) return false;
  return (range.min === undefined || value >= range.min) && (range.max === undefined || value <= range.max);
}

function compareTime(filter: TimeFilter | undefined, iso: string): boolean {
  if (!filter) return true;
  const at = Date.parse(iso);
  switch (filter.op) {
    case 'gt':
      return at > filter.epochMs;
    case 'gte':
      return at >= filter.epochMs;
    case 'eq':
      return at === filter.epochMs;
    case 'neq':
      return at !== filter.epochMs;
    case 'lt':
      return at < filter.epochMs;
    case 'lte':
      return at <= filter.epochMs;
  }
}

function numberEquals(expected: string | undefined, value: number | null): boolean {
  if (expected === undefined) return true;
  return value !== null && expected.trim() !== '' && Number(expected) === value;
}

/**
 * Whether an image passes the query's filters (not visibility or membership, which depend on the
 * caller). Deleted and killed images never pass: Glance's listings leave both out.
 */
export function matchesFilters(image: ImageRecord, filters: ImageFilters): boolean {
  const hiddenStatuses: readonly ImageStatus[] = ['deleted', 'killed'];
  if (hiddenStatuses.includes(image.status)) return false;
  if (image.os_hidden !== filters.os_hidden) return false;
  if (filters.protected !== undefined && image.protected !== filters.protected) return false;
  for (const key of MATCH_KEYS) if (!matches(filters[key], image[key])) return false;
  for (const key of STRING_COLUMNS) {
    const expected = filters[key];
    if (expected !== undefined && image[key] !== expected) return false;
  }
  for (const key of NUMBER_COLUMNS) if (!numberEquals(filters[key], image[key])) return false;
  if (!inRange(filters.size_range, image.size)) return false;
  if (!inRange(filters.virtual_size_range, image.virtual_size)) return false;
  if (!compareTime(filters.created_at, image.created_at)) return false;
  if (!compareTime(filters.updated_at, image.updated_at)) return false;
  if (!filters.tags.every((tag) => image.tags.includes(tag))) return false;
  for (const [key, value] of Object.entries(filters.properties))
    if (!Object.hasOwn(image.properties, key) || image.properties[key] !== value) return false;
  return true;
}

/** Compares strings by Unicode code point (UTF-8 byte order, as DynamoDB and MySQL binary do). */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 puts surrogates (astral characters) below U+E000-U+FFFF; code point order does not.
    if (x >= 0xe000) x -= 0x800;
    else if (x >= 0xd800) x += 0x2000;
    if (y >= 0xe000) y -= 0x800;
    else if (y >= 0xd800) y += 0x2000;
    return x < y ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

function compareValues(a: string | number | null, b: string | number | null): number {
  if (a === b) return 0;
  // Nulls sort lowest, as in MySQL (first ascending, last descending).
  if (a === null) return -1;
  if (b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : 1;
  return compareCodePoints(String(a), String(b));
}

/** Sort comparator for `sort` (tiebreakers included when the sort came from parseListQuery). */
export function compareImages(a: ImageRecord, b: ImageRecord, sort: readonly ImageSort[]): number {
  for (const { key, dir } of sort) {
    const order = compareValues(a[key], b[key]);
    if (order !== 0) return dir === 'asc' ? order : -order;
  }
  return 0;
}

/** Whether `image` comes after the marker image in `sort` order (i.e. belongs to the next page). */
export function isAfterMarker(image: ImageRecord, marker: ImageRecord, sort: readonly ImageSort[]): boolean {
  return compareImages(image, marker, sort) > 0;
}

/** Python's urllib.parse.quote_plus, which Glance's links use (":" → %3A, "," → %2C, " " → +). */
function quotePlus(text: string): string {
  return encodeURIComponent(text)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
}

/**
 * Glance's `first` and `next` links: the request's query without `marker`, and for `next` the
 * same with `marker=<last id>` appended. `next` is left out when `lastId` is undefined.
 */
export function buildLinks(
  rawQueryPairs: ReadonlyArray<readonly [string, string]>,
  lastId: string | undefined,
): { first: string; next?: string } {
  const query = rawQueryPairs
    .filter(([key]) => key !== 'marker')
    .map(([key, value]) => `${quotePlus(key)}=${quotePlus(value)}`)
    .join('&');
  const first = query ? `/v2/images?${query}` : '/v2/images';
  if (lastId === undefined) return { first };
  return { first, next: `/v2/images?${query ? `${query}&` : ''}marker=${quotePlus(lastId)}` };
}
