/**
 * ImportService: the one door to image import for the entry points (api/image-import.ts,
 * api/tasks.ts, triggers/s3-upload.ts, tasks/import-*.ts). The work is done by its modules:
 *   staging.ts          PUT /stage (glance-direct)
 *   import-requests.ts  POST /import and the legacy tasks-API import
 *   s3-trigger.ts       an object written to the upload bucket
 *   multipart.ts        presigned multipart uploads into the upload bucket
 *   import-lock.ts      os_glance_import_task, taken with the import's lease
 *   import-steps.ts     the import state machine's steps
 * import-model.ts holds what they share (the inputs, results, property names and rules).
 */
import type { Principal } from '../kernel/principal.ts';
import type { StepError } from '../tasks/step-error.ts';
import type { TaskRecord } from '../tasks/task.ts';
import { ImportLock } from './import-lock.ts';
import { type CopyResult, type ImportInput, type ImportServiceDeps, importContext } from './import-model.ts';
import { ImportRequests } from './import-requests.ts';
import { ImportSteps } from './import-steps.ts';
import { PresignedMultipart } from './multipart.ts';
import { S3UploadTrigger, type UploadEvent } from './s3-trigger.ts';
import { Staging } from './staging.ts';

export class ImportService {
  private readonly staging: Staging;
  private readonly requests: ImportRequests;
  private readonly uploads: S3UploadTrigger;
  private readonly multipart: PresignedMultipart;
  private readonly steps: ImportSteps;

  constructor(deps: ImportServiceDeps) {
    const context = importContext(deps);
    const lock = new ImportLock(context);
    this.steps = new ImportSteps(context);
    this.staging = new Staging(context);
    this.requests = new ImportRequests(context, lock, this.steps);
    this.uploads = new S3UploadTrigger(context, lock);
    this.multipart = new PresignedMultipart(context);
  }

  stage(
    principal: Principal,
    id: string,
    body: AsyncIterable<Buffer>,
    options: { declaredSize?: string; contentLength?: string },
  ): Promise<void> {
    return this.staging.stage(principal, id, body, options);
  }

  requestImport(principal: Principal, id: string, body: unknown, requestId: string): Promise<TaskRecord> {
    return this.requests.requestImport(principal, id, body, requestId);
  }

  legacyImport(principal: Principal, input: unknown, requestId: string): Promise<TaskRecord> {
    return this.requests.legacyImport(principal, input, requestId);
  }

  onUpload(upload: UploadEvent): Promise<'started' | 'duplicate' | 'refused' | 'ignored'> {
    return this.uploads.onUpload(upload);
  }

  startMultipartUpload(principal: Principal, id: string, body: unknown, granted = false) {
    return this.multipart.startMultipartUpload(principal, id, body, granted);
  }

  completeMultipartUpload(principal: Principal, id: string, body: unknown, granted = false): Promise<void> {
    return this.multipart.completeMultipartUpload(principal, id, body, granted);
  }

  abortMultipartUpload(principal: Principal, id: string, body: unknown, granted = false): Promise<void> {
    return this.multipart.abortMultipartUpload(principal, id, body, granted);
  }

  begin(input: ImportInput): Promise<void> {
    return this.steps.begin(input);
  }

  copy(input: ImportInput): Promise<CopyResult> {
    return this.steps.copy(input);
  }

  activate(input: ImportInput & { data: CopyResult }): Promise<void> {
    return this.steps.activate(input);
  }

  fail(input: ImportInput & { data?: CopyResult; error?: StepError }): Promise<void> {
    return this.steps.fail(input);
  }
}
