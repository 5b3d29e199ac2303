/**
 * The host agents' API (docs/instances-api.md): registration and heartbeats, the per-host work
 * queue (claim with a lease, heartbeat, complete, fail) and reconciliation reports. Every call
 * needs a host token acting for its own host; admins may read hosts.
 */

import { renderHost, renderHostInstance } from '#core/instances/views';
import { renderClaimedJob } from '#core/instances/work-queue';
import { services } from '#edge/compose';
import { type ApiRequest, type ApiResponse, routeTable } from '#edge/http';

const hostId = (request: ApiRequest) => request.params.host_id ?? '';
const jobId = (request: ApiRequest) => request.params.job_id ?? '';

async function list(request: ApiRequest): Promise<ApiResponse> {
  const hosts = await services().hosts.list(request.principal);
  return { status: 200, json: { hosts: hosts.map(renderHost) } };
}

async function show(request: ApiRequest): Promise<ApiResponse> {
  return {
    status: 200,
    json: renderHost(await services().hosts.show(request.principal, hostId(request))),
  };
}

async function register(request: ApiRequest): Promise<ApiResponse> {
  const host = await services().hosts.register(request.principal, hostId(request), await request.json());
  return { status: 200, json: renderHost(host) };
}

async function heartbeat(request: ApiRequest): Promise<ApiResponse> {
  await services().hosts.heartbeat(request.principal, hostId(request));
  return { status: 204 };
}

/** 200 with the job and its lease, or 204 when the host has nothing to do. */
async function claim(request: ApiRequest): Promise<ApiResponse> {
  const claimed = await services().hosts.claim(request.principal, hostId(request), await request.json());
  if (!claimed) return { status: 204 };
  return { status: 200, json: { job: renderClaimedJob(claimed.job, claimed.instance) } };
}

async function instances(request: ApiRequest): Promise<ApiResponse> {
  const found = await services().hosts.instances(request.principal, hostId(request));
  return { status: 200, json: { instances: found.map(renderHostInstance) } };
}

async function observed(request: ApiRequest): Promise<ApiResponse> {
  await services().hosts.observed(
    request.principal,
    hostId(request),
    request.params.instance_id ?? '',
    await request.json(),
  );
  return { status: 204 };
}

async function jobHeartbeat(request: ApiRequest): Promise<ApiResponse> {
  const job = await services().hosts.heartbeatJob(request.principal, jobId(request), await request.json());
  return { status: 200, json: { lease_expires_at: job.lease_expires_at } };
}

async function complete(request: ApiRequest): Promise<ApiResponse> {
  await services().hosts.complete(request.principal, jobId(request), await request.json());
  return { status: 204 };
}

async function fail(request: ApiRequest): Promise<ApiResponse> {
  await services().hosts.fail(request.principal, jobId(request), await request.json());
  return { status: 204 };
}

const routes = routeTable({
  'GET /v1/hosts': list,
  'GET /v1/hosts/{host_id}': show,
  'PUT /v1/hosts/{host_id}': register,
  'POST /v1/hosts/{host_id}/heartbeat': heartbeat,
  'POST /v1/hosts/{host_id}/jobs/claim': claim,
  'GET /v1/hosts/{host_id}/instances': instances,
  'POST /v1/hosts/{host_id}/instances/{instance_id}/observed': observed,
  'POST /v1/jobs/{job_id}/heartbeat': jobHeartbeat,
  'POST /v1/jobs/{job_id}/complete': complete,
  'POST /v1/jobs/{job_id}/fail': fail,
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
