/**
 * The edge's middy middlewares (functions/edge/middlewares/) one by one and in their stacks:
 * request id rules, the order of the error path, Glance error rendering, the JSON body, the
 * principal, and the log context every line of an invocation carries.
 */
import middy from '@middy/core';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  HangarError,
  NotFoundError,
  RangeNotSatisfiableError,
  UnsupportedMediaTypeError,
} from '#core/kernel/errors';
import { httpHandler, routeTable } from '#edge/http';
import { errorToResult, glanceErrors } from '#edge/middlewares/glance-errors';
import { jsonBody, parseJsonBody } from '#edge/middlewares/json-body';
import { principal } from '#edge/middlewares/principal';
import { httpRequestId, MAX_REQUEST_ID_LENGTH, type RequestIdContext } from '#edge/middlewares/request-id';
import { inLogContext, requestLogging } from '#edge/middlewares/request-logging';
import { serviceHandler } from '#edge/middlewares/service-handler';
import { resetServiceConfig, setServiceEnvironment } from '#platform/config';
import { appendLogKeys, logger, withLogContext } from '#platform/logger';
import { taskStep } from '../../../functions/tasks/step.ts';

type Result = APIGatewayProxyStructuredResultV2;

function httpEvent(
  headers: Record<string, string> = {},
  extra: Partial<APIGatewayProxyEventV2> = {},
): APIGatewayProxyEventV2 {
  return {
    version: '2.0',
    routeKey: 'GET /v2/images',
    rawPath: '/v2/images',
    rawQueryString: '',
    headers,
    requestContext: {
      http: { method: 'GET', path: '/v2/images' },
      authorizer: { lambda: { project: 'projA', sub: 'alice', roles: 'member' } },
    },
    isBase64Encoded: false,
    ...extra,
  } as unknown as APIGatewayProxyEventV2;
}

/** A fresh one per invocation, as Lambda and the local gateway give: middlewares fill it in. */
const context = () => ({}) as Context;

/** Every JSON line the logger writes while `fn` runs. */
async function captureLog(fn: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const write = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    for (const text of String(chunk).split('\n')) if (text.trim()) lines.push(JSON.parse(text));
    return true;
  });
  try {
    await fn().catch(() => {});
  } finally {
    write.mockRestore();
  }
  return lines;
}

beforeEach(() => setServiceEnvironment({ HANGAR_AUTH_MODE: 'claims', HANGAR_LOG_LEVEL: 'info' }));
afterEach(() => {
  delete process.env.HANGAR_AUTH_MODE;
  delete process.env.HANGAR_LOG_LEVEL;
  resetServiceConfig();
});

