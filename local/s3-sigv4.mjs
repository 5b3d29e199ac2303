/**
 * AWS Signature Version 4 verification for the embedded s3rver (local/s3rver-child.mjs).
 * s3rver 3.7.1 accepts anonymous requests and any V4 signature from a known key id ("Signature
 * version 4 calculation is unimplemented"), so any local process could write the buckets. This
 * checks the Authorization header and presigned query forms against one key pair.
 *
 * Not checked: the payload hash itself (x-amz-content-sha256 is signed, so a client without the
 * secret cannot choose it, but the body is not hashed again here) and aws-chunked chunk signatures
 * (the seed signature is checked). Both would only matter against someone replaying captured
 * loopback traffic, which needs privileges that also read the secret file.
 *
 * Plain JavaScript so the s3rver child starts without a TypeScript loader.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** S3's own bound on clock skew for header-signed requests. */
const MAX_SKEW_MS = 15 * 60 * 1000;
/** S3's bound on a presigned URL's lifetime (seven days). */
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

export class SigV4Error extends Error {
  /** @param {string} code an S3 error code @param {string} message */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const sha256Hex = (text) => createHash('sha256').update(text, 'utf8').digest('hex');
const hmac = (key, text) => createHmac('sha256', key).update(text, 'utf8').digest();

/** RFC 3986 encoding as the SDKs sign: everything but unreserved characters. */
function encodeRfc3986(text) {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function decode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new SigV4Error(
      'AuthorizationQueryParametersError',
      'Malformed percent-encoding in the request URL.',
    );
  }
}

/** 20261202T070000Z -> epoch ms, or NaN. */
function parseAmzDate(value) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value ?? '');
  if (!m) return Number.NaN;
  return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
}

function parseQuery(rawQuery) {
  /** @type {Array<[string, string]>} */
  const pairs = [];
  if (!rawQuery) return pairs;
  for (const part of rawQuery.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    pairs.push([decode(key), decode(value)]);
  }
  return pairs;
}

function headerValue(headers, name) {
  const value = headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : String(value);
}

/**
 * Throws a SigV4Error unless `request` carries a valid SigV4 signature by `credentials`.
 * @param {{method: string, url: string, headers: Record<string, string | string[] | undefined>}} request
 * @param {{accessKeyId: string, secretAccessKey: string}} credentials
 * @param {number} [now] epoch ms
 */
