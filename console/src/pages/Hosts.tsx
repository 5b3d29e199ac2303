/** Hosts, for admins (GET /v1/hosts): capacity, use and the last heartbeat. */
import { useCallback, useEffect, useState } from 'react';
import { ApiError, api, type Host } from '../api.ts';
import { curl } from '../commands.ts';
import { CopyCommand, ErrorText, formatTime, usePolling } from '../ui.tsx';

type Resources = { vcpus?: number; ram_mb?: number; disk_gb?: number };

function resources(value: unknown): string {
  if (!value || typeof value !== 'object') return '—';
  const r = value as Resources;
  return `${r.vcpus ?? '?'} vCPU, ${r.ram_mb ?? '?'} MB, ${r.disk_gb ?? '?'} GB`;
}

export function Hosts() {
  const [hosts, setHosts] = useState<Host[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    api
      .hosts()
      .then((list) => {
        setHosts(list.hosts);
        setError(null);
      })
      .catch(setError);
  }, []);
  useEffect(load, [load]);
  usePolling(load, 10_000, hosts !== null);
  const forbidden = error instanceof ApiError && error.status === 403;
  return (
    <section>
      <div className="page-head">
        <h1>Hosts</h1>
        <CopyCommand label="Copy as curl" command={curl('GET', '/v1/hosts')} />
      </div>
      {forbidden ? <p>Only admins see the hosts.</p> : <ErrorText error={error} />}
      {hosts && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">Architecture</th>
                <th scope="col">Hypervisor</th>
                <th scope="col">Capacity</th>
                <th scope="col">Used</th>
                <th scope="col">Free</th>
                <th scope="col">Heartbeat</th>
              </tr>
            </thead>
            <tbody>
              {hosts.length === 0 && (
                <tr>
                  <td colSpan={7}>No hosts are registered.</td>
                </tr>
              )}
              {hosts.map((h) => (
                <tr key={h.id}>
                  <td>{h.id}</td>
                  <td>{String(h.architecture ?? '—')}</td>
                  <td>
                    {String(h.hypervisor_type ?? '—')} {String(h.hypervisor_version ?? '')}
                  </td>
                  <td>{resources(h)}</td>
                  <td>{resources(h.used)}</td>
                  <td>{resources(h.free)}</td>
                  <td>{formatTime(typeof h.heartbeat_at === 'string' ? h.heartbeat_at : null)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
