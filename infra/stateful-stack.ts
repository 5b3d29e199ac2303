/**
 * Everything that holds data: the table, the four buckets (plus their access-log bucket), the
 * Cognito user pool when it is the JWT issuer, and the roles of the functions allowed to write
 * image objects (the images bucket policy names them, so they must exist before the functions).
 * Nothing here is destroyed with the stack.
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import { AttributeType, BillingMode, ProjectionType, StreamViewType, Table } from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  HttpMethods,
  type LifecycleRule,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { NagSuppressions } from 'cdk-nag';
import type { Construct } from 'constructs';
import { type KeyAttribute, TABLE_DEFINITION } from '#adapters/dynamo/table-definition';
import { UPLOAD_CORS_RULE } from '#adapters/s3/upload-cors';
import type { DeployConfig } from './config.ts';
import { BUCKETS, type BucketName } from './declarations.ts';

export interface StatefulStackProps extends StackProps {
  readonly config: DeployConfig;
  /** Construct ids of the functions that write or delete image objects. */
  readonly imageWriters: readonly string[];
}

/** Glance roles a Cognito group maps to (cognito:groups -> roles). */
export const COGNITO_GROUPS = ['admin', 'member', 'reader'] as const;

function key(attribute: KeyAttribute) {
  return { name: attribute.name, type: AttributeType.STRING };
}

function pascal(name: string): string {
  return name[0]?.toUpperCase() + name.slice(1);
}

export class StatefulStack extends Stack {
  readonly table: Table;
  readonly buckets: Readonly<Record<BucketName, Bucket>>;
  readonly accessLogs: Bucket;
  /** By function construct id. */
  readonly writerRoles: Readonly<Record<string, iam.Role>>;
  readonly userPool?: cognito.UserPool;
  readonly userPoolClient?: cognito.UserPoolClient;

