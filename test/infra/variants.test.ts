/**
 * The other deployments (wiring only: esbuild is skipped here, app.test.ts bundles for real): a Keystone Lambda authorizer (fixture module) with a fixture state
 * machine, token digests in a layer, an external OIDC issuer; and the settings that must fail
 * the synth with a clear message.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTES, routeKey } from '#api/routes';
import { STATE_MACHINES, TASK_FUNCTIONS } from '../../functions/tasks/registry.ts';
import { TOKENS_PATH } from '../../infra/app-stack.ts';
import { readConfig } from '../../infra/config.ts';
import { AGENT_SOCKET_FUNCTIONS, SCHEDULE_ACCESS, TASK_ACCESS } from '../../infra/declarations.ts';
import { buildHangar } from '../../infra/hangar.ts';
import { buildInventory } from '../../infra/inventory.ts';
import { repoPath, STATE_MACHINES_DIR } from '../../infra/paths.ts';
import { assertFunctionGrants, assertNagClean, assertWorkflowsWired } from './expectations.ts';
import { cdkJsonContext, logicalId, resources, type Synthesized, synthHangar } from './synth.ts';

const FIXTURES = 'test/fixtures/infra';
const ECHO_TASK = `${FIXTURES}/functions/echo-task.ts`;
// The real state machines plus the fixture one.
const FIXTURE_INVENTORY = {
  stateMachinesDirs: [STATE_MACHINES_DIR, repoPath(`${FIXTURES}/state-machines`)],
  stateMachines: {
    ...STATE_MACHINES,
    echo: { file: `${FIXTURES}/state-machines/echo.asl.json`, substitutions: { EchoFunctionArn: ECHO_TASK } },
  },
  taskFunctions: {
    ...TASK_FUNCTIONS,
    [ECHO_TASK]: { memoryMb: 256, timeoutSeconds: 30, packaging: 'zip' as const },
  },
  taskAccess: { ...TASK_ACCESS, [ECHO_TASK]: { table: 'R' as const } },
};

const KEYSTONE = {
  keystoneUrl: 'https://keystone.example.test/v3',
  keystoneUser: 'hangar',
  keystoneProject: 'service',
  keystonePasswordSecret: 'hangar/keystone-password',
};

const SOCKET_AUTHORIZER = AGENT_SOCKET_FUNCTIONS.authorizer.entry;

/** The resources of `type` on the HTTP API (the agents' WebSocket API has its own). */
function onHttpApi(synth: Synthesized, type: string) {
  const api = JSON.stringify({ Ref: logicalId(synth.hangar.application.api) });
  return Object.entries(resources(synth.application)).filter(
    ([, r]) => r.Type === type && JSON.stringify(r.Properties?.ApiId) === api,
  );
}

function environmentOf(synth: Synthesized, key: string): Record<string, unknown> {
  const fn = synth.hangar.application.functions[key];
  const props = resources(synth.application)[logicalId(fn ?? synth.hangar.application)]?.Properties;
  return (props?.Environment as { Variables: Record<string, unknown> } | undefined)?.Variables ?? {};
}

