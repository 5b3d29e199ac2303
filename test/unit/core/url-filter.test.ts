import { describe, expect, it } from 'vitest';
import {
  addressProblem,
  formatAddress,
  isAllowListed,
  parseAddress,
  parseAllowList,
  parseWebUrl,
  UrlRefused,
  vetAddress,
} from '#core/transfer/url-filter';

function address(text: string) {
  const parsed = parseAddress(text);
  if (!parsed) throw new Error(`not an address: ${text}`);
  return parsed;
}

describe('parseAddress', () => {
  it.each([
    ['127.0.0.1', 4, '127.0.0.1'],
    ['::1', 6, '0:0:0:0:0:0:0:1'],
    ['[::1]', 6, '0:0:0:0:0:0:0:1'],
    ['::ffff:127.0.0.1', 6, '0:0:0:0:0:ffff:7f00:1'],
    ['::127.0.0.1', 6, '0:0:0:0:0:0:7f00:1'],
    ['fe80::1%eth0', 6, 'fe80:0:0:0:0:0:0:1'],
    ['2001:db8:0:0:1:2:3:4', 6, '2001:db8:0:0:1:2:3:4'],
  ])('reads %s', (text, family, normal) => {
    const parsed = address(text);
    expect(parsed.family).toBe(family);
    expect(formatAddress(parsed)).toBe(normal);
  });

  it.each(['example.com', '256.1.1.1', '0177.0.0.1', '1.2.3', ':::1', '1:2:3:4:5:6:7:8:9', ''])(
    'does not take %s for an address',
    (text) => {
      expect(parseAddress(text)).toBeUndefined();
    },
  );
});

describe('addressProblem', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'shared (carrier-grade NAT)'],
    ['169.254.169.254', 'cloud metadata'],
    ['169.254.1.1', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:169.254.169.254', 'IPv4-mapped cloud metadata'],
    ['::127.0.0.1', 'IPv4-compatible loopback'],
    ['64:ff9b::a00:1', 'NAT64 private'],
    ['2002:7f00:1::', '6to4 loopback'],
    ['fd00:ec2::254', 'cloud metadata'],
    ['fd12:3456::1', 'unique-local'],
    ['fe80::1', 'link-local'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'documentation'],
    ['3fff::1', null],
  ])('%s is %s', (text, problem) => {
    if (problem === null) expect(addressProblem(address(text))).toBeNull();
    else expect(addressProblem(address(text))).toBe(problem);
  });

  it.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])(
    'lets the public address %s through',
    (text) => {
      expect(addressProblem(address(text))).toBeNull();
    },
  );
});

describe('parseWebUrl', () => {
  it.each([
    ['http://2130706433/x', '127.0.0.1'],
    ['http://0177.0.0.1/x', '127.0.0.1'],
    ['http://0x7f.1/x', '127.0.0.1'],
    ['http://127.1/x', '127.0.0.1'],
    ['http://0x7f000001/x', '127.0.0.1'],
    ['https://[::ffff:127.0.0.1]/x', '[::ffff:7f00:1]'],
    ['HTTP://LOCALHOST./x', 'localhost.'],
  ])('normalises %s to the host %s before any check', (raw, host) => {
    expect(parseWebUrl(raw).hostname).toBe(host);
  });

  it.each([
    undefined,
    '',
    'not a url',
    'ftp://example.com/x',
    'file:///etc/passwd',
    'gopher://x/',
    'data:,x',
  ])('refuses %s', (raw) => {
    expect(() => parseWebUrl(raw)).toThrow(UrlRefused);
  });
});

describe('allow-list', () => {
  const allow = parseAllowList(['127.0.0.1', 'files.internal', '10.20.0.0/16', 'fd00::/8']);

  it('lets listed addresses, networks and host names through', () => {
    expect(isAllowListed('x', address('127.0.0.1'), allow)).toBe(true);
    expect(isAllowListed('x', address('10.20.3.4'), allow)).toBe(true);
    expect(isAllowListed('FILES.internal.', address('10.9.9.9'), allow)).toBe(true);
    expect(isAllowListed('x', address('fd00:ec2::254'), allow)).toBe(true);
  });

  it('keeps refusing what is not listed', () => {
    expect(isAllowListed('x', address('127.0.0.2'), allow)).toBe(false);
    expect(() => vetAddress('x', address('127.0.0.2'), allow)).toThrow(
      'x resolves to 127.0.0.2, a loopback address',
    );
    expect(() => vetAddress('x', address('10.21.0.1'), allow)).toThrow(UrlRefused);
    expect(() => vetAddress('example.com', address('93.184.216.34'), allow)).not.toThrow();
  });

  it('refuses a malformed CIDR loudly', () => {
    expect(() => parseAllowList(['10.0.0.0/33'])).toThrow('bad allow-list entry');
    expect(() => parseAllowList(['host/8'])).toThrow('bad allow-list entry');
  });
});
