/**
 * name:tag references (docs/references-api.md): the list of a namespace, and one reference with
 * its timeline. Moves and rollbacks are compare-and-swap on the image the page last showed: when
 * someone else moved it first, the service's 409 is shown as that, with what it points to now.
 */
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { ApiError, api, type HistoryEntry, type Image, type Reference } from '../api.ts';
import { curl, hangar } from '../commands.ts';
import { Link, navigate, useLocation } from '../router.tsx';
import { ConfirmButton, CopyCommand, describeError, ErrorText, formatTime } from '../ui.tsx';

function useActiveImages(): Image[] {
  const [images, setImages] = useState<Image[]>([]);
  useEffect(() => {
    api
      .listImages('status=active&limit=200&sort=created_at:desc')
      .then((list) => setImages(list.images))
      .catch(() => setImages([]));
  }, []);
  return images;
}

function ImageChoice({
  id,
  label,
  value,
  onChange,
}: {
  id: string;
  label: string;
  value: string;
  onChange: (v: string) => void;
}) {
  const images = useActiveImages();
  return (
    <div>
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
        <option value="">Choose an active image…</option>
        {images.map((image) => (
          <option key={image.id} value={image.id}>
            {image.name ?? '(no name)'} — {image.id.slice(0, 8)}
          </option>
        ))}
      </select>
    </div>
  );
}