  constructor(scope: Construct, id: string, props: StatefulStackProps) {
    super(scope, id, props);
    const { config } = props;

    this.table = new Table(this, 'Table', {
      partitionKey: key(TABLE_DEFINITION.partitionKey),
      sortKey: key(TABLE_DEFINITION.sortKey),
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TABLE_DEFINITION.timeToLiveAttribute,
      // The agents' job notifier reads job inserts from here (new images: the host is in the
      // item, not in its key). Adding a stream to a deployed table is an in-place update.
      stream: StreamViewType.NEW_IMAGE,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    for (const index of TABLE_DEFINITION.globalSecondaryIndexes)
      this.table.addGlobalSecondaryIndex({
        indexName: index.indexName,
        partitionKey: key(index.partitionKey),
        sortKey: key(index.sortKey),
        projectionType: ProjectionType.ALL,
      });

    this.accessLogs = new Bucket(this, 'AccessLogsBucket', {
      // Server access logging delivers only to SSE-S3 buckets.
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      lifecycleRules: [{ expiration: Duration.days(365), noncurrentVersionExpiration: Duration.days(1) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const buckets = {} as Record<BucketName, Bucket>;
    for (const [name, spec] of Object.entries(BUCKETS) as [BucketName, (typeof BUCKETS)[BucketName]][]) {
      const lifecycleRules: LifecycleRule[] = [
        { abortIncompleteMultipartUploadAfter: Duration.days(name === 'images' ? 1 : 7) },
      ];
      if (name === 'images')
        lifecycleRules.push(
          // The only way old versions of image objects go: bucket policies cannot stop lifecycle.
          { noncurrentVersionExpiration: Duration.days(config.noncurrentVersionDays) },
          { expiredObjectDeleteMarker: true },
        );
      else if (spec.expireAfterDays)
        lifecycleRules.push({
          expiration: Duration.days(spec.expireAfterDays),
          noncurrentVersionExpiration: Duration.days(1),
        });
      buckets[name] = new Bucket(this, `${pascal(name)}Bucket`, {
        versioned: true,
        encryption: BucketEncryption.S3_MANAGED,
        blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
        objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforceSSL: true,
        minimumTLSVersion: 1.2,
        serverAccessLogsBucket: this.accessLogs,
        serverAccessLogsPrefix: `${name}/`,
        lifecycleRules,
        // The console sends multipart parts from the browser (functions/adapters/s3/upload-cors.ts).
        ...(name === 'uploads'
          ? {
              cors: [
                {
                  allowedMethods: [HttpMethods.PUT],
                  allowedOrigins: [...UPLOAD_CORS_RULE.allowedOrigins],
                  allowedHeaders: [...UPLOAD_CORS_RULE.allowedHeaders],
                  exposedHeaders: [...UPLOAD_CORS_RULE.exposedHeaders],
                  maxAge: UPLOAD_CORS_RULE.maxAgeSeconds,
                },
              ],
            }
          : {}),
        removalPolicy: RemovalPolicy.RETAIN,
      });
    }
    this.buckets = buckets;

    const writerRoles: Record<string, iam.Role> = {};
    for (const fnId of props.imageWriters)
      writerRoles[fnId] = new iam.Role(this, `${fnId}Role`, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `Hangar ${fnId}: one of the few principals that may write or delete image objects`,
      });
    this.writerRoles = writerRoles;
    this.lockImageObjects(Object.values(writerRoles));

    if (config.authMode === 'jwt' && config.jwt.issuer === undefined) {
      const { userPool, client } = this.createUserPool();
      this.userPool = userPool;
      this.userPoolClient = client;
    }
  }

  /**
   * images/* objects are written once and never replaced: only the writer roles may put or
   * delete (Hangar writes fresh keys with If-None-Match), nobody may delete an object version
   * (versioning keeps anything replaced or deleted until lifecycle expires it).
   */
  private lockImageObjects(writers: readonly iam.Role[]): void {
    const images = this.buckets.images;
    const objects = images.arnForObjects(BUCKETS.images.objects);
    images.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'ImageObjectsWrittenOnlyByHangar',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:PutObject', 's3:DeleteObject'],
        resources: [objects],
        ...(writers.length > 0
          ? { conditions: { ArnNotEquals: { 'aws:PrincipalArn': writers.map((r) => r.roleArn) } } }
          : {}),
      }),
    );
    images.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'ImageObjectVersionsKept',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:DeleteObjectVersion'],
        resources: [objects],
      }),
    );
  }

  private createUserPool(): { userPool: cognito.UserPool; client: cognito.UserPoolClient } {
    const userPool = new cognito.UserPool(this, 'Users', {
      // Operators create users and put them in a project and groups; nobody signs themselves up.
      selfSignUpEnabled: false,
      signInAliases: { username: true, email: true },
      customAttributes: { project: new cognito.StringAttribute({ minLen: 1, maxLen: 255, mutable: true }) },
      passwordPolicy: {
        minLength: 12,
        requireLowercase: true,
        requireUppercase: true,
        requireDigits: true,
        requireSymbols: true,
      },
      mfa: cognito.Mfa.OPTIONAL,
      mfaSecondFactor: { otp: true, sms: false },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      featurePlan: cognito.FeaturePlan.ESSENTIALS,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    NagSuppressions.addResourceSuppressions(userPool, [
      {
        id: 'AwsSolutions-COG2',
        reason:
          'MFA is optional so that non-interactive clients (image upload scripts, compute hosts) can sign in; ' +
          'operators enable TOTP per human user.',
      },
      {
        id: 'AwsSolutions-COG8',
        reason:
          'Plus tier (threat protection) is charged per monthly active user; the optional built-in pool is for ' +
          'small or test deployments, production points jwtIssuer at its own IdP.',
      },
    ]);
    const client = userPool.addClient('CliClient', {
      generateSecret: false,
      authFlows: { userPassword: true, userSrp: true },
      preventUserExistenceErrors: true,
      idTokenValidity: Duration.hours(1),
      accessTokenValidity: Duration.hours(1),
      // Users must not be able to move themselves into another project.
      writeAttributes: new cognito.ClientAttributes().withStandardAttributes({ email: true }),
    });
    for (const group of COGNITO_GROUPS)
      new cognito.CfnUserPoolGroup(this, `${pascal(group)}Group`, {
        userPoolId: userPool.userPoolId,
        groupName: group,
        description: `Glance role '${group}'`,
      });
    new CfnOutput(this, 'UserPoolId', { value: userPool.userPoolId });
    new CfnOutput(this, 'UserPoolClientId', { value: client.userPoolClientId });
    return { userPool, client };
  }
}
