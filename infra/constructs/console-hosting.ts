/**
 * The web console on AWS (issue 16): the built app (console/dist by default) in a private S3
 * bucket that only CloudFront reads (origin access control), served at /console/, with /v1/* and
 * /v2/* sent to the HTTP API on the same origin so the console calls the API without CORS.
 * - API paths: never cached, every viewer header but Host (so Authorization and X-Auth-Token)
 *   and every query string forwarded, all methods.
 * - Hashed assets are uploaded with `immutable` and a year's max-age; index.html with `no-cache`,
 *   so a deploy is seen at once while the assets it names stay cached.
 * - Deep links (/console/images/<id>) reach index.html: a CloudFront Function rewrites any
 *   /console/ path without a file extension. `/` and `/console` redirect to `/console/`.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CfnOutput, Duration, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  AllowedMethods,
  CachePolicy,
  Function as CloudFrontFunction,
  Distribution,
  FunctionCode,
  FunctionEventType,
  FunctionRuntime,
  OriginProtocolPolicy,
  OriginRequestPolicy,
  ViewerProtocolPolicy,
} from 'aws-cdk-lib/aws-cloudfront';
import { HttpOrigin, S3BucketOrigin } from 'aws-cdk-lib/aws-cloudfront-origins';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { BucketDeployment, CacheControl, Source } from 'aws-cdk-lib/aws-s3-deployment';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { ConfigError } from '../config.ts';

/** The path the console is served under, on CloudFront as in the embedded gateway. */
export const CONSOLE_PATH = '/console/';
/** The API paths CloudFront forwards to the HTTP API. */
export const API_PATH_PATTERNS = ['/v1/*', '/v2/*'] as const;

/** The viewer-request function: deep links to index.html, the bare roots to /console/. */
export const CONSOLE_ROUTER_SOURCE = `function handler(event) {
  var request = event.request;
  var uri = request.uri;
  if (uri === '/' || uri === '/console') {
    return { statusCode: 302, statusDescription: 'Found', headers: { location: { value: '/console/' } } };
  }
  if (uri.indexOf('/console/') === 0) {
    var last = uri.substring(uri.lastIndexOf('/') + 1);
    if (last.indexOf('.') === -1) request.uri = '/console/index.html';
  }
  return request;
}`;

export interface ConsoleHostingProps {
  /** The built console (absolute path): index.html and its assets. */
  readonly assetDir: string;
  /** The setting it came from, for the error message. */
  readonly setting: string;
  readonly api: HttpApi;
  readonly logRetention: RetentionDays;
}

export class ConsoleHosting extends Construct {
  readonly bucket: Bucket;
  readonly distribution: Distribution;
  readonly router: CloudFrontFunction;