describe('httpRequestId', () => {
  const ok = async () => ({ status: 200, json: { ok: true } });

  it('keeps the caller’s id, up to 64 characters', async () => {
    const id = 'x'.repeat(MAX_REQUEST_ID_LENGTH);
    const result = await httpHandler(ok)(httpEvent({ 'X-Openstack-Request-Id': id }), context());
    expect(result.statusCode).toBe(200);
    expect(result.headers?.['x-openstack-request-id']).toBe(id);
  });

  it.each([
    ['missing', {}],
    ['empty', { 'x-openstack-request-id': '' }],
  ])('makes a req-<uuid> when the caller’s is %s', async (_, headers) => {
    const result = await httpHandler(ok)(httpEvent(headers), context());
    expect(result.headers?.['x-openstack-request-id']).toMatch(
      /^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
  });

  it('answers a longer one 431 under a fresh id, before the caller is resolved or the handler runs', async () => {
    const fn = vi.fn(ok);
    const event = httpEvent(
      { 'x-openstack-request-id': 'x'.repeat(MAX_REQUEST_ID_LENGTH + 1), accept: 'application/json' },
      // No authorizer output: resolving the caller would be a 401.
      { requestContext: { http: { method: 'GET' } } as unknown as APIGatewayProxyEventV2['requestContext'] },
    );
    const result = await httpHandler(fn)(event, context());
    expect(result.statusCode).toBe(431);
    expect(JSON.parse(result.body ?? '')).toEqual({
      message: 'X-Openstack-Request-Id is longer than 64 characters.',
      code: '431 Request Header Fields Too Large',
      title: 'Request Header Fields Too Large',
    });
    expect(result.headers?.['x-openstack-request-id']).toMatch(/^req-/);
    expect(fn).not.toHaveBeenCalled();
  });

  it('stamps error answers too, overriding any id the handler set', async () => {
    const failing = httpHandler(async () => {
      throw new NotFoundError('No image found with ID x');
    });
    const result = await failing(httpEvent({ 'x-openstack-request-id': 'req-mine' }), context());
    expect(result.statusCode).toBe(404);
    expect(result.headers?.['x-openstack-request-id']).toBe('req-mine');
    const overriding = httpHandler(async () => ({
      status: 204,
      headers: { 'x-openstack-request-id': 'other' },
    }));
    expect(
      (await overriding(httpEvent({ 'x-openstack-request-id': 'req-mine' }), context())).headers,
    ).toEqual({
      'x-openstack-request-id': 'req-mine',
    });
  });
});

describe('the error path’s order', () => {
  it('renders first with the error handler registered last, then the request id stamps the answer', async () => {
    const seen: string[] = [];
    const spy = (name: string) => ({
      onError: (request: { response: Result | null }) => {
        seen.push(`${name}:${request.response?.statusCode ?? 'none'}`);
      },
    });
    const handler = middy<APIGatewayProxyEventV2, Result, Error, RequestIdContext>({
      timeoutEarlyInMillis: 0,
    })
      .use(httpRequestId())
      .use(spy('outer'))
      .use(glanceErrors())
      .handler(async () => {
        throw new ConflictError('busy');
      });
    const result = await handler(httpEvent({ 'x-openstack-request-id': 'req-1' }), {} as RequestIdContext);
    expect(seen).toEqual(['outer:409']);
    expect(result.statusCode).toBe(409);
    expect(result.headers?.['x-openstack-request-id']).toBe('req-1');
  });

  it('without an error renderer, the error passes through untouched', async () => {
    const error = new Error('boom');
    const handler = middy<APIGatewayProxyEventV2, Result, Error, RequestIdContext>({
      timeoutEarlyInMillis: 0,
    })
      .use(httpRequestId())
      .handler(async () => {
        throw error;
      });
    await expect(handler(httpEvent(), {} as RequestIdContext)).rejects.toBe(error);
  });

  it('renders a refusal of the principal middleware (401) like any other error', async () => {
    const fn = vi.fn(async () => ({ status: 200 }));
    const event = httpEvent({ accept: 'application/json' }, {
      requestContext: { http: { method: 'GET' } },
    } as unknown as Partial<APIGatewayProxyEventV2>);
    const result = await httpHandler(fn)(event, context());
    expect(result.statusCode).toBe(401);
    expect(result.headers?.['x-openstack-request-id']).toMatch(/^req-/);
    expect(fn).not.toHaveBeenCalled();
  });
});

describe('Glance error rendering', () => {
  it.each([
    [new BadRequestError('bad'), 400],
    [new ForbiddenError('no'), 403],
    [new NotFoundError('none'), 404],
    [new ConflictError('busy'), 409],
    [new RangeNotSatisfiableError('past the end', 10), 416],
  ])('%s -> %i', (error, status) => {
    expect(errorToResult(error, 'application/json', 'req-1').statusCode).toBe(status);
  });

  it('names the range on a 416 and the patch types on a 415', () => {
    expect(
      errorToResult(new RangeNotSatisfiableError('past the end', 10), undefined, 'r').headers,
    ).toMatchObject({
      'content-range': 'bytes */10',
    });
    const unsupported = new UnsupportedMediaTypeError('no', ['application/openstack-images-v2.1-json-patch']);
    expect(errorToResult(unsupported, undefined, 'r').headers).toMatchObject({
      'accept-patch': 'application/openstack-images-v2.1-json-patch',
    });
  });

  it('never leaks an unexpected error: a bare 500', () => {
    const result = errorToResult(new Error('secret internals'), 'application/json', 'req-1');
    expect(result.statusCode).toBe(500);
    expect(result.body).not.toContain('secret');
    expect(JSON.parse(result.body ?? '').message).toBe(
      'The server has either erred or is incapable of performing the requested operation.',
    );
  });

  it('answers JSON, HTML or plain text by Accept', () => {
    const error = new NotFoundError('No <image>');
    expect(errorToResult(error, 'application/json', 'r').headers?.['content-type']).toBe('application/json');
    const html = errorToResult(error, undefined, 'r');
    expect(html.headers?.['content-type']).toBe('text/html; charset=UTF-8');
    expect(html.body).toContain('No &#60;image&#62;');
    const text = errorToResult(error, 'text/plain', 'r');
    expect(text.body).toBe('404 Not Found\n\nNo <image>\n\n   ');
  });

  it('logs a refusal at info and a failure at error, with the request id', async () => {
    const lines = await captureLog(async () => {
      errorToResult(new NotFoundError('none'), undefined, 'req-4xx');
      errorToResult(new Error('boom'), undefined, 'req-5xx');
    });
    expect(lines.map(({ level, message, requestId }) => [level, message, requestId])).toEqual([
      ['info', 'request refused', 'req-4xx'],
      ['error', 'unhandled error', 'req-5xx'],
    ]);
  });
});

describe('jsonBody', () => {
  const body = (text: string) => httpEvent({}, { body: text });

  it('parses lazily, when the handler asks', async () => {
    const handler = middy<APIGatewayProxyEventV2, unknown, Error, Context & { json(): Promise<unknown> }>()
      .use(jsonBody())
      .handler(async (_event, ctx) => ({ parsed: await ctx.json() }));
    expect(await handler(body('{"name":"x"}'), {} as never)).toEqual({ parsed: { name: 'x' } });
    // A handler that never asks never sees a malformed body.
    const ignoring = middy()
      .use(jsonBody())
      .handler(async () => 'fine');
    expect(await ignoring(body('{'), {} as never)).toBe('fine');
  });

  it('keeps Glance’s errors: malformed, too deep, an empty body is null', async () => {
    await expect(parseJsonBody(body('{'))).rejects.toThrow(
      new BadRequestError('Malformed JSON in request body.'),
    );
    await expect(parseJsonBody(body(`${'['.repeat(101)}${']'.repeat(101)}`))).rejects.toThrow(
      'Malformed JSON in request body: nested deeper than 100 levels.',
    );
    expect(await parseJsonBody(body(`${'['.repeat(100)}${']'.repeat(100)}`))).toBeInstanceOf(Array);
    expect(await parseJsonBody(body(''))).toBeNull();
  });

  it('answers a malformed body 400 through the stack', async () => {
    const handler = httpHandler(async (request) => ({ status: 200, json: await request.json() }));
    const result = await handler(httpEvent({ accept: 'application/json' }, { body: '{"a":' }), context());
    expect(result.statusCode).toBe(400);
    expect(JSON.parse(result.body ?? '').message).toBe('Malformed JSON in request body.');
  });
});

describe('routeTable', () => {
  const routes = routeTable({
    'GET /v2/images': async () => ({ status: 200, json: { route: 'list' } }),
    'DELETE /v2/images/{image_id}': async (request) => ({
      status: 200,
      json: { id: request.params.image_id },
    }),
  });

  it('names its keys and dispatches on event.routeKey through the middy stack', async () => {
    expect(routes.routeKeys).toEqual(['GET /v2/images', 'DELETE /v2/images/{image_id}']);
    const list = await routes.handler(httpEvent(), context());
    expect(JSON.parse(list.body ?? '')).toEqual({ route: 'list' });
    const remove = await routes.handler(
      httpEvent({}, { routeKey: 'DELETE /v2/images/{image_id}', pathParameters: { image_id: 'a%20b' } }),
      context(),
    );
    expect(JSON.parse(remove.body ?? '')).toEqual({ id: 'a b' });
    expect(remove.headers?.['x-openstack-request-id']).toMatch(/^req-/);
  });

  it("answers Glance's 404 for a key it does not serve, an inherited name included", async () => {
    for (const routeKey of ['GET /v2/tasks', 'constructor', 'toString']) {
      const result = await routes.handler(httpEvent({ accept: 'application/json' }, { routeKey }), context());
      expect(result.statusCode, routeKey).toBe(404);
      expect(JSON.parse(result.body ?? '').message).toBe('The resource could not be found.');
    }
  });
});

describe('principal', () => {
  it('hands the resolved caller to the handler as request.principal', async () => {
    const handler = httpHandler(async (request) => ({ status: 200, json: request.principal }));
    const result = await handler(httpEvent(), context());
    expect(JSON.parse(result.body ?? '')).toEqual({
      project: 'projA',
      user: 'alice',
      roles: ['member'],
      isAdmin: false,
    });
  });

  it('is anonymous where auth is off, without asking the authenticator', async () => {
    const handler = middy<APIGatewayProxyEventV2, unknown, Error, Context & { principal: unknown }>()
      .use(principal({ required: false }))
      .handler(async (_event, ctx) => ctx.principal);
    const event = httpEvent({}, { requestContext: {} } as unknown as Partial<APIGatewayProxyEventV2>);
    expect(await handler(event, {} as never)).toEqual({ project: '', user: '', roles: [], isAdmin: false });
  });
});

describe('request-scoped logging', () => {
  it('every line of an API request carries its request id and caller, through awaits and timers', async () => {
    const handler = httpHandler(async () => {
      logger.info('in the handler');
      await new Promise((resolve) => setTimeout(resolve, 5));
      await Promise.resolve().then(() => logger.warn('deeper', { detail: 1 }));
      throw new NotFoundError('none');
    });
    const lines = await captureLog(async () => {
      await Promise.all([
        handler(httpEvent({ 'x-openstack-request-id': 'req-a' }), context()),
        handler(
          httpEvent({ 'x-openstack-request-id': 'req-b' }, {
            requestContext: {
              http: { method: 'GET' },
              authorizer: { lambda: { project: 'projB', sub: 'bob', roles: 'member' } },
            },
          } as unknown as Partial<APIGatewayProxyEventV2>),
          context(),
        ),
      ]);
    });
    expect(lines).toHaveLength(6);
    for (const line of lines) {
      const expected =
        line.requestId === 'req-a' ? { project: 'projA', user: 'alice' } : { project: 'projB', user: 'bob' };
      expect(['req-a', 'req-b']).toContain(line.requestId);
      expect(line.caller).toEqual(expected);
    }
    expect(lines.filter((line) => line.message === 'request refused')).toHaveLength(2);
  });

  it('names no caller before one is known (a 401), and nothing leaks out of the context', async () => {
    const handler = httpHandler(async () => ({ status: 200 }));
    const lines = await captureLog(async () => {
      await handler(
        httpEvent({ 'x-openstack-request-id': 'req-anon' }, {
          requestContext: { http: { method: 'GET' } },
        } as unknown as Partial<APIGatewayProxyEventV2>),
        context(),
      );
      logger.info('after the request');
    });
    expect(lines[0]).toMatchObject({ message: 'request refused', requestId: 'req-anon', caller: null });
    expect(lines[1]).not.toHaveProperty('requestId');
    expect(lines[1]).not.toHaveProperty('caller');
  });

  it('a line’s own fields win over the context’s, and appends outside a context are dropped', async () => {
    const lines = await captureLog(async () => {
      appendLogKeys({ requestId: 'nowhere' });
      logger.info('outside');
      await withLogContext({ requestId: 'req-1' }, async () => {
        logger.info('inside', { requestId: 'explicit' });
        await withLogContext({}, async () => logger.info('fresh'));
      });
    });
    expect(lines.map((line) => line.requestId)).toEqual([undefined, 'explicit', undefined]);
  });

  it('requestLogging names a service caller; inLogContext gives each invocation its own context', async () => {
    const handler = inLogContext(
      middy<unknown, void, Error, RequestIdContext>()
        .before((request) => {
          request.context.requestId = (request.event as { id: string }).id;
        })
        .use(requestLogging({ caller: { service: 'test' } }))
        .handler(async () => {
          await new Promise((resolve) => setTimeout(resolve, 1));
          logger.info('work');
        }),
    );
    const lines = await captureLog(() =>
      Promise.all([
        handler({ id: 'one' }, {} as RequestIdContext),
        handler({ id: 'two' }, {} as RequestIdContext),
      ]),
    );
    expect(lines.map((line) => [line.requestId, line.caller]).sort()).toEqual([
      ['one', { service: 'test' }],
      ['two', { service: 'test' }],
    ]);
  });
});

describe('service handlers: tasks and triggers', () => {
  const Input = z.object({ task_id: z.string(), image_id: z.string() });

  it('a task step returns its result and logs it with the task context', async () => {
    const step = taskStep('test-step', Input, async (input) => ({ echoed: input.task_id }));
    let result: unknown;
    const lines = await captureLog(async () => {
      result = await step({ task_id: 't1', image_id: 'i1' }, { awsRequestId: 'lambda-1' } as Context);
    });
    expect(result).toEqual({ echoed: 't1' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 'info',
      message: 'task step done',
      requestId: 'lambda-1',
      caller: { service: 'states' },
      step: 'test-step',
      taskId: 't1',
      imageId: 'i1',
    });
  });

  it('passes errors through untouched: a refusal logged at info, a fault at error', async () => {
    const refusal = new BadRequestError('unsafe image');
    const fault = new TypeError('bug');
    for (const [error, level] of [
      [refusal, 'info'],
      [fault, 'error'],
    ] as const) {
      const step = taskStep('test-step', Input, async () => {
        throw error;
      });
      const lines = await captureLog(async () => {
        await expect(step({ task_id: 't1', image_id: 'i1' })).rejects.toBe(error);
      });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({
        level,
        message: 'task step failed',
        taskId: 't1',
        caller: { service: 'states' },
      });
      expect(lines[0]?.requestId).toMatch(/^req-/);
      expect(lines[0]?.error).toMatchObject({ name: error.name, message: error.message });
    }
    expect(refusal).toBeInstanceOf(HangarError);
  });

  it('an input that does not parse fails the step with the ZodError, unlogged', async () => {
    const run = vi.fn(async () => ({}));
    const step = taskStep('test-step', Input, run);
    const lines = await captureLog(async () => {
      await expect(step({ task_id: 7 })).rejects.toBeInstanceOf(z.ZodError);
    });
    expect(lines).toEqual([]);
    expect(run).not.toHaveBeenCalled();
  });

  it('a trigger runs with no event and no context (the local runner) and rethrows as it was', async () => {
    const error = new AggregateError([new Error('x')], '1 upload record(s) failed');
    const lines = await captureLog(async () => {
      const sweep = serviceHandler({ service: 'events' }, [], async (event: unknown) => {
        logger.info('sweeping', { event });
        return 'swept';
      });
      expect(await sweep()).toBe('swept');
      const failing = serviceHandler({ service: 's3' }, [], async () => {
        throw error;
      });
      await expect(failing({})).rejects.toBe(error);
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ message: 'sweeping', event: {}, caller: { service: 'events' } });
    expect(lines[0]?.requestId).toMatch(/^req-/);
  });
});
