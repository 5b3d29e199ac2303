/**
 * Sending an image's bytes, the two ways the service takes them (GET /v2/info/upload names them,
 * the preferred first): `put`, one streamed `PUT /v2/images/{id}/file`; `multipart`, Hangar's
 * presigned multipart upload for a service that cannot carry a large body (AWS: API Gateway and
 * Lambda), each part PUT straight to its S3 URL, several at once, as `hangar push --multipart`
 * does. XHR, not fetch: only XHR reports a request body's progress.
 */
import { ApiError, errorMessage, request, storedToken } from './api.ts';
import { UploadFailed } from './pages/image-fields.tsx';

export type UploadMethod = 'put' | 'multipart';

/**
 * The method the service prefers. A service without GET /v2/info/upload (older, or not Hangar's)
 * is taken to stream, as the CLI takes it.
 */
export async function preferredUploadMethod(): Promise<UploadMethod> {
  try {
    const info = await request<{ 'upload-methods'?: { value?: unknown } }>('GET', '/v2/info/upload');
    const value = info['upload-methods']?.value;
    // The first one this page knows, as `hangar push` picks it from the same document.
    const known = (Array.isArray(value) ? value : []).find(
      (method): method is UploadMethod => method === 'put' || method === 'multipart',
    );
    return known ?? 'put';
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return 'put';
    throw error;
  }
}

/** PUTs `body`, reporting the bytes sent; resolves with the finished request, rejects with the reason. */
function xhrPut(
  url: string,
  body: Blob,
  options: { headers?: Record<string, string>; signal: AbortSignal; onProgress: (loaded: number) => void },
): Promise<XMLHttpRequest> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    if (options.signal.aborted) {
      reject(new UploadFailed('cancelled'));
      return;
    }
    options.signal.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.open('PUT', url);
    for (const [name, value] of Object.entries(options.headers ?? {})) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => options.onProgress(event.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr);
      else reject(new UploadFailed(errorMessage(xhr.status, xhr.responseText)));
    };
    xhr.onerror = () => reject(new UploadFailed('The connection was lost during the upload.'));
    xhr.onabort = () => reject(new UploadFailed('cancelled'));
    xhr.send(body);
  });
}

export interface SendOptions {
  signal: AbortSignal;
  /** Bytes sent so far (of the file's size). */
  onProgress: (sent: number) => void;
  /** multipart: parts at once (the CLI's default, 4). */
  parallel?: number;
}

/** The streamed path: the service has the image stored (or refused it) when this resolves. */
export async function sendStreamed(imageId: string, file: File, options: SendOptions): Promise<void> {
  await xhrPut(`/v2/images/${encodeURIComponent(imageId)}/file`, file, {
    headers: {
      'content-type': 'application/octet-stream',
      accept: 'application/json',
      'x-auth-token': storedToken() ?? '',
    },
    signal: options.signal,
    onProgress: options.onProgress,
  });
}

interface MultipartSession {
  upload_id: string;
  part_size: number;
  parts: Array<{ part_number: number; url: string }>;
}

/**
 * The presigned multipart path: start the session, PUT the parts (`parallel` at once; the part
 * URLs carry their own signature, so the token is never sent to S3), then complete it, which
 * starts the service's import. Any failure or a cancel aborts the upload (S3 drops the parts) before
 * it rejects; deleting the queued image is the caller's, as for the streamed path.
 */
export async function sendMultipart(imageId: string, file: File, options: SendOptions): Promise<void> {
  const base = `/v2/images/${encodeURIComponent(imageId)}/multipart-upload`;
  const session = await request<MultipartSession>('POST', base, { body: { size: file.size } });
  const loaded = new Map<number, number>();
  const report = () => options.onProgress([...loaded.values()].reduce((sum, n) => sum + n, 0));
  const etags = new Map<number, string>();
  // One failing part stops the others: no point sending the rest of an upload that is aborted.
  const stop = new AbortController();
  const onCancel = () => stop.abort();
  options.signal.addEventListener('abort', onCancel, { once: true });
  let next = 0;
  const sendParts = async () => {
    for (;;) {
      const part = session.parts[next++];
      if (!part) return;
      const start = (part.part_number - 1) * session.part_size;
      const xhr = await xhrPut(part.url, file.slice(start, Math.min(start + session.part_size, file.size)), {
        signal: stop.signal,
        onProgress: (n) => {
          loaded.set(part.part_number, n);
          report();
        },
      });
      const etag = xhr.getResponseHeader('etag');
      if (!etag)
        throw new UploadFailed(`S3 gave part ${part.part_number} no ETag (is it readable across origins?).`);
      etags.set(part.part_number, etag);
    }
  };
  const worker = async () => {
    try {
      await sendParts();
    } catch (error) {
      stop.abort();
      throw error;
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(options.parallel ?? 4, session.parts.length) }, worker));
    await request('POST', `${base}/complete`, {
      body: {
        upload_id: session.upload_id,
        parts: session.parts.map((part) => ({
          part_number: part.part_number,
          etag: etags.get(part.part_number),
        })),
      },
    });
  } catch (error) {
    stop.abort();
    await request('POST', `${base}/abort`, { body: { upload_id: session.upload_id } }).catch(() => undefined);
    throw error;
  } finally {
    options.signal.removeEventListener('abort', onCancel);
  }
}
