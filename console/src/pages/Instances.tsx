/**
 * Instances (docs/instances-api.md): the list and one instance, polled while a job is pending so
 * the stage is seen to change; only the actions the stage allows are enabled, each confirmed;
 * the serial console's tail; a create form from a reference or image id.
 */
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { api, type Instance, type Reference } from '../api.ts';
import { curl, hangar } from '../commands.ts';
import { Link, navigate } from '../router.tsx';
import { ConfirmButton, CopyCommand, ErrorText, formatTime, NumberField, usePolling } from '../ui.tsx';

/** Which stages each action is allowed from (the service's lifecycle.ts; 409 otherwise). */
export const ACTIONS: ReadonlyArray<{ action: string; cli: string; from: readonly string[]; says: string }> =
  [
    { action: 'start', cli: 'start', from: ['Shutoff'], says: 'Cold-boots the instance.' },
    {
      action: 'stop',
      cli: 'stop',
      from: ['Running', 'Sleep'],
      says: 'Shuts it down (a saved sleep state is dropped).',
    },
    {
      action: 'sleep',
      cli: 'sleep',
      from: ['Running'],
      says: 'Saves the memory to disk and stops it; wake resumes exactly there.',
    },
    { action: 'wake', cli: 'wake', from: ['Sleep'], says: 'Resumes it where it slept.' },
    { action: 'reboot', cli: 'reboot', from: ['Running'], says: 'Reboots the guest.' },
    {
      action: 'destroy',
      cli: 'rm',
      from: ['Running', 'Sleep', 'Shutoff', 'Error'],
      says: 'Removes the domain and its disks for good.',
    },
  ];

/** The image actions (docs/instances-api.md, "Snapshots" and "Upgrade and rollback"): stages they need. */
export const IMAGE_ACTIONS: Readonly<Record<'snapshot' | 'upgrade' | 'rollback', readonly string[]>> = {
  snapshot: ['Running', 'Sleep', 'Shutoff'],
  upgrade: ['Running', 'Shutoff'],
  rollback: ['Running', 'Shutoff'],
};

export function allowed(instance: Instance, action: string): boolean {
  if (instance.pending_action !== null) return false;
  if (action === 'snapshot' || action === 'upgrade' || action === 'rollback') {
    // Rollback returns to the previous disk: without one the service refuses (409).
    if (action === 'rollback' && !instance.previous_image) return false;
    return IMAGE_ACTIONS[action].includes(instance.stage);
  }
  const spec = ACTIONS.find((a) => a.action === action);
  return !!spec && spec.from.includes(instance.stage);
}

const settled = (i: Instance) => i.pending_action === null && i.stage !== 'Building';

function Stage({ instance }: { instance: Instance }) {
  return (
    <span className="stage-cell">
      <span className={`badge stage-${instance.stage}`}>{instance.stage}</span>
      {instance.pending_action && (
        <span className="badge pending">
          <span className="spinner" aria-hidden="true" /> {instance.pending_action} pending
        </span>
      )}
    </span>
  );
}

function Actions({ instance, onDone }: { instance: Instance; onDone: (i: Instance) => void }) {
  return (
    <div className="actions">
      {ACTIONS.map((spec) => (
        <ConfirmButton
          key={spec.action}
          label={spec.action[0]?.toUpperCase() + spec.action.slice(1)}
          danger={spec.action === 'destroy'}
          disabled={!allowed(instance, spec.action)}
          title={`${spec.action} ${instance.name}?`}
          onConfirm={async () => onDone(await api.instanceAction(instance.id, spec.action))}
        >
          <p>{spec.says}</p>
          <CopyCommand command={hangar(spec.cli, instance.id)} />
        </ConfirmButton>
      ))}
      <ImageActions instance={instance} onDone={onDone} />
    </div>
  );
}

