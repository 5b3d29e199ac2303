/**
 * GET /v2/schemas/{schema} and /v2/schemas/metadefs/{schema}: the JSON-Schema documents clients
 * read (glanceclient validates with them).
 */

import { isSchemaName, schemaDocument } from '#core/images/schemas';
import { NotFoundError } from '#core/kernel/errors';
import { isMetadefSchemaName, METADEF_SCHEMAS } from '#core/metadefs/schemas';
import { routeTable } from '#edge/http';
import { serviceConfig } from '#platform/config';

const routes = routeTable({
  'GET /v2/schemas/{schema}': async (request) => {
    const name = request.params.schema ?? '';
    if (!isSchemaName(name)) throw new NotFoundError('The resource could not be found.');
    return { status: 200, json: schemaDocument(name, serviceConfig().imageFormats) };
  },
  'GET /v2/schemas/metadefs/{schema}': async (request) => {
    const name = request.params.schema ?? '';
    const schema = isMetadefSchemaName(name) ? METADEF_SCHEMAS[name] : undefined;
    if (!schema) throw new NotFoundError('The resource could not be found.');
    return { status: 200, json: schema };
  },
});
/** The route keys this module serves (test/unit/routes.test.ts holds routes.ts to them). */
export const ROUTE_KEYS: readonly string[] = routes.routeKeys;
export const handler = routes.handler;
