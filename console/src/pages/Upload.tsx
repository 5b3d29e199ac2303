/**
 * Upload: creates the image, sends the file (streamed with `PUT /v2/images/{id}/file` where the
 * service streams, presigned multipart with parallel parts where it does not, as GET
 * /v2/info/upload says, or as chosen: console/src/transfer.ts), shows rate and ETA, and never
 * leaves a half image behind: cancelling or a failure aborts a multipart upload and deletes the
 * image it created. The server's reason for a refusal is shown as it said it, with a retry.
 * Leaving the page mid-upload asks first.
 */
import { type FormEvent, useEffect, useRef, useState } from 'react';
import { api, type Image } from '../api.ts';
import { hangar } from '../commands.ts';
import { Link } from '../router.tsx';
import { preferredUploadMethod, sendMultipart, sendStreamed, type UploadMethod } from '../transfer.ts';
import { CopyCommand, describeError, formatBytes } from '../ui.tsx';
import { followImport, ImportFromS3, ImportFromUrl } from './Import.tsx';
import { formatFromName, ImageFields, UploadFailed } from './image-fields.tsx';

type Phase =
  | { kind: 'idle' }
  | { kind: 'uploading'; imageId: string; sent: number; total: number; rate: number; started: number }
  | { kind: 'finishing'; imageId: string; status?: string }
  | { kind: 'done'; image: Image; reference?: string }
  | { kind: 'failed'; message: string }
  | { kind: 'cancelled' };

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

