/**
 * The default deployment (authMode=jwt with the built-in Cognito issuer), synthesized once:
 * routes, grants, buckets, table, state machines, alarms, cdk-nag and environment-agnosticism.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONNECTIONS_TABLE } from '#adapters/dynamo/connections-table';
import { JOB_INSERT_FILTER } from '#adapters/dynamo/job-stream';
import { TABLE_DEFINITION } from '#adapters/dynamo/table-definition';
import { ROUTES, routeKey } from '#api/routes';
import { S3_TRIGGERS, SCHEDULES } from '../../functions/tasks/registry.ts';
import { AGENT_SOCKET_STAGE } from '../../infra/app-stack.ts';
import { SETTINGS } from '../../infra/config.ts';
import { API_PATH_PATTERNS, CONSOLE_ROUTER_SOURCE } from '../../infra/constructs/console-hosting.ts';
import { CONTAINER_DOCKERFILE } from '../../infra/constructs/container-function.ts';
import {
  AGENT_SOCKET_FUNCTIONS,
  API_ACCESS,
  apiAccess,
  apiModules,
  BUCKETS,
  writesImages,
} from '../../infra/declarations.ts';
import { repoPath, STATE_MACHINES_DIR } from '../../infra/paths.ts';
import { assertFunctionGrants, assertNagClean, assertWorkflowsWired, labels } from './expectations.ts';
import {
  grants,
  logicalId,
  resources,
  type Statement,
  type Synthesized,
  statementsOfRole,
  synthHangar,
} from './synth.ts';

let synth: Synthesized;

beforeAll(() => {
  synth = synthHangar();
});

afterAll(() => synth?.cleanup());

/** The grants (`action@resource` labels) of the role of function `key` (an API module or a task path). */
function grantsOfFunction(key: string): string[] {
  const app = resources(synth.application);
  const fn = synth.hangar.application.functions[key];
  return grants(
    statementsOfRole(synth.application, app[logicalId(fn ?? synth.hangar.application)]?.Properties?.Role),
    labels(synth),
  );
}

describe('declarations', () => {
  it('declares the access of every module ROUTES names', () => {
    // Act
    const undeclared = apiModules().filter((fn) => !(fn in API_ACCESS));

    // Assess
    expect(undeclared).toEqual([]);
  });

  it('fails clearly for a module nobody declared', () => {
    expect(() => apiAccess('no-such-module')).toThrow(/add 'no-such-module' to API_ACCESS/);
  });
});

describe('HTTP API', () => {
  it('has every route of ROUTES, served by its module, with the JWT authorizer unless auth is false', () => {
    // Prepare
    const app = resources(synth.application);
    // The HTTP API's own: the agents' WebSocket API has its routes too (tested below).
    const httpApi = JSON.stringify({ Ref: logicalId(synth.hangar.application.api) });
    const onHttpApi = (type: string) =>
      Object.entries(app).filter(
        ([, r]) => r.Type === type && JSON.stringify(r.Properties?.ApiId) === httpApi,
      );
    const routes = onHttpApi('AWS::ApiGatewayV2::Route').map(([, r]) => r);
    const integrations = onHttpApi('AWS::ApiGatewayV2::Integration');
    const authorizers = onHttpApi('AWS::ApiGatewayV2::Authorizer');

    // Assess
    expect(routes).toHaveLength(ROUTES.length);
    expect(authorizers).toHaveLength(1);
    const [authorizerId, authorizer] = authorizers[0] ?? [];
    expect(authorizer?.Properties).toMatchObject({
      AuthorizerType: 'JWT',
      IdentitySource: ['$request.header.X-Auth-Token'],
    });
    for (const spec of ROUTES) {
      const route = routes.find((r) => r.Properties?.RouteKey === routeKey(spec));
      expect(route, routeKey(spec)).toBeDefined();
      const target = JSON.stringify(route?.Properties?.Target);
      const [, integration] = integrations.find(([id]) => target.includes(id)) ?? [];
      const fnId = logicalId(synth.hangar.application.functions[spec.fn] ?? synth.hangar.application);
      expect(JSON.stringify(integration?.Properties?.IntegrationUri), routeKey(spec)).toContain(fnId);
      if (spec.auth === false) expect(route?.Properties?.AuthorizationType, routeKey(spec)).toBe('NONE');
      else {
        expect(route?.Properties?.AuthorizationType, routeKey(spec)).toBe('JWT');
        expect(JSON.stringify(route?.Properties?.AuthorizerId)).toContain(authorizerId);
      }
    }
  });

  it('has one function per module on Node 22 arm64, traced, with a log group that expires', () => {
    const app = resources(synth.application);
    for (const fn of apiModules()) {
      const props =
        app[logicalId(synth.hangar.application.functions[fn] ?? synth.hangar.application)]?.Properties;
      expect(props, fn).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
      });
      expect((props?.Environment as { Variables: object } | undefined)?.Variables).toMatchObject({
        NODE_OPTIONS: '--enable-source-maps',
      });
    }
    for (const r of Object.values(app).filter((x) => x.Type === 'AWS::Logs::LogGroup'))
      expect(r.Properties?.RetentionInDays).toBe(30);
  });

  it('configures the functions for Lambda: redirects for blobs, claims auth, real S3 URLs', () => {
    const env = (fn: string) =>
      (
        resources(synth.application)[
          logicalId(synth.hangar.application.functions[fn] ?? synth.hangar.application)
        ]?.Properties?.Environment as { Variables: Record<string, unknown> } | undefined
      )?.Variables ?? {};
    expect(env('image-data')).toMatchObject({
      HANGAR_BLOB_DELIVERY: 'redirect',
      HANGAR_S3_FORCE_PATH_STYLE: 'false',
      HANGAR_AUTH_MODE: 'claims',
      HANGAR_CLAIM_PROJECT: 'custom:project',
      HANGAR_CLAIM_ROLES: 'cognito:groups',
    });
    expect(env('image-data')).toHaveProperty('HANGAR_TABLE');
    expect(env('image-data')).toHaveProperty('HANGAR_IMAGE_BUCKET');
    // Unauthenticated and resource-free: nothing to configure.
    expect(env('versions')).not.toHaveProperty('HANGAR_AUTH_MODE');
    expect(env('versions')).not.toHaveProperty('HANGAR_TABLE');
  });

  it('logs access and throttles on its one stage', () => {
    synth.application.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      AccessLogSettings: Match.objectLike({ DestinationArn: Match.anyValue() }),
      DefaultRouteSettings: Match.objectLike({ ThrottlingRateLimit: 100, ThrottlingBurstLimit: 200 }),
    });
  });
});