/** Snapshot, upgrade and rollback: each confirmed, with its own inputs and the CLI line. */
function ImageActions({ instance, onDone }: { instance: Instance; onDone: (i: Instance) => void }) {
  const [snapName, setSnapName] = useState('');
  const [snapRef, setSnapRef] = useState('');
  const [created, setCreated] = useState<string | null>(null);
  const [upgradeTo, setUpgradeTo] = useState('');
  const snapTarget = snapRef || snapName || 'NAME:TAG';
  const follows = instance.reference ?? instance.image?.requested_as ?? null;
  return (
    <>
      <ConfirmButton
        label="Snapshot"
        disabled={!allowed(instance, 'snapshot')}
        title={`Snapshot ${instance.name}?`}
        onConfirm={async () => {
          const name = snapName.trim() || `${instance.name}-snapshot`;
          const reference = snapRef.trim();
          const answer = await api.snapshotInstance(instance.id, {
            name,
            ...(reference ? { reference } : {}),
          });
          setCreated(answer.image_id);
          onDone(answer.instance);
        }}
      >
        <p>Copies its disk into a new image (qcow2) in this project; the stage does not change.</p>
        <label htmlFor="snap-name">Image name</label>
        <input id="snap-name" value={snapName} onChange={(e) => setSnapName(e.target.value)} />
        <label htmlFor="snap-ref">Reference to point at it (optional, name:tag)</label>
        <input id="snap-ref" value={snapRef} onChange={(e) => setSnapRef(e.target.value)} />
        <CopyCommand command={hangar('snapshot', instance.id, snapTarget)} />
      </ConfirmButton>
      <ConfirmButton
        label="Upgrade"
        disabled={!allowed(instance, 'upgrade')}
        title={`Upgrade ${instance.name}?`}
        onConfirm={async () =>
          onDone(
            await api.instanceAction(
              instance.id,
              'upgrade',
              upgradeTo.trim() ? { image: upgradeTo.trim() } : {},
            ),
          )
        }
      >
        <p>
          Rebuilds its disk on a new image and boots it; the old disk is kept for a rollback.
          {follows
            ? ` By default: where ${follows} points now.`
            : ' It follows no reference: name the image.'}
        </p>
        <label htmlFor="upgrade-image">Image (reference or id, optional)</label>
        <input id="upgrade-image" value={upgradeTo} onChange={(e) => setUpgradeTo(e.target.value)} />
        <CopyCommand
          command={hangar('upgrade', instance.id, ...(upgradeTo.trim() ? ['--image', upgradeTo.trim()] : []))}
        />
      </ConfirmButton>
      <ConfirmButton
        label="Rollback"
        disabled={!allowed(instance, 'rollback')}
        title={`Roll ${instance.name} back?`}
        onConfirm={async () => onDone(await api.instanceAction(instance.id, 'rollback'))}
      >
        <p>
          Swaps back to the previous disk
          {instance.previous_image
            ? ` (image ${instance.previous_image.name ?? instance.previous_image.id})`
            : ''}{' '}
          and boots it.
        </p>
        <CopyCommand command={hangar('rollback-instance', instance.id)} />
      </ConfirmButton>
      {created && (
        <p className="notice" role="status">
          Snapshot image <Link to={`/images/${created}`}>{created}</Link> is being saved.
        </p>
      )}
    </>
  );
}

function CreateInstance({ onCreated }: { onCreated: (i: Instance) => void }) {
  const [refs, setRefs] = useState<Reference[]>([]);
  const [image, setImage] = useState('');
  const [name, setName] = useState('');
  const [vcpus, setVcpus] = useState(1);
  const [ram, setRam] = useState(1024);
  const [disk, setDisk] = useState(10);
  const [userData, setUserData] = useState('');
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    api
      .references()
      .then((list) => setRefs(list.references))
      .catch(() => setRefs([]));
  }, []);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      onCreated(
        await api.createInstance({
          name: name || image.replace(/[^a-z0-9]+/gi, '-'),
          image,
          vcpus,
          ram_mb: ram,
          disk_gb: disk,
          ...(userData ? { user_data: userData } : {}),
        }),
      );
    } catch (e) {
      setError(e);
    }
  };
  const command = hangar(
    'run',
    image || 'NAME:TAG',
    ...(name ? ['--name', name] : []),
    '--cpus',
    String(vcpus),
    '--memory',
    `${ram}M`,
    '--disk',
    `${disk}G`,
    ...(userData ? ['--user-data', 'user-data.yaml'] : []),
  );
  return (
    <form className="panel" onSubmit={submit} aria-labelledby="create-title">
      <h2 id="create-title">New instance</h2>
      <div className="row">
        <div>
          <label htmlFor="inst-image">Image (reference or id)</label>
          <input id="inst-image" list="inst-refs" value={image} onChange={(e) => setImage(e.target.value)} />
          <datalist id="inst-refs">
            {refs.map((r) => (
              <option key={r.reference} value={r.reference} />
            ))}
          </datalist>
        </div>
        <div>
          <label htmlFor="inst-name">Name</label>
          <input id="inst-name" value={name} onChange={(e) => setName(e.target.value)} />
        </div>
        <NumberField id="inst-vcpus" label="vCPUs" min={1} value={vcpus} onChange={setVcpus} />
        <NumberField id="inst-ram" label="Memory (MB)" min={16} value={ram} onChange={setRam} />
        <NumberField id="inst-disk" label="Disk (GB)" min={1} value={disk} onChange={setDisk} />
      </div>
      <div>
        <label htmlFor="inst-user-data">User data (cloud-init, optional)</label>
        <textarea
          id="inst-user-data"
          rows={3}
          cols={60}
          value={userData}
          onChange={(e) => setUserData(e.target.value)}
        />
      </div>
      <div className="actions">
        <button type="submit" className="primary" disabled={!image}>
          Create instance
        </button>
        <CopyCommand command={command} />
      </div>
      <ErrorText error={error} />
    </form>
  );
}