export function verifySigV4(request, credentials, now = Date.now()) {
  const url = request.url ?? '/';
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const query = parseQuery(q < 0 ? '' : url.slice(q + 1));
  const queryGet = (name) => query.find(([k]) => k === name)?.[1];
  const authorization = headerValue(request.headers, 'authorization');
  const presigned = queryGet('X-Amz-Algorithm') !== undefined;

  let credential;
  let signedHeaders;
  let signature;
  let amzDate;
  let payloadHash;
  if (authorization !== undefined && !presigned) {
    const m = /^AWS4-HMAC-SHA256\s+(.*)$/s.exec(authorization);
    if (!m) {
      throw new SigV4Error('AccessDenied', 'Only AWS Signature Version 4 (AWS4-HMAC-SHA256) is accepted.');
    }
    const fields = new Map();
    for (const item of m[1].split(',')) {
      const eq = item.indexOf('=');
      if (eq > 0) fields.set(item.slice(0, eq).trim(), item.slice(eq + 1).trim());
    }
    credential = fields.get('Credential');
    signedHeaders = fields.get('SignedHeaders');
    signature = fields.get('Signature');
    amzDate = headerValue(request.headers, 'x-amz-date');
    payloadHash = headerValue(request.headers, 'x-amz-content-sha256');
    if (!credential || !signedHeaders || !signature || !amzDate || !payloadHash) {
      throw new SigV4Error('AuthorizationHeaderMalformed', 'The authorization header is malformed.');
    }
    const time = parseAmzDate(amzDate);
    if (!(Math.abs(now - time) <= MAX_SKEW_MS)) {
      throw new SigV4Error(
        'RequestTimeTooSkewed',
        'The difference between the request time and the current time is too large.',
      );
    }
  } else if (presigned && authorization === undefined) {
    if (queryGet('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') {
      throw new SigV4Error('AuthorizationQueryParametersError', 'X-Amz-Algorithm must be AWS4-HMAC-SHA256.');
    }
    credential = queryGet('X-Amz-Credential');
    signedHeaders = queryGet('X-Amz-SignedHeaders');
    signature = queryGet('X-Amz-Signature');
    amzDate = queryGet('X-Amz-Date');
    const expires = Number(queryGet('X-Amz-Expires'));
    payloadHash = queryGet('X-Amz-Content-Sha256') ?? 'UNSIGNED-PAYLOAD';
    if (!credential || !signedHeaders || !signature || !amzDate || !Number.isInteger(expires)) {
      throw new SigV4Error('AuthorizationQueryParametersError', 'The presigned URL is missing parameters.');
    }
    const time = parseAmzDate(amzDate);
    if (!(expires > 0 && expires <= MAX_PRESIGN_SECONDS) || Number.isNaN(time)) {
      throw new SigV4Error('AuthorizationQueryParametersError', 'X-Amz-Expires or X-Amz-Date is invalid.');
    }
    if (now > time + expires * 1000) throw new SigV4Error('AccessDenied', 'Request has expired');
    if (time - now > MAX_SKEW_MS) throw new SigV4Error('AccessDenied', 'Request is not valid yet');
  } else if (authorization === undefined) {
    // Anonymous: real S3 would apply bucket policies; the embedded buckets have none to grant.
    throw new SigV4Error(
      'AccessDenied',
      "Anonymous requests are not accepted: sign with the data directory's key.",
    );
  } else {
    throw new SigV4Error('InvalidArgument', 'Only one auth mechanism allowed.');
  }

  const scope = credential.split('/');
  if (
    scope.length !== 5 ||
    scope[3] !== 's3' ||
    scope[4] !== 'aws4_request' ||
    scope[1] !== amzDate.slice(0, 8)
  ) {
    throw new SigV4Error('AuthorizationHeaderMalformed', 'The credential scope is malformed.');
  }
  const [accessKeyId, day, region] = scope;
  if (accessKeyId !== credentials.accessKeyId) {
    throw new SigV4Error(
      'InvalidAccessKeyId',
      'The AWS Access Key Id you provided does not exist in our records.',
    );
  }

  const names = signedHeaders.split(';');
  if (!names.includes('host') || names.some((n) => n !== n.toLowerCase() || !n)) {
    throw new SigV4Error('AuthorizationHeaderMalformed', 'SignedHeaders must include host, in lower case.');
  }
  const canonicalHeaders = names
    .map((name) => `${name}:${(headerValue(request.headers, name) ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonicalUri =
    rawPath
      .split('/')
      .map((segment) => encodeRfc3986(decode(segment)))
      .join('/') || '/';
  const canonicalQuery = query
    .filter(([key]) => !(presigned && key === 'X-Amz-Signature'))
    .map(([key, value]) => [encodeRfc3986(key), encodeRfc3986(value)])
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([key, value]) => `${key}=${value}`)
    .join('&');
  const canonicalRequest = [
    request.method.toUpperCase(),
    canonicalUri,
    canonicalQuery,
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join('\n');
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    `${day}/${region}/s3/aws4_request`,
    sha256Hex(canonicalRequest),
  ].join('\n');
  let key = hmac(`AWS4${credentials.secretAccessKey}`, day);
  key = hmac(key, region);
  key = hmac(key, 's3');
  key = hmac(key, 'aws4_request');
  const expected = createHmac('sha256', key).update(stringToSign, 'utf8').digest();
  const provided = /^[0-9a-f]{64}$/.test(signature) ? Buffer.from(signature, 'hex') : Buffer.alloc(0);
  if (provided.length !== expected.length || !timingSafeEqual(provided, expected)) {
    throw new SigV4Error(
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
    );
  }
}
