/**
 * Everything stateless: one Lambda per API module (from ROUTES), the HTTP API and its
 * authorizer, the optional S3 upload trigger, the scheduled functions and their EventBridge
 * rules, the state machines from state-machines/, and the alarms. Every grant comes from
 * infra/declarations.ts.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CfnOutput, Duration, RemovalPolicy, SecretValue, Stack, type StackProps } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import {
  HttpApi,
  HttpMethod,
  HttpStage,
  type IHttpRouteAuthorizer,
  LogGroupLogDestination,
  WebSocketApi,
  WebSocketStage,
} from 'aws-cdk-lib/aws-apigatewayv2';
import {
  HttpJwtAuthorizer,
  HttpLambdaAuthorizer,
  HttpLambdaResponseType,
  WebSocketLambdaAuthorizer,
} from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import {
  HttpLambdaIntegration,
  WebSocketLambdaIntegration,
  WebSocketMockIntegration,
} from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { AttributeType, BillingMode, ProjectionType, Table } from 'aws-cdk-lib/aws-dynamodb';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import {
  Architecture,
  Code,
  EventSourceMapping,
  FilterCriteria,
  LayerVersion,
  Runtime,
  StartingPosition,
} from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import { LogGroup } from 'aws-cdk-lib/aws-logs';
import { Bucket, EventType } from 'aws-cdk-lib/aws-s3';
import { LambdaDestination } from 'aws-cdk-lib/aws-s3-notifications';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { TokenFileSchema } from '#adapters/auth/token-file';
import { CONNECTIONS_TABLE } from '#adapters/dynamo/connections-table';
import { JOB_INSERT_FILTER } from '#adapters/dynamo/job-stream';
import { ROUTES } from '#api/routes';
import { loadPropertyProtections } from '#platform/config';
import { ConfigError, type DeployConfig } from './config.ts';
import { Alarms } from './constructs/alarms.ts';
import { ConsoleHosting } from './constructs/console-hosting.ts';
import { ContainerFunction } from './constructs/container-function.ts';
import { type HangarFunction, NodeFunction } from './constructs/node-function.ts';
import { stagingDir } from './constructs/staging.ts';
import { Workflow } from './constructs/workflow.ts';
import {
  type Access,
  BUCKETS,
  type BucketMode,
  type BucketName,
  CONNECTIONS_ACTIONS,
  type SocketRole,
  STREAM_ACTIONS,
  STREAM_LIST_ACTION,
} from './declarations.ts';
import { type FunctionEntry, type Inventory, pascal, workflowEnvVar } from './inventory.ts';
import { repoPath } from './paths.ts';
import type { StatefulStack } from './stateful-stack.ts';

/** Of Lambda's 4 KB environment per function, what the property-protection rules may take. */
const MAX_PROTECTIONS_BYTES = 2048;

export interface AppStackProps extends StackProps {
  readonly config: DeployConfig;
  readonly stateful: StatefulStack;
  readonly inventory: Inventory;
}

/** Where the tokens layer puts the token file inside the function (/opt is a layer's root). */
export const TOKENS_PATH = '/opt/hangar/tokens.json';

interface AuthSetup {
  readonly authorizer?: IHttpRouteAuthorizer;
  /** What authenticated API functions get, on top of the service environment. */
  readonly environment: Readonly<Record<string, string>>;
  readonly layer?: LayerVersion;
  /** What the agents' $connect authorizer checks host tokens with (it has no API Gateway authorizer in front). */
  readonly socketEnvironment: Readonly<Record<string, string>>;
  /** The header the host token comes in. */
  readonly tokenHeader: string;
}

/** The agents' WebSocket API (issue 13): where agents are told that their queue has work. */
export interface AgentSockets {
  readonly api: WebSocketApi;
  readonly stage: WebSocketStage;
  readonly connections: Table;
  readonly authorizer: WebSocketLambdaAuthorizer;
  readonly streamMapping: EventSourceMapping;
}

/** The stage agents connect to: wss://<api>.execute-api.<region>.amazonaws.com/agents. */
export const AGENT_SOCKET_STAGE = 'agents';