describe('IAM', () => {
  it('grants every function exactly what infra/declarations.ts declares for it', () => {
    assertFunctionGrants(synth);
  });
});

describe('buckets', () => {
  const bucketResource = (name: keyof typeof BUCKETS) =>
    resources(synth.stateful)[logicalId(synth.hangar.stateful.buckets[name])];
  const policyOf = (name: keyof typeof BUCKETS): Statement[] => {
    const id = logicalId(synth.hangar.stateful.buckets[name]);
    const policy = Object.values(resources(synth.stateful)).find(
      (r) => r.Type === 'AWS::S3::BucketPolicy' && JSON.stringify(r.Properties?.Bucket).includes(id),
    );
    return (policy?.Properties?.PolicyDocument as { Statement: Statement[] } | undefined)?.Statement ?? [];
  };

  it.each(Object.keys(BUCKETS) as (keyof typeof BUCKETS)[])(
    '%s: versioned, encrypted, private, logged, kept on delete',
    (name) => {
      const bucket = bucketResource(name);
      expect(bucket?.Properties).toMatchObject({
        VersioningConfiguration: { Status: 'Enabled' },
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
        PublicAccessBlockConfiguration: {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
        LoggingConfiguration: { LogFilePrefix: `${name}/` },
      });
      expect(JSON.stringify(bucket?.Properties?.LoggingConfiguration)).toContain(
        logicalId(synth.hangar.stateful.accessLogs),
      );
      expect(bucket).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    },
  );

  it("uploads: takes the console's multipart parts from a browser (PUT, ETag readable); no other bucket does", () => {
    expect(bucketResource('uploads')?.Properties?.CorsConfiguration).toEqual({
      CorsRules: [
        {
          AllowedMethods: ['PUT'],
          AllowedOrigins: ['*'],
          AllowedHeaders: ['*'],
          ExposedHeaders: ['ETag'],
          MaxAge: 3600,
        },
      ],
    });
    for (const name of ['images', 'staging', 'exports'] as const)
      expect(bucketResource(name)?.Properties?.CorsConfiguration).toBeUndefined();
  });

  it.each(Object.keys(BUCKETS) as (keyof typeof BUCKETS)[])('%s: refuses requests without TLS', (name) => {
    expect(policyOf(name)).toContainEqual(
      expect.objectContaining({
        Effect: 'Deny',
        Action: 's3:*',
        Principal: { AWS: '*' },
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      }),
    );
  });

  it('lets only the image-writing functions put or delete images/*, and nobody delete a version', () => {
    // Prepare
    const writers = synth.hangar.inventory.functions.filter((f) => writesImages(f.access)).map((f) => f.id);
    const writerRoleIds = writers.map((id) =>
      logicalId(synth.hangar.stateful.writerRoles[id] ?? synth.hangar.stateful),
    );
    const statements = policyOf('images');

    // Assess
    expect(writers).toEqual(expect.arrayContaining(['ImagesFunction', 'ImageDataFunction']));
    const deny = statements.find((s) => s.Sid === 'ImageObjectsWrittenOnlyByHangar');
    expect(deny).toMatchObject({
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Action: ['s3:DeleteObject', 's3:PutObject'],
    });
    expect(JSON.stringify(deny?.Resource)).toContain('/images/*');
    const exempt =
      (deny?.Condition as { ArnNotEquals: { 'aws:PrincipalArn': unknown[] } } | undefined)?.ArnNotEquals[
        'aws:PrincipalArn'
      ] ?? [];
    expect(exempt.map((arn) => JSON.stringify(arn)).sort()).toEqual(
      writerRoleIds.map((id) => JSON.stringify({ 'Fn::GetAtt': [id, 'Arn'] })).sort(),
    );
    // The functions really run as those roles.
    for (const id of writers) {
      const fn = resources(synth.application)[
        logicalId(
          synth.hangar.application.functions[
            synth.hangar.inventory.functions.find((f) => f.id === id)?.key ?? ''
          ] ?? synth.hangar.application,
        )
      ];
      expect(JSON.stringify(fn?.Properties?.Role)).toContain(
        `FnGetAtt${writerRoleIds[writers.indexOf(id)]}Arn`,
      );
    }
    expect(statements.find((s) => s.Sid === 'ImageObjectVersionsKept')).toMatchObject({
      Effect: 'Deny',
      Action: 's3:DeleteObjectVersion',
    });
  });

  it('expires old image versions only by lifecycle, and temporary objects after a week', () => {
    const rules = (name: keyof typeof BUCKETS) =>
      (bucketResource(name)?.Properties?.LifecycleConfiguration as { Rules: object[] } | undefined)?.Rules;
    expect(rules('images')).toContainEqual(
      expect.objectContaining({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' }),
    );
    expect(rules('images')).not.toContainEqual(
      expect.objectContaining({ ExpirationInDays: expect.anything() }),
    );
    expect(rules('uploads')).toContainEqual(expect.objectContaining({ ExpirationInDays: 7 }));
    // Multipart uploads nobody completed or aborted (a crash, a failed abort) end by lifecycle.
    for (const name of Object.keys(BUCKETS) as Array<keyof typeof BUCKETS>)
      expect(rules(name), name).toContainEqual(
        expect.objectContaining({
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: name === 'images' ? 1 : 7 },
          Status: 'Enabled',
        }),
      );
  });
});

describe('table', () => {
  it('has the keys, indexes, TTL and recovery settings of table-definition.ts', () => {
    const table = resources(synth.stateful)[logicalId(synth.hangar.stateful.table)];
    expect(table?.Properties).toMatchObject({
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [
        { AttributeName: TABLE_DEFINITION.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: TABLE_DEFINITION.sortKey.name, KeyType: 'RANGE' },
      ],
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'expiration', Enabled: true },
      DeletionProtectionEnabled: true,
    });
    expect(table).toMatchObject({ DeletionPolicy: 'Retain' });
    const indexes = table?.Properties?.GlobalSecondaryIndexes as Array<Record<string, unknown>>;
    expect(indexes).toHaveLength(TABLE_DEFINITION.globalSecondaryIndexes.length);
    for (const index of TABLE_DEFINITION.globalSecondaryIndexes)
      expect(indexes).toContainEqual({
        IndexName: index.indexName,
        KeySchema: [
          { AttributeName: index.partitionKey.name, KeyType: 'HASH' },
          { AttributeName: index.sortKey.name, KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: index.projection },
      });
  });
});

describe('state machines', () => {
  it('wires every state-machines/*.asl.json with all placeholders substituted and exact invoke grants', () => {
    // Prepare: whatever state machines exist now (none is fine: the fixture test covers the wiring).
    const dir = STATE_MACHINES_DIR;

    // Act, Assess
    const checked = assertWorkflowsWired(synth, dir);
    expect(checked).toBe(
      existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.asl.json')).length : 0,
    );
  });
});

describe('the build state machine', () => {
  it('runs the publish steps as the publish machine does (the same functions), started by builds and answered by hosts', () => {
    // Prepare
    const app = resources(synth.application);
    const { workflows } = synth.hangar.application;
    const machine = (name: string) =>
      (app[logicalId(workflows[name]?.stateMachine ?? synth.hangar.application)]?.Properties ?? {}) as {
        DefinitionSubstitutions?: Record<string, unknown>;
      };

    // Assess: one verify, boot gate and clean-up function each, invoked by both machines
    const build = machine('build').DefinitionSubstitutions ?? {};
    const publish = machine('publish').DefinitionSubstitutions ?? {};
    for (const key of ['PublishVerifyFunctionArn', 'PublishBootFunctionArn', 'PublishCleanupFunctionArn']) {
      expect(build[key], key).toBeDefined();
      expect(build[key], key).toEqual(publish[key]);
    }
    expect(build.PublishMoveFunctionArn).toBeUndefined();
    // POST /v1/builds starts the build machine (and no other); a finished build job answers gates in both
    expect(grantsOfFunction('builds').filter((g) => g.startsWith('states:'))).toEqual([
      'states:StartExecution@sm:build',
    ]);
    expect(
      grantsOfFunction('hosts')
        .filter((g) => g.startsWith('states:'))
        .sort(),
    ).toEqual([
      'states:SendTaskFailure@sm:build',
      'states:SendTaskFailure@sm:publish',
      'states:SendTaskSuccess@sm:build',
      'states:SendTaskSuccess@sm:publish',
    ]);
    // Fail Build frees the discarded snapshot's data, and starts nothing itself
    const step = grantsOfFunction('functions/tasks/build-step.ts');
    expect(step).toContain('s3:DeleteObject@bucket:images/images/*');
    expect(step.filter((g) => g.startsWith('states:'))).toEqual([]);
  });
});

describe('failed snapshots', () => {
  it("lets the functions that discard one (instances, hosts) free its data as images' DELETE does", () => {
    // Prepare
    const s3GrantsOf = (key: string) =>
      grantsOfFunction(key)
        .filter((g) => g.startsWith('s3:'))
        .sort();

    // Act
    const freeing = s3GrantsOf('images');

    // Assess: a queue failure or a lost host (instances), a failed job (hosts)
    expect(freeing).toContain('s3:DeleteObject@bucket:images/images/*');
    expect(freeing).toContain('s3:AbortMultipartUpload@bucket:images/images/*');
    expect(s3GrantsOf('instances')).toEqual(freeing);
    expect(s3GrantsOf('hosts')).toEqual(freeing);
  });
});

describe('S3 triggers', () => {
  it('wires each trigger whose module exists (and reports the others as skipped)', () => {
    const app = resources(synth.application);
    for (const trigger of S3_TRIGGERS) {
      if (!existsSync(repoPath(trigger.module))) {
        expect(synth.hangar.inventory.skipped).toContain(trigger.module);
        continue;
      }
      const fn = synth.hangar.application.functions[trigger.module];
      const fnId = logicalId(fn ?? synth.hangar.application);
      // One notification per prefix, from the bucket the registry names, to the function.
      const notifications = Object.values(app).filter((r) => r.Type === 'Custom::S3BucketNotifications');
      const configs = notifications.flatMap(
        (n) =>
          (n.Properties?.NotificationConfiguration as { LambdaFunctionConfigurations?: object[] } | undefined)
            ?.LambdaFunctionConfigurations ?? [],
      ) as Array<{ Events: string[]; Filter: unknown; LambdaFunctionArn: unknown }>;
      for (const prefix of trigger.prefixes)
        expect(
          configs.some(
            (c) =>
              JSON.stringify(c.LambdaFunctionArn).includes(fnId) &&
              c.Events.join() === trigger.events.join() &&
              JSON.stringify(c.Filter).includes(`"${prefix}"`),
          ),
          `${trigger.module} ${prefix}`,
        ).toBe(true);
      const bucketId = logicalId(synth.hangar.stateful.buckets[trigger.bucket as keyof typeof BUCKETS]);
      expect(JSON.stringify(notifications.map((n) => n.Properties?.BucketName))).toContain(bucketId);
      // Asynchronous: two retries, then the failure queue, which is encrypted, TLS-only and watched.
      const queue = synth.hangar.application.failureQueues[trigger.module];
      const queueId = logicalId(queue ?? synth.hangar.application);
      const invokeConfig = Object.values(app).find(
        (r) =>
          r.Type === 'AWS::Lambda::EventInvokeConfig' &&
          JSON.stringify(r.Properties?.FunctionName).includes(fnId),
      );
      expect(invokeConfig?.Properties).toMatchObject({
        MaximumRetryAttempts: 2,
        MaximumEventAgeInSeconds: 21600,
      });
      expect(JSON.stringify(invokeConfig?.Properties?.DestinationConfig)).toContain(queueId);
      expect(app[queueId]?.Properties).toMatchObject({ SqsManagedSseEnabled: true });
      expect(
        Object.values(app).some(
          (r) =>
            r.Type === 'AWS::CloudWatch::Alarm' &&
            r.Properties?.MetricName === 'ApproximateNumberOfMessagesVisible' &&
            JSON.stringify(r.Properties?.Dimensions).includes(queueId),
        ),
      ).toBe(true);
    }
  });
});

describe('schedules', () => {
  it('runs each scheduled function from an EventBridge rule, at its default rate, and only from it', () => {
    // Prepare
    const app = resources(synth.application);
    const scheduled = synth.hangar.inventory.functions.filter((f) => f.kind === 'schedule');

    // Assess
    expect(scheduled.map((f) => f.key)).toEqual(SCHEDULES.map((s) => s.module));
    expect(scheduled.map((f) => f.key)).toContain('functions/triggers/retention-sweep.ts');
    expect(scheduled.map((f) => f.key)).toContain('functions/triggers/lease-sweep.ts');
    // Retention hourly; leases (a minute long) every five minutes, so a dead upload is soon recovered.
    const defaults: Record<string, string> = {
      'functions/triggers/retention-sweep.ts': 'rate(1 hour)',
      'functions/triggers/lease-sweep.ts': 'rate(5 minutes)',
    };
    for (const schedule of SCHEDULES) {
      const fnId = logicalId(synth.hangar.application.functions[schedule.module] ?? synth.hangar.application);
      const ruleId = logicalId(
        synth.hangar.application.scheduleRules[schedule.module] ?? synth.hangar.application,
      );
      const rule = app[ruleId];
      expect(rule?.Type, schedule.module).toBe('AWS::Events::Rule');
      expect(rule?.Properties, schedule.module).toMatchObject({
        ScheduleExpression: defaults[schedule.module],
        State: 'ENABLED',
      });
      const targets = (rule?.Properties?.Targets ?? []) as Array<{ Arn: unknown }>;
      expect(targets, schedule.module).toHaveLength(1);
      expect(JSON.stringify(targets[0]?.Arn)).toContain(fnId);
      // EventBridge may invoke the function, and only on behalf of this rule.
      const permissions = Object.values(app).filter(
        (r) =>
          r.Type === 'AWS::Lambda::Permission' && JSON.stringify(r.Properties?.FunctionName).includes(fnId),
      );
      expect(permissions.map((p) => p.Properties?.Principal)).toEqual(['events.amazonaws.com']);
      expect(JSON.stringify(permissions[0]?.Properties?.SourceArn)).toContain(ruleId);
      // A sweep walks every name (or lease) in turn: more time than a request's 29 s.
      expect(app[fnId]?.Properties?.Timeout, schedule.module).toBe(300);
    }
  });
});

describe('lease sweep', () => {
  it('may recover leases and free what they name, nothing more: no Scan, no reads of image data', () => {
    // Prepare
    const fn = synth.hangar.application.functions['functions/triggers/lease-sweep.ts'];
    const role = resources(synth.application)[logicalId(fn ?? synth.hangar.application)]?.Properties?.Role;

    // Act
    const actual = grants(statementsOfRole(synth.application, role), labels(synth));

    // Assess
    expect(actual).toEqual(
      expect.arrayContaining([
        'dynamodb:Query@table/index/*',
        'dynamodb:BatchWriteItem@table',
        's3:AbortMultipartUpload@bucket:images/images/*',
        's3:DeleteObject@bucket:images/images/*',
        's3:DeleteObject@bucket:staging/*',
        's3:DeleteObject@bucket:uploads/*',
      ]),
    );
    expect(
      actual.filter((g) => ['dynamodb:Scan', 's3:GetObject', 's3:PutObject'].some((a) => g.startsWith(a))),
    ).toEqual([]);
  });
});

describe('container functions', () => {
  it('packages each container task as an arm64 image with qemu-img and its /tmp size', () => {
    const app = resources(synth.application);
    const containers = synth.hangar.inventory.functions.filter((f) => f.packaging === 'container');
    for (const entry of containers) {
      const props =
        app[logicalId(synth.hangar.application.functions[entry.key] ?? synth.hangar.application)]?.Properties;
      expect(props, entry.key).toMatchObject({ PackageType: 'Image', Architectures: ['arm64'] });
      if (entry.ephemeralStorageMb)
        expect(props?.EphemeralStorage).toEqual({ Size: entry.ephemeralStorageMb });
    }
    expect(CONTAINER_DOCKERFILE).toMatch(/FROM public\.ecr\.aws\/lambda\/nodejs:22/);
    expect(CONTAINER_DOCKERFILE).toMatch(/dnf install -y qemu-img/);
  });
});

describe('Cognito issuer', () => {
  it('creates a user pool whose clients cannot change their own project', () => {
    synth.stateful.hasResourceProperties('AWS::Cognito::UserPool', {
      AdminCreateUserConfig: { AllowAdminCreateUserOnly: true },
      Schema: Match.arrayWith([Match.objectLike({ Name: 'project', Mutable: true })]),
    });
    const client = Object.values(resources(synth.stateful)).find(
      (r) => r.Type === 'AWS::Cognito::UserPoolClient',
    );
    expect(client?.Properties?.WriteAttributes).toEqual(['email']);
    synth.stateful.resourceCountIs('AWS::Cognito::UserPoolGroup', 3);
  });
});

describe('alarms', () => {
  it("alarms on every function's errors and throttles and on the API's 5xx, into one topic", () => {
    const alarms = Object.values(resources(synth.application)).filter(
      (r) => r.Type === 'AWS::CloudWatch::Alarm',
    );
    for (const entry of synth.hangar.inventory.functions) {
      const fnId = logicalId(synth.hangar.application.functions[entry.key] ?? synth.hangar.application);
      for (const metric of ['Errors', 'Throttles'])
        expect(
          alarms.some(
            (a) =>
              a.Properties?.MetricName === metric && JSON.stringify(a.Properties?.Dimensions).includes(fnId),
          ),
          `${entry.key} ${metric}`,
        ).toBe(true);
    }
    expect(
      alarms.some((a) => a.Properties?.MetricName === '5xx' && a.Properties?.Namespace === 'AWS/ApiGateway'),
    ).toBe(true);
    const topicId = logicalId(synth.hangar.application.alarms.topic);
    for (const alarm of alarms) expect(JSON.stringify(alarm.Properties?.AlarmActions)).toContain(topicId);
  });
});

describe('agent sockets (WebSocket API)', () => {
  const socketFn = (role: keyof typeof AGENT_SOCKET_FUNCTIONS) => {
    const fn = synth.hangar.application.functions[AGENT_SOCKET_FUNCTIONS[role].entry];
    if (!fn) throw new Error(`no agent socket function ${role}`);
    return fn;
  };
  const socketApiId = () => logicalId(synth.hangar.application.agentSockets.api);
  const envOf = (construct: IConstruct): Record<string, unknown> =>
    (
      resources(synth.application)[logicalId(construct)]?.Properties?.Environment as
        | { Variables?: Record<string, unknown> }
        | undefined
    )?.Variables ?? {};

  it('has $connect behind the Lambda authorizer and $disconnect, each served by its function, and a mock $default', () => {
    // Prepare
    const app = resources(synth.application);
    const apiId = socketApiId();
    const onApi = (type: string) =>
      Object.entries(app).filter(
        ([, r]) => r.Type === type && JSON.stringify(r.Properties?.ApiId) === JSON.stringify({ Ref: apiId }),
      );

    // Assess
    expect(app[apiId]?.Properties).toMatchObject({ ProtocolType: 'WEBSOCKET' });
    const routes = onApi('AWS::ApiGatewayV2::Route');
    expect(routes.map(([, r]) => r.Properties?.RouteKey).sort()).toEqual([
      '$connect',
      '$default',
      '$disconnect',
    ]);
    const authorizers = onApi('AWS::ApiGatewayV2::Authorizer');
    expect(authorizers).toHaveLength(1);
    const [authorizerId, authorizer] = authorizers[0] ?? [];
    expect(authorizer?.Properties).toMatchObject({
      AuthorizerType: 'REQUEST',
      IdentitySource: ['route.request.header.X-Auth-Token', 'route.request.querystring.host_id'],
    });
    expect(JSON.stringify(authorizer?.Properties?.AuthorizerUri)).toContain(
      logicalId(socketFn('authorizer')),
    );
    const integrations = onApi('AWS::ApiGatewayV2::Integration');
    for (const [key, role, auth] of [
      ['$connect', 'connect', 'CUSTOM'],
      ['$disconnect', 'disconnect', 'NONE'],
    ] as const) {
      const [, route] = routes.find(([, r]) => r.Properties?.RouteKey === key) ?? [];
      expect(route?.Properties?.AuthorizationType, key).toBe(auth);
      if (auth === 'CUSTOM') expect(route?.Properties?.AuthorizerId).toEqual({ Ref: authorizerId });
      const target = JSON.stringify(route?.Properties?.Target);
      const [, integration] = integrations.find(([id]) => target.includes(id)) ?? [];
      expect(JSON.stringify(integration?.Properties?.IntegrationUri), key).toContain(
        logicalId(socketFn(role)),
      );
    }
    // The agents' keepalive lands on $default, which runs nothing.
    const [, defaultRoute] = routes.find(([, r]) => r.Properties?.RouteKey === '$default') ?? [];
    const [, keepalive] =
      integrations.find(([id]) => JSON.stringify(defaultRoute?.Properties?.Target).includes(id)) ?? [];
    expect(keepalive?.Properties?.IntegrationType).toBe('MOCK');
    // API Gateway may invoke the authorizer and the two route functions, each from this API only.
    for (const role of ['authorizer', 'connect', 'disconnect'] as const) {
      const permissions = Object.values(app).filter(
        (r) =>
          r.Type === 'AWS::Lambda::Permission' &&
          JSON.stringify(r.Properties?.FunctionName).includes(logicalId(socketFn(role))),
      );
      expect(permissions.length, role).toBeGreaterThan(0);
      for (const permission of permissions) {
        expect(permission.Properties?.Principal).toBe('apigateway.amazonaws.com');
        expect(JSON.stringify(permission.Properties?.SourceArn)).toContain(apiId);
      }
    }
  });

  it('serves one throttled stage and gives its wss:// URL as the agents’ notify_url output', () => {
    const template = synth.application;
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      ApiId: { Ref: socketApiId() },
      StageName: AGENT_SOCKET_STAGE,
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 100, ThrottlingBurstLimit: 200 },
    });
    const output = JSON.stringify(template.findOutputs('AgentSocketUrl'));
    expect(output).toContain('wss://');
    expect(output).toContain(socketApiId());
    expect(output).toContain(`/${AGENT_SOCKET_STAGE}`);
  });

  it('checks host tokens in its authorizer against the same issuer, audience and claims as the HTTP API', () => {
    // Prepare
    const app = resources(synth.application);
    const env = envOf(socketFn('authorizer'));
    const apiEnv = envOf(synth.hangar.application.functions.images ?? synth.hangar.application);
    const [, jwt] =
      Object.entries(app).find(
        ([, r]) => r.Type === 'AWS::ApiGatewayV2::Authorizer' && r.Properties?.AuthorizerType === 'JWT',
      ) ?? [];
    const jwtConfig = jwt?.Properties?.JwtConfiguration as { Issuer: unknown; Audience: unknown[] };

    // Assess
    expect(env).toMatchObject({
      HANGAR_AUTH_MODE: 'claims',
      HANGAR_CLAIM_PROJECT: apiEnv.HANGAR_CLAIM_PROJECT,
      HANGAR_CLAIM_ROLES: apiEnv.HANGAR_CLAIM_ROLES,
      HANGAR_CLAIM_USER: apiEnv.HANGAR_CLAIM_USER,
      HANGAR_JWT_TOKEN_HEADER: 'X-Auth-Token',
    });
    expect(env.HANGAR_JWT_ISSUER).toEqual(jwtConfig.Issuer);
    expect(env.HANGAR_JWT_AUDIENCE).toEqual(jwtConfig.Audience[0]);
  });

  it('keeps connections in their own table: host id -> connection id, an index by connection, TTL', () => {
    const table = resources(synth.application)[logicalId(synth.hangar.application.agentSockets.connections)];
    expect(table?.Properties).toMatchObject({
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [
        { AttributeName: CONNECTIONS_TABLE.partitionKey, KeyType: 'HASH' },
        { AttributeName: CONNECTIONS_TABLE.sortKey, KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: CONNECTIONS_TABLE.connectionIndex,
          KeySchema: [{ AttributeName: CONNECTIONS_TABLE.sortKey, KeyType: 'HASH' }],
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
      ],
      TimeToLiveSpecification: { AttributeName: CONNECTIONS_TABLE.timeToLiveAttribute, Enabled: true },
    });
    // Only the socket functions know the table.
    for (const [key, fn] of Object.entries(synth.hangar.application.functions)) {
      const env = JSON.stringify(resources(synth.application)[logicalId(fn)]?.Properties?.Environment ?? {});
      const socket = Object.values(AGENT_SOCKET_FUNCTIONS).find((f) => f.entry === key);
      expect(env.includes('HANGAR_AGENT_CONNECTIONS_TABLE'), key).toBe(
        (socket?.access.agentConnections?.length ?? 0) > 0,
      );
    }
  });

  it("runs the notifier from the service table's stream, filtered to job inserts, and posts to this stage", () => {
    // Prepare
    const app = resources(synth.application);
    const notifier = socketFn('notifier');
    const mappings = Object.values(app).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping');
    const env = envOf(notifier);

    // Assess
    synth.stateful.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: Match.arrayWith([{ AttributeName: TABLE_DEFINITION.partitionKey.name, KeyType: 'HASH' }]),
      StreamSpecification: { StreamViewType: 'NEW_IMAGE' },
    });
    expect(mappings).toHaveLength(1);
    const [mapping] = mappings;
    expect(mapping?.Properties).toMatchObject({
      FunctionName: { Ref: logicalId(notifier) },
      StartingPosition: 'LATEST',
      MaximumRecordAgeInSeconds: 60,
    });
    expect(JSON.stringify(mapping?.Properties?.EventSourceArn)).toContain(
      `${logicalId(synth.hangar.stateful.table)}StreamArn`,
    );
    const filters =
      (mapping?.Properties?.FilterCriteria as { Filters: { Pattern: string }[] } | undefined)?.Filters ?? [];
    expect(filters.map((f) => JSON.parse(f.Pattern))).toEqual([JOB_INSERT_FILTER]);
    const endpoint = JSON.stringify(env.HANGAR_AGENT_SOCKET_ENDPOINT);
    expect(endpoint).toContain('https://');
    expect(endpoint).toContain(socketApiId());
    expect(endpoint).toContain(`/${AGENT_SOCKET_STAGE}`);
  });

  it('lets only the notifier manage connections, only on POST @connections of this stage', () => {
    // Prepare
    const names = labels(synth);
    const app = resources(synth.application);

    // Act
    const holders = Object.entries(synth.hangar.application.functions).flatMap(([key, fn]) =>
      grants(statementsOfRole(synth.application, app[logicalId(fn)]?.Properties?.Role), names)
        .filter((g) => g.startsWith('execute-api:'))
        .map((g) => `${key} ${g}`),
    );

    // Assess
    expect(holders).toEqual([
      `${AGENT_SOCKET_FUNCTIONS.notifier.entry} execute-api:ManageConnections@socket-api/${AGENT_SOCKET_STAGE}/POST/@connections/*`,
    ]);
  });
});

