/**
 * Image export (a Hangar task type): converts an active image to vhd, vmdk, qcow2 or raw and
 * writes it, with its sha512, to the export bucket. Runs as state-machines/export.asl.json; the
 * conversion itself (qemu-img) is behind the ImageExporter port.
 */

import { readable } from '../images/access.ts';
import type { ImageRecord } from '../images/image.ts';
import type { ImageRepository } from '../images/ports.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../kernel/errors.ts';
import type { Principal } from '../kernel/principal.ts';
import { type TaskAdvancer, taskAdvancer } from '../tasks/advance.ts';
import type { TaskRepository, WorkflowStarter } from '../tasks/ports.ts';
import { describeStepError, type StepError } from '../tasks/step-error.ts';
import { newTask, type TaskRecord } from '../tasks/task.ts';
import { startOrFail } from '../tasks/workflow-start.ts';
import type { ImageExporter } from './ports.ts';

export const EXPORT_FORMATS = ['vhd', 'vmdk', 'qcow2', 'raw'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** qemu-img's names for the disk formats Glance knows (vhd is qemu's vpc). */
const QEMU_FORMATS: Record<string, string> = {
  raw: 'raw',
  iso: 'raw',
  ami: 'raw',
  ari: 'raw',
  aki: 'raw',
  qcow2: 'qcow2',
  vmdk: 'vmdk',
  vhd: 'vpc',
  vhdx: 'vhdx',
  vdi: 'vdi',
};

export function qemuFormat(diskFormat: string): string | undefined {
  return QEMU_FORMATS[diskFormat];
}

export interface ExportInput {
  task_id: string;
  image_id: string;
  format: ExportFormat;
}

export interface ExportResult {
  image_id: string;
  format: ExportFormat;
  export_location: string;
  bucket: string;
  key: string;
  size: number;
  os_hash_algo: 'sha512';
  os_hash_value: string;
  [key: string]: unknown;
}

export interface ExportServiceDeps {
  repo: ImageRepository;
  tasks: TaskRepository;
  workflows: WorkflowStarter;
  exporter: ImageExporter;
  exportBucket: string;
  taskTtlHours: number;
  clock?: () => Date;
}

export class ExportService {
  private readonly clock: () => Date;
  /** A task that fails before it began goes straight from pending to failure. */
  private readonly advance: TaskAdvancer;

  constructor(private readonly deps: ExportServiceDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.advance = taskAdvancer(deps.tasks, this.clock, deps.taskTtlHours);
  }

  /** POST /v2/tasks with type export: input {image_id, format}. */
  async create(principal: Principal, input: unknown, requestId: string): Promise<TaskRecord> {
    if (typeof input !== 'object' || input === null || Array.isArray(input))
      throw new BadRequestError('Input to the export task must be an object with image_id and format.');
    const { image_id: imageId, format } = input as Record<string, unknown>;
    if (typeof imageId !== 'string') throw new BadRequestError('Input to the export task needs "image_id".');
    if (typeof format !== 'string' || !(EXPORT_FORMATS as readonly string[]).includes(format))
      throw new BadRequestError(`Export "format" must be one of ${EXPORT_FORMATS.join(', ')}.`);
    const image = readable(await this.deps.repo.get(imageId), imageId, principal);
    assertExportable(image);
    const task = newTask(
      {
        type: 'export',
        owner: principal.project,
        user_id: principal.user,
        request_id: requestId,
        image_id: imageId,
        input: { image_id: imageId, format },
      },
      this.clock(),
    );
    await this.deps.tasks.create(task);
    const started: ExportInput = { task_id: task.id, image_id: imageId, format: format as ExportFormat };
    await startOrFail(
      'export',
      () => this.deps.workflows.start('export', task.id, { ...started }),
      (error) => this.finish({ ...started, error }),
    );
    return task;
  }

  /** Begin Export. */
  async begin(input: ExportInput): Promise<void> {
    await this.advance(input.task_id, 'processing');
  }

  /** Convert Image: the converted image and its sha512 in the export bucket. */
  async convert(input: ExportInput): Promise<ExportResult> {
    const image = await this.deps.repo.get(input.image_id);
    if (!image || image.status === 'deleted') throw new NotFoundError(`Image ${input.image_id} was deleted.`);
    assertExportable(image);
    const sourceFormat = qemuFormat(image.disk_format ?? '');
    if (!sourceFormat)
      throw new BadRequestError(`Images in disk_format ${image.disk_format} cannot be exported.`);
    const key = `exports/${input.task_id}/${image.id}.${input.format}`;
    const { size, sha512 } = await this.deps.exporter.export({
      blobKey: image.blob_key as string,
      sourceFormat,
      targetFormat: qemuFormat(input.format) as string,
      destination: { bucket: this.deps.exportBucket, key },
    });
    return {
      image_id: image.id,
      format: input.format,
      export_location: `s3://${this.deps.exportBucket}/${key}`,
      bucket: this.deps.exportBucket,
      key,
      size,
      os_hash_algo: 'sha512',
      os_hash_value: sha512,
    };
  }

  /** Finish Export: success with the result, or failure with the reason. */
  async finish(input: ExportInput & { result?: ExportResult; error?: StepError }): Promise<void> {
    if (input.result) await this.advance(input.task_id, 'success', { result: input.result });
    else await this.advance(input.task_id, 'failure', { message: describeStepError(input.error) });
  }
}

function assertExportable(image: ImageRecord): void {
  if ((image.status !== 'active' && image.status !== 'deactivated') || !image.blob_key)
    throw new ConflictError(
      `Image ${image.id} has status ${image.status}; only images with data can be exported.`,
    );
}
