/** GET /v2/schemas/{schema}: the JSON-Schema documents clients read (glanceclient validates with them). */
import { NotFoundError } from '#core/errors';
import { isSchemaName, schemaDocument } from '#core/schemas';
import { serviceConfig } from '#shared/config';
import { httpHandler } from '#shared/http';

export const handler = httpHandler(async (request) => {
  const name = request.params.schema ?? '';
  if (!isSchemaName(name)) throw new NotFoundError('The resource could not be found.');
  return { status: 200, json: schemaDocument(name, serviceConfig().imageFormats) };
});