const SHA256_KEY = /^sha256:[0-9a-fA-F]{64}$/;

/** `s3:ObjectCreated:*` (the registry's spelling) as CDK's EventType. */
function eventType(event: string): EventType {
  const found = Object.values(EventType).find((e) => e === event);
  if (!found) throw new Error(`unknown S3 event type ${event}`);
  return found;
}

export class AppStack extends Stack {
  readonly api: HttpApi;
  readonly stage: HttpStage;
  /** By inventory key (API module name, task, trigger or schedule module path, 'keystone-authorizer'). */
  readonly functions: Readonly<Record<string, HangarFunction>>;
  readonly workflows: Readonly<Record<string, Workflow>>;
  readonly failureQueues: Readonly<Record<string, Queue>>;
  /** The EventBridge rule of each scheduled function, by its module path. */
  readonly scheduleRules: Readonly<Record<string, Rule>>;
  readonly alarms: Alarms;
  readonly agentSockets: AgentSockets;
  /** The web console behind CloudFront, unless consoleDir=none. */
  readonly console: ConsoleHosting | undefined;

  private readonly config: DeployConfig;
  private readonly stateful: StatefulStack;
  private readonly authorizerFunctions: Record<string, HangarFunction> = {};

  constructor(scope: Construct, id: string, props: AppStackProps) {
    super(scope, id, props);
    const { config, stateful, inventory } = props;
    this.config = config;
    this.stateful = stateful;
    this.alarms = new Alarms(this, 'Alarms', { email: config.alarmEmail });
    const functions: Record<string, HangarFunction> = {};
    const workflows: Record<string, Workflow> = {};
    const failureQueues: Record<string, Queue> = {};
    const scheduleRules: Record<string, Rule> = {};

    // First, so a missing setting fails before anything is bundled.
    const auth = this.authSetup(inventory);
    // Task functions before the workflows that name them, workflows before their starters.
    for (const entry of inventory.functions.filter((f) => f.kind === 'task'))
      functions[entry.key] = this.makeFunction(entry, {}, workflows);
    for (const wf of inventory.workflows) {
      const workflow = new Workflow(this, `${pascal(wf.name)}Workflow`, {
        aslFile: wf.file,
        functions: Object.fromEntries(
          Object.entries(wf.functions).map(([placeholder, key]) => [
            placeholder,
            functions[key] as HangarFunction,
          ]),
        ),
        substitutions: this.resourceSubstitutions(),
        logRetention: config.logRetention,
      });
      workflows[wf.name] = workflow;
      this.alarms.forStateMachine(`${pascal(wf.name)}Workflow`, workflow.stateMachine);
    }

    for (const entry of inventory.functions.filter((f) => f.kind === 'api')) {
      const fn = this.makeFunction(entry, entry.authenticated ? auth.environment : {}, workflows);
      if (entry.authenticated && auth.layer) fn.addLayers(auth.layer);
      functions[entry.key] = fn;
    }
    for (const entry of inventory.functions.filter((f) => f.kind === 'trigger')) {
      const fn = this.makeFunction(entry, {}, workflows);
      failureQueues[entry.key] = this.wireTrigger(entry, fn);
      functions[entry.key] = fn;
    }
    for (const entry of inventory.functions.filter((f) => f.kind === 'schedule')) {
      const fn = this.makeFunction(entry, {}, workflows);
      scheduleRules[entry.key] = this.wireSchedule(entry, fn);
      functions[entry.key] = fn;
    }
    this.agentSockets = this.makeAgentSockets(inventory, auth, functions, workflows);
    this.functions = { ...functions, ...this.authorizerFunctions };
    this.workflows = workflows;
    this.failureQueues = failureQueues;
    this.scheduleRules = scheduleRules;
    for (const entry of inventory.functions) {
      const fn = this.functions[entry.key];
      if (fn) this.alarms.forFunction(entry.id, fn);
    }

    ({ api: this.api, stage: this.stage } = this.httpApi(auth));
    this.alarms.forApi(this.api);
    this.console = config.consoleDir
      ? new ConsoleHosting(this, 'Console', {
          assetDir: repoPath(config.consoleDir),
          setting: 'consoleDir (or HANGAR_DEPLOY_CONSOLE_DIR)',
          api: this.api,
          logRetention: config.logRetention,
        })
      : undefined;
  }

