/** Parsers of option values (sizes, durations, counts): a bad value is a usage error, exit 2. */
import { InvalidArgumentError } from 'commander';
import { parseDuration, parseSize } from './format.ts';

export const sizeOption = (text: string) => {
  const size = parseSize(text);
  if (!size) throw new InvalidArgumentError(`expected a size such as 512k, 10M or 1G, got ${text}`);
  return size;
};

export const durationOption = (text: string) => {
  const ms = parseDuration(text);
  if (ms === undefined)
    throw new InvalidArgumentError(`expected a duration such as 90s, 5m or 1h, got ${text}`);
  return ms;
};

/** A duration that may also be given in days (`7d`), as retention grace periods are. */
export const longDurationOption = (text: string) => {
  const days = /^(\d+(?:\.\d+)?)\s*d$/.exec(text.trim());
  if (days) return Math.round(Number(days[1]) * 86_400_000);
  return durationOption(text);
};

export const countOption = (text: string) => {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new InvalidArgumentError(`expected a whole number of at least 1, got ${text}`);
  return value;
};
