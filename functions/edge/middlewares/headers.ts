/** Header access shared by the HTTP middlewares: API Gateway keeps the client's header case. */
import type { APIGatewayProxyEventV2 } from 'aws-lambda';

/** The event's headers with lower-case names (the event itself is left as it came). */
export function lowerHeaders(headers: APIGatewayProxyEventV2['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {}))
    if (value !== undefined) out[key.toLowerCase()] = value;
  return out;
}