export function References() {
  const { query } = useLocation();
  const namespace = query.get('namespace') ?? '';
  const [refs, setRefs] = useState<Reference[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [newRef, setNewRef] = useState('');
  const [imageId, setImageId] = useState('');
  const [createError, setCreateError] = useState<unknown>(null);
  const load = useCallback(() => {
    api
      .references(namespace || undefined)
      .then((list) => {
        setRefs(list.references);
        setError(null);
      })
      .catch(setError);
  }, [namespace]);
  useEffect(load, [load]);
  const create = async (event: FormEvent) => {
    event.preventDefault();
    setCreateError(null);
    try {
      const ref = await api.createReference(newRef.trim(), imageId, namespace || undefined);
      navigate(
        `/references/${encodeURIComponent(ref.reference)}${namespace ? `?namespace=${namespace}` : ''}`,
      );
    } catch (e) {
      setCreateError(e);
    }
  };
  return (
    <section>
      <h1>References</h1>
      <div className="toolbar">
        <label htmlFor="ref-namespace">Namespace</label>
        <select
          id="ref-namespace"
          value={namespace}
          onChange={(e) => navigate(`/references${e.target.value ? `?namespace=${e.target.value}` : ''}`)}
        >
          <option value="">your project</option>
          <option value="public">public</option>
        </select>
      </div>
      <ErrorText error={error} />
      {refs && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Reference</th>
                <th scope="col">Image</th>
                <th scope="col">Updated</th>
                <th scope="col">By</th>
              </tr>
            </thead>
            <tbody>
              {refs.length === 0 && (
                <tr>
                  <td colSpan={4}>No references in this namespace yet.</td>
                </tr>
              )}
              {refs.map((ref) => (
                <tr key={ref.reference}>
                  <td>
                    <Link
                      to={`/references/${encodeURIComponent(ref.reference)}${namespace ? `?namespace=${namespace}` : ''}`}
                    >
                      {ref.reference}
                    </Link>
                  </td>
                  <td>
                    <Link to={`/images/${ref.image_id}`}>
                      <code>{ref.image_id}</code>
                    </Link>
                  </td>
                  <td>{formatTime(ref.updated_at)}</td>
                  <td>{ref.updated_by}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>New reference</h2>
      <form className="panel row" onSubmit={create}>
        <div>
          <label htmlFor="new-ref">Reference</label>
          <input
            id="new-ref"
            placeholder="name:tag"
            value={newRef}
            onChange={(e) => setNewRef(e.target.value)}
          />
        </div>
        <ImageChoice id="new-ref-image" label="Image" value={imageId} onChange={setImageId} />
        <button type="submit" className="primary" disabled={!newRef.trim() || !imageId}>
          Create reference
        </button>
        <CopyCommand command={hangar('tag', imageId || 'IMAGE', newRef.trim() || 'NAME:TAG')} />
      </form>
      <ErrorText error={createError} />
    </section>
  );
}

/** A 409 from a compare-and-swap: someone moved the reference since this page read it. */
function casMessage(error: unknown, ref: string, current: string | undefined): string | null {
  if (!(error instanceof ApiError) || error.status !== 409) return null;
  return `Someone else moved ${ref} first${current ? ` (it now points to ${current})` : ''}: nothing was changed. The timeline shows the latest state; try again from there. (${error.message})`;
}

export function ReferencePage({ reference }: { reference: string }) {
  const [ref, setRef] = useState<Reference | null>(null);
  const [history, setHistory] = useState<HistoryEntry[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [target, setTarget] = useState('');
  const load = useCallback(async () => {
    try {
      const [shown, moves] = await Promise.all([api.reference(reference), api.history(reference)]);
      setRef(shown);
      setHistory(moves.history);
      setError(null);
      return shown;
    } catch (e) {
      setError(e);
      return null;
    }
  }, [reference]);
  useEffect(() => {
    void load();
  }, [load]);

  const cas = async (action: () => Promise<unknown>) => {
    setActionError(null);
    try {
      await action();
      await load();
    } catch (e) {
      const fresh = await load();
      setActionError(casMessage(e, reference, fresh?.image_id) ?? describeError(e));
    }
  };
  if (error && !ref) return <ErrorText error={error} />;
  if (!ref) return <p aria-live="polite">Loading…</p>;
  const current = ref.image_id;
  const earlier = new Set(history.map((h) => h.to).filter((to): to is string => !!to && to !== current));

  return (
    <article>
      <div className="page-head">
        <h1>{ref.reference}</h1>
        <ConfirmButton
          label="Delete reference"
          danger
          title={`Delete ${ref.reference}?`}
          onConfirm={async () => {
            await api.deleteReference(reference);
            navigate('/references');
          }}
        >
          <p>The image stays; only the name:tag pointer goes (its history is kept).</p>
          <CopyCommand command={hangar('untag', ref.reference)} />
        </ConfirmButton>
      </div>
      <p>
        Points to{' '}
        <Link to={`/images/${current}`}>
          <code className="current-image">{current}</code>
        </Link>{' '}
        (namespace {ref.namespace}, version {ref.version}, by {ref.updated_by}, {formatTime(ref.updated_at)}).
      </p>
      <form
        className="panel row"
        onSubmit={(e) => {
          e.preventDefault();
          if (target) void cas(() => api.moveReference(reference, target, current));
        }}
      >
        <ImageChoice id="move-image" label="Move to image" value={target} onChange={setTarget} />
        <button type="submit" className="primary" disabled={!target || target === current}>
          Move
        </button>
        <CopyCommand command={hangar('tag', target || 'IMAGE', ref.reference)} />
        <CopyCommand
          label="Copy as curl"
          command={curl('POST', `/v1/references/${ref.reference}/move`, {
            image_id: target || 'IMAGE',
            expect: current,
          })}
        />
      </form>
      {actionError && (
        <p className="error" role="alert">
          {actionError}
        </p>
      )}
      <h2>Timeline</h2>
      <ol className="timeline" reversed>
        {history.map((entry) => (
          <li key={entry.seq} className={entry.to === current ? 'current' : undefined}>
            <span className="badge">{entry.action}</span> {formatTime(entry.at)} by{' '}
            <strong>{entry.by}</strong>: from <code>{entry.from ?? '—'}</code> to{' '}
            <code>{entry.to ?? '—'}</code>{' '}
            {entry.to && earlier.has(entry.to) && (
              <>
                <button
                  type="button"
                  onClick={() => {
                    const to = entry.to;
                    if (to) void cas(() => api.rollbackReference(reference, to, current));
                  }}
                >
                  Roll back to this<span className="visually-hidden"> ({entry.to})</span>
                </button>{' '}
                <CopyCommand command={hangar('rollback', ref.reference, '--to', entry.to)} />
              </>
            )}
          </li>
        ))}
      </ol>
    </article>
  );
}
