/**
 * Image use-cases over the ImageRepository port. Writes are read-modify-write under the record's
 * version; when another writer got there first the change is re-applied to the fresh record, so
 * concurrent PATCHes both land and neither is lost.
 */
import { BadRequestError, ForbiddenError, NotFoundError } from '../kernel/errors.ts';
import { hasReaderRole, isHostAgent, type Principal } from '../kernel/principal.ts';
import { retryOnStale } from '../kernel/retry.ts';
import { isoSeconds } from '../kernel/time.ts';
import { listScopes, matchesVisibility, readable, writable } from './access.ts';
import { parseCreateRequest } from './create.ts';
import { type AllowedFormats, GLANCE_FORMATS, type ImageLease, type ImageRecord } from './image.ts';
import { compareImages, type ListQuery, matchesFilters } from './list-query.ts';
import { applyPatch } from './patch.ts';
import type { ImageRepository } from './ports.ts';
import { type PropertyFilter, PropertyProtections } from './property-protections.ts';
import { deactivateImage, deleteImage, reactivateImage } from './status.ts';
import { dedupeTags, enforceTagQuota, type Quotas } from './validation.ts';

export class ImagesService {
  constructor(
    private readonly repo: ImageRepository,
    private readonly quotas: Quotas,
    private readonly clock: () => Date = () => new Date(),
    private readonly protections: PropertyProtections = PropertyProtections.NONE,
    private readonly formats: AllowedFormats = GLANCE_FORMATS,
  ) {}

  /**
   * The extra properties `principal` may see (property protections). Records returned by this
   * service are whole; whatever renders one for a caller filters it with this.
   */
  readableBy(principal: Principal): PropertyFilter {
    return this.protections.readableBy(principal);
  }

  async create(principal: Principal, body: unknown): Promise<ImageRecord> {
    const image = parseCreateRequest(
      body,
      principal,
      this.quotas,
      this.clock(),
      this.protections,
      this.formats,
    );
    await this.repo.create(image);
    return image;
  }

  async show(principal: Principal, id: string): Promise<ImageRecord> {
    return readable(await this.repo.get(id), id, principal);
  }

  async list(principal: Principal, query: ListQuery): Promise<ImageRecord[]> {
    // Glance's get_images (ADMIN_OR_PROJECT_READER); host agents keep reading what they need.
    if (!hasReaderRole(principal) && !isHostAgent(principal))
      throw new ForbiddenError('You are not authorized to complete get_images action.');
    let marker: ImageRecord | undefined;
    if (query.marker !== undefined) {
      const found = await this.repo.get(query.marker);
      if (!found || found.status === 'deleted' || !readableSafe(found, principal))
        throw new BadRequestError(`No image found with ID ${query.marker}`);
      marker = found;
    }
    if (query.limit === 0) return [];
    return this.repo.list({
      scopes: listScopes(
        principal,
        query.visibility,
        principal.isAdmin ? query.filters.owner : undefined,
        query.memberStatus,
      ),
      sort: query.sort,
      limit: query.limit,
      marker,
      filter: (image) =>
        image.status !== 'deleted' &&
        image.status !== 'killed' &&
        matchesVisibility(image, principal, query.visibility, query.memberStatus) &&
        matchesFilters(image, query.filters),
      compare: (a, b) => compareImages(a, b, query.sort),
    });
  }

  /**
   * Re-reads and re-applies `change` until the conditional write succeeds (core/kernel/retry.ts).
   * `change` returns the new record, or null when there is nothing to write; a change that no
   * longer applies to the fresh record (a removed property, say) throws its own error.
   */
  mutate(
    principal: Principal,
    id: string,
    change: (current: ImageRecord) => ImageRecord | null,
  ): Promise<ImageRecord> {
    return retryOnStale(async () => {
      const current = writable(await this.repo.get(id), id, principal);
      const next = change(current);
      if (!next) return current;
      const versioned = { ...next, version: current.version + 1 };
      await this.repo.update(current, versioned);
      return versioned;
    });
  }

  patch(
    principal: Principal,
    id: string,
    mediaType: string | undefined,
    body: unknown,
  ): Promise<ImageRecord> {
    return this.mutate(principal, id, (current) =>
      applyPatch(
        current,
        mediaType,
        body,
        principal,
        this.quotas,
        this.clock(),
        this.protections,
        this.formats,
      ),
    );
  }

  /**
   * The tombstone, and the lease the image held when it was deleted (an upload or import in
   * flight): the caller frees what it names (core/images/recovery.ts, freeImageData).
   */
  async delete(
    principal: Principal,
    id: string,
  ): Promise<{ image: ImageRecord; lease: ImageLease | undefined }> {
    const image = await this.repo.get(id);
    if (!image || image.status === 'deleted') throw new NotFoundError(`Failed to find image ${id} to delete`);
    let lease: ImageLease | undefined;
    const deleted = await this.mutate(principal, id, (current) => {
      lease = current.lease;
      return deleteImage(current, this.clock());
    });
    return { image: deleted, lease };
  }

  deactivate(principal: Principal, id: string): Promise<ImageRecord> {
    return this.mutate(principal, id, (current) => {
      const change = deactivateImage(current, this.clock());
      return change.changed ? change.image : null;
    });
  }

  reactivate(principal: Principal, id: string): Promise<ImageRecord> {
    return this.mutate(principal, id, (current) => {
      const change = reactivateImage(current, this.clock());
      return change.changed ? change.image : null;
    });
  }

  addTag(principal: Principal, id: string, tag: string): Promise<ImageRecord> {
    if (tag.length > 255)
      throw new BadRequestError(`Provided object does not match schema 'image': '${tag}' is too long`);
    return this.mutate(principal, id, (current) => {
      if (current.tags.includes(tag)) return null;
      const tags = dedupeTags([...current.tags, tag]);
      enforceTagQuota(tags.length, this.quotas);
      return { ...current, tags, updated_at: isoSeconds(this.clock()) };
    });
  }

  removeTag(principal: Principal, id: string, tag: string): Promise<ImageRecord> {
    return this.mutate(principal, id, (current) => {
      if (!current.tags.includes(tag)) throw new NotFoundError('The resource could not be found.');
      return {
        ...current,
        tags: current.tags.filter((t) => t !== tag),
        updated_at: isoSeconds(this.clock()),
      };
    });
  }
}

function readableSafe(image: ImageRecord, principal: Principal): boolean {
  try {
    readable(image, image.id, principal);
    return true;
  } catch {
    return false;
  }
}
