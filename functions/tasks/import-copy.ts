/**
 * "Copy And Inspect": one streaming read of the source (md5 + sha512 on two threads, format
 * inspection), the bytes left under the image's new immutable key. Returns the data to activate.
 */
import { services } from '#edge/compose';
import { ImportInputSchema } from './schemas.ts';
import { taskStep } from './step.ts';

export const handler = taskStep('import-copy', ImportInputSchema, (input) => services().imports.copy(input));
