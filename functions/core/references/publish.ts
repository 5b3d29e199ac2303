/**
 * Publishing a candidate image under a name:tag reference, behind a test gate (the oVirt Node
 * "build, test, publish" flow of the seeds). POST /v1/references/{ref}/publish creates a task of
 * type `publish` and starts the `publish` state machine (state-machines/publish.asl.json), whose
 * steps are the methods below:
 *
 *   begin -> verify (re-hash the stored bytes, inspect the format) -> [boot gate] -> move
 *   any failure -> fail (the reference stays where it was; the task's message says why)
 *
 * The boot gate creates an instance of the candidate whose build completes only once the console
 * prints the requested marker. The state waits on a Step Functions task token that the instance
 * carries: when the build job ends, the hosts service reports success or failure with it.
 */
import { z } from 'zod';
import { inspectAndCheck } from '../data/format-inspector.ts';
import { BytePipeline, type ByteTools } from '../data/pipeline.ts';
import type { BlobStore } from '../data/ports.ts';
import type { ImageRepository } from '../images/ports.ts';
import type { InstancesService } from '../instances/instances-service.ts';
import { ConflictError, NotFoundError } from '../kernel/errors.ts';
import { canReadProject, makePrincipal, type Principal } from '../kernel/principal.ts';
import { type TaskAdvancer, taskAdvancer } from '../tasks/advance.ts';
import type { TaskRepository, WorkflowStarter } from '../tasks/ports.ts';
import { describeStepError, START_FAILED, type StepError } from '../tasks/step-error.ts';
import { newTask, type TaskRecord } from '../tasks/task.ts';
import { startOrFail } from '../tasks/workflow-start.ts';
import { parseReference } from './references.ts';
import type { ReferencesService } from './references-service.ts';

/** The default boot check: how long the candidate may take to print its marker. */
export const DEFAULT_BOOT_TIMEOUT_SECONDS = 600;

export const BootGateSchema = z.strictObject({
  /** Literal text the candidate's serial console must print (not a pattern). */
  marker: z.string().min(1).max(200),
  timeout_seconds: z.number().int().min(10).max(3600).default(DEFAULT_BOOT_TIMEOUT_SECONDS),
  vcpus: z.number().int().min(1).max(64).default(1),
  ram_mb: z.number().int().min(64).max(65536).default(256),
  disk_gb: z.number().int().min(1).max(1024).default(1),
  user_data: z.string().max(65535).nullish(),
});
export type BootGate = z.infer<typeof BootGateSchema>;

export const PublishRequestSchema = z.strictObject({
  image_id: z.string().min(1),
  /** The image the reference must still point to when the move happens; null: it must not exist yet. */
  expect: z.string().nullable().optional(),
  boot: BootGateSchema.optional(),
});

/** The state machine's input (and every step's), checked at each task function's edge. */
export const PublishInputSchema = z.object({
  task_id: z.string().min(1),
  image_id: z.string().min(1),
  reference: z.string(),
  namespace: z.string(),
  expect: z.string().nullable(),
  boot: BootGateSchema.nullable(),
  /** Who asked: the steps act as this principal, so the same access rules apply as in the API. */
  principal: z.object({ project: z.string(), user: z.string(), roles: z.array(z.string()) }),
  /** The build whose snapshot this is (the build machine runs these steps itself): named in the history. */
  build_id: z.string().min(1).nullish(),
});
export type PublishInput = z.infer<typeof PublishInputSchema>;

export interface GateOutcome {
  instance_id: string;
  console_log?: string | null;
}

export interface PublishServiceDeps extends ByteTools {
  repo: ImageRepository;
  blobs: BlobStore;
  tasks: TaskRepository;
  workflows: WorkflowStarter;
  references: ReferencesService;
  /** Resolved lazily: the instances service lives in another composition root. */
  instances: () => InstancesService;
  taskTtlHours: number;
  /**
   * Glance's require_image_format_match (default true), as at upload: an image let in with a
   * mismatch is not refused at publishing for it. Safety checks always apply.
   */
  requireFormatMatch?: boolean;
  clock?: () => Date;
}

const principalOf = (input: PublishInput): Principal =>
  makePrincipal(input.principal.project, input.principal.user, input.principal.roles);

