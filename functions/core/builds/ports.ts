/** Ports of the builds service. Adapters in functions/adapters implement them. */
import type { BuildRecord } from './build.ts';

export interface BuildRepository {
  get(id: string): Promise<BuildRecord | null>;
  /** ConflictError when the id exists. Also indexes the build under its target. */
  create(build: BuildRecord): Promise<void>;
  /** Writes `next` if the stored version is still `previous.version`; StaleWriteError otherwise. */
  update(previous: BuildRecord, next: BuildRecord): Promise<void>;
  /** The builds of one target (`name:tag` in `namespace`), newest first: an index Query, never a Scan. */
  listForTarget(namespace: string, target: string, limit: number): Promise<BuildRecord[]>;
}
