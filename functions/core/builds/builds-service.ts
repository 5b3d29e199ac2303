/**
 * Builds: POST /v1/builds records a build and starts the `build` state machine
 * (state-machines/build.asl.json), whose steps are the methods below. Nothing here is new
 * machinery: the build instance is an instance like any other (the instances service, the host's
 * work queue), the snapshot is the snapshot action, and the publish runs the publish steps
 * themselves (PublishService: verify, the optional boot gate, the compare-and-swap move).
 *
 *   begin (instance of the base, the recipe as user-data) -> check until the guest is Shutoff
 *   -> snapshot (with provenance) -> check until the image is active -> remove the instance
 *   -> test (the publish task; verify; [boot gate]) -> publish (CAS move, history `build`)
 *   any failure -> fail: the instance destroyed, the snapshot image discarded (no blob left),
 *   the publish task failed, the target left where it was, the build says why.
 *
 * Two builds of one target: the move is a compare-and-swap on where the target pointed when the
 * build was asked for, so of two builds asked for while the target pointed at X, the first to
 * publish moves it and the second fails cleanly (its image discarded) instead of overwriting it.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { ImageRecord } from '../images/image.ts';
import { assertManagesInstances, assertProjectCaller } from '../instances/access.ts';
import type { InstancesService } from '../instances/instances-service.ts';
import type { ImageLookup, SnapshotImages } from '../instances/ports.ts';
import type { InstanceRecord } from '../instances/records.ts';
import { isImageId } from '../instances/requests.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../kernel/errors.ts';
import { canReadProject, makePrincipal, type Principal } from '../kernel/principal.ts';
import { retryOnStale } from '../kernel/retry.ts';
import { isoSeconds } from '../kernel/time.ts';
import type { PublishInput, PublishService } from '../references/publish.ts';
import { PUBLIC_NAMESPACE, parseReference } from '../references/references.ts';
import type { WorkflowStarter } from '../tasks/ports.ts';
import { describeStepError, START_FAILED, type StepError } from '../tasks/step-error.ts';
import { startOrFail } from '../tasks/workflow-start.ts';
import {
  type BuildRecord,
  type BuildStage,
  buildProvenance,
  CONSOLE_TAIL_CHARS,
  enterStage,
  INHERITED_PROPERTIES,
  isFinishedBuild,
  parseBuildRequest,
} from './build.ts';
import type { BuildRepository } from './ports.ts';

/** The build machine's input (and every build step's), checked at each task function's edge. */
export const BuildInputSchema = z.object({
  build_id: z.string().min(1),
  /** The Wait states' period. */
  poll_seconds: z.number().int().min(1).max(300),
});
export type BuildInput = z.infer<typeof BuildInputSchema>;

export interface BuildsDeps {
  repo: BuildRepository;
  workflows: WorkflowStarter;
  images: ImageLookup;
  /** The snapshot images' port (get, discard) and where a reference would be written. */
  snapshots: SnapshotImages;
  instances: () => InstancesService;
  publishing: () => PublishService;
  newId: () => string;
  pollSeconds: number;
  clock?: () => Date;
}

/** A build step found the build cannot go on (the guest failed, the recipe ran out of time, ...). */
export class BuildFailedError extends ConflictError {
  override name = 'BuildFailedError';
}

/** The build instance still has a job in flight and cannot be destroyed yet: the state retries. */
export class BuildInstanceBusyError extends ConflictError {
  override name = 'BuildInstanceBusy';
}

const LIST_LIMIT = 100;

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

const principalOf = (build: BuildRecord): Principal =>
  makePrincipal(build.project, build.user_id, build.roles);

function describeFailure(error: StepError | undefined): string {
  if (error?.Error === 'States.Timeout') return 'A build step took longer than it may run.';
  if (error?.Error === START_FAILED) return error.Cause ?? 'The build could not be started.';
  return error ? describeStepError(error) : 'The build failed.';
}

export class BuildsService {
  private readonly clock: () => Date;

  constructor(private readonly deps: BuildsDeps) {
    this.clock = deps.clock ?? (() => new Date());
  }

