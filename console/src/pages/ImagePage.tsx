/**
 * One image: every property (Glance's base attributes read-only, extras editable through the
 * JSON-patch API), tags, protection, deactivate/reactivate, delete; its members (share with a
 * project) or, for a project it is shared with, accept/reject; its tasks; download.
 */
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { ApiError, api, BASE_PROPERTIES, type Image, JSON_PATCH, type Member, storedToken } from '../api.ts';
import { curl, hangar } from '../commands.ts';
import { navigate } from '../router.tsx';
import {
  ConfirmButton,
  CopyCommand,
  ErrorText,
  formatBytes,
  formatTime,
  StatusBadge,
  usePolling,
} from '../ui.tsx';

const BUSY = new Set(['saving', 'importing', 'uploading']);

/** Glance's JSON-patch paths escape `~` and `/` (RFC 6901). */
const pointer = (key: string) => `/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`;

/**
 * The caller's own membership, if the image is shared *with* its project: such an image is in
 * exactly one of the shared lists by member status, while the owner's (and an admin's) own
 * images are in all of them.
 */
async function consumerStatus(image: Image): Promise<Member['status'] | null> {
  if (image.visibility !== 'shared') return null;
  const name = image.name ? `&name=${encodeURIComponent(image.name)}` : '';
  const statuses = ['pending', 'accepted', 'rejected'] as const;
  const lists = await Promise.all(
    statuses.map((s) => api.listImages(`visibility=shared&member_status=${s}&limit=1000${name}`)),
  );
  const found = statuses.filter((_, i) => lists[i]?.images.some((other) => other.id === image.id));
  return found.length === 1 ? (found[0] ?? null) : null;
}

function value(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

function ExtraProperties({ image, onChanged }: { image: Image; onChanged: (image: Image) => void }) {
  const extras = Object.entries(image).filter(([key]) => !BASE_PROPERTIES.has(key));
  const [key, setKey] = useState('');
  const [val, setVal] = useState('');
  const [error, setError] = useState<unknown>(null);
  const patch = async (ops: unknown[]) => {
    setError(null);
    try {
      onChanged(await api.patchImage(image.id, ops));
      return true;
    } catch (e) {
      setError(e);
      return false;
    }
  };
  const add = async (event: FormEvent) => {
    event.preventDefault();
    if (!key.trim()) {
      setError(new Error('Give the property a name.'));
      return;
    }
    const op = key.trim() in image ? 'replace' : 'add';
    if (await patch([{ op, path: pointer(key.trim()), value: val }])) {
      setKey('');
      setVal('');
    }
  };
  return (
    <section aria-labelledby="extras-title">
      <h2 id="extras-title">Extra properties</h2>
      {extras.length === 0 && <p>None.</p>}
      <dl className="props">
        {extras.map(([k, v]) => (
          <div key={k} className="prop-row">
            <dt>{k}</dt>
            <dd>
              <code>{value(v)}</code>{' '}
              <button
                type="button"
                className="link"
                onClick={() => patch([{ op: 'remove', path: pointer(k) }])}
              >
                Remove<span className="visually-hidden"> {k}</span>
              </button>{' '}
              <CopyCommand
                command={curl(
                  'PATCH',
                  `/v2/images/${image.id}`,
                  [{ op: 'remove', path: pointer(k) }],
                  JSON_PATCH,
                )}
              />
            </dd>
          </div>
        ))}
      </dl>
      <form className="row" onSubmit={add}>
        <div>
          <label htmlFor="prop-key">Property</label>
          <input id="prop-key" value={key} onChange={(e) => setKey(e.target.value)} />
        </div>
        <div>
          <label htmlFor="prop-value">Value</label>
          <input id="prop-value" value={val} onChange={(e) => setVal(e.target.value)} />
        </div>
        <button type="submit">Set property</button>
        <CopyCommand
          command={curl(
            'PATCH',
            `/v2/images/${image.id}`,
            [{ op: key.trim() in image ? 'replace' : 'add', path: pointer(key.trim() || 'KEY'), value: val }],
            JSON_PATCH,
          )}
        />
      </form>
      <ErrorText error={error} />
    </section>
  );
}

function Tags({ image, reload }: { image: Image; reload: () => void }) {
  const [tag, setTag] = useState('');
  const [error, setError] = useState<unknown>(null);
  const run = async (action: () => Promise<void>) => {
    setError(null);
    try {
      await action();
      reload();
    } catch (e) {
      setError(e);
    }
  };
  return (
    <section aria-labelledby="tags-title">
      <h2 id="tags-title">Tags</h2>
      <ul className="tags">
        {image.tags.length === 0 && <li>None.</li>}
        {image.tags.map((t) => (
          <li key={t}>
            <span className="badge">{t}</span>{' '}
            <button type="button" className="link" onClick={() => run(() => api.removeTag(image.id, t))}>
              Remove<span className="visually-hidden"> tag {t}</span>
            </button>
          </li>
        ))}
      </ul>
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (tag.trim())
            void run(async () => {
              await api.addTag(image.id, tag.trim());
              setTag('');
            });
        }}
      >
        <div>
          <label htmlFor="new-tag">New tag</label>
          <input id="new-tag" value={tag} onChange={(e) => setTag(e.target.value)} />
        </div>
        <button type="submit">Add tag</button>
        <CopyCommand
          command={curl('PUT', `/v2/images/${image.id}/tags/${encodeURIComponent(tag || 'TAG')}`)}
        />
      </form>
      <ErrorText error={error} />
    </section>
  );
}

