/**
 * The upload and download suite (images-data.test.ts: whole, ranged, chunked, refused and
 * interrupted uploads, what they leave behind) with image bytes in the images bucket
 * (HANGAR_BLOB_STORE=s3): the S3 BlobStore against s3rver, the adapter that runs on AWS. The
 * default suite runs the embedded default, the fs BlobStore.
 */
// Read by the runner (localConfig) when the suite's backend starts; this file's process only.
process.env.HANGAR_BLOB_STORE = 's3';
await import('./images-data.test.ts');

const { describe, expect, it } = await import('vitest');
const { serviceConfig } = await import('#platform/config');
describe('the S3 variant of the suite', () => {
  it('runs with image bytes in the images bucket', () => {
    expect(serviceConfig().blobStore).toEqual({ kind: 's3' });
  });
});
