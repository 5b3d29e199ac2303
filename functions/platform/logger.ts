/**
 * Structured JSON logs, one object a line, on stderr (stdout stays free for the CLI's own output).
 *
 * Every line also carries the fields of the log context it is written in: each entry point (an
 * API request, a task step, a trigger) runs in its own context (`withLogContext`), and its
 * middlewares add the request id and the caller (`appendLogKeys`). The context follows the
 * request through every await (AsyncLocalStorage), so core and adapters log as they always
 * did and their lines still say which request and which caller they belong to.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { serviceConfig } from './config.ts';

type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level | 'silent', number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

type Fields = Record<string, unknown>;

const context = new AsyncLocalStorage<Fields>();

/**
 * Runs `fn` in a new log context holding `fields` (a copy: appends stay inside this context).
 * A context is never shared with the caller's: work started inside it (a timer, a workflow the
 * request started) inherits these fields, and nothing leaks out.
 */
export function withLogContext<T>(fields: Fields, fn: () => T): T {
  return context.run({ ...fields }, fn);
}

/** Adds fields to every later line of the current log context; nothing outside a context. */
export function appendLogKeys(fields: Fields): void {
  const current = context.getStore();
  if (current) Object.assign(current, fields);
}

/** The current log context's fields (undefined outside one). */
export function logContext(): Readonly<Fields> | undefined {
  return context.getStore();
}

/** The configured level; `info` while the configuration cannot be read, so that failure gets logged. */
function threshold(): number {
  try {
    return ORDER[serviceConfig().logLevel];
  } catch {
    return ORDER.info;
  }
}

function serialize(value: unknown): unknown {
  return value instanceof Error ? { name: value.name, message: value.message, stack: value.stack } : value;
}

function emit(level: Level, message: string, fields?: Fields): void {
  if (ORDER[level] < threshold()) return;
  const line: Fields = { level, time: new Date().toISOString(), service: 'hangar', message };
  // The context's fields first, so a line's own fields (more specific) win a clash.
  for (const source of [context.getStore(), fields])
    if (source) for (const [key, value] of Object.entries(source)) line[key] = serialize(value);
  process.stderr.write(`${JSON.stringify(line)}\n`);
}

export const logger = {
  debug: (message: string, fields?: Fields) => emit('debug', message, fields),
  info: (message: string, fields?: Fields) => emit('info', message, fields),
  warn: (message: string, fields?: Fields) => emit('warn', message, fields),
  error: (message: string, fields?: Fields) => emit('error', message, fields),
};
