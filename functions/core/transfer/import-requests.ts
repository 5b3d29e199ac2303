/**
 * The import requests: POST /v2/images/{id}/import (glance-direct, web-download) and the legacy
 * tasks-API import. Each records a task, takes the import lock and starts the import machine.
 */
import { writable } from '../images/access.ts';
import { BadRequestError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { newTask, type TaskRecord } from '../tasks/task.ts';
import { startOrFail } from '../tasks/workflow-start.ts';
import type { ImportLock } from './import-lock.ts';
import {
  assertImportable,
  IMPORT_METHODS,
  type ImportContext,
  type ImportMethod,
  type ImportSource,
  importInput,
  isObject,
  stagingKey,
} from './import-model.ts';
import type { ImportSteps } from './import-steps.ts';
import { UrlRefused } from './url-filter.ts';

export class ImportRequests {
  constructor(
    private readonly deps: ImportContext,
    private readonly lock: ImportLock,
    /** Its fail step undoes a request whose machine could not be started. */
    private readonly steps: ImportSteps,
  ) {}

  /** POST /v2/images/{id}/import. */
  async requestImport(
    principal: Principal,
    id: string,
    body: unknown,
    requestId: string,
  ): Promise<TaskRecord> {
    const method = parseImportRequest(body);
    const image = writable(await this.deps.repo.get(id), id, principal);
    let source: ImportSource;
    if (method.name === 'web-download') {
      await this.vetUri(method.uri, 'web-download');
      source = { kind: 'url', uri: method.uri as string };
    } else {
      source = { kind: 's3', bucket: this.deps.stagingBucket, key: stagingKey(id), delete: true };
    }
    assertImportable(image, method.name);
    const task = newTask(
      {
        type: 'api_image_import',
        owner: image.owner ?? principal.project,
        user_id: principal.user,
        request_id: requestId,
        image_id: id,
        input: { image_id: id, import_req: { method: method.raw }, backend: [null] },
      },
      this.deps.clock(),
    );
    await this.lock.lock(principal, id, task.id, source, (current) => assertImportable(current, method.name));
    return this.launch(task, source);
  }

  /** The legacy tasks-API import: a new image from `image_properties`, downloaded from `import_from`. */
  async legacyImport(principal: Principal, input: unknown, requestId: string): Promise<TaskRecord> {
    if (!isObject(input)) throw new BadRequestError('Input to the import task must be an object.');
    const uri = input.import_from;
    await this.vetUri(uri, 'legacy import task');
    const properties = input.image_properties ?? {};
    const image = await this.deps.images.create(principal, properties);
    const task = newTask(
      {
        type: 'import',
        owner: principal.project,
        user_id: principal.user,
        request_id: requestId,
        image_id: image.id,
        input,
      },
      this.deps.clock(),
    );
    const source: ImportSource = { kind: 'url', uri: uri as string };
    await this.lock.lock(principal, image.id, task.id, source, (current) =>
      assertImportable(current, 'web-download'),
    );
    return this.launch(task, source);
  }

  private async vetUri(uri: unknown, what: string): Promise<void> {
    const shown = typeof uri === 'string' ? uri : 'None';
    try {
      await this.deps.fetcher.vet(typeof uri === 'string' ? uri : '');
    } catch (error) {
      if (error instanceof UrlRefused)
        throw new BadRequestError(`URI for ${what} does not pass filtering: ${shown}`);
      throw error;
    }
  }

  /** Records the task and starts its execution; a failed start undoes the lock. */
  private async launch(task: TaskRecord, source: ImportSource): Promise<TaskRecord> {
    const input = importInput(task, source);
    await startOrFail(
      'import',
      async () => {
        await this.deps.tasks.create(task);
        await this.deps.workflows.start('import', task.id, input);
      },
      (error) => this.steps.fail({ ...input, error }).catch(() => undefined),
    );
    return task;
  }
}

function parseImportRequest(body: unknown): {
  name: ImportMethod;
  uri: unknown;
  raw: Record<string, unknown>;
} {
  if (!isObject(body) || !isObject(body.method))
    throw new BadRequestError("Import request requires a 'method' field.");
  const name = body.method.name;
  if (typeof name !== 'string') throw new BadRequestError("Import request requires a 'name' field.");
  if (name === 'copy-image' || name === 'glance-download')
    throw new BadRequestError(`Import method ${name} is not enabled on this service.`);
  if (!(IMPORT_METHODS as readonly string[]).includes(name))
    throw new BadRequestError(`Unknown import method name '${name}'.`);
  for (const key of ['all_stores', 'all_stores_must_succeed'])
    if (key in body && typeof body[key] !== 'boolean')
      throw new BadRequestError(`'${key}' must be a boolean.`);
  // Single-store, as Glance without enabled_backends: `stores` and `all_stores` are ignored, but
  // giving up all_stores_must_succeed has no meaning there and is refused as Glance refuses it.
  if (body.all_stores_must_succeed === false)
    throw new BadRequestError('All_stores_must_succeed can only be set with enabled_backends.');
  return { name: name as ImportMethod, uri: body.method.uri, raw: body.method };
}
