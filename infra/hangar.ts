/** The whole deployment: both stacks on one app, checked by cdk-nag's AwsSolutions rules. */
import { type App, Aspects } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { AppStack } from './app-stack.ts';
import { type DeployConfig, readConfig } from './config.ts';
import { writesImages } from './declarations.ts';
import { buildInventory, type Inventory, type InventoryOptions } from './inventory.ts';
import { StatefulStack } from './stateful-stack.ts';

export interface HangarOptions {
  /** Tests point optional modules and state machines at fixtures. */
  readonly inventory?: Omit<InventoryOptions, 'authMode'>;
  readonly env?: NodeJS.ProcessEnv;
}

export interface Hangar {
  readonly config: DeployConfig;
  readonly inventory: Inventory;
  readonly stateful: StatefulStack;
  readonly application: AppStack;
}

export function buildHangar(app: App, options: HangarOptions = {}): Hangar {
  const env = options.env ?? process.env;
  const config = readConfig(app.node, env);
  const inventory = buildInventory({ authMode: config.authMode, ...options.inventory });
  // Set by the CLI from the current credentials; unset, the stacks are environment-agnostic.
  const target = { account: env.CDK_DEFAULT_ACCOUNT, region: env.CDK_DEFAULT_REGION };

  const stateful = new StatefulStack(app, `${config.stackPrefix}-Stateful`, {
    env: target,
    description: 'Hangar: image records, image data and identities (retained on delete)',
    terminationProtection: true,
    config,
    imageWriters: inventory.functions.filter((f) => writesImages(f.access)).map((f) => f.id),
  });
  const application = new AppStack(app, `${config.stackPrefix}-App`, {
    env: target,
    description: 'Hangar: HTTP API, functions, state machines and alarms',
    config,
    stateful,
    inventory,
  });
  application.addStackDependency(stateful);
  if (inventory.skipped.length > 0)
    application.node.addMetadata(
      'hangar:skipped',
      `not deployed (module absent): ${inventory.skipped.join(', ')}`,
    );

  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return { config, inventory, stateful, application };
}