export function Instances() {
  const [instances, setInstances] = useState<Instance[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    api
      .instances()
      .then((list) => {
        setInstances(list.instances);
        setError(null);
      })
      .catch(setError);
  }, []);
  useEffect(load, [load]);
  // Slow polling always (another tab or the CLI may act), fast while a job is pending.
  const pending = instances?.some((i) => !settled(i) && i.stage !== 'Inexistent') ?? false;
  usePolling(load, pending ? 1000 : 5000, true);
  return (
    <section>
      <div className="page-head">
        <h1>Instances</h1>
        <CopyCommand command={hangar('ps', '-a')} />
      </div>
      <ErrorText error={error} />
      {instances && (
        <div className="table-wrap">
          <table className="instances">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Stage</th>
                <th scope="col">Image</th>
                <th scope="col">Size</th>
                <th scope="col">Host</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody aria-live="polite">
              {instances.length === 0 && (
                <tr>
                  <td colSpan={6}>No instances.</td>
                </tr>
              )}
              {instances.map((i) => (
                <tr key={i.id} data-instance-id={i.id}>
                  <td>
                    <Link to={`/instances/${i.id}`}>{i.name}</Link>
                  </td>
                  <td>
                    <Stage instance={i} />
                  </td>
                  <td>{i.image?.requested_as ?? i.image_id}</td>
                  <td>
                    {i.vcpus} vCPU, {i.ram_mb} MB, {i.disk_gb} GB
                  </td>
                  <td>{i.host_id ?? '—'}</td>
                  <td>{formatTime(i.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <CreateInstance onCreated={(i) => navigate(`/instances/${i.id}`)} />
    </section>
  );
}

export function InstancePage({ id }: { id: string }) {
  const [instance, setInstance] = useState<Instance | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    api
      .instance(id)
      .then((shown) => {
        setInstance(shown);
        setError(null);
      })
      .catch(setError);
  }, [id]);
  useEffect(load, [load]);
  const busy = instance !== null && !settled(instance) && instance.stage !== 'Inexistent';
  usePolling(load, busy ? 1000 : 4000, instance?.stage !== 'Inexistent');
  if (error && !instance) return <ErrorText error={error} />;
  if (!instance) return <p aria-live="polite">Loading…</p>;
  return (
    <article>
      <div className="page-head">
        <h1>{instance.name}</h1>
        <div aria-live="polite" aria-atomic="true" className="instance-stage">
          <Stage instance={instance} />
        </div>
      </div>
      <Actions instance={instance} onDone={setInstance} />
      {instance.reason && <p className="error">Reason: {instance.reason}</p>}
      {instance.last_error && <p className="error">Last error: {instance.last_error}</p>}
      <dl className="props">
        {(
          [
            ['id', instance.id],
            ['hostname', instance.hostname],
            ['project', instance.project_id],
            ['image', `${instance.image?.requested_as ?? ''} (${instance.image_id})`],
            ['reference', instance.reference ?? '—'],
            [
              'previous disk',
              instance.previous_image ? (instance.previous_image.name ?? instance.previous_image.id) : '—',
            ],
            ['size', `${instance.vcpus} vCPU, ${instance.ram_mb} MB RAM, ${instance.disk_gb} GB disk`],
            ['host', instance.host_id ?? '—'],
            ['created', formatTime(instance.created_at)],
            ['updated', formatTime(instance.updated_at)],
          ] as const
        ).map(([k, v]) => (
          <div key={k} className="prop-row">
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      <h2>Console log</h2>
      <div className="toolbar">
        <CopyCommand command={hangar('logs', instance.id, '-f')} />
        <CopyCommand label="Copy as curl" command={curl('GET', `/v1/instances/${instance.id}`)} />
      </div>
      <pre className="log">{instance.console_log || '(nothing yet)'}</pre>
    </article>
  );
}