/** The gate instance is named after the task, so a retried step finds the one it made. */
export const gateInstanceId = (taskId: string) => taskId;

export class PublishService {
  private readonly clock: () => Date;
  private readonly advance: TaskAdvancer;

  constructor(private readonly deps: PublishServiceDeps) {
    this.clock = deps.clock ?? (() => new Date());
    this.advance = taskAdvancer(deps.tasks, this.clock, deps.taskTtlHours);
  }

  /** POST /v1/references/{ref}/publish: checks what can be checked now, then starts the machine. */
  async start(
    principal: Principal,
    text: string,
    body: z.infer<typeof PublishRequestSchema>,
    namespace: string | undefined,
    requestId: string,
  ): Promise<TaskRecord> {
    const { task, input } = await this.record(principal, text, body, namespace, requestId);
    await startOrFail(
      'publish',
      () => this.deps.workflows.start('publish', task.id, { ...input }),
      (error) => this.fail({ ...input, error }),
    );
    return task;
  }

  /**
   * The publish task, checked and recorded, and the input its steps take: what `start` hands the
   * publish machine, and what the build machine (core/builds/) runs the same steps on.
   */
  async record(
    principal: Principal,
    text: string,
    body: z.infer<typeof PublishRequestSchema>,
    namespace: string | undefined,
    requestId: string,
    buildId: string | null = null,
  ): Promise<{ task: TaskRecord; input: PublishInput }> {
    const parsed = parseReference(text);
    const target = await this.deps.references.publishTarget(principal, parsed, namespace, body.image_id);
    const expect = body.expect !== undefined ? body.expect : (target.current?.image_id ?? null);
    if (expect !== (target.current?.image_id ?? null))
      throw new ConflictError(
        `Reference ${parsed.name}:${parsed.tag} points to ${target.current?.image_id ?? 'nothing'}, not ${expect ?? 'nothing'}.`,
      );
    const task = newTask(
      {
        type: 'publish',
        owner: principal.project,
        user_id: principal.user,
        request_id: requestId,
        image_id: body.image_id,
        input: {
          reference: `${parsed.name}:${parsed.tag}`,
          namespace: target.namespace,
          image_id: body.image_id,
          expect,
          boot: body.boot ?? null,
          ...(buildId ? { build_id: buildId } : {}),
        },
      },
      this.clock(),
    );
    await this.deps.tasks.create(task);
    const input: PublishInput = {
      task_id: task.id,
      image_id: body.image_id,
      reference: `${parsed.name}:${parsed.tag}`,
      namespace: target.namespace,
      expect,
      boot: body.boot ?? null,
      principal: { project: principal.project, user: principal.user, roles: [...principal.roles] },
      build_id: buildId,
    };
    return { task, input };
  }

  /** GET /v1/publications/{id}: a publish task, for its project (the tasks API is admin-only). */
  async show(principal: Principal, id: string): Promise<TaskRecord> {
    const task = await this.deps.tasks.get(id);
    if (task?.type !== 'publish' || !canReadProject(principal, task.owner))
      throw new NotFoundError(`No publication found with ID ${id}`);
    return task;
  }

  /** Begin Publish. */
  async begin(input: PublishInput): Promise<void> {
    await this.advance(input.task_id, 'processing');
  }

  /**
   * Verify Candidate: the stored bytes are read once more, and must still hash to the recorded
   * md5 and sha512 and still be the declared, safe format; the reference must not have moved.
   */
  async verify(input: PublishInput): Promise<{ size: number; format: string }> {
    const principal = principalOf(input);
    await this.deps.references.assertStill(principal, input.reference, input.namespace, input.expect);
    const image = await this.deps.references.publishCandidate(principal, input.image_id, input.namespace);
    if (!image.blob_key) throw new ConflictError(`Image ${image.id} has no data.`);
    const bytes = new BytePipeline(this.deps, { stages: ['inspect', 'digest'] });
    let body: Awaited<ReturnType<BlobStore['get']>> | undefined;
    try {
      body = await this.deps.blobs.get(image.blob_key);
      await bytes.drain(body);
      const { size, digests, inspection } = await bytes.finish();
      if (size !== image.size)
        throw new CandidateRejectedError(
          `Image ${image.id} holds ${size} bytes, not the recorded ${image.size}.`,
        );
      if (digests.md5 !== image.checksum || digests.sha512 !== image.os_hash_value)
        throw new CandidateRejectedError(
          `Image ${image.id}'s data no longer matches its recorded checksum and os_hash_value.`,
        );
      inspectAndCheck(inspection, image.disk_format, { requireMatch: this.deps.requireFormatMatch ?? true });
      return { size, format: inspection.format };
    } catch (error) {
      bytes.cancel();
      body?.destroy();
      throw error;
    }
  }

