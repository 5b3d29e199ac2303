/**
 * Seven projects, all part of `vitest run` (and so of CI):
 * - unit: fast, no processes, no network.
 * - infra: CDK template assertions and `cdk synth`, offline (esbuild bundles every function).
 * - integration: the real local stand-ins (java, s3rver) behind the embedded gateway.
 * - cli: the real `hangar` binary against the same embedded backend as integration.
 * - e2e: a real guest under libvirt; minutes per test.
 * - tempest: OpenStack tempest's image API tests against Hangar in keystone mode (a few minutes).
 * - console: the web console in a real browser (Debian's chromium) against the embedded backend.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // Projects with their own maxWorkers run as groups, one after the other, in this order.
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'infra',
          include: ['test/infra/**/*.test.ts'],
          // Each file synthesizes once in beforeAll (bundling every function); the CPU is the limit.
          pool: 'forks',
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Each file starts its own JVM and s3rver: processes, not threads, and few at a time.
          pool: 'forks',
          maxWorkers: 2,
          sequence: { groupOrder: 2 },
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'cli',
          include: ['test/cli/**/*.test.ts'],
          // One backend (JVM, s3rver) per file, and every test spawns node processes.
          pool: 'forks',
          maxWorkers: 2,
          sequence: { groupOrder: 2 },
          // A test runs the binary some twenty times, each a node start-up of its own.
          testTimeout: 180_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          pool: 'forks',
          maxWorkers: 1,
          sequence: { groupOrder: 3 },
          testTimeout: 600_000,
          hookTimeout: 600_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'console',
          include: ['test/console/**/*.test.ts'],
          // One backend and one chromium per file: both are heavy on a 2-core machine.
          pool: 'forks',
          maxWorkers: 1,
          sequence: { groupOrder: 3 },
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'tempest',
          include: ['test/tempest/**/*.test.ts'],
          // One run at a time, after every other group: tempest runs two workers of its own.
          pool: 'forks',
          maxWorkers: 1,
          sequence: { groupOrder: 4 },
          testTimeout: 1_800_000,
          hookTimeout: 600_000,
        },
      },
    ],
  },
});
