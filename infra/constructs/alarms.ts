/**
 * Alarms that page someone: every function's errors and throttles, the API's 5xx, failed
 * executions, and anything sitting in a dead-letter queue. All go to one SNS topic.
 */
import { Duration } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import { Alarm, ComparisonOperator, type Metric, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';

const PERIOD = Duration.minutes(5);

export class Alarms extends Construct {
  readonly topic: Topic;
  private readonly action: SnsAction;

  constructor(scope: Construct, id: string, props: { email?: string | undefined }) {
    super(scope, id);
    // CloudWatch cannot publish to a topic under the AWS-managed SNS key, and alarm texts hold no secrets.
    this.topic = new Topic(this, 'Topic', { enforceSSL: true });
    if (props.email) this.topic.addSubscription(new EmailSubscription(props.email));
    this.action = new SnsAction(this.topic);
  }

  private alarm(id: string, metric: Metric, description: string): Alarm {
    const alarm = new Alarm(this, id, {
      metric,
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: TreatMissingData.NOT_BREACHING,
      alarmDescription: description,
    });
    alarm.addAlarmAction(this.action);
    return alarm;
  }

  forFunction(name: string, fn: IFunction): void {
    this.alarm(
      `${name}Errors`,
      fn.metricErrors({ period: PERIOD, statistic: 'Sum' }),
      `${name}: invocation errors`,
    );
    this.alarm(
      `${name}Throttles`,
      fn.metricThrottles({ period: PERIOD, statistic: 'Sum' }),
      `${name}: throttled`,
    );
  }

  forApi(api: HttpApi): void {
    this.alarm(
      'Api5xx',
      api.metricServerError({ period: PERIOD, statistic: 'Sum' }),
      'HTTP API: 5xx responses',
    );
  }

  forStateMachine(name: string, machine: IStateMachine): void {
    this.alarm(
      `${name}Failed`,
      machine.metricFailed({ period: PERIOD, statistic: 'Sum' }),
      `${name}: failed executions`,
    );
  }

  forQueue(name: string, queue: IQueue): void {
    this.alarm(
      `${name}Depth`,
      queue.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum' }),
      `${name}: messages in a dead-letter queue`,
    );
  }
}
