/**
 * name:tag references (docs/references-api.md): the list of a namespace, and one reference with
 * its timeline. Moves and rollbacks are compare-and-swap on the image the page last showed: when
 * someone else moved it first, the service's 409 is shown as that, with what it points to now.
 */
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import {
  ApiError,
  api,
  type HistoryEntry,
  type Image,
  type Instance,
  type Publication,
  type Reference,
  type RetentionPolicy,
} from '../api.ts';
import { curl, hangar } from '../commands.ts';
import { Link, navigate, useLocation } from '../router.tsx';
import {
  ConfirmButton,
  CopyCommand,
  describeError,
  ErrorText,
  formatTime,
  NumberField,
  usePolling,
} from '../ui.tsx';

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

const finished = (p: Publication) => p.status === 'success' || p.status === 'failure';

/**
 * Publish a candidate behind the gate (docs/references-api.md, "Publishing behind a test gate"):
 * the task is polled and every status it passes through is listed with its time; with a boot
 * gate, the gate instance (its id is the task's) is shown with its stage while it exists.
 */
function Publish({ reference, current, onDone }: { reference: string; current: string; onDone: () => void }) {
  const [candidate, setCandidate] = useState('');
  const [marker, setMarker] = useState('');
  const [timeout, setTimeoutSeconds] = useState(600);
  const [task, setTask] = useState<Publication | null>(null);
  const [seen, setSeen] = useState<Array<{ status: string; at: string }>>([]);
  const [gate, setGate] = useState<Instance | null>(null);
  const [error, setError] = useState<unknown>(null);
  const record = (p: Publication) => {
    setTask(p);
    setSeen((list) =>
      list.at(-1)?.status === p.status ? list : [...list, { status: p.status, at: new Date().toISOString() }],
    );
    if (finished(p)) onDone();
  };
  const poll = () => {
    if (!task || finished(task)) return;
    api.publication(task.id).then(record).catch(setError);
    if (task.input?.boot)
      api
        .instance(task.id)
        .then(setGate)
        .catch(() => undefined);
  };
  usePolling(poll, 1000, task !== null && !finished(task));
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    setSeen([]);
    setGate(null);
    try {
      record(
        await api.publish(reference, {
          image_id: candidate,
          expect: current,
          ...(marker ? { boot: { marker, timeout_seconds: timeout } } : {}),
        }),
      );
    } catch (e) {
      setError(e);
    }
  };
  const command = hangar(
    'publish',
    candidate || 'IMAGE',
    reference,
    ...(marker ? ['--boot-marker', marker, '--boot-timeout', `${timeout}s`] : []),
    '--expect',
    current,
    '--wait',
  );
  return (
    <form className="panel" onSubmit={submit} aria-labelledby="publish-title">
      <h2 id="publish-title">Publish a candidate</h2>
      <p>
        Moves {reference} to the candidate only once its stored bytes verify again and, with a boot marker, an
        instance of it boots and prints the marker.
      </p>
      <div className="row">
        <ImageChoice id="publish-image" label="Candidate image" value={candidate} onChange={setCandidate} />
        <div>
          <label htmlFor="publish-marker">Boot marker (optional)</label>
          <input id="publish-marker" value={marker} onChange={(e) => setMarker(e.target.value)} />
        </div>
        <div>
          <label htmlFor="publish-timeout">Boot timeout (s)</label>
          <input
            id="publish-timeout"
            type="number"
            min={10}
            max={3600}
            value={timeout}
            onChange={(e) => setTimeoutSeconds(Number(e.target.value))}
          />
        </div>
      </div>
      <div className="actions">
        <button type="submit" className="primary" disabled={!candidate || (task !== null && !finished(task))}>
          Publish
        </button>
        <CopyCommand command={command} />
      </div>
      <ErrorText error={error} />
      {task && (
        <div className="publication" aria-live="polite">
          <h3>
            Publication <code>{task.id}</code>
          </h3>
          <ol className="publish-stages">
            {seen.map((s) => (
              <li key={s.status} className={`badge status-${s.status}`}>
                {s.status} <span className="muted">{formatTime(s.at)}</span>
              </li>
            ))}
          </ol>
          {gate && (
            <p>
              Gate instance <Link to={`/instances/${gate.id}`}>{gate.name}</Link>:{' '}
              <span className={`badge stage-${gate.stage}`}>{gate.stage}</span>
              {gate.pending_action && ` (${gate.pending_action} pending)`}
            </p>
          )}
          {task.status === 'success' && (
            <p className="publish-outcome">
              Published: {reference} now points to {candidate}.
            </p>
          )}
          {task.status === 'failure' && (
            <p className="error publish-outcome" role="alert">
              {task.message}
            </p>
          )}
        </div>
      )}
    </form>
  );
}

/** The name's retention policy (docs/references-api.md, "Retention"): shown, set, applied now. */
function Retention({ name }: { name: string }) {
  const [policy, setPolicy] = useState<RetentionPolicy | null | undefined>(undefined);
  const [keep, setKeep] = useState(3);
  const [graceDays, setGraceDays] = useState(7);
  const [error, setError] = useState<unknown>(null);
  const [applied, setApplied] = useState<string | null>(null);
  useEffect(() => {
    api
      .retention(name)
      .then((p) => {
        setPolicy(p);
        setKeep(p.keep);
        setGraceDays(Math.round(p.grace_seconds / 86_400));
      })
      .catch((e) => (e instanceof ApiError && e.status === 404 ? setPolicy(null) : setError(e)));
  }, [name]);
  const save = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      setPolicy(await api.setRetention(name, keep, graceDays * 86_400));
    } catch (e) {
      setError(e);
    }
  };
  const apply = async () => {
    setError(null);
    try {
      const plan = await api.applyRetention(name);
      setApplied(
        `Hidden: ${plan.hidden.length}, deactivated: ${plan.deactivated.length}, restored: ${plan.restored.length}.`,
      );
    } catch (e) {
      setError(e);
    }
  };
  return (
    <form className="panel" onSubmit={save} aria-labelledby="retention-title">
      <h2 id="retention-title">Retention of {name}</h2>
      <p className="retention-policy">
        {policy === undefined
          ? 'Loading…'
          : policy === null
            ? 'No retention policy: every version stays visible.'
            : `Keeps the newest ${policy.keep} versions visible; older ones are hidden, and deactivated after ${Math.round(policy.grace_seconds / 86_400)} days.`}
      </p>
      <div className="row">
        <NumberField id="retention-keep" label="Versions to keep" min={1} value={keep} onChange={setKeep} />
        <NumberField
          id="retention-grace"
          label="Grace (days)"
          min={0}
          value={graceDays}
          onChange={setGraceDays}
        />
      </div>
      <div className="actions">
        <button type="submit" className="primary">
          Set policy
        </button>
        <button type="button" disabled={!policy} onClick={apply}>
          Apply now
        </button>
        <CopyCommand
          command={hangar('retention', name, '--keep', String(keep), '--grace', `${graceDays}d`)}
        />
      </div>
      {applied && <p role="status">{applied}</p>}
      <ErrorText error={error} />
    </form>
  );
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
      <Publish reference={ref.reference} current={current} onDone={() => void load()} />
      <Retention name={ref.name} />
    </article>
  );
}
