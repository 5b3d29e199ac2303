/**
 * web-download's SSRF policy, as pure functions: which URLs may be fetched and which addresses a
 * host may resolve to. The adapter (adapters/web-fetch.ts) resolves names, applies this to every
 * address of every hop (redirects included) and connects only to an address vetted here.
 *
 * Encoded IPv4 forms (2130706433, 0177.0.0.1, 0x7f.1, 127.1) need no parser of their own: the
 * WHATWG URL parser normalises them to dotted decimal for http and https, and the checks run on
 * that normal form, which is also what would be connected to.
 */

export type IpFamily = 4 | 6;

export interface ParsedAddress {
  family: IpFamily;
  /** 32 bits (IPv4) or 128 bits (IPv6). */
  value: bigint;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseIpv4(text: string): bigint | undefined {
  const match = IPV4.exec(text);
  if (!match) return undefined;
  let value = 0n;
  for (const part of match.slice(1)) {
    // Dotted decimal only: leading zeros are ambiguous (octal to some parsers), so they are not addresses here.
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  let body = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const zone = body.indexOf('%');
  if (zone >= 0) body = body.slice(0, zone);
  if (!/^[0-9a-fA-F:.]+$/.test(body) || !body.includes(':')) return undefined;
  let tail: bigint[] = [];
  // An embedded IPv4 tail (::ffff:127.0.0.1) stands for the last two groups.
  const lastColon = body.lastIndexOf(':');
  const last = body.slice(lastColon + 1);
  if (last.includes('.')) {
    const v4 = parseIpv4(last);
    if (v4 === undefined) return undefined;
    tail = [v4 >> 16n, v4 & 0xffffn];
    body = body.slice(0, lastColon + 1);
    // "::ffff:" loses its separator colon; a bare "::" stays the elision it is.
    if (!body.endsWith('::')) body = body.slice(0, -1);
  }
  const halves = body.split('::');
  if (halves.length > 2) return undefined;
  const groups = (half: string) => (half === '' ? [] : half.split(':'));
  const head = groups(halves[0] ?? '');
  const rest = halves.length === 2 ? groups(halves[1] ?? '') : [];
  for (const g of [...head, ...rest]) if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
  const explicit = head.length + rest.length + tail.length;
  if (halves.length === 1 ? explicit !== 8 : explicit > 7) return undefined;
  const zeros = halves.length === 2 ? 8 - explicit : 0;
  const all = [
    ...head.map((g) => BigInt(`0x${g}`)),
    ...Array<bigint>(zeros).fill(0n),
    ...rest.map((g) => BigInt(`0x${g}`)),
    ...tail,
  ];
  return all.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** An IP literal (IPv6 with or without brackets), or undefined for anything else (a host name). */
export function parseAddress(text: string): ParsedAddress | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseIpv6(text);
  if (v6 !== undefined) return { family: 6, value: v6 };
  return undefined;
}

interface Block {
  family: IpFamily;
  base: bigint;
  bits: number;
  reason: string;
  /** For IPv6 blocks that carry an IPv4 address: where it sits (bit offset from the right). */
  embeddedV4Shift?: bigint;
}

function block(cidr: string, reason: string, embeddedV4Shift?: bigint): Block {
  const [base, bits] = cidr.split('/') as [string, string];
  const parsed = parseAddress(base);
  if (!parsed) throw new Error(`bad CIDR ${cidr}`);
  const out: Block = { family: parsed.family, base: parsed.value, bits: Number(bits), reason };
  if (embeddedV4Shift !== undefined) out.embeddedV4Shift = embeddedV4Shift;
  return out;
}

function inBlock(address: ParsedAddress, b: Pick<Block, 'family' | 'base' | 'bits'>): boolean {
  if (address.family !== b.family) return false;
  const width = b.family === 4 ? 32 : 128;
  const shift = BigInt(width - b.bits);
  return address.value >> shift === b.base >> shift;
}

// Order matters: the first matching block names the reason (metadata before link-local).
const V4_BLOCKS: Block[] = [
  block('0.0.0.0/8', 'unspecified'),
  block('10.0.0.0/8', 'private'),
  block('100.64.0.0/10', 'shared (carrier-grade NAT)'),
  block('127.0.0.0/8', 'loopback'),
  block('169.254.169.254/32', 'cloud metadata'),
  block('169.254.0.0/16', 'link-local'),
  block('172.16.0.0/12', 'private'),
  block('192.0.0.0/24', 'reserved'),
  block('192.0.2.0/24', 'documentation'),
  block('192.88.99.0/24', 'reserved'),
  block('192.168.0.0/16', 'private'),
  block('198.18.0.0/15', 'benchmarking'),
  block('198.51.100.0/24', 'documentation'),
  block('203.0.113.0/24', 'documentation'),
  block('224.0.0.0/4', 'multicast'),
  block('240.0.0.0/4', 'reserved'),
];

const V6_BLOCKS: Block[] = [
  block('::/128', 'unspecified'),
  block('::1/128', 'loopback'),
  // Addresses that carry an IPv4 address are judged by that address.
  block('::ffff:0:0/96', 'IPv4-mapped', 0n),
  block('::/96', 'IPv4-compatible', 0n),
  block('64:ff9b::/96', 'NAT64', 0n),
  block('2002::/16', '6to4', 80n),
  block('fd00:ec2::254/128', 'cloud metadata'),
  block('64:ff9b:1::/48', 'private'),
  block('100::/64', 'reserved'),
  block('2001::/23', 'reserved'),
  block('2001:db8::/32', 'documentation'),
  block('fc00::/7', 'unique-local'),
  block('fe80::/10', 'link-local'),
  block('fec0::/10', 'site-local'),
  block('ff00::/8', 'multicast'),
];
const V6_GLOBAL = block('2000::/3', 'global');

/**
 * Why `address` must not be fetched from without an allow-list entry, or null when it is a
 * public unicast address.
 */
export function addressProblem(address: ParsedAddress): string | null {
  if (address.family === 4) {
    return V4_BLOCKS.find((b) => inBlock(address, b))?.reason ?? null;
  }
  for (const b of V6_BLOCKS) {
    if (!inBlock(address, b)) continue;
    if (b.embeddedV4Shift === undefined) return b.reason;
    const v4: ParsedAddress = { family: 4, value: (address.value >> b.embeddedV4Shift) & 0xffffffffn };
    const inner = addressProblem(v4);
    // A mapped or translated public IPv4 address is still public; the wrappers without routing are not.
    if (inner) return `${b.reason} ${inner}`;
    return b.reason === 'IPv4-compatible' ? 'reserved' : null;
  }
  return inBlock(address, V6_GLOBAL) ? null : 'reserved';
}

export function formatAddress(address: ParsedAddress): string {
  if (address.family === 4)
    return [24n, 16n, 8n, 0n].map((s) => String((address.value >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((address.value >> s) & 0xffffn).toString(16));
  return groups.join(':');
}

/** One allow-list entry: a host name, an IP address or a CIDR block. */
export type AllowEntry =
  | { kind: 'host'; host: string }
  | { kind: 'cidr'; family: IpFamily; base: bigint; bits: number };

/** Parses HANGAR_WEB_DOWNLOAD_ALLOW entries; throws on a malformed CIDR so a typo is loud. */
export function parseAllowList(entries: readonly string[]): AllowEntry[] {
  return entries.map((raw): AllowEntry => {
    const entry = raw.trim();
    const [addr, bits] = entry.split('/');
    const parsed = parseAddress(addr ?? '');
    if (parsed) {
      const width = parsed.family === 4 ? 32 : 128;
      const n = bits === undefined ? width : Number(bits);
      if (!Number.isInteger(n) || n < 0 || n > width) throw new Error(`bad allow-list entry ${entry}`);
      return { kind: 'cidr', family: parsed.family, base: parsed.value, bits: n };
    }
    if (bits !== undefined) throw new Error(`bad allow-list entry ${entry}`);
    return { kind: 'host', host: entry.toLowerCase().replace(/\.$/, '') };
  });
}

/** True when the URL's host name, or the address it resolved to, is allow-listed. */
export function isAllowListed(host: string, address: ParsedAddress, allow: readonly AllowEntry[]): boolean {
  const name = host
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  return allow.some((entry) => (entry.kind === 'host' ? entry.host === name : inBlock(address, entry)));
}

export class UrlRefused extends Error {
  override name = 'UrlRefused';
}

/**
 * The URL if its form may be fetched (http or https, a host), else UrlRefused. Addresses are
 * checked separately, after resolution.
 */
export function parseWebUrl(raw: unknown): URL {
  if (typeof raw !== 'string' || raw === '') throw new UrlRefused('no URI given');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UrlRefused('not a valid URI');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UrlRefused(`scheme ${url.protocol.slice(0, -1)} is not allowed`);
  if (url.hostname === '') throw new UrlRefused('the URI has no host');
  return url;
}

/** Checks one resolved address for `host`; UrlRefused names the reason. */
export function vetAddress(host: string, address: ParsedAddress, allow: readonly AllowEntry[]): void {
  if (isAllowListed(host, address, allow)) return;
  const problem = addressProblem(address);
  if (problem) throw new UrlRefused(`${host} resolves to ${formatAddress(address)}, a ${problem} address`);
}
