/**
 * The console's one API client: same-origin calls to /v2 (Glance's images API) and /v1 (Hangar's
 * references, instances and hosts), with the session's token. Every failure becomes an ApiError
 * carrying the server's own message (Glance's JSON error body), so pages can show it in words.
 */
const TOKEN_KEY = 'hangar.console.token';

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}
export function storeToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Glance answers errors as {message, code, title} when asked for JSON; older paths send HTML. */
export function errorMessage(status: number, body: string): string {
  try {
    const parsed = JSON.parse(body) as { message?: unknown; title?: unknown };
    if (typeof parsed.message === 'string' && parsed.message.trim() !== '') return parsed.message.trim();
  } catch {
    // not JSON: fall through to the text itself
  }
  const text = body
    .replace(/<[^>]*>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return text || `The service answered ${status}.`;
}

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = storedToken();
  if (token) headers['x-auth-token'] = token;
  let body: BodyInit | undefined;
  if (options.body !== undefined) {
    headers['content-type'] = options.contentType ?? 'application/json';
    body = JSON.stringify(options.body);
  }
  const init: RequestInit = { method, headers };
  if (body !== undefined) init.body = body;
  if (options.signal) init.signal = options.signal;
  const response = await fetch(path, init);
  const text = await response.text();
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new Event('hangar:unauthorized'));
    throw new ApiError(response.status, errorMessage(response.status, text));
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

export interface Image {
  id: string;
  name: string | null;
  status: string;
  disk_format: string | null;
  container_format: string | null;
  size: number | null;
  virtual_size: number | null;
  visibility: string;
  protected: boolean;
  os_hidden: boolean;
  owner: string | null;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  min_ram: number;
  min_disk: number;
  tags: string[];
  created_at: string;
  updated_at: string;
  [key: string]: unknown;
}

export interface ImageList {
  images: Image[];
  next?: string;
  first?: string;
}

export interface Member {
  image_id: string;
  member_id: string;
  status: 'pending' | 'accepted' | 'rejected';
  created_at: string;
  updated_at: string;
}

export interface Reference {
  reference: string;
  namespace: string;
  name: string;
  tag: string;
  image_id: string;
  created_at: string;
  updated_at: string;
  updated_by: string;
  version: number;
}

export interface HistoryEntry {
  seq: number;
  action: string;
  from: string | null;
  to: string | null;
  by: string;
  at: string;
}

export interface Instance {
  id: string;
  name: string;
  hostname: string;
  project_id: string;
  image_id: string;
  image: { id: string; name: string | null; requested_as: string } | null;
  vcpus: number;
  ram_mb: number;
  disk_gb: number;
  host_id: string | null;
  stage: string;
  reason: string | null;
  last_error: string | null;
  pending_action: string | null;
  reference?: string | null;
  previous_image?: { id: string; name: string | null } | null;
  upgrading_to?: { id: string; name: string | null } | null;
  created_at: string;
  updated_at: string;
  console_log?: string | null;
}

/** A publish task (GET /v1/publications/{id}): pending, processing, then success or failure. */
export interface Publication {
  id: string;
  status: 'pending' | 'processing' | 'success' | 'failure';
  message: string | null;
  result: Record<string, unknown> | null;
  input: { reference?: string; image_id?: string; boot?: unknown } | null;
  created_at: string;
  updated_at: string;
}

export interface RetentionPolicy {
  keep: number;
  grace_seconds: number;
  [key: string]: unknown;
}

export interface Host {
  id: string;
  [key: string]: unknown;
}

/** Glance's base attributes: read-only or changed through their own controls, never as extras. */
export const BASE_PROPERTIES = new Set([
  'id',
  'name',
  'status',
  'disk_format',
  'container_format',
  'size',
  'virtual_size',
  'visibility',
  'protected',
  'os_hidden',
  'owner',
  'checksum',
  'os_hash_algo',
  'os_hash_value',
  'min_ram',
  'min_disk',
  'tags',
  'created_at',
  'updated_at',
  'self',
  'file',
  'schema',
  'direct_url',
  'locations',
  'stores',
]);

export const JSON_PATCH = 'application/openstack-images-v2.1-json-patch';