describe('authMode=keystone, with a fixture state machine', () => {
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthHangar(
      { authMode: 'keystone', ...KEYSTONE, keystoneCacheSeconds: 30 },
      { inventory: FIXTURE_INVENTORY, bundle: false },
    );
  });
  afterAll(() => synth?.cleanup());

  it('puts a Lambda authorizer reading X-Auth-Token before every authenticated route', () => {
    const app = resources(synth.application);
    const authorizers = onHttpApi(synth, 'AWS::ApiGatewayV2::Authorizer');
    expect(authorizers).toHaveLength(1);
    const [authorizerId, authorizer] = authorizers[0] ?? [];
    expect(authorizer?.Properties).toMatchObject({
      AuthorizerType: 'REQUEST',
      AuthorizerPayloadFormatVersion: '2.0',
      EnableSimpleResponses: true,
      IdentitySource: ['$request.header.X-Auth-Token'],
      AuthorizerResultTtlInSeconds: 30,
    });
    const authorizerFn = logicalId(
      synth.hangar.application.functions['keystone-authorizer'] ?? synth.hangar.application,
    );
    expect(JSON.stringify(authorizer?.Properties?.AuthorizerUri)).toContain(authorizerFn);
    for (const spec of ROUTES) {
      const route = Object.values(app).find(
        (r) => r.Type === 'AWS::ApiGatewayV2::Route' && r.Properties?.RouteKey === routeKey(spec),
      );
      if (spec.auth === false) expect(route?.Properties?.AuthorizationType, routeKey(spec)).toBe('NONE');
      else {
        expect(route?.Properties?.AuthorizationType, routeKey(spec)).toBe('CUSTOM');
        expect(JSON.stringify(route?.Properties?.AuthorizerId)).toContain(authorizerId);
      }
    }
  });

  it('tells the authorizer where Keystone is and the API functions to read its context', () => {
    expect(environmentOf(synth, 'keystone-authorizer')).toMatchObject({
      HANGAR_KEYSTONE_URL: 'https://keystone.example.test/v3',
      HANGAR_KEYSTONE_USER: 'hangar',
      HANGAR_KEYSTONE_PROJECT: 'service',
      // Resolved by CloudFormation at deploy time: the template holds only the reference.
      HANGAR_KEYSTONE_PASSWORD: '{{resolve:secretsmanager:hangar/keystone-password:SecretString:::}}',
      HANGAR_CLAIM_PROJECT: 'project',
      HANGAR_CLAIM_ROLES: 'roles',
      HANGAR_CLAIM_USER: 'user',
    });
    expect(environmentOf(synth, 'images')).toMatchObject({
      HANGAR_AUTH_MODE: 'claims',
      HANGAR_CLAIM_PROJECT: 'project',
      HANGAR_CLAIM_ROLES: 'roles',
    });
  });

  it("validates agents' socket tokens with Keystone too, as the keystone mode does", () => {
    expect(environmentOf(synth, SOCKET_AUTHORIZER)).toMatchObject({
      HANGAR_AUTH_MODE: 'keystone',
      HANGAR_KEYSTONE_URL: 'https://keystone.example.test/v3',
      HANGAR_KEYSTONE_USER: 'hangar',
      HANGAR_KEYSTONE_PROJECT: 'service',
      HANGAR_KEYSTONE_PASSWORD: '{{resolve:secretsmanager:hangar/keystone-password:SecretString:::}}',
    });
  });

  it('wires the fixture ASL: placeholders substituted, staged as is, exact invoke grants', () => {
    expect(assertWorkflowsWired(synth, repoPath(`${FIXTURES}/state-machines`))).toBe(1);
  });

  it('grants every function, the authorizer and the task included, only what is declared', () => {
    assertFunctionGrants(synth);
  });

  it('passes cdk-nag', () => {
    assertNagClean(synth);
  });

  it('creates no user pool', () => {
    synth.stateful.resourceCountIs('AWS::Cognito::UserPool', 0);
  });
});

