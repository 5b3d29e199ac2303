/**
 * The one place that shows transfer progress, always on stderr so stdout stays data. `auto` is a
 * bar on a terminal and plain lines otherwise; a bar is never drawn where there is no terminal.
 */
import { Presets, SingleBar } from 'cli-progress';
import { usageError } from './errors.ts';
import { bytes, seconds } from './format.ts';

export const PROGRESS_MODES = ['auto', 'bar', 'plain', 'none'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

export function parseProgressMode(text: string): ProgressMode {
  if ((PROGRESS_MODES as readonly string[]).includes(text)) return text as ProgressMode;
  throw usageError(`--progress must be one of ${PROGRESS_MODES.join(', ')} (got ${text})`);
}

export interface Progress {
  /** `count` more bytes were moved. */
  advance(count: number): void;
  /** Stops drawing; `ok` says whether the transfer completed. */
  stop(ok: boolean): void;
}

/** Plain mode prints a line at each tenth of the way and at most this often otherwise. */
const PLAIN_INTERVAL_MS = 5000;

export interface ProgressOptions {
  /** Bytes already there (a resumed download). */
  start?: number;
  /** Said when Ctrl+C stops the transfer, e.g. how to resume it. */
  interruptHint?: string;
  /** Run on Ctrl+C before the exit, e.g. to remove what a stopped upload made. */
  cleanup?: () => Promise<void>;
  stream?: NodeJS.WriteStream;
}

/**
 * Shows a transfer until stop(). Ctrl+C meanwhile stops the display (giving a hidden cursor back),
 * says where the transfer stopped, runs the cleanup and exits 130.
 */
export function startProgress(
  mode: ProgressMode,
  label: string,
  total: number,
  options: ProgressOptions = {},
): Progress {
  const { start = 0, interruptHint, cleanup, stream = process.stderr } = options;
  let moved = start;
  const display = draw(mode, label, total, start, stream);
  const onInterrupt = async () => {
    display.stop(false);
    stream.write(
      `\n${label}: interrupted at ${bytes(moved)} of ${bytes(total)}${interruptHint ? `; ${interruptHint}` : ''}\n`,
    );
    await cleanup?.().catch(() => {});
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  return {
    advance(count) {
      moved += count;
      display.advance(count);
    },
    stop(ok) {
      process.removeListener('SIGINT', onInterrupt);
      display.stop(ok);
    },
  };
}

function draw(
  mode: ProgressMode,
  label: string,
  total: number,
  start: number,
  stream: NodeJS.WriteStream,
): Progress {
  const effective = mode === 'auto' || mode === 'bar' ? (stream.isTTY ? 'bar' : 'plain') : mode;
  const began = Date.now();
  let done = start;
  const rate = () => (done - start) / Math.max((Date.now() - began) / 1000, 0.001);

  if (effective === 'none')
    return {
      advance(count) {
        done += count;
      },
      stop() {},
    };

  if (effective === 'plain') {
    let lastTenth = Math.floor((done / Math.max(total, 1)) * 10);
    let lastLine = Date.now();
    const line = (what: string) => stream.write(`${label}: ${what}\n`);
    line(start > 0 ? `resuming at ${bytes(start)} of ${bytes(total)}` : `${bytes(total)}`);
    return {
      advance(count) {
        done += count;
        const tenth = Math.floor((done / Math.max(total, 1)) * 10);
        if ((tenth > lastTenth && done < total) || Date.now() - lastLine > PLAIN_INTERVAL_MS) {
          lastTenth = tenth;
          lastLine = Date.now();
          line(
            `${Math.floor((done / Math.max(total, 1)) * 100)}% ${bytes(done)}/${bytes(total)} ${bytes(rate())}/s`,
          );
        }
      },
      stop(ok) {
        if (ok) line(`done ${bytes(done)} in ${seconds(Date.now() - began)} (${bytes(rate())}/s)`);
        else line(`stopped at ${bytes(done)} of ${bytes(total)}`);
      },
    };
  }

  const bar = new SingleBar(
    {
      stream,
      format: `${label} |{bar}| {percentage}% {moved}/{size} {rate}/s ETA {eta_formatted}`,
      hideCursor: true,
      barsize: 30,
      etaBuffer: 40,
      fps: 10,
    },
    Presets.shades_classic,
  );
  const payload = () => ({ moved: bytes(done), size: bytes(total), rate: bytes(rate()) });
  bar.start(total, start, payload());
  return {
    advance(count) {
      done += count;
      bar.update(done, payload());
    },
    stop() {
      bar.update(done, payload());
      bar.stop();
    },
  };
}
