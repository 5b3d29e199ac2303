/** How each kind of resource is shown in a table and by `-o name`. */
import { bytes } from './format.ts';
import type { View } from './output.ts';
import type { Build, HistoryEntry, Host, Image, Instance, Member, Reference, Task } from './schemas.ts';

/** An image row of `hangar images`: the image and the name:tag references pointing to it. */
export type ImageRow = Image & { references: string[] };

const short = (text: string | null | undefined, length: number) => (text ? text.slice(0, length) : '-');
const when = (iso: string | null | undefined) =>
  iso ? iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '') : '-';

export const imageView: View<ImageRow> = {
  columns: [
    { header: 'ID', value: (image) => image.id },
    { header: 'NAME', value: (image) => image.name ?? '' },
    { header: 'REFERENCES', value: (image) => image.references.join(',') || '-' },
    { header: 'STATUS', value: (image) => image.status },
    { header: 'FORMAT', value: (image) => image.disk_format ?? '-' },
    { header: 'SIZE', value: (image) => bytes(image.size) },
    { header: 'VISIBILITY', value: (image) => image.visibility },
    { header: 'SHA512', value: (image) => short(image.os_hash_value, 12) },
    { header: 'UPDATED', value: (image) => when(image.updated_at) },
  ],
  name: (image) => image.id,
};

export const referenceView: View<Reference> = {
  columns: [
    { header: 'REFERENCE', value: (ref) => ref.reference },
    { header: 'NAMESPACE', value: (ref) => ref.namespace },
    { header: 'IMAGE', value: (ref) => ref.image_id },
    { header: 'VERSION', value: (ref) => ref.version },
    { header: 'UPDATED', value: (ref) => when(ref.updated_at) },
  ],
  name: (ref) => ref.reference,
};

export const historyView: View<HistoryEntry> = {
  columns: [
    { header: 'SEQ', value: (entry) => entry.seq },
    { header: 'ACTION', value: (entry) => entry.action },
    { header: 'FROM', value: (entry) => entry.from ?? '-' },
    { header: 'TO', value: (entry) => entry.to ?? '-' },
    { header: 'BY', value: (entry) => entry.by ?? '-' },
    { header: 'AT', value: (entry) => when(entry.at) },
  ],
  name: (entry) => String(entry.seq),
};

export const memberView: View<Member> = {
  columns: [
    { header: 'IMAGE', value: (member) => member.image_id },
    { header: 'MEMBER', value: (member) => member.member_id },
    { header: 'STATUS', value: (member) => member.status },
    { header: 'UPDATED', value: (member) => when(member.updated_at) },
  ],
  name: (member) => member.member_id,
};

export const instanceView: View<Instance> = {
  columns: [
    { header: 'ID', value: (instance) => instance.id },
    { header: 'NAME', value: (instance) => instance.name },
    { header: 'IMAGE', value: (instance) => instance.image.requested_as ?? instance.image_id },
    { header: 'STAGE', value: (instance) => instance.stage },
    { header: 'PENDING', value: (instance) => instance.pending_action ?? '-' },
    { header: 'CPUS', value: (instance) => instance.vcpus },
    { header: 'MEMORY', value: (instance) => bytes(instance.ram_mb * 1024 * 1024) },
    { header: 'HOST', value: (instance) => instance.host_id ?? '-' },
    { header: 'CREATED', value: (instance) => when(instance.created_at) },
  ],
  name: (instance) => instance.id,
  // The console is `hangar logs`' business; here, the instance in one screen.
  fields: (instance) => [
    ['id', instance.id],
    ['name', instance.name],
    ['image', instance.image.requested_as ?? instance.image_id],
    ['image_id', instance.image_id],
    ['stage', instance.stage],
    ['pending', instance.pending_action ?? '-'],
    ['reason', instance.reason ?? '-'],
    ['last_error', instance.last_error ?? '-'],
    ['cpus', instance.vcpus],
    ['memory', bytes(instance.ram_mb * 1024 * 1024)],
    ['disk', bytes(instance.disk_gb * 1024 * 1024 * 1024)],
    ['host', instance.host_id ?? '-'],
    ['created', when(instance.created_at)],
    ['updated', when(instance.updated_at)],
  ],
};

