/** How each kind of resource is shown in a table and by `-o name`. */
import { bytes } from './format.ts';
import type { View } from './output.ts';
import type { HistoryEntry, Image, Instance, Member, Reference } from './schemas.ts';

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
};
