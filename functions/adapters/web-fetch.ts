/**
 * web-download's HTTP client, built against SSRF (Glance bug 2138602 and its kin):
 *   - only http and https URLs, in the WHATWG normal form (so 2130706433, 0177.0.0.1, 0x7f.1
 *     and 127.1 are all 127.0.0.1 by the time they are checked);
 *   - the host is resolved here and EVERY address it resolves to must be public unicast, or
 *     allow-listed (HANGAR_WEB_DOWNLOAD_ALLOW); loopback, private, link-local, unique-local,
 *     metadata (169.254.169.254, fd00:ec2::254), multicast, reserved and IPv4-mapped/translated
 *     forms of those are refused;
 *   - the connection goes to the address that was vetted (a pinned lookup), so a DNS answer
 *     that changes between check and connect (rebinding) cannot redirect it;
 *   - redirects are followed by hand, at most five, each hop vetted the same way.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { BadRequestError } from '#core/kernel/errors';
import type { WebFetcher } from '#core/transfer/ports';
import {
  type AllowEntry,
  parseAddress,
  parseWebUrl,
  UrlRefused,
  vetAddress,
} from '#core/transfer/url-filter';

const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export type Resolver = (host: string) => Promise<Array<{ address: string; family: number }>>;

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

interface Vetted {
  address: string;
  family: 4 | 6;
}

/** A URL for logs and messages: no credentials. */
function shown(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

export class SafeWebFetcher implements WebFetcher {
  constructor(
    private readonly allow: readonly AllowEntry[],
    private readonly resolve: Resolver = systemResolver,
    private readonly timeoutMs = 30_000,
  ) {}

  async vet(uri: string): Promise<void> {
    await this.vetUrl(parseWebUrl(uri));
  }

  async open(uri: string): Promise<{ body: IncomingMessage; size: number | undefined; abort(): void }> {
    let url = parseWebUrl(uri);
    for (let hop = 0; ; hop++) {
      const target = await this.vetUrl(url);
      const response = await this.get(url, target);
      const status = response.statusCode ?? 0;
      if (REDIRECTS.has(status)) {
        response.destroy();
        const location = response.headers.location;
        if (!location) throw new BadRequestError(`HTTP ${status} from ${shown(url)} without a Location`);
        if (hop >= MAX_REDIRECTS) throw new UrlRefused(`more than ${MAX_REDIRECTS} redirects`);
        url = parseWebUrl(new URL(location, url).href);
        continue;
      }
      if (status < 200 || status > 299) {
        response.destroy();
        // The URL's server refused: the import's outcome, not a fault of this service.
        throw new BadRequestError(`HTTP ${status} from ${shown(url)}`);
      }
      const length = response.headers['content-length'];
      const size = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
      return { body: response, size, abort: () => response.destroy() };
    }
  }

  /** Resolves the URL's host and checks every address; returns the one to connect to. */
  private async vetUrl(url: URL): Promise<Vetted> {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const literal = parseAddress(host);
    let answers: Array<{ address: string; family: number }>;
    if (literal) {
      answers = [{ address: host, family: literal.family }];
    } else {
      try {
        answers = await this.resolve(host);
      } catch {
        throw new UrlRefused(`${host} does not resolve`);
      }
    }
    if (answers.length === 0) throw new UrlRefused(`${host} does not resolve`);
    for (const answer of answers) {
      const parsed = parseAddress(answer.address);
      if (!parsed) throw new UrlRefused(`${host} resolves to an unrecognised address`);
      vetAddress(host, parsed, this.allow);
    }
    const first = answers[0] as { address: string; family: number };
    return { address: first.address, family: first.family === 6 ? 6 : 4 };
  }

  private get(url: URL, target: Vetted): Promise<IncomingMessage> {
    // The socket connects to the vetted address whatever DNS says now; TLS still checks the name.
    const pinned = ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      if (options?.all) callback(null, [{ address: target.address, family: target.family }]);
      else callback(null, target.address, target.family);
    }) as unknown as LookupFunction;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method: 'GET',
          lookup: pinned,
          // A fresh connection per hop: a pooled socket may lead somewhere that was never vetted.
          agent: false,
          headers: { 'user-agent': 'hangar-web-download/1', accept: '*/*' },
          timeout: this.timeoutMs,
        },
        resolve,
      );
      req.on('timeout', () => req.destroy(new Error(`no answer from ${shown(url)} in ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }
}
