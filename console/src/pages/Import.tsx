/**
 * Imports (Glance's interoperable import, `web-download`): the service fetches the bytes itself,
 * from a URL or from an S3 key. An S3 key is presigned here, in the browser, with the caller's own
 * AWS credentials, as `hangar import s3://BUCKET/KEY` does with the SDK's: the service needs no
 * rights on the bucket, and the credentials stay in this page's memory (never stored, never sent
 * to Hangar; only the signed URL is). The page follows the image's status and its task, shows
 * the task's failure reason, and deletes the image of a failed import.
 */
import { AwsV4Signer } from 'aws4fetch';
import { type FormEvent, type ReactNode, useState } from 'react';
import { api, type Image, request } from '../api.ts';
import { curl, hangar } from '../commands.ts';
import { Link } from '../router.tsx';
import { CopyCommand, describeError, TextField } from '../ui.tsx';
import { formatFromName, ImageFields, UploadFailed } from './image-fields.tsx';

type ImportPhase =
  | { kind: 'idle' }
  | { kind: 'importing'; imageId: string; status: string; task?: string }
  | { kind: 'done'; image: Image }
  | { kind: 'failed'; message: string };

interface ImportRequest {
  /** What the service downloads. */
  uri: string;
  /** How the source is named to the user: a presigned URL carries a signature, never shown. */
  shown: string;
  name: string;
  diskFormat: string;
  visibility: string;
}

/**
 * Follows an image being filled by the service (an import, or a completed multipart upload) to
 * active, reporting its status and its task's; rejects with the task's reason when it fails.
 */
export async function followImport(
  imageId: string,
  onProgress: (status: string, task?: string) => void,
): Promise<Image> {
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const shown = await api.image(imageId);
    const tasks = await api.imageTasks(imageId).catch(() => ({ tasks: [] }));
    const task = tasks.tasks[0];
    if (shown.status === 'active') return shown;
    const failed = typeof shown.os_glance_failed_import === 'string' && shown.os_glance_failed_import !== '';
    if (task?.status === 'failure' || (shown.status === 'queued' && failed) || shown.status === 'killed') {
      const reason =
        (typeof task?.message === 'string' && task.message) ||
        (typeof shown.os_glance_failed_import === 'string' && shown.os_glance_failed_import) ||
        `the image is ${shown.status}`;
      throw new UploadFailed(reason);
    }
    onProgress(
      shown.status,
      task ? `task ${String(task.status)}${task.message ? `: ${String(task.message)}` : ''}` : undefined,
    );
  }
}

/** Creates the image, asks for the import and follows it to active or to its failure's reason. */
async function runImport(job: ImportRequest, report: (phase: ImportPhase) => void): Promise<void> {
  let image: Image | undefined;
  try {
    image = await api.createImage({
      name: job.name || job.shown.split('/').pop() || 'imported',
      disk_format: job.diskFormat,
      container_format: 'bare',
      visibility: job.visibility,
    });
    const imageId = image.id;
    await request('POST', `/v2/images/${encodeURIComponent(imageId)}/import`, {
      body: { method: { name: 'web-download', uri: job.uri } },
    });
    const active = await followImport(imageId, (status, task) =>
      report({ kind: 'importing', imageId, status, ...(task ? { task } : {}) }),
    );
    report({ kind: 'done', image: active });
  } catch (error) {
    if (image) await api.deleteImage(image.id).catch(() => undefined);
    const message = error instanceof UploadFailed ? error.message : describeError(error);
    report({ kind: 'failed', message: message.split(job.uri).join(job.shown) });
  }
}