export function Upload() {
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState('');
  const [diskFormat, setDiskFormat] = useState('qcow2');
  const [visibility, setVisibility] = useState('private');
  const [reference, setReference] = useState('');
  const [phase, setPhase] = useState<Phase>({ kind: 'idle' });
  const [choice, setChoice] = useState<'auto' | UploadMethod>('auto');
  // What the service says it takes (GET /v2/info/upload); streamed until it has answered.
  const [preferred, setPreferred] = useState<UploadMethod>('put');
  const method: UploadMethod = choice === 'auto' ? preferred : choice;
  const controller = useRef<AbortController | null>(null);
  const busy = phase.kind === 'uploading' || phase.kind === 'finishing';

  useEffect(() => {
    preferredUploadMethod()
      .then(setPreferred)
      .catch(() => setPreferred('put'));
  }, []);

  useEffect(() => {
    if (!busy) return;
    const warn = (event: BeforeUnloadEvent) => {
      event.preventDefault();
      // Older browsers show the dialog only when returnValue is set.
      event.returnValue = '';
    };
    window.addEventListener('beforeunload', warn);
    return () => window.removeEventListener('beforeunload', warn);
  }, [busy]);

  const pick = (picked: File | null) => {
    setFile(picked);
    if (picked) {
      setName((current) => current || picked.name.replace(/\.[^.]+$/, ''));
      setDiskFormat(formatFromName(picked.name));
    }
  };

  /** Progress with a moving-average rate: the rate shown does not jump with every event. */
  const meter = (imageId: string, total: number) => {
    const started = performance.now();
    let last = { at: started, sent: 0 };
    let rate = 0;
    return (sent: number) => {
      const now = performance.now();
      const seconds = (now - last.at) / 1000;
      if (seconds >= 0.25 || sent === total) {
        const instant = (sent - last.sent) / Math.max(seconds, 0.001);
        rate = rate === 0 ? instant : rate * 0.7 + instant * 0.3;
        last = { at: now, sent };
      }
      if (sent >= total) setPhase({ kind: 'finishing', imageId });
      else setPhase({ kind: 'uploading', imageId, sent, total, rate, started });
    };
  };

  const start = async (event?: FormEvent) => {
    event?.preventDefault();
    if (!file) {
      setPhase({ kind: 'failed', message: 'Choose a file to upload.' });
      return;
    }
    const abort = new AbortController();
    controller.current = abort;
    let image: Image | undefined;
    try {
      image = await api.createImage({
        name: name || file.name,
        disk_format: diskFormat,
        container_format: 'bare',
        visibility,
      });
      const imageId = image.id;
      setPhase({
        kind: 'uploading',
        imageId,
        sent: 0,
        total: file.size,
        rate: 0,
        started: performance.now(),
      });
      const options = { signal: abort.signal, onProgress: meter(imageId, file.size) };
      let shown: Image;
      if (method === 'multipart') {
        await sendMultipart(imageId, file, options);
        // Completing the upload starts the service's import of the parts: follow it.
        shown = await followImport(imageId, (status, task) =>
          setPhase({ kind: 'finishing', imageId, status: task ? `${status}, ${task}` : status }),
        );
      } else {
        await sendStreamed(imageId, file, options);
        shown = await api.image(imageId);
        // The answer comes once the data is stored; activation is in the same write, but be patient.
        for (let i = 0; i < 20 && shown.status !== 'active'; i++) {
          await new Promise((r) => setTimeout(r, 250));
          shown = await api.image(imageId);
        }
      }
      // A cancel while the service was still checking: the image goes all the same.
      if (abort.signal.aborted) throw new UploadFailed('cancelled');
      let pointed: string | undefined;
      if (reference.trim()) {
        const ref = reference.trim();
        try {
          await api.createReference(ref, imageId);
        } catch {
          const current = await api.reference(ref);
          await api.moveReference(ref, imageId, current.image_id);
        }
        pointed = ref;
      }
      setPhase({ kind: 'done', image: shown, ...(pointed ? { reference: pointed } : {}) });
    } catch (error) {
      // No half image left queued: what this upload created goes with it.
      if (image) await api.deleteImage(image.id).catch(() => undefined);
      if (abort.signal.aborted) setPhase({ kind: 'cancelled' });
      else
        setPhase({
          kind: 'failed',
          message: error instanceof UploadFailed ? error.message : describeError(error),
        });
    } finally {
      controller.current = null;
    }
  };

  const cancel = () => controller.current?.abort();

  const pushCommand = hangar(
    'push',
    file?.name ?? 'FILE',
    reference.trim() || `${(name || 'NAME').toLowerCase().replace(/[^a-z0-9._-]+/g, '-')}:latest`,
    '--disk-format',
    diskFormat,
    '--visibility',
    visibility,
    ...(method === 'multipart' ? ['--multipart'] : []),
  );

  return (
    <section>
      <h1>Upload an image</h1>
      <form className="panel upload-form" onSubmit={start} aria-label="Upload a file">
        <div>
          <label htmlFor="upload-file">Image file</label>
          <input
            id="upload-file"
            type="file"
            disabled={busy}
            onChange={(e) => pick(e.target.files?.[0] ?? null)}
          />
        </div>
        <div className="row">
          <ImageFields
            prefix="upload"
            busy={busy}
            name={[name, setName]}
            diskFormat={[diskFormat, setDiskFormat]}
            visibility={[visibility, setVisibility]}
          />
          <div>
            <label htmlFor="upload-method">Send the bytes</label>
            <select
              id="upload-method"
              value={choice}
              disabled={busy}
              onChange={(e) => setChoice(e.target.value as 'auto' | UploadMethod)}
            >
              <option value="auto">
                as the service prefers ({preferred === 'multipart' ? 'presigned multipart' : 'streamed'})
              </option>
              <option value="put">streamed (PUT /file)</option>
              <option value="multipart">presigned multipart, parallel parts</option>
            </select>
          </div>
          <div>
            <label htmlFor="upload-reference">Reference (optional)</label>
            <input
              id="upload-reference"
              placeholder="name:tag"
              value={reference}
              disabled={busy}
              onChange={(e) => setReference(e.target.value)}
            />
          </div>
        </div>
        <div className="actions">
          <button type="submit" className="primary" disabled={busy || !file}>
            Upload
          </button>
          {busy && (
            <button type="button" className="danger" onClick={cancel}>
              Cancel upload
            </button>
          )}
          <CopyCommand command={pushCommand} />
        </div>
      </form>

      {phase.kind === 'uploading' && (
        <div className="panel" aria-live="polite">
          <label htmlFor="upload-progress">
            Uploading {file?.name}
            {method === 'multipart' ? ' in presigned parts, several at once' : ''}
          </label>
          <progress id="upload-progress" className="progress" max={phase.total} value={phase.sent} />
          <p>
            {formatBytes(phase.sent)} of {formatBytes(phase.total)} (
            {Math.floor((phase.sent / Math.max(phase.total, 1)) * 100)}
            %) · {phase.rate > 0 ? `${formatBytes(phase.rate)}/s` : 'measuring…'} · about{' '}
            {phase.rate > 0 ? formatDuration((phase.total - phase.sent) / phase.rate) : '—'} left
          </p>
        </div>
      )}
      {phase.kind === 'finishing' && (
        <p className="panel" aria-live="polite">
          All bytes sent; the service is checking the format and the checksums
          {phase.status ? ` (${phase.status})` : ''}…
        </p>
      )}
      {phase.kind === 'done' && (
        <div className="notice" role="status">
          <p>
            <Link to={`/images/${phase.image.id}`}>{phase.image.name}</Link> is{' '}
            <strong>{phase.image.status}</strong>
            {phase.reference ? ` and ${phase.reference} points to it` : ''}.
          </p>
          <p>
            {phase.image.os_hash_algo}: <code className="checksum">{phase.image.os_hash_value}</code>
          </p>
        </div>
      )}
      {phase.kind === 'failed' && (
        <div className="error" role="alert">
          <p>
            The upload failed: <span className="reason">{phase.message}</span>
          </p>
          <p>Nothing was kept: the image it created was deleted.</p>
          <button type="button" onClick={() => start()}>
            Retry
          </button>
        </div>
      )}
      {phase.kind === 'cancelled' && (
        <p className="notice" role="status">
          The upload was cancelled and the image it created was deleted.
        </p>
      )}
      <ImportFromUrl />
      <ImportFromS3 />
    </section>
  );
}