  /**
   * The agents' WebSocket API: $connect behind a Lambda authorizer that checks the host token as
   * the deployment's auth mode does (a host for itself only), $connect/$disconnect recording the
   * connection in a table of their own, and the notifier the service table's stream invokes for
   * each job insert, which posts `{"type":"jobs"}` to the host's connections (infra/README.md,
   * "Agents told, not polling").
   */
  private makeAgentSockets(
    inventory: Inventory,
    auth: AuthSetup,
    functions: Record<string, HangarFunction>,
    workflows: Readonly<Record<string, Workflow>>,
  ): AgentSockets {
    const entryOf = (role: SocketRole): FunctionEntry => {
      const found = inventory.functions.find((f) => f.kind === 'socket' && f.socket === role);
      if (!found) throw new Error(`internal: no agent socket ${role} in the inventory`);
      return found;
    };
    const connections = new Table(this, 'AgentConnectionsTable', {
      partitionKey: { name: CONNECTIONS_TABLE.partitionKey, type: AttributeType.STRING },
      sortKey: { name: CONNECTIONS_TABLE.sortKey, type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: CONNECTIONS_TABLE.timeToLiveAttribute,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Connection ids are worth nothing once the stack is gone: agents reconnect to the new API.
      removalPolicy: RemovalPolicy.DESTROY,
    });
    connections.addGlobalSecondaryIndex({
      indexName: CONNECTIONS_TABLE.connectionIndex,
      partitionKey: { name: CONNECTIONS_TABLE.sortKey, type: AttributeType.STRING },
      projectionType: ProjectionType.KEYS_ONLY,
    });

    const make = (role: SocketRole, environment: Readonly<Record<string, string>> = {}) => {
      const entry = entryOf(role);
      const fn = this.makeFunction(entry, environment, workflows);
      this.applyConnectionsAccess(fn, entry.access, connections);
      functions[entry.key] = fn;
      return { entry, fn };
    };
    const authorizerFn = make('authorizer', auth.socketEnvironment).fn;
    if (auth.layer) authorizerFn.addLayers(auth.layer);
    const connectFn = make('connect').fn;
    const disconnectFn = make('disconnect').fn;

    const authorizer = new WebSocketLambdaAuthorizer('AgentSocketAuthorizer', authorizerFn, {
      // Both required: API Gateway refuses (401) a connect missing either without invoking anything.
      identitySource: [`route.request.header.${auth.tokenHeader}`, 'route.request.querystring.host_id'],
    });
    const api = new WebSocketApi(this, 'AgentSocketApi', {
      description: 'Hangar: host agents are told here when their job queue gains work',
      connectRouteOptions: {
        integration: new WebSocketLambdaIntegration('AgentConnectIntegration', connectFn),
        authorizer,
      },
      disconnectRouteOptions: {
        integration: new WebSocketLambdaIntegration('AgentDisconnectIntegration', disconnectFn),
      },
      // The agents' keepalive ({"type":"ping"}, agent/src/notifications.ts): answered by nothing,
      // no function runs. Without a $default route API Gateway would answer each with an error.
      defaultRouteOptions: {
        integration: new WebSocketMockIntegration('AgentKeepaliveIntegration', {
          requestTemplates: { $default: '{"statusCode": 200}' },
          templateSelectionExpression: '\\$default',
        }),
      },
    });
    for (const key of ['$disconnect', '$default']) {
      const route = api.node.tryFindChild(`${key}-Route`);
      if (!route) throw new Error(`internal: the WebSocket API has no ${key} route`);
      NagSuppressions.addResourceSuppressions(route, [
        {
          id: 'AwsSolutions-APIG4',
          reason: `API Gateway accepts an authorizer on $connect only; ${key} belongs to a connection that $connect already authorised.`,
        },
      ]);
    }
    const stage = new WebSocketStage(this, 'AgentSocketStage', {
      webSocketApi: api,
      stageName: AGENT_SOCKET_STAGE,
      autoDeploy: true,
      throttle: { rateLimit: this.config.throttle.rate, burstLimit: this.config.throttle.burst },
    });
    NagSuppressions.addResourceSuppressions(stage, [
      {
        id: 'AwsSolutions-APIG1',
        reason:
          'WebSocket access logs need the account-wide API Gateway CloudWatch role (AWS::ApiGateway::Account), an account singleton this app must not take over; every connect, disconnect and post is logged by its function with the connection id.',
      },
    ]);

    const notifier = make('notifier');
    this.applySocketPosting(notifier.fn, notifier.entry.access, api, stage);
    const streamArn = this.stateful.table.tableStreamArn;
    if (!streamArn) throw new Error('internal: the service table has no stream');
    if (notifier.entry.access.readsJobStream) {
      notifier.fn.allow({ actions: [...STREAM_ACTIONS], resources: [streamArn] });
      notifier.fn.allow({ actions: [STREAM_LIST_ACTION], resources: ['*'] });
      NagSuppressions.addResourceSuppressions(
        notifier.fn.role ?? notifier.fn,
        [
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'dynamodb:ListStreams takes no resource (Lambda lists the table streams with it); reading is limited to the service table stream.',
            appliesTo: ['Resource::*'],
          },
        ],
        true,
      );
    }
    const streamMapping = new EventSourceMapping(this, 'JobNotifierStream', {
      target: notifier.fn,
      eventSourceArn: streamArn,
      startingPosition: StartingPosition.LATEST,
      // Only job inserts invoke it (filtered by Lambda, not billed as invocations).
      filters: [FilterCriteria.filter(JOB_INSERT_FILTER)],
      batchSize: 100,
      // A notification is worth something for a minute at most: then the agent's fallback poll has come.
      maxRecordAge: Duration.seconds(60),
      retryAttempts: 2,
    });

    new CfnOutput(this, 'AgentSocketUrl', {
      value: stage.url,
      description: "The agents' notify_url (agent config): a wss:// URL apart from the HTTPS ApiUrl",
    });
    return { api, stage, connections, authorizer, streamMapping };
  }