describe('console hosting (CloudFront)', () => {
  const hosting = () => {
    const found = synth.hangar.application.console;
    if (!found) throw new Error('no console hosting in the default synth');
    return found;
  };
  const distributionConfig = () =>
    resources(synth.application)[logicalId(hosting().distribution)]?.Properties?.DistributionConfig as {
      DefaultCacheBehavior: Record<string, unknown>;
      CacheBehaviors: Record<string, unknown>[];
      Origins: {
        Id: string;
        DomainName: unknown;
        S3OriginConfig?: unknown;
        OriginAccessControlId?: unknown;
      }[];
    };
  // CloudFront's managed policies, by their fixed ids.
  const CACHING_DISABLED = '4135ea2d-6df8-44a3-9df3-4b5a84be39ad';
  const CACHING_OPTIMIZED = '658327ea-f89d-4fab-a63d-7e88639e58f6';
  const ALL_VIEWER_EXCEPT_HOST = 'b689b0a8-53d0-40ab-baf2-68738e2966ac';

  it('serves the console from a private bucket that only this distribution reads (OAC)', () => {
    const app = resources(synth.application);
    const bucketId = logicalId(hosting().bucket);
    expect(app[bucketId]?.Properties?.PublicAccessBlockConfiguration).toEqual({
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    const config = distributionConfig();
    const s3 = config.Origins.find((o) => JSON.stringify(o.DomainName).includes(bucketId));
    expect(s3?.OriginAccessControlId).toBeDefined();
    expect(config.DefaultCacheBehavior).toMatchObject({
      TargetOriginId: s3?.Id,
      ViewerProtocolPolicy: 'redirect-to-https',
      CachePolicyId: CACHING_OPTIMIZED,
    });
    const policy = Object.values(app).find(
      (r) => r.Type === 'AWS::S3::BucketPolicy' && JSON.stringify(r.Properties?.Bucket).includes(bucketId),
    );
    const allows = (
      (policy?.Properties?.PolicyDocument as { Statement: Statement[] } | undefined)?.Statement ?? []
    ).filter((st) => st.Effect === 'Allow');
    expect(allows).toHaveLength(1);
    expect(allows[0]).toMatchObject({
      Action: 's3:GetObject',
      Principal: { Service: 'cloudfront.amazonaws.com' },
    });
    expect(JSON.stringify(allows[0]?.Condition)).toContain(logicalId(hosting().distribution));
  });

  it('sends /v1/* and /v2/* to the HTTP API uncached, with every viewer header but Host and every query string', () => {
    const config = distributionConfig();
    const apiId = logicalId(synth.hangar.application.api);
    for (const pattern of API_PATH_PATTERNS) {
      const behavior = config.CacheBehaviors.find((b) => b.PathPattern === pattern);
      expect(behavior, pattern).toMatchObject({
        CachePolicyId: CACHING_DISABLED,
        OriginRequestPolicyId: ALL_VIEWER_EXCEPT_HOST,
        ViewerProtocolPolicy: 'https-only',
        AllowedMethods: expect.arrayContaining(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']),
      });
      const origin = config.Origins.find((o) => o.Id === behavior?.TargetOriginId);
      expect(JSON.stringify(origin?.DomainName), pattern).toContain(apiId);
    }
    expect(config.CacheBehaviors).toHaveLength(API_PATH_PATTERNS.length);
  });

  it('uploads hashed assets immutable and index.html no-cache under console/', () => {
    const deployments = Object.values(resources(synth.application)).filter(
      (r) => r.Type === 'Custom::CDKBucketDeployment',
    );
    expect(deployments).toHaveLength(2);
    const assets = deployments.find((d) => JSON.stringify(d.Properties?.Exclude) === '["index.html"]');
    const page = deployments.find((d) => JSON.stringify(d.Properties?.Include) === '["index.html"]');
    expect(assets?.Properties).toMatchObject({
      DestinationBucketKeyPrefix: 'console/',
      SystemMetadata: { 'cache-control': 'public, max-age=31536000, immutable' },
      Prune: true,
    });
    expect(page?.Properties).toMatchObject({
      DestinationBucketKeyPrefix: 'console/',
      Exclude: ['*'],
      SystemMetadata: { 'cache-control': 'no-cache' },
      // It must not delete the assets the other pass uploaded.
      Prune: false,
    });
  });

  it('routes deep links under /console/ to index.html and the roots to /console/', () => {
    // Prepare: the function CloudFront runs, as deployed.
    const fn = resources(synth.application)[logicalId(hosting().router)];
    const code = String(fn?.Properties?.FunctionCode);
    expect(code).toBe(CONSOLE_ROUTER_SOURCE);
    const handler = new Function(`${code}; return handler;`)() as (event: { request: { uri: string } }) => {
      uri?: string;
      statusCode?: number;
      headers?: { location: { value: string } };
    };
    const run = (uri: string) => handler({ request: { uri } });

    // Assess
    expect(run('/console/images/0f2d4b1e-1111-4000-8000-000000000001').uri).toBe('/console/index.html');
    expect(run('/console/').uri).toBe('/console/index.html');
    expect(run('/console/assets/index-3f2a1b9c.js').uri).toBe('/console/assets/index-3f2a1b9c.js');
    expect(run('/console').headers?.location.value).toBe('/console/');
    expect(run('/').statusCode).toBe(302);
    expect(run('/other/path').uri).toBe('/other/path');
    const associations = distributionConfig().DefaultCacheBehavior.FunctionAssociations;
    expect(JSON.stringify(associations)).toContain(logicalId(hosting().router));
    expect(JSON.stringify(associations)).toContain('viewer-request');
  });

  it('gives the console URL as an output', () => {
    const output = JSON.stringify(synth.application.findOutputs('ConsoleUrl'));
    expect(output).toContain(logicalId(hosting().distribution));
    expect(output).toContain('/console/');
  });
});

describe('portability', () => {
  it('names no account, region or physical resource', () => {
    for (const template of [synth.stateful, synth.application]) {
      const json = JSON.stringify(template.toJSON());
      expect(json).not.toMatch(/\b\d{12}\b/);
      expect(json).not.toMatch(
        /\b(us|eu|ap|sa|ca|me|af|il|mx)-(north|south|east|west|central)(east|west)?-\d\b/,
      );
      // A reference to a generated name is fine; a literal name is not.
      for (const [id, r] of Object.entries(resources(template)))
        for (const prop of [
          'TableName',
          'BucketName',
          'FunctionName',
          'RoleName',
          'TopicName',
          'QueueName',
          'StateMachineName',
          'LogGroupName',
        ])
          expect(typeof r.Properties?.[prop], `${id}.${prop}`).not.toBe('string');
    }
  });
});

describe('cdk-nag', () => {
  it('finds nothing unsuppressed in AwsSolutions, and every suppression says why', () => {
    assertNagClean(synth);
  });

  it('reports no CDK warnings either', () => {
    for (const stack of [synth.hangar.stateful, synth.hangar.application])
      expect(Annotations.fromStack(stack).findWarning('*', Match.anyValue())).toEqual([]);
  });
});

describe('README', () => {
  it('documents every setting with its context key and environment variable', () => {
    const readme = readFileSync(new URL('../../infra/README.md', import.meta.url), 'utf8');
    for (const setting of Object.values(SETTINGS)) {
      expect(readme).toContain(`\`${setting.context}\``);
      expect(readme).toContain(`\`${setting.env}\``);
    }
  });
});