/** The form's shell, its progress and its outcome, for either source. */
function ImportSection(props: {
  id: string;
  title: string;
  phase: ImportPhase;
  onSubmit: (event?: FormEvent) => void;
  canSubmit: boolean;
  command: ReactNode;
  children: ReactNode;
}) {
  const { phase } = props;
  const busy = phase.kind === 'importing';
  return (
    <section aria-labelledby={`${props.id}-title`}>
      <h2 id={`${props.id}-title`}>{props.title}</h2>
      <form className="panel" onSubmit={props.onSubmit} aria-label={props.title}>
        {props.children}
        <div className="actions">
          <button type="submit" className="primary" disabled={busy || !props.canSubmit}>
            Import
          </button>
          {props.command}
        </div>
      </form>
      {phase.kind === 'importing' && (
        <p className="panel import-progress" aria-live="polite">
          <span className="spinner" aria-hidden="true" /> The service is fetching the image: {phase.status}
          {phase.task ? ` (${phase.task})` : ''}…
        </p>
      )}
      {phase.kind === 'done' && (
        <div className="notice import-result" role="status">
          <p>
            <Link to={`/images/${phase.image.id}`}>{phase.image.name}</Link> is{' '}
            <strong>{phase.image.status}</strong>.
          </p>
          <p>
            {phase.image.os_hash_algo}: <code className="checksum">{phase.image.os_hash_value}</code>
          </p>
        </div>
      )}
      {phase.kind === 'failed' && (
        <div className="error import-result" role="alert">
          <p>
            The import failed: <span className="reason">{phase.message}</span>
          </p>
          <p>Nothing was kept: the image it created was deleted.</p>
          <button type="button" onClick={() => props.onSubmit()}>
            Retry import
          </button>
        </div>
      )}
    </section>
  );
}

/** Name, format and visibility state, the format following the source's name until chosen. */
function useImageFields() {
  const name = useState('');
  const diskFormat = useState('qcow2');
  const visibility = useState('private');
  return { name, diskFormat, visibility };
}

export function ImportFromUrl() {
  const [uri, setUri] = useState('');
  const fields = useImageFields();
  const [phase, setPhase] = useState<ImportPhase>({ kind: 'idle' });
  const busy = phase.kind === 'importing';
  const start = (event?: FormEvent) => {
    event?.preventDefault();
    void runImport(
      {
        uri,
        shown: uri,
        name: fields.name[0],
        diskFormat: fields.diskFormat[0],
        visibility: fields.visibility[0],
      },
      setPhase,
    );
  };
  return (
    <ImportSection
      id="import"
      title="Import from a URL"
      phase={phase}
      onSubmit={start}
      canSubmit={uri !== ''}
      command={
        <CopyCommand
          label="Copy as curl"
          command={curl('POST', '/v2/images/IMAGE_ID/import', {
            method: { name: 'web-download', uri: uri || 'URL' },
          })}
        />
      }
    >
      <div className="row">
        <div className="grow">
          <label htmlFor="import-uri">URL</label>
          <input
            id="import-uri"
            type="url"
            size={50}
            value={uri}
            disabled={busy}
            onChange={(e) => setUri(e.target.value)}
          />
        </div>
        <ImageFields prefix="import" busy={busy} {...fields} />
      </div>
    </ImportSection>
  );
}

/** `s3://bucket/key/with/slashes` → bucket and key (as the CLI's parseS3Url); undefined otherwise. */
export function parseS3Url(source: string): { bucket: string; key: string } | undefined {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(source.trim());
  return match?.[1] && match[2] ? { bucket: match[1], key: match[2] } : undefined;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  region: string;
  /** An S3-compatible endpoint (path-style URLs); empty: AWS's own, virtual-hosted. */
  endpoint: string;
}

/** A GET URL for the object, valid for an hour, signed with the caller's credentials (SigV4 query). */
export async function presignGet(bucket: string, key: string, credentials: S3Credentials): Promise<string> {
  const path = key.split('/').map(encodeURIComponent).join('/');
  const endpoint = credentials.endpoint.trim().replace(/\/+$/, '');
  const url = new URL(
    endpoint
      ? `${endpoint}/${encodeURIComponent(bucket)}/${path}`
      : `https://${bucket}.s3.${credentials.region}.amazonaws.com/${path}`,
  );
  url.searchParams.set('X-Amz-Expires', '3600');
  const signer = new AwsV4Signer({
    url: url.toString(),
    method: 'GET',
    accessKeyId: credentials.accessKeyId.trim(),
    secretAccessKey: credentials.secretAccessKey.trim(),
    ...(credentials.sessionToken?.trim() ? { sessionToken: credentials.sessionToken.trim() } : {}),
    service: 's3',
    region: credentials.region.trim(),
    signQuery: true,
  });
  return (await signer.sign()).url.toString();
}

