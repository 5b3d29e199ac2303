/** Entry point: `tsx agent/src/main.ts --config agent.json`. SIGTERM/SIGINT stop it cleanly (exit 0). */
import { parseArgs } from 'node:util';
import { runAgent } from './agent.ts';
import { loadConfig } from './config.ts';
import { ConfigError, describeError } from './errors.ts';
import { createLogger } from './log.ts';

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' } },
    strict: true,
  });
  if (!values.config) {
    process.stderr.write('usage: main.ts --config <agent.json>\n');
    return 2;
  }
  const config = await loadConfig(values.config);
  const log = createLogger({ level: config.log_level, fields: { host_id: config.host_id } });
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      log.warn('second signal: exiting now', { signal });
      process.exit(130);
    }
    log.info('stopping', { signal });
    controller.abort(new Error(`received ${signal}`));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    await runAgent(config, log, controller.signal);
    return 0;
  } catch (error) {
    if (controller.signal.aborted) return 0;
    log.error('agent failed', { error });
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${describeError(error)}\n`);
    process.exit(error instanceof ConfigError ? 2 : 1);
  },
);