  /**
   * POST /v1/builds: everything that can be refused is refused before anything is made (400 for
   * a bad body or a base the caller cannot find, 403 for a target they may not write).
   */
  async start(principal: Principal, body: unknown, requestId: string): Promise<BuildRecord> {
    assertProjectCaller(principal);
    const request = parseBuildRequest(body);
    const parsed = parseReference(request.target);
    const target = `${parsed.name}:${parsed.tag}`;
    const where = await this.deps.snapshots.referenceTarget(principal, target, request.namespace);
    // Refused now rather than at the testing stage, after the whole build: the built image is
    // private (it must not be bootable by everyone before its gate), and a public reference
    // may only point to a public or community image.
    if (where.namespace === PUBLIC_NAMESPACE)
      throw new BadRequestError(
        `Invalid build target: a build cannot publish into the '${PUBLIC_NAMESPACE}' namespace; its image stays private. Build into your project, then make the image public and publish it there.`,
      );
    assertManagesInstances(principal, principal.project);
    const base = await this.findBase(principal, request.base);
    const now = isoSeconds(this.clock());
    const build: BuildRecord = {
      id: this.deps.newId(),
      project: principal.project,
      user_id: principal.user,
      roles: [...principal.roles],
      request_id: requestId,
      base: {
        requested: request.base,
        image_id: base.id,
        name: base.name,
        os_hash_value: base.os_hash_value ?? '',
        properties: Object.fromEntries(
          INHERITED_PROPERTIES.flatMap((key) => (base.properties[key] ? [[key, base.properties[key]]] : [])),
        ),
      },
      recipe: request.recipe.user_data,
      recipe_sha256: sha256(request.recipe.user_data),
      target,
      namespace: where.namespace,
      expect: where.current,
      boot: request.boot ?? null,
      timeout_seconds: request.timeout_seconds,
      vcpus: request.vcpus,
      ram_mb: request.ram_mb,
      disk_gb: request.disk_gb,
      stage: 'provisioning',
      stages: [{ stage: 'provisioning', started_at: now, ended_at: null }],
      instance_id: null,
      image_id: null,
      publication_id: null,
      console_tail: null,
      reason: null,
      created_at: now,
      updated_at: now,
      version: 1,
    };
    await this.deps.repo.create(build);
    const input: BuildInput = { build_id: build.id, poll_seconds: this.deps.pollSeconds };
    await startOrFail(
      'build',
      () => this.deps.workflows.start('build', build.id, { ...input }),
      (error) => this.fail({ ...input, error }),
    );
    return build;
  }

  private async findBase(principal: Principal, ref: string): Promise<ImageRecord> {
    let image: ImageRecord;
    try {
      image = isImageId(ref)
        ? await this.deps.images.show(principal, ref)
        : await this.deps.images.resolve(principal, ref);
    } catch (error) {
      // The build is what was asked for: a base it cannot use makes the request bad, not missing.
      if (error instanceof NotFoundError) throw new BadRequestError(`Invalid build base: ${error.message}`);
      throw error;
    }
    if (image.status !== 'active')
      throw new BadRequestError(`Invalid build base: image ${image.id} is ${image.status}, not active.`);
    return image;
  }

  /** GET /v1/builds/{id}: readers of the build's project (and admins); nobody else learns it exists. */
  async show(principal: Principal, id: string): Promise<BuildRecord> {
    const build = await this.deps.repo.get(id);
    if (!build || !canReadProject(principal, build.project))
      throw new NotFoundError(`No build found with ID ${id}`);
    return build;
  }

  /** GET /v1/builds?target=name:tag[&namespace=]: the target's builds the caller may read, newest first. */
  async list(
    principal: Principal,
    target: string | undefined,
    namespace: string | undefined,
  ): Promise<BuildRecord[]> {
    if (target === undefined) throw new BadRequestError('GET /v1/builds needs ?target=name:tag.');
    const parsed = parseReference(target);
    const builds = await this.deps.repo.listForTarget(
      namespace ?? principal.project,
      `${parsed.name}:${parsed.tag}`,
      LIST_LIMIT,
    );
    return builds.filter((build) => canReadProject(principal, build.project));
  }

  private async load(id: string): Promise<BuildRecord> {
    const build = await this.deps.repo.get(id);
    if (!build) throw new NotFoundError(`No build found with ID ${id}`);
    return build;
  }

  /** Applies `change` to the stored build on fresh reads until it lands; returns what is stored. */
  private change(id: string, change: (build: BuildRecord) => BuildRecord): Promise<BuildRecord> {
    return retryOnStale(async () => {
      const build = await this.load(id);
      const next = change(build);
      if (next !== build) await this.deps.repo.update(build, next);
      return next;
    });
  }

  private enter(id: string, stage: BuildStage, fields: Partial<BuildRecord> = {}): Promise<BuildRecord> {
    return this.change(id, (build) => {
      const moved = enterStage(build, stage, this.clock());
      const changed = Object.entries(fields).some(
        ([key, value]) => build[key as keyof BuildRecord] !== value,
      );
      if (!changed) return moved;
      return {
        ...moved,
        ...fields,
        updated_at: isoSeconds(this.clock()),
        version: build.version + 1,
      };
    });
  }