export function ImportFromS3() {
  const [source, setSource] = useState('');
  const [region, setRegion] = useState('us-east-1');
  const [endpoint, setEndpoint] = useState('');
  const [accessKeyId, setAccessKeyId] = useState('');
  const [secretAccessKey, setSecretAccessKey] = useState('');
  const [sessionToken, setSessionToken] = useState('');
  const fields = useImageFields();
  const [, setDiskFormat] = fields.diskFormat;
  const [phase, setPhase] = useState<ImportPhase>({ kind: 'idle' });
  const busy = phase.kind === 'importing';
  const s3 = parseS3Url(source);
  const start = async (event?: FormEvent) => {
    event?.preventDefault();
    if (!s3) {
      setPhase({ kind: 'failed', message: 'Give the source as s3://BUCKET/KEY.' });
      return;
    }
    let uri: string;
    try {
      uri = await presignGet(s3.bucket, s3.key, {
        accessKeyId,
        secretAccessKey,
        sessionToken,
        region,
        endpoint,
      });
    } catch (error) {
      setPhase({ kind: 'failed', message: `Cannot sign a download of ${source}: ${describeError(error)}` });
      return;
    }
    await runImport(
      {
        uri,
        shown: source.trim(),
        name: fields.name[0] || (s3.key.split('/').pop() ?? '').replace(/\.[^.]+$/, ''),
        diskFormat: fields.diskFormat[0],
        visibility: fields.visibility[0],
      },
      setPhase,
    );
  };
  return (
    <ImportSection
      id="import-s3"
      title="Import from an S3 key"
      phase={phase}
      onSubmit={start}
      canSubmit={Boolean(s3 && accessKeyId && secretAccessKey)}
      command={
        <CopyCommand
          command={hangar(
            'import',
            source.trim() || 's3://BUCKET/KEY',
            `${(
              fields.name[0] ||
              s3?.key
                .split('/')
                .pop()
                ?.replace(/\.[^.]+$/, '') ||
              'NAME'
            )
              .toLowerCase()
              .replace(/[^a-z0-9._-]+/g, '-')}:latest`,
            '--disk-format',
            fields.diskFormat[0],
            '--wait',
          )}
        />
      }
    >
      <div className="row">
        <div className="grow">
          <label htmlFor="import-s3-source">S3 key</label>
          <input
            id="import-s3-source"
            size={50}
            placeholder="s3://BUCKET/KEY"
            value={source}
            disabled={busy}
            onChange={(e) => {
              setSource(e.target.value);
              const parsed = parseS3Url(e.target.value);
              if (parsed) setDiskFormat(formatFromName(parsed.key));
            }}
          />
        </div>
        <TextField id="import-s3-region" label="Region" value={region} onChange={setRegion} disabled={busy} />
        <TextField
          id="import-s3-endpoint"
          label="S3 endpoint (optional)"
          value={endpoint}
          onChange={setEndpoint}
          type="url"
          disabled={busy}
        />
      </div>
      <div className="row">
        <TextField
          id="import-s3-key-id"
          label="AWS access key id"
          value={accessKeyId}
          onChange={setAccessKeyId}
          disabled={busy}
        />
        <TextField
          id="import-s3-secret"
          label="AWS secret access key"
          value={secretAccessKey}
          onChange={setSecretAccessKey}
          type="password"
          disabled={busy}
        />
        <TextField
          id="import-s3-session"
          label="Session token (optional)"
          value={sessionToken}
          onChange={setSessionToken}
          type="password"
          disabled={busy}
        />
      </div>
      <p className="help">
        The key is signed here, in this page, with your credentials (a download URL valid for an hour); the
        service fetches it with that URL. The credentials are neither stored nor sent to Hangar.
      </p>
      <div className="row">
        <ImageFields prefix="import-s3" busy={busy} {...fields} />
      </div>
    </ImportSection>
  );
}
