/**
 * Verifies an OIDC JWT the way API Gateway's JWT authorizer does, for the one place that
 * authorizer cannot serve: the agents' WebSocket API, which takes only Lambda authorizers. The
 * issuer's keys come from its discovery document (`<issuer>/.well-known/openid-configuration`,
 * then `jwks_uri`); the token must be signed with one of them by an RSA algorithm (API Gateway
 * accepts only those), carry this `iss`, an `aud` (or Cognito's `client_id`) among the audiences,
 * an `exp` in the future and no `nbf` in the future. Anything else is null: no reason is given
 * to the caller, as API Gateway gives none.
 */
import { createPublicKey, type JsonWebKey, type KeyObject, verify } from 'node:crypto';
import { z } from 'zod';

export interface JwtSettings {
  readonly issuer: string;
  readonly audience: readonly string[];
}

/** Fetches and parses a JSON document; throws when the issuer cannot be reached. */
export type FetchJson = (url: string) => Promise<unknown>;

const ALGORITHMS: Readonly<Record<string, string>> = {
  RS256: 'RSA-SHA256',
  RS384: 'RSA-SHA384',
  RS512: 'RSA-SHA512',
};

/** A key set fetched this recently is not fetched again for an unknown `kid` (a forged one). */
const REFETCH_AFTER_MS = 5 * 60_000;
/** Clock skew tolerated on exp and nbf, as most verifiers do. */
const LEEWAY_SECONDS = 30;

const HeaderSchema = z.object({ alg: z.string(), kid: z.string().optional() });
const DiscoverySchema = z.object({ issuer: z.string(), jwks_uri: z.url({ protocol: /^https?$/ }) });
const JwksSchema = z.object({
  keys: z.array(z.looseObject({ kty: z.string(), kid: z.string().optional(), use: z.string().optional() })),
});
const ClaimsSchema = z.looseObject({
  iss: z.string(),
  exp: z.number(),
  nbf: z.number().optional(),
  aud: z.union([z.string(), z.array(z.string())]).optional(),
  client_id: z.string().optional(),
});

const defaultFetchJson: FetchJson = async (url) => {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response.json();
};

function decodeJson(part: string): unknown {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

export class JwtVerifier {
  private keys: Map<string, KeyObject> | undefined;
  private fetchedAt = 0;

  constructor(
    private readonly settings: JwtSettings,
    private readonly fetchJson: FetchJson = defaultFetchJson,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** The token's claims if it is valid for this issuer and audience, else null. */
  async verify(token: string): Promise<Record<string, unknown> | null> {
    const parts = token.split('.');
    if (parts.length !== 3) return null;
    const [headerPart = '', payloadPart = '', signaturePart = ''] = parts;
    let header: z.infer<typeof HeaderSchema>;
    let claims: z.infer<typeof ClaimsSchema>;
    try {
      header = HeaderSchema.parse(decodeJson(headerPart));
      claims = ClaimsSchema.parse(decodeJson(payloadPart));
    } catch {
      return null;
    }
    const algorithm = ALGORITHMS[header.alg];
    if (!algorithm) return null;
    const key = await this.key(header.kid ?? '');
    if (!key) return null;
    const signed = Buffer.from(`${headerPart}.${payloadPart}`, 'utf8');
    if (!verify(algorithm, signed, key, Buffer.from(signaturePart, 'base64url'))) return null;

    const now = this.nowMs() / 1000;
    if (claims.iss !== this.settings.issuer) return null;
    if (claims.exp + LEEWAY_SECONDS <= now) return null;
    if (claims.nbf !== undefined && claims.nbf - LEEWAY_SECONDS > now) return null;
    const audiences = [
      ...(claims.aud === undefined ? [] : typeof claims.aud === 'string' ? [claims.aud] : claims.aud),
      ...(claims.client_id === undefined ? [] : [claims.client_id]),
    ];
    if (!audiences.some((aud) => this.settings.audience.includes(aud))) return null;
    return claims;
  }

  /** The issuer's signing key named `kid` (the only one, if the token names none). */
  private async key(kid: string): Promise<KeyObject | undefined> {
    const find = () =>
      kid === '' && this.keys?.size === 1 ? [...this.keys.values()][0] : this.keys?.get(kid);
    const known = find();
    if (known || (this.keys && this.nowMs() - this.fetchedAt < REFETCH_AFTER_MS)) return known;
    await this.loadKeys();
    return find();
  }

  private async loadKeys(): Promise<void> {
    const issuer = this.settings.issuer.replace(/\/+$/, '');
    const discovery = DiscoverySchema.parse(
      await this.fetchJson(`${issuer}/.well-known/openid-configuration`),
    );
    if (discovery.issuer !== this.settings.issuer)
      throw new Error(`the discovery document names issuer ${discovery.issuer}, not ${this.settings.issuer}`);
    const jwks = JwksSchema.parse(await this.fetchJson(discovery.jwks_uri));
    const keys = new Map<string, KeyObject>();
    for (const jwk of jwks.keys) {
      if (jwk.kty !== 'RSA' || (jwk.use !== undefined && jwk.use !== 'sig')) continue;
      try {
        keys.set(jwk.kid ?? '', createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }));
      } catch {
        // A malformed key in the set signs nothing we accept; the others still count.
      }
    }
    this.keys = keys;
    this.fetchedAt = this.nowMs();
  }
}
