/** Ports of imports and exports: S3 event markers, the web fetcher, the exporter, presigned multipart. */
import type { ObjectRef } from '../data/ports.ts';

/** What an S3 event claimed, so a redelivered event finds the same task and image ids. */
export interface EventMarker {
  eventId: string;
  taskId: string;
  imageId: string;
  /** Set once the event's work was started (or recorded as refused). */
  done: boolean;
}

export interface EventMarkers {
  /** Stores `proposal` unless a marker for its eventId exists; returns whichever is stored. */
  claim(proposal: EventMarker): Promise<EventMarker>;
  markDone(eventId: string): Promise<void>;
}

/** Fetches web-download URLs under the SSRF policy (core/transfer/url-filter.ts). */
export interface WebFetcher {
  /** Throws UrlRefused when the URL (form, or any address its host resolves to) is not allowed. */
  vet(uri: string): Promise<void>;
  open(uri: string): Promise<{ body: AsyncIterable<Buffer>; size: number | undefined; abort(): void }>;
}

/** Converts an image blob to another disk format and stores the result with its sha512. */
export interface ImageExporter {
  export(spec: {
    blobKey: string;
    sourceFormat: string;
    targetFormat: string;
    destination: ObjectRef;
  }): Promise<{ size: number; sha512: string }>;
}

/** Presigned S3 multipart uploads into the upload bucket (bodies too large for API Gateway/Lambda). */
export interface MultipartUploads {
  start(
    ref: ObjectRef,
    partCount: number,
    expiresSeconds: number,
  ): Promise<{ uploadId: string; partUrls: string[] }>;
  complete(
    ref: ObjectRef,
    uploadId: string,
    parts: ReadonlyArray<{ partNumber: number; etag: string }>,
  ): Promise<void>;
  abort(ref: ObjectRef, uploadId: string): Promise<void>;
}