  /**
   * Boot Candidate: an instance of the candidate whose build waits for the marker. Its task
   * token goes with it; the hosts service answers the token when the build job ends.
   */
  async bootGate(input: PublishInput & { task_token: string }): Promise<{ instance_id: string }> {
    const boot = input.boot;
    if (!boot) throw new CandidateRejectedError('No boot check was asked for.');
    const id = gateInstanceId(input.task_id);
    const { name } = parseReference(input.reference);
    await this.deps.instances().createGate(
      principalOf(input),
      {
        name: `publish-${name}`.slice(0, 63),
        image: input.image_id,
        vcpus: boot.vcpus,
        ram_mb: boot.ram_mb,
        disk_gb: boot.disk_gb,
        user_data: boot.user_data ?? null,
        boot_check: { marker: boot.marker, timeout_seconds: boot.timeout_seconds },
      },
      { id, gateToken: input.task_token },
    );
    return { instance_id: id };
  }

  /** Remove Gate Instance (also part of fail): destroys it when it can; never fails the publish. */
  async removeGate(input: PublishInput): Promise<{ removed: boolean; console_log: string | null }> {
    if (!input.boot) return { removed: false, console_log: null };
    const instances = this.deps.instances();
    const principal = principalOf(input);
    const id = gateInstanceId(input.task_id);
    const instance = await instances.show(principal, id).catch((error: unknown) => {
      if (error instanceof NotFoundError) return null;
      throw error;
    });
    if (!instance) return { removed: false, console_log: null };
    if (instance.stage === 'Inexistent' || instance.pending_job?.kind === 'destroy')
      return { removed: true, console_log: instance.console_log };
    try {
      // With a job pending this is a 409, unless the host is lost (then it is destroyed at once).
      await instances.act(principal, id, 'destroy');
      return { removed: true, console_log: instance.console_log };
    } catch (error) {
      if (error instanceof ConflictError) return { removed: false, console_log: instance.console_log };
      throw error;
    }
  }

  /** Move Reference: the compare-and-swap move (or the create, when it did not exist). */
  async move(input: PublishInput): Promise<void> {
    const principal = principalOf(input);
    const moved = await this.deps.references.publishMove(principal, input.reference, {
      image_id: input.image_id,
      expect: input.expect,
      namespace: input.namespace,
      build_id: input.build_id ?? null,
    });
    await this.advance(input.task_id, 'success', {
      result: {
        reference: input.reference,
        namespace: input.namespace,
        image_id: input.image_id,
        previous_image_id: input.expect,
        version: moved.version,
        boot_checked: input.boot !== null,
      },
    });
  }

  /** Fail Publish: the reference was never moved; the gate instance goes; the task says why. */
  async fail(input: PublishInput & { error?: StepError }): Promise<void> {
    let why = describeStepError(input.error);
    if (input.error?.Error === 'States.Timeout')
      why = input.boot
        ? `The candidate did not finish booting within the gate's time (${input.boot.timeout_seconds} s plus placement).`
        : 'A publish step took longer than it may run.';
    if (input.error?.Error === START_FAILED) why = input.error.Cause ?? why;
    let gateNote = '';
    try {
      const removed = await this.removeGate(input);
      if (input.boot && !removed.removed && input.error?.Error !== 'StartFailed')
        gateNote = ` The gate instance ${gateInstanceId(input.task_id)} is still busy and was left for inspection.`;
    } catch {
      gateNote = ` The gate instance ${gateInstanceId(input.task_id)} could not be removed.`;
    }
    await this.advance(input.task_id, 'failure', {
      message: `Not published: ${why}${gateNote} The reference ${input.reference} was left where it was.`,
    });
  }
}

/** The candidate failed a check of the gate: the publish's outcome, not a fault of the service. */
export class CandidateRejectedError extends ConflictError {
  override name = 'CandidateRejectedError';
}
