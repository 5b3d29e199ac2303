/**
 * The JSON body of an API request, as `context.json()`. Parsing is left to the handler's call:
 * the image data routes stream the very same body, and a handler may refuse a request (404,
 * 403) before its body matters, as Glance does. The parse keeps Glance's errors: 413 past
 * MAX_JSON_BODY, 400 for an interrupted or malformed body, too deep a nesting, or bad JSON.
 */
import type { MiddlewareObj } from '@middy/core';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { BadRequestError, TooLargeError } from '#core/kernel/errors';
import { requestBodyBuffer } from '../streams.ts';

export interface JsonBodyContext extends Context {
  json(): Promise<unknown>;
}

/** JSON documents (create, PATCH) are small; image data never goes through json(). */
const MAX_JSON_BODY = 1024 * 1024;

/**
 * No Glance document nests deeper than a few levels. A deeper body is refused before it is
 * parsed, so nothing that walks it (validation, error messages) can run out of stack.
 */
const MAX_JSON_DEPTH = 100;

/** The deepest nesting of arrays and objects in JSON text, counted without recursion. */
export function jsonDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) deepest = Math.max(deepest, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return deepest;
}

export async function parseJsonBody(event: APIGatewayProxyEventV2): Promise<unknown> {
  const buffer = await requestBodyBuffer(event, MAX_JSON_BODY).catch((error: unknown) => {
    // requestBodyBuffer's RangeError means the body passed the limit: the client's fault.
    if (error instanceof RangeError)
      throw new TooLargeError(`The request body is larger than ${MAX_JSON_BODY} bytes.`);
    // The body's stream failed: the client went away or sent a malformed (chunked) body.
    throw new BadRequestError('The request body was interrupted or malformed before it ended.');
  });
  const text = buffer.toString('utf8');
  if (jsonDepth(text) > MAX_JSON_DEPTH)
    throw new BadRequestError(`Malformed JSON in request body: nested deeper than ${MAX_JSON_DEPTH} levels.`);
  try {
    return JSON.parse(text || 'null');
  } catch {
    throw new BadRequestError('Malformed JSON in request body.');
  }
}

export function jsonBody(): MiddlewareObj<APIGatewayProxyEventV2, unknown, Error, JsonBodyContext> {
  return {
    name: 'jsonBody',
    before: (request) => {
      const { event } = request;
      request.context.json = () => parseJsonBody(event);
    },
  };
}
