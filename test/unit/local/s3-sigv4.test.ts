/**
 * The embedded s3rver's SigV4 check (local/s3-sigv4.mjs) against what the real SDK signs: header
 * signatures captured from S3Client before they leave the process, and presigned URLs.
 */
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { describe, expect, it } from 'vitest';
import { SigV4Error, verifySigV4 } from '../../../local/s3-sigv4.mjs';

const KEY = { accessKeyId: 'HANGARABCDEFGHIJKLMN', secretAccessKey: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0' };
const ENDPOINT = 'http://127.0.0.1:4569';
type Signed = { method: string; url: string; headers: Record<string, string> };

function client(credentials = KEY, captured?: Signed[]): S3Client {
  return new S3Client({
    endpoint: ENDPOINT,
    region: 'us-east-1',
    credentials,
    forcePathStyle: true,
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    requestHandler: {
      // Records the signed request instead of sending it anywhere.
      handle: async (request: {
        method: string;
        path: string;
        query?: Record<string, string | string[] | null>;
        headers: Record<string, string>;
      }) => {
        const query = Object.entries(request.query ?? {})
          .map(([k, v]) =>
            v === null ? encodeURIComponent(k) : `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`,
          )
          .join('&');
        const headers = Object.fromEntries(
          Object.entries(request.headers).map(([k, v]) => [k.toLowerCase(), v]),
        );
        captured?.push({
          method: request.method,
          url: `${request.path}${query ? `?${query}` : ''}`,
          headers,
        });
        throw new Error('captured');
      },
    } as never,
  });
}

async function signedPut(key: string, credentials = KEY): Promise<Signed> {
  const captured: Signed[] = [];
  await client(credentials, captured)
    .send(
      new PutObjectCommand({
        Bucket: 'hangar-uploads',
        Key: key,
        Body: 'bytes',
        Metadata: { owner: 'projA' },
      }),
    )
    .catch(() => undefined);
  const request = captured[0];
  if (!request) throw new Error('nothing was signed');
  return request;
}

function code(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (error) {
    if (error instanceof SigV4Error) return error.code;
    throw error;
  }
}

describe('SigV4 verification for the embedded s3rver', () => {
  it.each(['new/debian.qcow2', 'images/with space+plus:colon~tilde', 'new/ünïcødé/(1)*!.raw'])(
    'accepts a header-signed PutObject of %s with the key pair',
    async (key) => {
      const request = await signedPut(key);
      expect(code(() => verifySigV4(request, KEY))).toBeUndefined();
    },
  );

  it('refuses another secret, another key id, a changed header or path, and an old date', async () => {
    const request = await signedPut('new/x');
    expect(code(() => verifySigV4(request, { ...KEY, secretAccessKey: 'other' }))).toBe(
      'SignatureDoesNotMatch',
    );
    expect(code(() => verifySigV4(request, { ...KEY, accessKeyId: 'HANGAROTHEROTHEROTHE' }))).toBe(
      'InvalidAccessKeyId',
    );
    const metadata = { ...request, headers: { ...request.headers, 'x-amz-meta-owner': 'admin' } };
    expect(code(() => verifySigV4(metadata, KEY))).toBe('SignatureDoesNotMatch');
    expect(code(() => verifySigV4({ ...request, url: '/hangar-uploads/new/y' }, KEY))).toBe(
      'SignatureDoesNotMatch',
    );
    expect(code(() => verifySigV4({ ...request, method: 'DELETE' }, KEY))).toBe('SignatureDoesNotMatch');
    expect(code(() => verifySigV4(request, KEY, Date.now() + 20 * 60_000))).toBe('RequestTimeTooSkewed');
  });

  it('refuses anonymous requests and Signature Version 2', () => {
    const headers = { host: '127.0.0.1:4569' };
    expect(code(() => verifySigV4({ method: 'PUT', url: '/hangar-uploads/new/x', headers }, KEY))).toBe(
      'AccessDenied',
    );
    const v2 = { ...headers, authorization: `AWS ${KEY.accessKeyId}:c2lnbmF0dXJl` };
    expect(code(() => verifySigV4({ method: 'GET', url: '/hangar-uploads/new/x', headers: v2 }, KEY))).toBe(
      'AccessDenied',
    );
  });

  it('accepts a presigned URL until it expires, and only for what it was signed for', async () => {
    const url = new URL(
      await getSignedUrl(client(), new GetObjectCommand({ Bucket: 'hangar-images', Key: 'blobs/a b' }), {
        expiresIn: 60,
      }),
    );
    const request = { method: 'GET', url: `${url.pathname}${url.search}`, headers: { host: url.host } };
    expect(code(() => verifySigV4(request, KEY))).toBeUndefined();
    expect(code(() => verifySigV4(request, KEY, Date.now() + 61_000))).toBe('AccessDenied');
    expect(code(() => verifySigV4({ ...request, method: 'PUT' }, KEY))).toBe('SignatureDoesNotMatch');
    expect(code(() => verifySigV4({ ...request, url: request.url.replace('blobs', 'other') }, KEY))).toBe(
      'SignatureDoesNotMatch',
    );
    expect(code(() => verifySigV4(request, { ...KEY, secretAccessKey: 'other' }))).toBe(
      'SignatureDoesNotMatch',
    );
  });
});
