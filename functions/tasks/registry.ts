/**
 * The state machines and the code behind each of their Task states, as plain data. The ASL files
 * name their Lambda functions with `${XxxFunctionArn}` placeholders; `substitutions` maps each
 * placeholder to the module (exporting `handler`) that serves it. The local runner
 * (local/step-functions.ts) binds the states to these modules in-process; the CDK app builds one
 * function per module and passes its ARN as the substitution.
 */
export interface StateMachineSpec {
  /** ASL (JSONPath) definition, relative to the repository root. */
  readonly file: string;
  /** Placeholder name (without `${}`) -> handler module, relative to the repository root. */
  readonly substitutions: Readonly<Record<string, string>>;
}

export const STATE_MACHINES = {
  import: {
    file: 'state-machines/import.asl.json',
    substitutions: {
      ImportBeginFunctionArn: 'functions/tasks/import-begin.ts',
      ImportCopyFunctionArn: 'functions/tasks/import-copy.ts',
      ImportActivateFunctionArn: 'functions/tasks/import-activate.ts',
      ImportFailFunctionArn: 'functions/tasks/import-fail.ts',
    },
  },
  export: {
    file: 'state-machines/export.asl.json',
    substitutions: {
      ExportBeginFunctionArn: 'functions/tasks/export-begin.ts',
      ExportConvertFunctionArn: 'functions/tasks/export-convert.ts',
      ExportFinishFunctionArn: 'functions/tasks/export-finish.ts',
    },
  },
  publish: {
    file: 'state-machines/publish.asl.json',
    substitutions: {
      PublishBeginFunctionArn: 'functions/tasks/publish-begin.ts',
      PublishVerifyFunctionArn: 'functions/tasks/publish-verify.ts',
      PublishBootFunctionArn: 'functions/tasks/publish-boot.ts',
      PublishCleanupFunctionArn: 'functions/tasks/publish-cleanup.ts',
      PublishMoveFunctionArn: 'functions/tasks/publish-move.ts',
      PublishFailFunctionArn: 'functions/tasks/publish-fail.ts',
    },
  },
  // The publish steps run in the build machine as they are (core/builds/builds-service.ts).
  build: {
    file: 'state-machines/build.asl.json',
    substitutions: {
      BuildStepFunctionArn: 'functions/tasks/build-step.ts',
      PublishVerifyFunctionArn: 'functions/tasks/publish-verify.ts',
      PublishBootFunctionArn: 'functions/tasks/publish-boot.ts',
      PublishCleanupFunctionArn: 'functions/tasks/publish-cleanup.ts',
    },
  },
} as const satisfies Record<'import' | 'export' | 'publish' | 'build', StateMachineSpec>;

/**
 * What each task function needs on AWS beyond the defaults. import-copy hashes on two worker
 * threads, so it gets two vCPUs' worth of memory; export-convert runs qemu-img, so it is a
 * container-image function with the largest /tmp. Both may run the full 15 minutes.
 */
export interface TaskFunctionSpec {
  readonly memoryMb: number;
  readonly timeoutSeconds: number;
  readonly ephemeralStorageMb?: number;
  /** container: built from docker/<module name>.Dockerfile-style image with qemu-img. */
  readonly packaging: 'zip' | 'container';
}

export const TASK_FUNCTIONS: Readonly<Record<string, TaskFunctionSpec>> = {
  'functions/tasks/import-begin.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  'functions/tasks/import-copy.ts': { memoryMb: 3538, timeoutSeconds: 900, packaging: 'zip' },
  'functions/tasks/import-activate.ts': { memoryMb: 256, timeoutSeconds: 60, packaging: 'zip' },
  'functions/tasks/import-fail.ts': { memoryMb: 256, timeoutSeconds: 60, packaging: 'zip' },
  'functions/tasks/export-begin.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  'functions/tasks/export-convert.ts': {
    memoryMb: 3538,
    timeoutSeconds: 900,
    ephemeralStorageMb: 10240,
    packaging: 'container',
  },
  'functions/tasks/export-finish.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  'functions/tasks/publish-begin.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  // Re-reads the whole candidate on two hash threads, like import-copy.
  'functions/tasks/publish-verify.ts': { memoryMb: 3538, timeoutSeconds: 900, packaging: 'zip' },
  'functions/tasks/publish-boot.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  'functions/tasks/publish-cleanup.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  'functions/tasks/publish-move.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  'functions/tasks/publish-fail.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
  'functions/tasks/build-step.ts': { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' },
};

/**
 * S3 notifications to wire: every object created in the upload bucket under these prefixes
 * invokes the trigger (which also tolerates anything else and duplicates).
 */
export const S3_TRIGGERS = [
  {
    module: 'functions/triggers/s3-upload.ts',
    bucket: 'uploads',
    events: ['s3:ObjectCreated:*'],
    prefixes: ['images/', 'new/'],
  },
] as const;

/** The deployment setting (infra/config.ts) that gives a schedule's period in minutes. */
export type ScheduleRate = 'retentionSweepMinutes' | 'leaseSweepMinutes';

/**
 * Functions run on a schedule rather than by a request or an event: an EventBridge rate rule on
 * AWS, a timer in the embedded runner (local/backend.ts, HANGAR_RETENTION_SWEEP_SECONDS and
 * HANGAR_LEASE_SWEEP_SECONDS).
 */
export interface ScheduleSpec {
  readonly module: string;
  readonly rate: ScheduleRate;
}

export const SCHEDULES = [
  { module: 'functions/triggers/retention-sweep.ts', rate: 'retentionSweepMinutes' },
  { module: 'functions/triggers/lease-sweep.ts', rate: 'leaseSweepMinutes' },
] as const satisfies readonly ScheduleSpec[];
