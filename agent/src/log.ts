/** Structured JSON logs, one object a line, on stderr. */
import { ExecError } from './errors.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

function serialise(value: unknown): unknown {
  if (value instanceof ExecError) {
    const { command, args, reason, exitCode, stderr } = value.details;
    return {
      name: value.name,
      message: value.message,
      command,
      args,
      reason,
      exitCode,
      stderr: stderr.slice(-2000),
    };
  }
  if (value instanceof Error) {
    return {
      name: value.name,
      message: value.message,
      ...(value.cause !== undefined ? { cause: serialise(value.cause) } : {}),
    };
  }
  return value;
}

export function createLogger(
  options: { level?: LogLevel; fields?: Record<string, unknown>; write?: (line: string) => void } = {},
): Logger {
  const threshold = ORDER[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const base = options.fields ?? {};
  const emit = (level: LogLevel, message: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < threshold) return;
    const line: Record<string, unknown> = {
      level,
      time: new Date().toISOString(),
      service: 'hangar-agent',
      ...base,
    };
    line['message'] = message;
    for (const [key, value] of Object.entries(fields ?? {})) line[key] = serialise(value);
    write(`${JSON.stringify(line)}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...options, fields: { ...base, ...fields } }),
  };
}

/** For tests and tools that need a Logger but no output. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
