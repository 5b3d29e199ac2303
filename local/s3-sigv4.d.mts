/** Types for local/s3-sigv4.mjs (plain JavaScript, so the s3rver child needs no TypeScript loader). */
export declare class SigV4Error extends Error {
  constructor(code: string, message: string);
  readonly code: string;
}
export declare function verifySigV4(
  request: { method: string; url: string; headers: Record<string, string | string[] | undefined> },
  credentials: { accessKeyId: string; secretAccessKey: string },
  now?: number,
): void;