  /** The connections table actions an agent socket function declares, on the table or its index. */
  private applyConnectionsAccess(fn: HangarFunction, access: Access, connections: Table): void {
    const modes = access.agentConnections ?? [];
    if (modes.length === 0) return;
    fn.addEnvironment('HANGAR_AGENT_CONNECTIONS_TABLE', connections.tableName);
    for (const mode of modes)
      fn.allow({
        actions: [...CONNECTIONS_ACTIONS[mode]],
        resources: [
          mode === 'query-by-connection'
            ? `${connections.tableArn}/index/${CONNECTIONS_TABLE.connectionIndex}`
            : connections.tableArn,
        ],
      });
  }

  /** PostToConnection on this API's stage only, and the endpoint to post to. */
  private applySocketPosting(
    fn: HangarFunction,
    access: Access,
    api: WebSocketApi,
    stage: WebSocketStage,
  ): void {
    if (!access.postsToAgentSockets) return;
    fn.addEnvironment('HANGAR_AGENT_SOCKET_ENDPOINT', stage.callbackUrl);
    fn.allow({
      actions: ['execute-api:ManageConnections'],
      resources: [
        this.formatArn({
          service: 'execute-api',
          resource: api.apiId,
          resourceName: `${stage.stageName}/POST/@connections/*`,
        }),
      ],
    });
    NagSuppressions.addResourceSuppressions(
      fn.role ?? fn,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'Connection ids are made by API Gateway at run time; the grant is POST @connections on this one WebSocket stage.',
          appliesTo: [
            {
              // Partition, region and account read as tokens, or as values when the CLI knows them
              // (`<AWS::AccountId>` has colons of its own).
              regex:
                '/^Resource::arn:.+:execute-api:.+:<AgentSocketApi[A-Za-z0-9]+>/agents/POST/@connections/\\*$/',
            },
          ],
        },
      ],
      true,
    );
  }

  /** The service environment every Hangar function shares on AWS. */
  private serviceEnvironment(): Record<string, string> {
    this.protections ??= this.propertyProtections();
    return {
      // Lambda cannot return image bytes (6 MB payload cap): downloads go to a presigned S3 URL.
      HANGAR_BLOB_DELIVERY: 'redirect',
      HANGAR_S3_FORCE_PATH_STYLE: 'false',
      HANGAR_LOG_LEVEL: 'info',
      ...this.protections,
      ...this.imageFormatEnvironment(),
    };
  }

  /** Glance's [image_format] settings, only when given (the service's defaults are Glance's). */
  private imageFormatEnvironment(): Record<string, string> {
    const { requireMatch, disk, container } = this.config.imageFormats;
    return {
      ...(requireMatch === undefined ? {} : { HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: String(requireMatch) }),
      ...(disk === undefined ? {} : { HANGAR_DISK_FORMATS: disk.join(',') }),
      ...(container === undefined ? {} : { HANGAR_CONTAINER_FORMATS: container.join(',') }),
    };
  }

  private protections: Record<string, string> | undefined;

  /**
   * propertyProtectionFile: there is no file on Lambda, so every function gets the rules' text
   * (images are created by the API and by imports alike). Checked here, so a bad file fails the
   * synth instead of every request.
   */
  private propertyProtections(): Record<string, string> {
    const file = this.config.propertyProtectionFile;
    if (!file) return {};
    let text: string;
    try {
      text = readFileSync(repoPath(file), 'utf8');
      loadPropertyProtections({ text });
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new ConfigError(`propertyProtectionFile ${file}: ${why}`, { cause: error });
    }
    // Lambda allows 4 KB of environment per function, shared with Hangar's other variables.
    if (Buffer.byteLength(text) > MAX_PROTECTIONS_BYTES)
      throw new ConfigError(
        `propertyProtectionFile ${file} is ${Buffer.byteLength(text)} bytes; at most ${MAX_PROTECTIONS_BYTES} ` +
          'fit in a Lambda environment next to the other settings (drop comments, merge sections).',
      );
    return { HANGAR_PROPERTY_PROTECTIONS: text };
  }

  private makeFunction(
    entry: FunctionEntry,
    environment: Readonly<Record<string, string>>,
    workflows: Readonly<Record<string, Workflow>>,
  ): HangarFunction {
    const writer = this.stateful.writerRoles[entry.id];
    // Imported (mutable): its policies are created here, so the stateful stack never refers back.
    const role = writer
      ? iam.Role.fromRoleArn(this, `${entry.id}WriterRole`, writer.roleArn, { mutable: true })
      : undefined;
    const props = {
      entry: entry.entry,
      description: `Hangar ${entry.kind} ${entry.key}`,
      logRetention: this.config.logRetention,
      ...(entry.memorySize ? { memorySize: entry.memorySize } : {}),
      ...(entry.timeoutSeconds ? { timeout: Duration.seconds(entry.timeoutSeconds) } : {}),
      ...(role ? { role } : {}),
      environment: { ...this.serviceEnvironment(), ...environment },
    };
    const fn =
      entry.packaging === 'container'
        ? new ContainerFunction(this, entry.id, {
            ...props,
            ...(entry.ephemeralStorageMb ? { ephemeralStorageMb: entry.ephemeralStorageMb } : {}),
          })
        : new NodeFunction(this, entry.id, props);
    this.applyAccess(fn, entry.access, workflows);
    return fn;
  }

  private applyAccess(
    fn: HangarFunction,
    access: Access,
    workflows: Readonly<Record<string, Workflow>>,
  ): void {
    if (access.table) fn.bindTable(this.stateful.table, access.table);
    for (const [name, modes] of Object.entries(access.buckets ?? {}) as [BucketName, BucketMode[]][]) {
      const spec = BUCKETS[name];
      fn.bindBucket(this.stateful.buckets[name], modes, spec.envVar, spec.objects);
    }
    for (const name of access.startsWorkflows ?? []) {
      const workflow = workflows[name];
      if (!workflow) throw new Error(`workflow '${name}' must be created before the functions that start it`);
      fn.addEnvironment(workflowEnvVar(name), workflow.stateMachine.stateMachineArn);
      fn.allow({ actions: ['states:StartExecution'], resources: [workflow.stateMachine.stateMachineArn] });
    }
    for (const name of access.answersWorkflows ?? []) {
      const workflow = workflows[name];
      if (!workflow)
        throw new Error(`workflow '${name}' must be created before the functions that answer it`);
      fn.allow({
        actions: ['states:SendTaskSuccess', 'states:SendTaskFailure'],
        resources: [workflow.stateMachine.stateMachineArn],
      });
    }
  }

  /** Placeholders every ASL file may use besides `${<Key>FunctionArn}`. */
  private resourceSubstitutions(): Record<string, string> {
    const out: Record<string, string> = { TableName: this.stateful.table.tableName };
    for (const name of Object.keys(BUCKETS) as BucketName[])
      out[`${pascal(name)}BucketName`] = this.stateful.buckets[name].bucketName;
    return out;
  }

  private authSetup(inventory: Inventory): AuthSetup {
    const { config } = this;
    if (config.authMode === 'jwt') {
      const issuer = config.jwt.issuer ?? this.stateful.userPool?.userPoolProviderUrl;
      const audience =
        config.jwt.issuer !== undefined
          ? [...config.jwt.audience]
          : [this.stateful.userPoolClient?.userPoolClientId ?? ''];
      if (!issuer) throw new Error('internal: no JWT issuer and no user pool');
      return {
        authorizer: new HttpJwtAuthorizer('Jwt', issuer, {
          jwtAudience: audience,
          identitySource: [`$request.header.${config.jwt.tokenHeader}`],
        }),
        environment: {
          HANGAR_AUTH_MODE: 'claims',
          HANGAR_CLAIM_PROJECT: config.jwt.projectClaim,
          HANGAR_CLAIM_ROLES: config.jwt.rolesClaim,
          HANGAR_CLAIM_USER: config.jwt.userClaim,
        },
        // The same issuer, audiences and claims, verified by the authorizer itself.
        socketEnvironment: {
          HANGAR_AUTH_MODE: 'claims',
          HANGAR_CLAIM_PROJECT: config.jwt.projectClaim,
          HANGAR_CLAIM_ROLES: config.jwt.rolesClaim,
          HANGAR_CLAIM_USER: config.jwt.userClaim,
          HANGAR_JWT_ISSUER: issuer,
          HANGAR_JWT_AUDIENCE: audience.join(','),
          HANGAR_JWT_TOKEN_HEADER: config.jwt.tokenHeader,
        },
        tokenHeader: config.jwt.tokenHeader,
      };
    }
    if (config.authMode === 'keystone') {
      const entry = inventory.functions.find((f) => f.kind === 'authorizer');
      if (!entry) throw new Error('internal: keystone mode without an authorizer in the inventory');
      const { keystone } = config;
      const missing = (['url', 'user', 'project', 'passwordSecret'] as const).filter((k) => !keystone[k]);
      if (missing.length > 0)
        throw new ConfigError(
          `authMode=keystone needs ${missing.map((k) => `keystone${k[0]?.toUpperCase()}${k.slice(1)}`).join(', ')}`,
        );
      // The Lambda authorizer's context carries the principal under these keys; both sides read them.
      const claims = {
        HANGAR_CLAIM_PROJECT: 'project',
        HANGAR_CLAIM_ROLES: 'roles',
        HANGAR_CLAIM_USER: 'user',
      };
      const keystoneEnvironment = {
        HANGAR_KEYSTONE_URL: keystone.url ?? '',
        HANGAR_KEYSTONE_USER: keystone.user ?? '',
        HANGAR_KEYSTONE_PROJECT: keystone.project ?? '',
        HANGAR_KEYSTONE_USER_DOMAIN: keystone.userDomain,
        HANGAR_KEYSTONE_PROJECT_DOMAIN: keystone.projectDomain,
        // A dynamic reference: CloudFormation resolves it at deploy time, the template never holds it.
        HANGAR_KEYSTONE_PASSWORD: SecretValue.secretsManager(keystone.passwordSecret ?? '').unsafeUnwrap(),
      };
      const fn: HangarFunction = new NodeFunction(this, entry.id, {
        entry: entry.entry,
        description: 'Hangar Keystone token authorizer',
        logRetention: config.logRetention,
        timeout: Duration.seconds(entry.timeoutSeconds ?? 10),
        environment: { ...keystoneEnvironment, HANGAR_LOG_LEVEL: 'info', ...claims },
      });
      this.authorizerFunctions[entry.key] = fn;
      return {
        authorizer: new HttpLambdaAuthorizer('Keystone', fn, {
          responseTypes: [HttpLambdaResponseType.SIMPLE],
          identitySource: ['$request.header.X-Auth-Token'],
          // Revoked Keystone tokens keep working for at most this long.
          resultsCacheTtl: Duration.seconds(keystone.cacheSeconds),
        }),
        environment: { HANGAR_AUTH_MODE: 'claims', ...claims },
        // The socket's authorizer validates with Keystone itself, as the `keystone` mode does.
        socketEnvironment: { HANGAR_AUTH_MODE: 'keystone', ...keystoneEnvironment },
        tokenHeader: 'X-Auth-Token',
      };
    }
    const environment = { HANGAR_AUTH_MODE: 'tokens', HANGAR_TOKENS: TOKENS_PATH };
    return {
      environment,
      layer: this.tokensLayer(),
      socketEnvironment: environment,
      tokenHeader: 'X-Auth-Token',
    };
  }

  /**
   * authMode=tokens: the token file ships as a layer. Only `sha256:` keys are accepted, so what
   * lands in the asset bucket and the layer is digests, never usable tokens.
   */
  private tokensLayer(): LayerVersion {
    const file = this.config.tokensFile;
    if (!file)
      throw new ConfigError('authMode=tokens needs tokensFile (a token file with sha256: keys only)');
    let parsed: ReturnType<typeof TokenFileSchema.parse>;
    try {
      parsed = TokenFileSchema.parse(JSON.parse(readFileSync(repoPath(file), 'utf8')));
    } catch (error) {
      throw new ConfigError(`tokensFile ${file} is not a valid token file`, { cause: error });
    }
    const plain = Object.keys(parsed.tokens).filter((k) => !SHA256_KEY.test(k));
    if (plain.length > 0)
      throw new ConfigError(
        `tokensFile ${file} has ${plain.length} plaintext token(s); deployed token files must hold only ` +
          '`sha256:<hex of the token>` keys (they end up in the CDK asset bucket).',
      );
    const dir = stagingDir(this, 'tokens-layer');
    mkdirSync(join(dir, 'hangar'));
    writeFileSync(join(dir, 'hangar', 'tokens.json'), `${JSON.stringify(parsed, null, 2)}\n`);
    return new LayerVersion(this, 'TokensLayer', {
      code: Code.fromAsset(dir),
      compatibleRuntimes: [Runtime.NODEJS_22_X],
      compatibleArchitectures: [Architecture.ARM_64],
      description: 'Hangar token digests (authMode=tokens)',
      removalPolicy: RemovalPolicy.DESTROY,
    });
  }

  /** S3 ObjectCreated -> the trigger, asynchronously: two retries, then the failure queue. */
  private wireTrigger(entry: FunctionEntry, fn: HangarFunction): Queue {
    const trigger = entry.trigger;
    if (!trigger) throw new Error(`internal: ${entry.key} is not a trigger`);
    const owned = this.stateful.buckets[trigger.bucket];
    const queue = new Queue(this, `${entry.id}FailureQueue`, {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    NagSuppressions.addResourceSuppressions(queue, [
      {
        id: 'AwsSolutions-SQS3',
        reason: `This queue is itself the on-failure destination (dead letters) of ${entry.key}.`,
      },
    ]);
    fn.configureAsyncInvoke({
      onFailure: new SqsDestination(queue),
      retryAttempts: 2,
      maxEventAge: Duration.hours(6),
    });
    // Imported by reference so the notification lives here: in the stateful stack it would
    // point back at this stack's function and make the two stacks depend on each other.
    const bucket = Bucket.fromBucketAttributes(this, `${entry.id}${pascal(trigger.bucket)}BucketRef`, {
      bucketArn: owned.bucketArn,
      bucketName: owned.bucketName,
    });
    const destination = new LambdaDestination(fn);
    for (const event of trigger.events)
      for (const prefix of trigger.prefixes)
        bucket.addEventNotification(eventType(event), destination, { prefix });
    this.alarms.forQueue(`${entry.id}FailureQueue`, queue);
    this.suppressNotificationHandler();
    return queue;
  }

  /**
   * An EventBridge rate rule invoking the function asynchronously (Lambda's own two retries).
   * A missed or failed run is caught up by the next one: each run does all the work due.
   */
  private wireSchedule(entry: FunctionEntry, fn: HangarFunction): Rule {
    const schedule = entry.schedule;
    if (!schedule) throw new Error(`internal: ${entry.key} is not a scheduled function`);
    const minutes = this.config.schedules[schedule.rate];
    return new Rule(this, `${entry.id}Rule`, {
      description: `Hangar: runs ${entry.key} every ${minutes} minute(s) (${schedule.rate})`,
      schedule: Schedule.rate(Duration.minutes(minutes)),
      targets: [new LambdaFunction(fn)],
    });
  }

  private suppressNotificationHandler(): void {
    const handler = this.node.tryFindChild('BucketNotificationsHandler050a0587b7544547bf325f094a3db834');
    if (!handler) return;
    NagSuppressions.addResourceSuppressions(
      handler,
      [
        {
          id: 'AwsSolutions-IAM4',
          reason:
            "CDK's own S3 notification custom resource uses AWSLambdaBasicExecutionRole; it only writes its logs.",
          appliesTo: [
            'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
          ],
        },
      ],
      true,
    );
  }

  private httpApi(auth: AuthSetup): { api: HttpApi; stage: HttpStage } {
    const api = new HttpApi(this, 'Api', {
      description: 'Hangar: OpenStack Glance v2 image API',
      // Our own $default stage below, for access logs and throttling.
      createDefaultStage: false,
    });
    const accessLogs = new LogGroup(this, 'ApiAccessLogs', {
      retention: this.config.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const stage = new HttpStage(this, 'DefaultStage', {
      httpApi: api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: this.config.throttle.rate, burstLimit: this.config.throttle.burst },
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            ip: '$context.identity.sourceIp',
            time: '$context.requestTime',
            method: '$context.httpMethod',
            routeKey: '$context.routeKey',
            status: '$context.status',
            responseLength: '$context.responseLength',
            latency: '$context.responseLatency',
            integrationLatency: '$context.integrationLatency',
            integrationError: '$context.integrationErrorMessage',
            authorizerError: '$context.authorizer.error',
          }),
        ),
      },
    });

    const integrations = new Map<string, HttpLambdaIntegration>();
    for (const route of ROUTES) {
      const fn = this.functions[route.fn];
      if (!fn) throw new Error(`internal: no function for module ${route.fn}`);
      let integration = integrations.get(route.fn);
      if (!integration) {
        integration = new HttpLambdaIntegration(`${pascal(route.fn)}Integration`, fn);
        integrations.set(route.fn, integration);
      }
      const authorizer = route.auth === false ? undefined : auth.authorizer;
      const [created] = api.addRoutes({
        path: route.path,
        methods: [HttpMethod[route.method]],
        integration,
        ...(authorizer ? { authorizer } : {}),
      });
      if (created && !authorizer)
        NagSuppressions.addResourceSuppressions(created, [
          {
            id: 'AwsSolutions-APIG4',
            reason:
              route.auth === false
                ? 'Glance serves its version documents and /healthcheck without authentication; clients read them before they have a token, load balancers probe without one.'
                : 'authMode=tokens: the function itself checks X-Auth-Token against the deployed token digests.',
          },
        ]);
    }
    new CfnOutput(this, 'ApiUrl', { value: stage.url });
    return { api, stage };
  }
}