  constructor(scope: Construct, id: string, props: ConsoleHostingProps) {
    super(scope, id);
    const index = join(props.assetDir, 'index.html');
    if (!existsSync(index) || !statSync(index).isFile())
      throw new ConfigError(
        `${props.setting} is ${props.assetDir}, which has no index.html: build the console first ` +
          '(its Vite build writes console/dist), point consoleDir at a built console, or set consoleDir=none ' +
          'to deploy without it.',
      );

    this.bucket = new Bucket(this, 'Bucket', {
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      // A build artefact, redeployed with the app; kept (not emptied) if the stack is deleted.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    NagSuppressions.addResourceSuppressions(this.bucket, [
      {
        id: 'AwsSolutions-S1',
        reason:
          'Only CloudFront reads this bucket (origin access control) and only deployments write it; server access logs would record nothing a viewer did.',
      },
    ]);

    this.router = new CloudFrontFunction(this, 'Router', {
      code: FunctionCode.fromInline(CONSOLE_ROUTER_SOURCE),
      runtime: FunctionRuntime.JS_2_0,
      comment: 'Hangar console: deep links to index.html, / to /console/',
    });

    // The HTTP API's host: its endpoint is https://<id>.execute-api.<region>.amazonaws.com.
    const apiHost = Fn.select(2, Fn.split('/', props.api.apiEndpoint));
    const apiOrigin = new HttpOrigin(apiHost, { protocolPolicy: OriginProtocolPolicy.HTTPS_ONLY });
    const apiBehavior = {
      origin: apiOrigin,
      allowedMethods: AllowedMethods.ALLOW_ALL,
      // A redirect would turn a POST into a GET: the API answers HTTPS only.
      viewerProtocolPolicy: ViewerProtocolPolicy.HTTPS_ONLY,
      cachePolicy: CachePolicy.CACHING_DISABLED,
      // Every viewer header but Host (API Gateway routes on its own), so Authorization and
      // X-Auth-Token, and every query string.
      originRequestPolicy: OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
    };
    this.distribution = new Distribution(this, 'Distribution', {
      comment: 'Hangar console and API',
      defaultBehavior: {
        origin: S3BucketOrigin.withOriginAccessControl(this.bucket),
        viewerProtocolPolicy: ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        cachePolicy: CachePolicy.CACHING_OPTIMIZED,
        functionAssociations: [{ function: this.router, eventType: FunctionEventType.VIEWER_REQUEST }],
      },
      additionalBehaviors: Object.fromEntries(API_PATH_PATTERNS.map((pattern) => [pattern, apiBehavior])),
    });
    NagSuppressions.addResourceSuppressions(this.distribution, [
      {
        id: 'AwsSolutions-CFR1',
        reason:
          'The console and the Glance API serve every country their users are in; no geo restriction applies.',
      },
      {
        id: 'AwsSolutions-CFR2',
        reason:
          'No WAF web ACL by default (it costs per month and per rule); the API behind it has stage throttling and authorizers.',
      },
      {
        id: 'AwsSolutions-CFR3',
        reason:
          'Standard logs need a bucket with ACLs enabled; API requests are logged by the HTTP API stage, console requests are static files.',
      },
      {
        id: 'AwsSolutions-CFR4',
        reason:
          'The default *.cloudfront.net certificate allows no minimum protocol setting; a custom domain with its own certificate sets TLSv1.2_2021.',
      },
    ]);

    // Two passes: the hashed assets first (immutable), then index.html (no-cache), which names
    // them; the second does not prune, or it would delete what the first uploaded.
    const source = Source.asset(props.assetDir);
    // CDK's deployment handler logs here, with the app's retention like every other log group.
    const logGroup = new LogGroup(this, 'DeploymentLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const assets = new BucketDeployment(this, 'Assets', {
      sources: [source],
      destinationBucket: this.bucket,
      destinationKeyPrefix: CONSOLE_PATH.slice(1),
      logGroup,
      exclude: ['index.html'],
      cacheControl: [
        CacheControl.setPublic(),
        CacheControl.maxAge(Duration.days(365)),
        CacheControl.immutable(),
      ],
      distribution: this.distribution,
      distributionPaths: [`${CONSOLE_PATH}*`],
    });
    const page = new BucketDeployment(this, 'IndexPage', {
      sources: [source],
      destinationBucket: this.bucket,
      destinationKeyPrefix: CONSOLE_PATH.slice(1),
      logGroup,
      exclude: ['*'],
      include: ['index.html'],
      prune: false,
      cacheControl: [CacheControl.noCache()],
    });
    page.node.addDependency(assets);
    this.suppressDeploymentHandler();

    new CfnOutput(Stack.of(this), 'ConsoleUrl', {
      value: `https://${this.distribution.distributionDomainName}${CONSOLE_PATH}`,
      description: 'The web console; the same origin serves the API under /v1 and /v2',
    });
  }

  /** CDK's own BucketDeployment handler (a singleton in the stack), which copies the build at deploy time. */
  private suppressDeploymentHandler(): void {
    const stack = Stack.of(this);
    for (const child of stack.node.children)
      if (child.node.id.startsWith('Custom::CDKBucketDeployment'))
        NagSuppressions.addResourceSuppressions(
          child,
          [
            {
              id: 'AwsSolutions-IAM4',
              reason:
                "CDK's BucketDeployment handler (deploy time only) uses the basic execution role for its own logs.",
              appliesTo: [
                'Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole',
              ],
            },
            {
              id: 'AwsSolutions-IAM5',
              reason:
                "CDK's BucketDeployment handler reads the staged asset and writes the console bucket's keys, which are the build's file names.",
            },
            {
              id: 'AwsSolutions-L1',
              reason: "CDK's BucketDeployment handler runtime is chosen by aws-cdk-lib, not by this app.",
            },
          ],
          true,
        );
  }
}