describe('authMode=tokens', () => {
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthHangar(
      { authMode: 'tokens', tokensFile: `${FIXTURES}/tokens/digests.json` },
      { bundle: false },
    );
  });
  afterAll(() => synth?.cleanup());

  it('ships the token digests as a layer of every authenticated function, and no authorizer', () => {
    const app = resources(synth.application);
    // The token layer (the console's upload brings CDK's own AWS CLI layers too).
    const layers = Object.entries(app).filter(
      ([, r]) =>
        r.Type === 'AWS::Lambda::LayerVersion' && String(r.Properties?.Description).includes('token digests'),
    );
    expect(layers).toHaveLength(1);
    expect(onHttpApi(synth, 'AWS::ApiGatewayV2::Authorizer')).toHaveLength(0);
    // The agents' socket has no function behind its $connect to check tokens but its authorizer.
    const socketAuthorizer =
      app[logicalId(synth.hangar.application.functions[SOCKET_AUTHORIZER] ?? synth.hangar.application)];
    expect(JSON.stringify(socketAuthorizer?.Properties?.Layers)).toContain(layers[0]?.[0]);
    expect(environmentOf(synth, SOCKET_AUTHORIZER)).toMatchObject({
      HANGAR_AUTH_MODE: 'tokens',
      HANGAR_TOKENS: TOKENS_PATH,
    });
    for (const entry of synth.hangar.inventory.functions.filter((f) => f.kind === 'api')) {
      const props =
        app[logicalId(synth.hangar.application.functions[entry.key] ?? synth.hangar.application)]?.Properties;
      if (entry.authenticated) {
        expect(JSON.stringify(props?.Layers), entry.key).toContain(layers[0]?.[0]);
        expect(environmentOf(synth, entry.key)).toMatchObject({
          HANGAR_AUTH_MODE: 'tokens',
          HANGAR_TOKENS: TOKENS_PATH,
        });
      } else expect(props?.Layers, entry.key).toBeUndefined();
    }
    for (const [, route] of onHttpApi(synth, 'AWS::ApiGatewayV2::Route'))
      expect(route.Properties?.AuthorizationType).toBe('NONE');
  });

  it('passes cdk-nag, each unauthenticated route justified', () => {
    const suppressions = assertNagClean(synth);
    // Every HTTP route, and the agents' $disconnect and $default (API Gateway authorises on $connect only).
    expect(suppressions.filter((s) => s.id === 'AwsSolutions-APIG4')).toHaveLength(ROUTES.length + 2);
  });
});

describe('authMode=jwt with an external issuer, and a 15-minute retention sweep', () => {
  let synth: Synthesized;
  beforeAll(() => {
    synth = synthHangar(
      {
        jwtIssuer: 'https://idp.example.test/realms/hangar',
        jwtAudience: 'hangar-api, glance',
        jwtProjectClaim: 'project',
        jwtRolesClaim: 'roles',
        jwtTokenHeader: 'Authorization',
        retentionSweepMinutes: 15,
        propertyProtectionFile: `${FIXTURES}/property-protections.conf`,
        requireImageFormatMatch: false,
        diskFormats: 'raw, qcow2,iso',
      },
      { bundle: false },
    );
  });
  afterAll(() => synth?.cleanup());

  it('uses that issuer and audience, and the claim names given', () => {
    synth.application.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'JWT',
      IdentitySource: ['$request.header.Authorization'],
      JwtConfiguration: {
        Issuer: 'https://idp.example.test/realms/hangar',
        Audience: ['hangar-api', 'glance'],
      },
    });
    synth.stateful.resourceCountIs('AWS::Cognito::UserPool', 0);
    expect(environmentOf(synth, 'images')).toMatchObject({
      HANGAR_AUTH_MODE: 'claims',
      HANGAR_CLAIM_PROJECT: 'project',
      HANGAR_CLAIM_ROLES: 'roles',
    });
    // The agents' socket checks the same issuer, audiences, header and claims itself.
    expect(environmentOf(synth, SOCKET_AUTHORIZER)).toMatchObject({
      HANGAR_AUTH_MODE: 'claims',
      HANGAR_JWT_ISSUER: 'https://idp.example.test/realms/hangar',
      HANGAR_JWT_AUDIENCE: 'hangar-api,glance',
      HANGAR_JWT_TOKEN_HEADER: 'Authorization',
      HANGAR_CLAIM_PROJECT: 'project',
      HANGAR_CLAIM_ROLES: 'roles',
    });
    synth.application.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
      AuthorizerType: 'REQUEST',
      IdentitySource: ['route.request.header.Authorization', 'route.request.querystring.host_id'],
    });
  });

  it('hands the property-protection rules to every function that creates, shows or changes images', () => {
    const rules = readFileSync(repoPath(`${FIXTURES}/property-protections.conf`), 'utf8');
    for (const key of ['images', 'references', 'tasks', 'functions/tasks/import-activate.ts'])
      expect(environmentOf(synth, key).HANGAR_PROPERTY_PROTECTIONS, key).toBe(rules);
  });

  it('hands the image format settings given (and only those) to the functions that check formats', () => {
    for (const key of [
      'images',
      'image-data',
      'schemas',
      'functions/tasks/import-copy.ts',
      'functions/tasks/publish-verify.ts',
    ]) {
      const environment = environmentOf(synth, key);
      expect(environment, key).toMatchObject({
        HANGAR_REQUIRE_IMAGE_FORMAT_MATCH: 'false',
        HANGAR_DISK_FORMATS: 'raw,qcow2,iso',
      });
      expect(environment, key).not.toHaveProperty('HANGAR_CONTAINER_FORMATS');
    }
  });

  it('runs the retention sweep at the period given', () => {
    const rule = synth.hangar.application.scheduleRules['functions/triggers/retention-sweep.ts'];
    expect(
      resources(synth.application)[logicalId(rule ?? synth.hangar.application)]?.Properties,
    ).toMatchObject({
      ScheduleExpression: 'rate(15 minutes)',
    });
  });
});

