/**
 * Ids Hangar gives out (images, tasks, instances, jobs) are UUIDs. Anything else names nothing
 * that can exist, so a lookup of it is simply "not found" (Glance answers 404, or 400 for a
 * marker), and it never reaches the database, whose keys have size limits.
 */
import { UUID_PATTERN } from '../images/validation.ts';

const UUID_RE = new RegExp(UUID_PATTERN);

export function isUuid(id: string): boolean {
  return id.length === 36 && UUID_RE.test(id);
}
