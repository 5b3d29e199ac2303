/**
 * JSON calls against a started test backend, shared by the integration tests that play users and
 * host agents over HTTP: one request shape (accept JSON, parse whatever came back), a host's
 * registration body, an image's bytes uploaded, an active raw image. Assertions stay in the tests;
 * these only make the requests.
 */
import type { Persona, TestBackend } from './backend.ts';

export interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in assertions.
  body: any;
}

/** One call with `token`; the body, when there is one, is sent as JSON and the answer parsed. */
export async function callJson(
  t: TestBackend,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Reply> {
  const response = await t.request(method, path, {
    token,
    headers: { accept: 'application/json' },
    ...(body === undefined ? {} : { body: body as object }),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

export interface HostResources {
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  architecture: string;
}

/** PUT /v1/hosts/{id} as that host, with its resources and the qemu hypervisor every test uses. */
export function registerHost(
  t: TestBackend,
  hostId: string,
  resources: HostResources & Record<string, unknown>,
): Promise<Reply> {
  return callJson(t, t.hostTokens[hostId] ?? '', 'PUT', `/v1/hosts/${hostId}`, {
    hypervisor_type: 'qemu',
    hypervisor_version: 9_000_000,
    ...resources,
  });
}

/** PUT /v2/images/{id}/file with `bytes`, optionally under a job's upload grant. */
export function putImageFile(
  t: TestBackend,
  token: string,
  imageId: string,
  bytes: Uint8Array,
  grant?: string,
): Promise<Response> {
  return t.request('PUT', `/v2/images/${imageId}/file`, {
    token,
    headers: {
      'content-type': 'application/octet-stream',
      ...(grant ? { 'x-hangar-upload-grant': grant } : {}),
    },
    body: bytes,
  });
}

/** POST /v2/images for a raw, bare image of `persona`'s with the given name and properties. */
export function createRawImage(
  t: TestBackend,
  persona: Persona,
  fields: { name: string } & Record<string, unknown>,
): Promise<Reply> {
  return callJson(t, t.tokens[persona], 'POST', '/v2/images', {
    disk_format: 'raw',
    container_format: 'bare',
    ...fields,
  });
}

/**
 * `call` (any token), `as` (a persona) and `host` (a host's own token) against the backend that
 * `current` returns: a getter, since the tests start theirs in a beforeAll.
 */
export function apiCalls(current: () => TestBackend) {
  const call = (token: string, method: string, path: string, body?: unknown) =>
    callJson(current(), token, method, path, body);
  return {
    call,
    as: (persona: Persona, method: string, path: string, body?: unknown) =>
      call(current().tokens[persona], method, path, body),
    host: (hostId: string, method: string, path: string, body?: unknown) =>
      call(current().hostTokens[hostId] ?? '', method, path, body),
  };
}