  /**
   * The build instance's last console (its destroy job's report): kept as the build's
   * console_tail, also after the build ended (a timed-out recipe's console shows where it hung
   * only then). Instances that are not a build's (ids differ) are ignored.
   */
  async recordFinalConsole(instanceId: string, consoleLog: string): Promise<void> {
    const tail = consoleLog.slice(-CONSOLE_TAIL_CHARS);
    try {
      await this.change(instanceId, (build) =>
        build.instance_id !== instanceId || build.console_tail === tail
          ? build
          : {
              ...build,
              console_tail: tail,
              updated_at: isoSeconds(this.clock()),
              version: build.version + 1,
            },
      );
    } catch (error) {
      // No build has this id: not a build instance.
      if (!(error instanceof NotFoundError)) throw error;
    }
  }

  /** Begin Build: the build instance, an instance of the base with the recipe as its user-data. */
  async begin(input: BuildInput): Promise<void> {
    const build = await this.load(input.build_id);
    const { name } = parseReference(build.target);
    // Named after the build, so a retried step finds the instance it made.
    await this.deps.instances().createNamed(
      principalOf(build),
      {
        name: `build-${name}`.slice(0, 63),
        image: build.base.image_id,
        vcpus: build.vcpus,
        ram_mb: build.ram_mb,
        disk_gb: build.disk_gb,
        user_data: build.recipe,
      },
      build.id,
    );
    await this.enter(build.id, 'provisioning', { instance_id: build.id });
  }

  /** Check Recipe / Check Snapshot: done yet? Throws BuildFailedError when it never will be. */
  async check(input: BuildInput): Promise<{ done: boolean; stage: BuildStage }> {
    const build = await this.load(input.build_id);
    const instance = await this.buildInstance(build);
    const tail = instance.console_log ? instance.console_log.slice(-CONSOLE_TAIL_CHARS) : build.console_tail;
    if (build.stage === 'snapshotting') return this.checkSnapshot(build, instance, tail);
    return this.checkRecipe(build, instance, tail);
  }

  private async buildInstance(build: BuildRecord): Promise<InstanceRecord> {
    try {
      return await this.deps.instances().show(principalOf(build), build.instance_id ?? build.id);
    } catch (error) {
      if (error instanceof NotFoundError)
        throw new BuildFailedError(`The build instance ${build.id} is gone.`);
      throw error;
    }
  }

  private async checkRecipe(
    build: BuildRecord,
    instance: InstanceRecord,
    tail: string | null,
  ): Promise<{ done: boolean; stage: BuildStage }> {
    if (instance.stage === 'Error' || instance.stage === 'Inexistent')
      throw new BuildFailedError(
        `The build instance is ${instance.stage}${instance.reason ? `: ${instance.reason}` : ''}.`,
      );
    const settled = instance.pending_job === null;
    // Once built, the guest runs the recipe; a Shutoff it reaches by itself is the recipe's end.
    const stage: BuildStage = settled && instance.stage !== 'Building' ? 'running recipe' : build.stage;
    const now = await this.enter(build.id, stage, { console_tail: tail });
    if (settled && instance.stage === 'Shutoff') return { done: true, stage: now.stage };
    const started = Date.parse(build.stages[0]?.started_at ?? build.created_at);
    if (this.clock().getTime() - started > build.timeout_seconds * 1000)
      throw new BuildFailedError(
        `The recipe did not power the guest off within the build's ${build.timeout_seconds} s ` +
          `(the instance is ${instance.stage}).`,
      );
    return { done: false, stage: now.stage };
  }

  private async checkSnapshot(
    build: BuildRecord,
    instance: InstanceRecord,
    tail: string | null,
  ): Promise<{ done: boolean; stage: BuildStage }> {
    await this.enter(build.id, 'snapshotting', { console_tail: tail });
    if (instance.pending_job?.kind === 'snapshot') return { done: false, stage: 'snapshotting' };
    const image = build.image_id ? await this.deps.snapshots.get(build.image_id) : null;
    if (image?.status === 'active') return { done: true, stage: 'snapshotting' };
    throw new BuildFailedError(
      `The snapshot failed: ${instance.last_error ?? `image ${build.image_id} is ${image?.status ?? 'gone'}`}.`,
    );
  }

