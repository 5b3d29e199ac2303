/** The name of an AWS SDK error (e.g. 'NotFound', 'NoSuchKey'), or undefined for anything else. */
export function awsErrorName(error: unknown): string | undefined {
  if (error && typeof error === 'object' && 'name' in error && typeof error.name === 'string')
    return error.name;
  return undefined;
}
