/**
 * `hangar hosts` (admins): each host agent's capacity and use, its last heartbeat, and the images
 * its live instances run from. The service does not learn the rest of an agent's image cache
 * (prefetched or idle images), so IMAGES is what the host must hold, not all it holds.
 */
import type { Command } from 'commander';
import { contextOf } from '../context.ts';
import { type HostRow, hostView } from '../views.ts';
import { allInstances } from './instances.ts';

export function registerHosts(program: Command): void {
  program
    .command('hosts')
    .description('host agents (admins): capacity, use, last heartbeat, images in use')
    .action(async (_options: object, command: Command) => {
      const { client, out } = contextOf(command);
      const [{ hosts }, instances] = await Promise.all([client.listHosts(), allInstances(client)]);
      const now = Date.now();
      const rows: HostRow[] = hosts.map((host) => {
        const live = instances.filter((i) => i.host_id === host.id && i.stage !== 'Inexistent');
        const images = [...new Set(live.map((i) => i.image.requested_as ?? i.image_id))].sort();
        const beat = host.heartbeat_at ? Date.parse(host.heartbeat_at) : Number.NaN;
        return {
          ...host,
          instances: live.length,
          images,
          heartbeat_age_seconds: Number.isNaN(beat) ? null : Math.max(0, Math.round((now - beat) / 1000)),
        };
      });
      out.list(rows, hostView);
    });
}
