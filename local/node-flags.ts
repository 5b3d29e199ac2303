/**
 * The V8 heap flags of the embedded backend's processes, in one place. package.json's `start` and
 * `bench` scripts pass PRIMARY_NODE_FLAGS to tsx (V8 takes them only at start-up: NODE_OPTIONS
 * refuses them, v8.setFlagsFromString is too late); test/unit/local/node-flags.test.ts keeps the
 * scripts and this list the same.
 */

/**
 * The primary runs S3-drop imports. Its live old generation is ~30 MB against a starting limit of
 * ~54 MB, so the SDK's 64 KiB socket-read buffers set off 36-50 incremental mark-compacts per GiB
 * imported; starting the old generation at 128 MB leaves none (process CPU 5.0 s instead of 6-8 s
 * per GiB, README "Performance").
 */
export const PRIMARY_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128'];

/**
 * Gateway workers: a young generation twice node's default (16 MiB semi-spaces). A show allocates
 * ~280 KiB, so node scavenged every ~57 requests, 1.8% of them waiting on a pause (the show p99
 * tail, bench/metadata.ts); with 32 MiB about half as often.
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=32'];

/** The flags of `wanted` this process was not started with. */
export function missingNodeFlags(
  wanted: readonly string[],
  execArgv: readonly string[] = process.execArgv,
): string[] {
  return wanted.filter((flag) => !execArgv.includes(flag));
}
