/**
 * The AWS side of the agents' notification sockets, below the core: the JWT verifier the $connect
 * authorizer uses in jwt mode (API Gateway's JWT authorizer cannot serve a WebSocket API), the
 * authorizer itself in jwt and tokens modes (a host token for its own host only), and the stream
 * parser that finds the hosts whose queue gained a job.
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { APIGatewayRequestAuthorizerEvent, DynamoDBRecord } from 'aws-lambda';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { type FetchJson, JwtVerifier } from '#adapters/auth/jwt-verifier';
import { JOB_INSERT_FILTER, queuedJobHosts } from '#adapters/dynamo/job-stream';
import { useServiceSettings } from '#platform/config';
import { handler as authorizer } from '../../../functions/auth/agent-socket-authorizer.ts';

const ISSUER = 'https://idp.example.com/realms/cloud';
const NOW_S = 1_800_000_000;

function keyPair(kid: string) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' } };
}
const KEY = keyPair('k1');
const OTHER = keyPair('k2');

function jwt(
  claims: Record<string, unknown>,
  key: { kid: string; privateKey: KeyObject } = KEY,
  alg = 'RS256',
) {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const head = `${part({ alg, kid: key.kid, typ: 'JWT' })}.${part(claims)}`;
  return `${head}.${sign('RSA-SHA256', Buffer.from(head), key.privateKey).toString('base64url')}`;
}

const GOOD = { iss: ISSUER, aud: 'hangar', exp: NOW_S + 600, sub: 'h1', project: 'hosts', roles: ['host'] };

function issuer(keys: object[] = [KEY.jwk]) {
  const fetched: string[] = [];
  const fetchJson: FetchJson = async (url) => {
    fetched.push(url);
    if (url === `${ISSUER}/.well-known/openid-configuration`)
      return { issuer: ISSUER, jwks_uri: `${ISSUER}/protocol/openid-connect/certs` };
    if (url === `${ISSUER}/protocol/openid-connect/certs`) return { keys };
    throw new Error(`unexpected ${url}`);
  };
  return { fetched, fetchJson };
}

describe('JwtVerifier', () => {
  const verifier = (fetchJson: FetchJson, now = NOW_S * 1000) =>
    new JwtVerifier({ issuer: ISSUER, audience: ['hangar'] }, fetchJson, () => now);

  it('accepts a token signed by the issuer for the audience, with its claims', async () => {
    const { fetchJson } = issuer();
    await expect(verifier(fetchJson).verify(jwt(GOOD))).resolves.toMatchObject({
      sub: 'h1',
      roles: ['host'],
    });
  });

  it('accepts a Cognito access token whose client_id is the audience', async () => {
    const { fetchJson } = issuer();
    const { aud: _aud, ...rest } = GOOD;
    await expect(verifier(fetchJson).verify(jwt({ ...rest, client_id: 'hangar' }))).resolves.not.toBeNull();
  });

  it.each([
    ['another issuer', jwt({ ...GOOD, iss: 'https://evil.example.com' })],
    ['another audience', jwt({ ...GOOD, aud: 'other' })],
    ['expired', jwt({ ...GOOD, exp: NOW_S - 60 })],
    ['not yet valid', jwt({ ...GOOD, nbf: NOW_S + 600 })],
    ['no exp', jwt({ ...GOOD, exp: undefined })],
    ['signed by a key the issuer does not publish', jwt(GOOD, OTHER)],
    [
      'signature of another payload',
      `${jwt(GOOD).split('.').slice(0, 2).join('.')}.${jwt({ ...GOOD, sub: 'x' }).split('.')[2]}`,
    ],
    [
      'alg none',
      `${Buffer.from('{"alg":"none","kid":"k1"}').toString('base64url')}.${Buffer.from(JSON.stringify(GOOD)).toString('base64url')}.`,
    ],
    ['an HMAC algorithm', jwt(GOOD, KEY, 'HS256')],
    ['not a JWT', 'abc'],
    ['garbage parts', 'a.b.c'],
  ])('refuses a token: %s', async (_why, token) => {
    const { fetchJson } = issuer();
    await expect(verifier(fetchJson).verify(token)).resolves.toBeNull();
  });

  it('fetches the keys once, and again for an unknown kid only after a while (rotation)', async () => {
    // Prepare
    let now = NOW_S * 1000;
    let keys = [KEY.jwk];
    const { fetched, fetchJson } = issuer();
    const rotating: FetchJson = async (url) => (url.endsWith('/certs') ? { keys } : fetchJson(url));
    const v = new JwtVerifier({ issuer: ISSUER, audience: ['hangar'] }, rotating, () => now);

    // Act
    await v.verify(jwt(GOOD));
    await v.verify(jwt(GOOD));
    keys = [KEY.jwk, OTHER.jwk];
    const soon = await v.verify(jwt(GOOD, OTHER));
    now += 10 * 60_000;
    const later = await v.verify(jwt({ ...GOOD, exp: NOW_S + 3600 }, OTHER));

    // Assess
    expect(soon).toBeNull();
    expect(later).not.toBeNull();
    expect(fetched.filter((u) => u.endsWith('openid-configuration'))).toHaveLength(2);
  });

  it('throws when the issuer cannot be reached (the authorizer then lets nobody in)', async () => {
    const v = verifier(async () => Promise.reject(new Error('ECONNREFUSED')));
    await expect(v.verify(jwt(GOOD))).rejects.toThrow('ECONNREFUSED');
  });
});

function connectEvent(headers: Record<string, string>, hostId?: string): APIGatewayRequestAuthorizerEvent {
  return {
    type: 'REQUEST',
    methodArn: 'arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/$connect',
    headers,
    queryStringParameters: hostId === undefined ? {} : { host_id: hostId },
  } as unknown as APIGatewayRequestAuthorizerEvent;
}

describe('agent socket authorizer', () => {
  afterEach(() => {
    useServiceSettings(undefined);
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  function jwtMode() {
    useServiceSettings({
      HANGAR_AUTH_MODE: 'claims',
      HANGAR_JWT_ISSUER: ISSUER,
      HANGAR_JWT_AUDIENCE: 'other, hangar',
      HANGAR_CLAIM_PROJECT: 'project',
      HANGAR_CLAIM_ROLES: 'roles',
      HANGAR_CLAIM_USER: 'sub',
      HANGAR_LOG_LEVEL: 'silent',
    });
    const { fetchJson } = issuer();
    vi.stubGlobal('fetch', async (url: string) => new Response(JSON.stringify(await fetchJson(url))));
    vi.useFakeTimers({ now: NOW_S * 1000, toFake: ['Date'] });
  }

  it('jwt mode: allows a host token for its own host, with the host id as context', async () => {
    // Prepare
    jwtMode();

    // Act
    const result = await authorizer(connectEvent({ 'X-Auth-Token': jwt(GOOD) }, 'h1'));

    // Assess
    expect(result.principalId).toBe('h1');
    expect(result.context).toEqual({ hostId: 'h1' });
    expect(result.policyDocument.Statement).toEqual([
      { Action: 'execute-api:Invoke', Effect: 'Allow', Resource: connectEvent({}).methodArn },
    ]);
  });

  it('jwt mode: denies (403) a host token for another host, and a token without the host role', async () => {
    jwtMode();
    const other = await authorizer(connectEvent({ 'x-auth-token': jwt(GOOD) }, 'h2'));
    const member = await authorizer(
      connectEvent({ 'x-auth-token': jwt({ ...GOOD, roles: ['member'] }) }, 'h1'),
    );
    for (const result of [other, member]) {
      expect(result.policyDocument.Statement[0]).toMatchObject({ Effect: 'Deny' });
      expect(result.context).toBeUndefined();
    }
  });

  it('jwt mode: refuses (401) a forged, a missing token and a missing host_id', async () => {
    jwtMode();
    await expect(authorizer(connectEvent({ 'x-auth-token': jwt(GOOD, OTHER) }, 'h1'))).rejects.toThrow(
      /^Unauthorized$/,
    );
    await expect(authorizer(connectEvent({}, 'h1'))).rejects.toThrow(/^Unauthorized$/);
    await expect(authorizer(connectEvent({ 'x-auth-token': jwt(GOOD) }))).rejects.toThrow(/^Unauthorized$/);
  });

  it('jwt mode: reads `Authorization: Bearer <jwt>` when that is the token header', async () => {
    jwtMode();
    useServiceSettings({
      HANGAR_AUTH_MODE: 'claims',
      HANGAR_JWT_ISSUER: ISSUER,
      HANGAR_JWT_AUDIENCE: 'hangar',
      HANGAR_JWT_TOKEN_HEADER: 'Authorization',
      HANGAR_CLAIM_PROJECT: 'project',
      HANGAR_CLAIM_ROLES: 'roles',
      HANGAR_CLAIM_USER: 'sub',
      HANGAR_LOG_LEVEL: 'silent',
    });
    const result = await authorizer(connectEvent({ Authorization: `Bearer ${jwt(GOOD)}` }, 'h1'));
    expect(result.context).toEqual({ hostId: 'h1' });
    // The X-Auth-Token header is not looked at then.
    await expect(authorizer(connectEvent({ 'x-auth-token': jwt(GOOD) }, 'h1'))).rejects.toThrow(
      /^Unauthorized$/,
    );
  });

  describe('tokens mode', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hangar-socket-auth-'));
    const file = join(dir, 'tokens.json');
    writeFileSync(
      file,
      JSON.stringify({
        tokens: {
          'host-token': { project: 'hosts', user: 'h1', roles: ['host'] },
          'member-token': { project: 'demo', user: 'alice', roles: ['member'] },
        },
      }),
    );
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('allows the host token for its host only, refuses others', async () => {
      useServiceSettings({ HANGAR_AUTH_MODE: 'tokens', HANGAR_TOKENS: file, HANGAR_LOG_LEVEL: 'silent' });
      const allowed = await authorizer(connectEvent({ 'x-auth-token': 'host-token' }, 'h1'));
      expect(allowed.context).toEqual({ hostId: 'h1' });
      const member = await authorizer(connectEvent({ 'x-auth-token': 'member-token' }, 'h1'));
      expect(member.policyDocument.Statement[0]).toMatchObject({ Effect: 'Deny' });
      await expect(authorizer(connectEvent({ 'x-auth-token': 'nope' }, 'h1'))).rejects.toThrow(
        /^Unauthorized$/,
      );
    });
  });
});

function record(eventName: string, image: Record<string, unknown> | undefined): DynamoDBRecord {
  return { eventName, dynamodb: image ? { NewImage: image } : {} } as DynamoDBRecord;
}
const jobImage = (hostId: string, status = 'pending') => ({
  pk: { S: 'JOB#00000000-0000-4000-8000-000000000001' },
  sk: { S: 'META' },
  status: { S: status },
  data: { S: JSON.stringify({ id: 'j', host_id: hostId, status }) },
});

describe('queuedJobHosts', () => {
  it('names the host of each inserted pending job and nothing else', () => {
    const hosts = queuedJobHosts([
      record('INSERT', jobImage('h1')),
      record('MODIFY', jobImage('h2')),
      record('INSERT', jobImage('h3', 'claimed')),
      record('INSERT', { ...jobImage('h4'), pk: { S: 'INST#x' } }),
      record('INSERT', { ...jobImage('h5'), data: { S: 'not json' } }),
      record('REMOVE', undefined),
      record('INSERT', jobImage('h1')),
    ]);
    expect(hosts).toEqual(['h1', 'h1']);
  });

  it('has a stream filter for the same records', () => {
    expect(JOB_INSERT_FILTER.eventName).toEqual(['INSERT']);
    expect(JOB_INSERT_FILTER.dynamodb.NewImage.status.S).toEqual(['pending']);
    expect(JOB_INSERT_FILTER.dynamodb.Keys.pk.S).toEqual([{ prefix: 'JOB#' }]);
  });
});
