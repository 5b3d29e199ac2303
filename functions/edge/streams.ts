/**
 * Image bodies are too large for a Lambda event, so the embedded gateway hands handlers the live
 * request stream (and takes a response stream back) through these symbol-keyed side channels.
 * On Lambda the side channel is absent and the (small) body comes from the event itself.
 */
import { Readable } from 'node:stream';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';

const REQUEST_BODY = Symbol.for('hangar.requestBody');
const RESPONSE_BODY = Symbol.for('hangar.responseBody');

type WithRequestBody = APIGatewayProxyEventV2 & { [REQUEST_BODY]?: Readable };
type WithResponseBody = { [RESPONSE_BODY]?: Readable };

export function attachRequestBody(event: APIGatewayProxyEventV2, body: Readable): void {
  (event as WithRequestBody)[REQUEST_BODY] = body;
}

export function hasRequestStream(event: APIGatewayProxyEventV2): boolean {
  return (event as WithRequestBody)[REQUEST_BODY] !== undefined;
}

/** The request body as a stream, whichever way it arrived. */
export function requestBodyStream(event: APIGatewayProxyEventV2): Readable {
  const attached = (event as WithRequestBody)[REQUEST_BODY];
  if (attached) return attached;
  if (event.body === undefined || event.body === null) return Readable.from([]);
  return Readable.from([Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8')]);
}

/** The whole request body as a buffer (small bodies only: JSON documents). */
export async function requestBodyBuffer(event: APIGatewayProxyEventV2, limit = 1024 * 1024): Promise<Buffer> {
  const attached = (event as WithRequestBody)[REQUEST_BODY];
  if (!attached) {
    if (event.body === undefined || event.body === null) return Buffer.alloc(0);
    return Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of attached) {
    total += (chunk as Buffer).length;
    if (total > limit) throw new RangeError(`request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function attachResponseBody<T extends object>(result: T, body: Readable): T {
  (result as WithResponseBody)[RESPONSE_BODY] = body;
  return result;
}

export function responseBodyStream(result: object): Readable | undefined {
  return (result as WithResponseBody)[RESPONSE_BODY];
}
