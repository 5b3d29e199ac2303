/**
 * "Convert Image": qemu-img convert to the requested format, written with its sha512 to the export
 * bucket. Needs qemu-img: on AWS a container-image function (see TASK_FUNCTIONS in registry.ts).
 */
import { services } from '#edge/compose';
import { ExportInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('export-convert', ExportInputSchema, (input) =>
  services().exports.convert(input),
);
