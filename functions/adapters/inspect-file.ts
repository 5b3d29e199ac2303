/** Streams a local file through the format inspector (tests, and exports that land on local disk). */
import { createReadStream } from 'node:fs';
import { FormatInspector, type InspectionResult } from '#core/data/format-inspector';

export interface InspectFileOptions {
  /** Read size; small odd values exercise the inspector's chunk-boundary handling. */
  chunkSize?: number;
}

export async function inspectFile(path: string, options: InspectFileOptions = {}): Promise<InspectionResult> {
  const inspector = new FormatInspector();
  const stream = createReadStream(path, { highWaterMark: options.chunkSize ?? 64 * 1024 });
  for await (const chunk of stream) inspector.update(chunk as Buffer);
  return inspector.finish();
}
