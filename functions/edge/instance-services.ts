/**
 * The composition root of the instances and hosts APIs: their services wired to DynamoDB, with
 * images looked up through the images and references services (so image access rules apply).
 * One set per process, rebuilt when the configuration is reset, as getServices() does.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { DynamoInstanceStore } from '#adapters/dynamo/instance-store';
import { taskTokens } from '#adapters/step-functions';
import { HostsService, type InstancesDeps, InstancesService } from '#core/instances/instances-service';
import { type ServiceConfig, serviceConfig } from '../platform/config.ts';
import { getServices } from './services.ts';

export interface InstanceServices {
  instances: InstancesService;
  hosts: HostsService;
}

let services: InstanceServices | undefined;
let builtFor: ServiceConfig | undefined;

export function getInstanceServices(): InstanceServices {
  const config = serviceConfig();
  if (services && builtFor === config) return services;
  const deps: InstancesDeps = {
    store: new DynamoInstanceStore(config.tableName),
    images: {
      show: (principal, id) => getServices().images.show(principal, id),
      resolve: async (principal, reference) =>
        (await getServices().references.resolve(principal, reference)).image,
    },
    hostTimeoutSeconds: config.hostTimeoutSeconds,
    newId: () => randomUUID(),
    newToken: () => randomBytes(24).toString('base64url'),
    gates: taskTokens,
  };
  services = { instances: new InstancesService(deps), hosts: new HostsService(deps) };
  builtFor = config;
  return services;
}