/** A build: its stage and, once there, its image; the stage timings and the reason as rows. */
export const buildView: View<Build> = {
  columns: [
    { header: 'ID', value: (build) => build.id },
    { header: 'TARGET', value: (build) => build.target },
    { header: 'STAGE', value: (build) => build.stage },
    { header: 'IMAGE', value: (build) => build.image_id ?? '-' },
    { header: 'REASON', value: (build) => build.reason ?? '-' },
    { header: 'UPDATED', value: (build) => when(build.updated_at) },
  ],
  name: (build) => build.id,
  fields: (build) => [
    ['id', build.id],
    ['target', build.target],
    ['base', `${build.base.requested} (${build.base.image_id})`],
    ['stage', build.stage],
    ...build.stages.map(
      (t) => [`time.${t.stage}`, t.seconds === null ? 'running' : `${t.seconds}s`] as const,
    ),
    ['image', build.image_id ?? '-'],
    ['publication', build.publication_id ?? '-'],
    ['reason', build.reason ?? '-'],
    ['created', when(build.created_at)],
    ['updated', when(build.updated_at)],
  ],
};

export const taskView: View<Task> = {
  columns: [
    { header: 'ID', value: (task) => task.id },
    { header: 'TYPE', value: (task) => task.type },
    { header: 'STATUS', value: (task) => task.status },
    { header: 'IMAGE', value: (task) => task.image_id ?? '-' },
    { header: 'MESSAGE', value: (task) => task.message || '-' },
    { header: 'UPDATED', value: (task) => when(task.updated_at) },
  ],
  name: (task) => task.id,
  fields: (task) => [
    ['id', task.id],
    ['type', task.type],
    ['status', task.status],
    ['image', task.image_id ?? '-'],
    ['message', task.message || '-'],
    // The result's keys as rows of their own: a table, not a JSON line.
    ...Object.entries(task.result ?? {}).map(
      ([key, value]) =>
        [
          `result.${key}`,
          typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value),
        ] as const,
    ),
    ['created', when(task.created_at)],
    ['updated', when(task.updated_at)],
  ],
};

/** A row of `hangar hosts`: the host and the images its live instances run from. */
export type HostRow = Host & { instances: number; images: string[]; heartbeat_age_seconds: number | null };

const used = (use: number, total: number, show: (n: number) => string = String) =>
  `${show(use)}/${show(total)}`;
const mib = (n: number) => bytes(n * 1024 * 1024);
const gib = (n: number) => bytes(n * 1024 * 1024 * 1024);

export const hostView: View<HostRow> = {
  columns: [
    { header: 'HOST', value: (host) => host.id },
    { header: 'ARCH', value: (host) => host.architecture ?? '-' },
    { header: 'CPUS', value: (host) => used(host.used.vcpus, host.vcpus) },
    { header: 'MEMORY', value: (host) => used(host.used.ram_mb, host.ram_mb, mib) },
    { header: 'DISK', value: (host) => used(host.used.disk_gb, host.disk_gb, gib) },
    { header: 'INSTANCES', value: (host) => host.instances },
    {
      header: 'HEARTBEAT',
      value: (host) => (host.heartbeat_age_seconds === null ? 'never' : `${host.heartbeat_age_seconds}s ago`),
    },
    { header: 'IMAGES', value: (host) => host.images.join(',') || '-' },
  ],
  name: (host) => host.id,
};

/** What `push` and `import` end with: the reference and the image it now points to. */
export type PointedReference = Reference & {
  image: {
    id: string;
    status: string;
    size: number | null;
    os_hash_value: string | null;
    disk_format?: string | null;
  };
  /** How a push moved the bytes (for multipart: what this run sent; what an earlier run had stored). */
  transfer?: Transfer;
};
export type Transfer =
  | { method: 'put'; sent_bytes: number }
  | { method: 'multipart'; parts: number; sent_parts: number; skipped_parts: number; sent_bytes: number };
const transferLine = (t: Transfer) =>
  t.method === 'put'
    ? `put, ${bytes(t.sent_bytes)} streamed`
    : `multipart, ${t.sent_parts} of ${t.parts} parts sent (${bytes(t.sent_bytes)})`;

export const pointedReferenceView: View<PointedReference> = {
  columns: referenceView.columns,
  name: (ref) => ref.reference,
  fields: (ref) => [
    ['reference', ref.reference],
    ['namespace', ref.namespace],
    ['image', ref.image.id],
    ['status', ref.image.status],
    ['format', ref.image.disk_format ?? '-'],
    ['size', bytes(ref.image.size)],
    ['sha512', ref.image.os_hash_value ?? '-'],
    ['version', ref.version],
    ['updated', when(ref.updated_at)],
    ...(ref.transfer ? ([['transfer', transferLine(ref.transfer as Transfer)]] as const) : []),
  ],
};