export const api = {
  listImages: (query: string) => request<ImageList>('GET', `/v2/images${query ? `?${query}` : ''}`),
  image: (id: string) => request<Image>('GET', `/v2/images/${encodeURIComponent(id)}`),
  createImage: (body: Record<string, unknown>) => request<Image>('POST', '/v2/images', { body }),
  patchImage: (id: string, ops: unknown[]) =>
    request<Image>('PATCH', `/v2/images/${encodeURIComponent(id)}`, { body: ops, contentType: JSON_PATCH }),
  deleteImage: (id: string) => request<void>('DELETE', `/v2/images/${encodeURIComponent(id)}`),
  imageAction: (id: string, action: 'deactivate' | 'reactivate') =>
    request<void>('POST', `/v2/images/${encodeURIComponent(id)}/actions/${action}`),
  addTag: (id: string, tag: string) =>
    request<void>('PUT', `/v2/images/${encodeURIComponent(id)}/tags/${encodeURIComponent(tag)}`),
  removeTag: (id: string, tag: string) =>
    request<void>('DELETE', `/v2/images/${encodeURIComponent(id)}/tags/${encodeURIComponent(tag)}`),
  members: (id: string) =>
    request<{ members: Member[] }>('GET', `/v2/images/${encodeURIComponent(id)}/members`),
  addMember: (id: string, member: string) =>
    request<Member>('POST', `/v2/images/${encodeURIComponent(id)}/members`, { body: { member } }),
  removeMember: (id: string, member: string) =>
    request<void>('DELETE', `/v2/images/${encodeURIComponent(id)}/members/${encodeURIComponent(member)}`),
  answerMember: (id: string, member: string, status: 'accepted' | 'rejected') =>
    request<Member>('PUT', `/v2/images/${encodeURIComponent(id)}/members/${encodeURIComponent(member)}`, {
      body: { status },
    }),
  imageTasks: (id: string) =>
    request<{ tasks: Array<Record<string, unknown>> }>('GET', `/v2/images/${encodeURIComponent(id)}/tasks`),
  references: (namespace?: string) =>
    request<{ references: Reference[] }>(
      'GET',
      `/v1/references${namespace ? `?namespace=${encodeURIComponent(namespace)}` : ''}`,
    ),
  reference: (ref: string) => request<Reference & { image?: Image }>('GET', `/v1/references/${ref}`),
  createReference: (reference: string, imageId: string, namespace?: string) =>
    request<Reference>('POST', '/v1/references', {
      body: { reference, image_id: imageId, ...(namespace ? { namespace } : {}) },
    }),
  moveReference: (ref: string, imageId: string, expect: string) =>
    request<Reference>('POST', `/v1/references/${ref}/move`, { body: { image_id: imageId, expect } }),
  rollbackReference: (ref: string, to: string, expect: string) =>
    request<Reference>('POST', `/v1/references/${ref}/rollback`, { body: { to, expect } }),
  deleteReference: (ref: string) => request<void>('DELETE', `/v1/references/${ref}`),
  publish: (
    ref: string,
    body: { image_id: string; expect?: string | null; boot?: Record<string, unknown> },
  ) => request<Publication>('POST', `/v1/references/${ref}/publish`, { body }),
  publication: (id: string) => request<Publication>('GET', `/v1/publications/${encodeURIComponent(id)}`),
  retention: (name: string) =>
    request<RetentionPolicy>('GET', `/v1/names/${encodeURIComponent(name)}/retention`),
  setRetention: (name: string, keep: number, graceSeconds: number) =>
    request<RetentionPolicy>('PUT', `/v1/names/${encodeURIComponent(name)}/retention`, {
      body: { keep, grace_seconds: graceSeconds },
    }),
  applyRetention: (name: string) =>
    request<{ hidden: string[]; deactivated: string[]; restored: string[] }>(
      'POST',
      `/v1/names/${encodeURIComponent(name)}/retention/apply`,
    ),
  history: (ref: string) => request<{ history: HistoryEntry[] }>('GET', `/v1/references/${ref}/history`),
  instances: () => request<{ instances: Instance[] }>('GET', '/v1/instances'),
  instance: (id: string) => request<Instance>('GET', `/v1/instances/${encodeURIComponent(id)}`),
  createInstance: (body: Record<string, unknown>) => request<Instance>('POST', '/v1/instances', { body }),
  instanceAction: (id: string, action: string, body?: Record<string, unknown>) =>
    request<Instance>('POST', `/v1/instances/${encodeURIComponent(id)}/actions/${action}`, {
      ...(body ? { body } : {}),
    }),
  snapshotInstance: (id: string, body: { name: string; reference?: string }) =>
    request<{ image_id: string; instance: Instance }>(
      'POST',
      `/v1/instances/${encodeURIComponent(id)}/actions/snapshot`,
      { body },
    ),
  hosts: () => request<{ hosts: Host[] }>('GET', '/v1/hosts'),
};