describe('settings that cannot work', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'hangar-variants-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  const build = (context: Record<string, unknown>, inventory = {}) =>
    buildHangar(
      new App({ outdir: mkdtempSync(join(scratch, 'out-')), context: { ...cdkJsonContext(), ...context } }),
      {
        env: {},
        inventory,
      },
    );

  it('refuses authMode=keystone while the authorizer module does not exist', () => {
    expect(() =>
      build(
        { authMode: 'keystone', keystoneUrl: 'https://k.example.test/v3' },
        { keystoneAuthorizerEntry: 'functions/auth/not-written-yet.ts' },
      ),
    ).toThrow(/needs the Lambda authorizer functions\/auth\/not-written-yet\.ts, which is not available yet/);
  });

  it('refuses authMode=keystone without its Keystone settings', () => {
    expect(() => build({ authMode: 'keystone', keystoneUser: 'hangar' })).toThrow(
      /needs keystoneUrl, keystoneProject, keystonePasswordSecret/,
    );
  });

  it('refuses a token file with plaintext tokens, and tokens mode without one', () => {
    expect(() => build({ authMode: 'tokens', tokensFile: `${FIXTURES}/tokens/plaintext.json` })).toThrow(
      /1 plaintext token/,
    );
    expect(() => build({ authMode: 'tokens' })).toThrow(/needs tokensFile/);
  });

  it('refuses a property-protection file that Glance would refuse, or one too large for Lambda', () => {
    const bad = join(scratch, 'bad-protections.conf');
    writeFileSync(bad, '[^x_(]\ncreate = admin\nread = @\nupdate = admin\ndelete = admin\n');
    expect(() => build({ propertyProtectionFile: bad })).toThrow(
      /propertyProtectionFile .*bad-protections\.conf/,
    );
    const large = join(scratch, 'large-protections.conf');
    const section = (i: number) => `[^x_${i}_]\ncreate = admin\nread = @\nupdate = admin\ndelete = admin\n`;
    writeFileSync(large, Array.from({ length: 60 }, (_, i) => section(i)).join(''));
    expect(() => build({ propertyProtectionFile: large })).toThrow(/at most 2048/);
  });

  it('refuses image format settings the service could not read', () => {
    const node = (context: Record<string, unknown>) => new App({ context }).node;
    expect(() => readConfig(node({ requireImageFormatMatch: 'sometimes' }), {})).toThrow(
      /requireImageFormatMatch .*must be true or false/,
    );
    expect(() => readConfig(node({}), { HANGAR_DEPLOY_DISK_FORMATS: ' , ' })).toThrow(/diskFormats/);
    expect(() => readConfig(node({ containerFormats: 'bare,o v f' }), {})).toThrow(/containerFormats/);
    expect(readConfig(node({}), {}).imageFormats).toEqual({
      requireMatch: undefined,
      disk: undefined,
      container: undefined,
    });
  });

  it('refuses a console directory without index.html, and deploys none with consoleDir=none', () => {
    const empty = mkdtempSync(join(tmpdir(), 'hangar-console-'));
    try {
      expect(() => synthHangar({ consoleDir: empty }, { bundle: false })).toThrow(
        /consoleDir .* has no index\.html: build the console first/,
      );
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    const none = synthHangar({ consoleDir: 'none' }, { bundle: false });
    try {
      expect(none.hangar.application.console).toBeUndefined();
      none.application.resourceCountIs('AWS::CloudFront::Distribution', 0);
    } finally {
      none.cleanup();
    }
  });

  it('refuses unknown or incomplete settings', () => {
    const node = (context: Record<string, unknown>) => new App({ context }).node;
    expect(() => readConfig(node({ authMode: 'basic' }), {})).toThrow(/authMode must be/);
    expect(() => readConfig(node({ jwtIssuer: 'https://idp.example.test' }), {})).toThrow(
      /needs jwtAudience/,
    );
    expect(() => readConfig(node({ jwtIssuer: 'http://idp.example.test', jwtAudience: 'a' }), {})).toThrow(
      /https/,
    );
    expect(() => readConfig(node({ logRetentionDays: 10 }), {})).toThrow(/retention periods/);
    expect(() => readConfig(node({ retentionSweepMinutes: 0 }), {})).toThrow(
      /retentionSweepMinutes \(or HANGAR_RETENTION_SWEEP_MINUTES\) must be an integer >= 1/,
    );
    expect(readConfig(node({}), { HANGAR_RETENTION_SWEEP_MINUTES: '5' }).schedules).toEqual({
      retentionSweepMinutes: 5,
      leaseSweepMinutes: 5,
    });
    expect(() => readConfig(node({ leaseSweepMinutes: 0 }), {})).toThrow(
      /leaseSweepMinutes \(or HANGAR_LEASE_SWEEP_MINUTES\) must be an integer >= 1/,
    );
    expect(readConfig(node({ leaseSweepMinutes: 2 }), {}).schedules.leaseSweepMinutes).toBe(2);
    // The environment is the fallback for every setting.
    expect(
      readConfig(node({}), { HANGAR_DEPLOY_AUTH_MODE: 'tokens', HANGAR_STACK_PREFIX: 'Dev' }),
    ).toMatchObject({
      authMode: 'tokens',
      stackPrefix: 'Dev',
    });
  });

  it('refuses an ASL file the registry does not know, or a task module without declared access', () => {
    const dir = mkdtempSync(join(scratch, 'sm-'));
    writeFileSync(join(dir, 'surprise.asl.json'), '{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}');
    expect(() => buildInventory({ authMode: 'jwt', stateMachinesDirs: [dir], stateMachines: {} })).toThrow(
      /surprise\.asl\.json is not registered/,
    );
    expect(() => buildInventory({ authMode: 'jwt', ...FIXTURE_INVENTORY, taskAccess: TASK_ACCESS })).toThrow(
      /echo-task\.ts is a state-machine task .* declares no access: add it to TASK_ACCESS/,
    );
  });

  it('refuses a scheduled function without declared access, or one whose module does not exist', () => {
    expect(() => buildInventory({ authMode: 'jwt', scheduleAccess: {} })).toThrow(
      /retention-sweep\.ts declares no access: add it to SCHEDULE_ACCESS/,
    );
    const missing = 'functions/triggers/no-such-schedule.ts';
    expect(() =>
      buildInventory({
        authMode: 'jwt',
        schedules: [{ module: missing, rate: 'retentionSweepMinutes' }],
        scheduleAccess: { ...SCHEDULE_ACCESS, [missing]: { table: 'R' } },
      }),
    ).toThrow(/SCHEDULES names functions\/triggers\/no-such-schedule\.ts, which does not exist/);
  });
});