  /** Snapshot Build: the snapshot action on the powered-off instance, with the build's provenance. */
  async snapshot(input: BuildInput): Promise<{ image_id: string }> {
    const build = await this.load(input.build_id);
    if (build.image_id) return { image_id: build.image_id };
    const { image } = await this.deps
      .instances()
      .snapshot(principalOf(build), build.instance_id ?? build.id, {
        name: `${build.target} (build ${build.id})`,
        properties: buildProvenance(build),
      });
    await this.enter(build.id, 'snapshotting', { image_id: image.id });
    return { image_id: image.id };
  }

  /** Remove Build Instance: its disk is an image now. */
  async removeInstance(input: BuildInput): Promise<void> {
    const build = await this.load(input.build_id);
    if ((await this.destroyInstance(build)) === 'busy')
      throw new BuildInstanceBusyError(`The build instance ${build.id} has a job pending.`);
  }

  /** Queues the build instance's destroy; 'busy' while another of its jobs is in flight. */
  private async destroyInstance(build: BuildRecord): Promise<'gone' | 'busy'> {
    if (!build.instance_id) return 'gone';
    const instances = this.deps.instances();
    const principal = principalOf(build);
    const instance = await instances.show(principal, build.instance_id).catch((error: unknown) => {
      if (error instanceof NotFoundError) return null;
      throw error;
    });
    if (!instance || instance.stage === 'Inexistent' || instance.pending_job?.kind === 'destroy')
      return 'gone';
    try {
      await instances.act(principal, build.instance_id, 'destroy');
      return 'gone';
    } catch (error) {
      if (error instanceof ConflictError) return 'busy';
      throw error;
    }
  }

  /** The publish steps' input for this build (the publish task is the build's publication). */
  private publishInput(build: BuildRecord, taskId: string): PublishInput {
    return {
      task_id: taskId,
      image_id: build.image_id ?? '',
      reference: build.target,
      namespace: build.namespace,
      expect: build.expect,
      boot: build.boot,
      principal: { project: build.project, user: build.user_id, roles: [...build.roles] },
      build_id: build.id,
    };
  }

  /**
   * Start Testing: the publish task (409 if the target moved since the build was asked for), in
   * processing; returns the input the publish steps (verify, boot gate) run on.
   */
  async test(input: BuildInput): Promise<PublishInput> {
    const build = await this.load(input.build_id);
    if (!build.image_id) throw new BuildFailedError('The build has no image to test.');
    const publishing = this.deps.publishing();
    let taskId = build.publication_id;
    if (!taskId) {
      const { task } = await publishing.record(
        principalOf(build),
        build.target,
        { image_id: build.image_id, expect: build.expect, ...(build.boot ? { boot: build.boot } : {}) },
        build.namespace,
        build.request_id,
        build.id,
      );
      taskId = task.id;
    }
    const publish = this.publishInput(build, taskId);
    await this.enter(build.id, 'testing', { publication_id: taskId });
    await publishing.begin(publish);
    return publish;
  }

  /** Publish Build: the compare-and-swap move (history `build`, naming the build); the build succeeded. */
  async publish(input: BuildInput): Promise<void> {
    const build = await this.enter(input.build_id, 'publishing');
    if (!build.publication_id) throw new BuildFailedError('The build has no publication.');
    await this.deps.publishing().move(this.publishInput(build, build.publication_id));
    await this.enter(build.id, 'succeeded');
  }

  /**
   * Fail Build: undoes what the build made (the publish task fails and its gate instance goes,
   * the build instance is destroyed, the snapshot image is discarded with its data) and records
   * why. Throws BuildInstanceBusyError (retried by the state) while the build instance still has
   * a job in flight; every part is idempotent.
   */
  async fail(input: BuildInput & { error?: StepError }): Promise<void> {
    const build = await this.load(input.build_id);
    const why = describeFailure(input.error);
    const publishing = this.deps.publishing();
    if (build.publication_id && build.stage !== 'failed')
      await publishing.fail({ ...this.publishInput(build, build.publication_id), error: input.error });
    const instance = await this.destroyInstance(build);
    if (build.image_id && build.stage !== 'succeeded') {
      const where = await this.deps.snapshots.referenceTarget(
        principalOf(build),
        build.target,
        build.namespace,
      );
      // Never the image the target points at (a move that landed before a later step failed).
      if (where.current !== build.image_id) await this.deps.snapshots.discard(build.image_id, why);
    }
    if (!isFinishedBuild(build))
      await this.change(build.id, (fresh) =>
        enterStage(
          fresh,
          'failed',
          this.clock(),
          `Build failed while ${fresh.stage}: ${why} The target ${fresh.target} was left where it was.`,
        ),
      );
    if (instance === 'busy')
      throw new BuildInstanceBusyError(
        `The build instance ${build.id} has a job pending; destroying it once it ends.`,
      );
  }
}
