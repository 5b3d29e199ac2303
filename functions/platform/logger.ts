/** Structured JSON logs, one object a line, on stderr (stdout stays free for the CLI's own output). */
import { serviceConfig } from './config.ts';

type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** The configured level; `info` while the configuration cannot be read, so that failure gets logged. */
function threshold(): number {
  try {
    return ORDER[serviceConfig().logLevel];
  } catch {
    return ORDER.info;
  }
}

function emit(level: Level, message: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] < threshold()) return;
  const line: Record<string, unknown> = { level, time: new Date().toISOString(), service: 'hangar', message };
  if (fields) {
    for (const [key, value] of Object.entries(fields)) {
      line[key] =
        value instanceof Error ? { name: value.name, message: value.message, stack: value.stack } : value;
    }
  }
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

export const logger = {
  debug: (message: string, fields?: Record<string, unknown>) => emit('debug', message, fields),
  info: (message: string, fields?: Record<string, unknown>) => emit('info', message, fields),
  warn: (message: string, fields?: Record<string, unknown>) => emit('warn', message, fields),
  error: (message: string, fields?: Record<string, unknown>) => emit('error', message, fields),
};