function Members({
  image,
  consumer,
  reload,
}: {
  image: Image;
  consumer: Member['status'] | null;
  reload: () => void;
}) {
  const [members, setMembers] = useState<Member[] | null>(null);
  const [project, setProject] = useState('');
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    api
      .members(image.id)
      .then((list) => setMembers(list.members))
      .catch((e) => {
        setMembers([]);
        // A private image has no members: not an error worth shouting about.
        if (!(e instanceof ApiError && e.status === 403)) setError(e);
      });
  }, [image.id]);
  useEffect(load, [load]);
  const run = async (action: () => Promise<unknown>) => {
    setError(null);
    try {
      await action();
      load();
      reload();
    } catch (e) {
      setError(e);
    }
  };
  if (consumer) {
    const mine = members?.[0];
    return (
      <section aria-labelledby="members-title">
        <h2 id="members-title">Shared with your project</h2>
        <p>
          {image.owner} shares this image with your project{mine ? ` (${mine.member_id})` : ''}. Your answer:{' '}
          <strong className="member-status">{consumer}</strong>.
        </p>
        <div className="actions">
          <button
            type="button"
            className="primary"
            disabled={!mine || consumer === 'accepted'}
            onClick={() => mine && run(() => api.answerMember(image.id, mine.member_id, 'accepted'))}
          >
            Accept
          </button>
          <button
            type="button"
            disabled={!mine || consumer === 'rejected'}
            onClick={() => mine && run(() => api.answerMember(image.id, mine.member_id, 'rejected'))}
          >
            Reject
          </button>
          <CopyCommand command={hangar('accept', image.id)} />
        </div>
        <ErrorText error={error} />
      </section>
    );
  }
  return (
    <section aria-labelledby="members-title">
      <h2 id="members-title">Members</h2>
      {image.visibility !== 'shared' && (
        <p className="help">
          Only images with visibility “shared” have members; change the visibility to share it.
        </p>
      )}
      {members && members.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Project</th>
              <th scope="col">Status</th>
              <th scope="col">Since</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {members.map((m) => (
              <tr key={m.member_id}>
                <td>{m.member_id}</td>
                <td>
                  <span className={`badge member-${m.status}`}>{m.status}</span>
                </td>
                <td>{formatTime(m.updated_at)}</td>
                <td>
                  <button
                    type="button"
                    className="link"
                    onClick={() => run(() => api.removeMember(image.id, m.member_id))}
                  >
                    Stop sharing<span className="visually-hidden"> with {m.member_id}</span>
                  </button>{' '}
                  <CopyCommand command={hangar('unshare', image.id, m.member_id)} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (project.trim())
            void run(async () => {
              await api.addMember(image.id, project.trim());
              setProject('');
            });
        }}
      >
        <div>
          <label htmlFor="share-project">Share with project</label>
          <input id="share-project" value={project} onChange={(e) => setProject(e.target.value)} />
        </div>
        <button type="submit">Share</button>
        <CopyCommand command={hangar('share', image.id, project.trim() || 'PROJECT')} />
      </form>
      <ErrorText error={error} />
    </section>
  );
}

function Tasks({ imageId }: { imageId: string }) {
  const [tasks, setTasks] = useState<Array<Record<string, unknown>> | null>(null);
  useEffect(() => {
    api
      .imageTasks(imageId)
      .then((list) => setTasks(list.tasks))
      .catch(() => setTasks(null));
  }, [imageId]);
  if (!tasks || tasks.length === 0) return null;
  return (
    <section aria-labelledby="tasks-title">
      <h2 id="tasks-title">Tasks</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Type</th>
            <th scope="col">Status</th>
            <th scope="col">Message</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {tasks.map((task) => (
            <tr key={String(task.id)}>
              <td>{value(task.type)}</td>
              <td>{value(task.status)}</td>
              <td>{value(task.message)}</td>
              <td>{formatTime(typeof task.updated_at === 'string' ? task.updated_at : null)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Download({ image }: { image: Image }) {
  const [progress, setProgress] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const download = async () => {
    setError(null);
    try {
      // A link cannot carry the token header: fetch the bytes and hand them over as a blob.
      const response = await fetch(`/v2/images/${encodeURIComponent(image.id)}/file`, {
        headers: { 'x-auth-token': storedToken() ?? '' },
      });
      if (!response.ok || !response.body) throw new ApiError(response.status, await response.text());
      const reader = response.body.getReader();
      const parts: Uint8Array[] = [];
      let received = 0;
      for (;;) {
        const { done, value: chunk } = await reader.read();
        if (done) break;
        parts.push(chunk);
        received += chunk.length;
        setProgress(`${formatBytes(received)} of ${formatBytes(image.size)}`);
      }
      const url = URL.createObjectURL(new Blob(parts as BlobPart[]));
      const a = document.createElement('a');
      a.href = url;
      a.download = `${image.name ?? image.id}.${image.disk_format ?? 'img'}`;
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      setProgress(null);
    } catch (e) {
      setProgress(null);
      setError(e);
    }
  };
  return (
    <span>
      <button type="button" disabled={image.status !== 'active'} onClick={download}>
        Download
      </button>{' '}
      {progress && <span aria-live="polite">{progress}</span>}
      <CopyCommand
        command={hangar('pull', image.id, '-O', `${image.name ?? image.id}.${image.disk_format ?? 'img'}`)}
      />
      <ErrorText error={error} />
    </span>
  );
}

export function ImagePage({ id }: { id: string }) {
  const [image, setImage] = useState<Image | null>(null);
  const [consumer, setConsumer] = useState<Member['status'] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const load = useCallback(() => {
    api
      .image(id)
      .then(async (shown) => {
        setImage(shown);
        setError(null);
        setConsumer(await consumerStatus(shown).catch(() => null));
      })
      .catch(setError);
  }, [id]);
  useEffect(load, [load]);
  usePolling(load, 2000, image !== null && BUSY.has(image.status));

  if (error) return <ErrorText error={error} />;
  if (!image) return <p aria-live="polite">Loading…</p>;
  const act = async (action: () => Promise<unknown>) => {
    setActionError(null);
    try {
      await action();
      load();
    } catch (e) {
      setActionError(e);
    }
  };
  const base: Array<[string, unknown]> = [
    ['id', image.id],
    ['status', image.status],
    ['disk_format', image.disk_format],
    ['container_format', image.container_format],
    ['size', image.size === null ? null : `${formatBytes(image.size)} (${image.size} bytes)`],
    ['virtual_size', image.virtual_size === null ? null : formatBytes(image.virtual_size)],
    ['visibility', image.visibility],
    ['protected', image.protected],
    ['os_hidden', image.os_hidden],
    ['owner', image.owner],
    ['checksum (md5)', image.checksum],
    ['os_hash_algo', image.os_hash_algo],
    ['os_hash_value', image.os_hash_value],
    ['min_ram (MB)', image.min_ram],
    ['min_disk (GB)', image.min_disk],
    ['created_at', formatTime(image.created_at)],
    ['updated_at', formatTime(image.updated_at)],
  ];
  return (
    <article>
      <div className="page-head">
        <h1>{image.name || image.id}</h1>
        <StatusBadge status={image.status} />
      </div>
      <div className="actions">
        <Download image={image} />
        {image.status === 'deactivated' ? (
          <ConfirmButton
            label="Reactivate"
            title={`Reactivate ${image.name ?? image.id}?`}
            onConfirm={() => act(() => api.imageAction(image.id, 'reactivate'))}
          >
            <p>Its data can be downloaded again.</p>
            <CopyCommand command={curl('POST', `/v2/images/${image.id}/actions/reactivate`)} />
          </ConfirmButton>
        ) : (
          <ConfirmButton
            label="Deactivate"
            title={`Deactivate ${image.name ?? image.id}?`}
            disabled={image.status !== 'active'}
            onConfirm={() => act(() => api.imageAction(image.id, 'deactivate'))}
          >
            <p>Its data can no longer be downloaded (admins excepted) until it is reactivated.</p>
            <CopyCommand command={curl('POST', `/v2/images/${image.id}/actions/deactivate`)} />
          </ConfirmButton>
        )}
        <ConfirmButton
          label={image.protected ? 'Unprotect' : 'Protect'}
          title={image.protected ? 'Allow this image to be deleted?' : 'Protect this image from deletion?'}
          onConfirm={() =>
            act(() =>
              api.patchImage(image.id, [{ op: 'replace', path: '/protected', value: !image.protected }]),
            )
          }
        >
          <CopyCommand
            command={curl(
              'PATCH',
              `/v2/images/${image.id}`,
              [{ op: 'replace', path: '/protected', value: !image.protected }],
              JSON_PATCH,
            )}
          />
        </ConfirmButton>
        <ConfirmButton
          label="Delete"
          danger
          title={`Delete ${image.name ?? image.id}?`}
          confirmLabel="Delete image"
          onConfirm={async () => {
            await api.deleteImage(image.id);
            navigate('/');
          }}
        >
          <p>
            The image and its data are deleted for good
            {image.protected ? '; it is protected, so the service will refuse' : ''}.
          </p>
          <CopyCommand command={hangar('rmi', image.id)} />
        </ConfirmButton>
      </div>
      <ErrorText error={actionError} />
      <section aria-labelledby="base-title">
        <h2 id="base-title">Properties</h2>
        <dl className="props">
          {base.map(([k, v]) => (
            <div key={k} className="prop-row">
              <dt>{k}</dt>
              <dd>
                <code>{value(v)}</code>
              </dd>
            </div>
          ))}
        </dl>
        <p className="help">
          <CopyCommand command={hangar('inspect', image.id)} />
        </p>
      </section>
      <ExtraProperties image={image} onChanged={setImage} />
      <Tags image={image} reload={load} />
      <Members image={image} consumer={consumer} reload={load} />
      <Tasks imageId={image.id} />
    </article>
  );
}
