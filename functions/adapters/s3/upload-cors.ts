/**
 * The upload bucket's CORS rule: the web console PUTs multipart parts straight to their presigned
 * URLs from its own origin, and must read each answer's ETag to complete the upload. Any origin:
 * the presigned URL is the credential (one part, one upload, an hour), not the page it is sent
 * from, and the console's origin (CloudFront's domain) is made in another stack. Used by the CDK
 * app (infra/stateful-stack.ts) and the embedded backend (local/backend.ts) alike.
 */
export const UPLOAD_CORS_RULE = {
  allowedMethods: ['PUT'],
  allowedOrigins: ['*'],
  allowedHeaders: ['*'],
  exposedHeaders: ['ETag'],
  maxAgeSeconds: 3600,
} as const;
