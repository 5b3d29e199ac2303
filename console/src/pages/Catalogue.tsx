/**
 * The catalogue: Glance's list with its server-side filters and sort, all kept in the URL (so a
 * reload or a shared link shows the same page), paged with Glance's markers, and refreshed while
 * any listed image is saving or importing.
 */
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { api, type Image, type Member } from '../api.ts';
import { curl, hangar } from '../commands.ts';
import { Link, navigate, useLocation } from '../router.tsx';
import { CopyCommand, ErrorText, formatBytes, formatTime, StatusBadge, usePolling } from '../ui.tsx';

/** URL parameters passed through to GET /v2/images as they are. */
const FILTERS = [
  'name',
  'status',
  'visibility',
  'disk_format',
  'tag',
  'size_min',
  'size_max',
  'os_hidden',
] as const;
const STATUSES = [
  '',
  'queued',
  'saving',
  'uploading',
  'importing',
  'active',
  'deactivated',
  'killed',
  'deleted',
];
const VISIBILITIES = ['', 'public', 'community', 'shared', 'private', 'all'];
const FORMATS = ['', 'raw', 'qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx', 'iso', 'ami', 'ari', 'aki', 'ploop'];
const SORTS = [
  ['created_at:desc', 'Newest first'],
  ['created_at:asc', 'Oldest first'],
  ['updated_at:desc', 'Recently updated'],
  ['name:asc', 'Name A–Z'],
  ['name:desc', 'Name Z–A'],
  ['size:desc', 'Largest first'],
  ['size:asc', 'Smallest first'],
] as const;
const PAGE_SIZE = 25;
const BUSY = new Set(['saving', 'importing', 'uploading']);

const MIB = 1024 * 1024;

export function apiQuery(query: URLSearchParams): string {
  const out = new URLSearchParams();
  for (const key of FILTERS) {
    const value = query.get(key);
    if (value) out.set(key, value);
  }
  out.set('sort', query.get('sort') || 'created_at:desc');
  out.set('limit', String(PAGE_SIZE));
  const marker = query.get('marker');
  if (marker) out.set('marker', marker);
  return out.toString();
}

function markerOf(next: string | undefined): string | null {
  if (!next) return null;
  return new URL(next, window.location.origin).searchParams.get('marker');
}

async function referencesByImage(): Promise<Map<string, string[]>> {
  const byImage = new Map<string, string[]>();
  const lists = await Promise.allSettled([api.references(), api.references('public')]);
  const seen = new Set<string>();
  for (const list of lists) {
    if (list.status !== 'fulfilled') continue;
    for (const ref of list.value.references) {
      const label = ref.namespace === 'public' ? `public/${ref.reference}` : ref.reference;
      if (seen.has(label)) continue;
      seen.add(label);
      byImage.set(ref.image_id, [...(byImage.get(ref.image_id) ?? []), label]);
    }
  }
  return byImage;
}

function Filters({ query }: { query: URLSearchParams }) {
  const [draft, setDraft] = useState(() => Object.fromEntries(FILTERS.map((k) => [k, query.get(k) ?? ''])));
  const [sizeUnit] = useState(MIB);
  useEffect(() => {
    setDraft(Object.fromEntries(FILTERS.map((k) => [k, query.get(k) ?? ''])));
  }, [query]);
  const apply = (event: FormEvent) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const key of FILTERS) if (draft[key]) next.set(key, draft[key] ?? '');
    const sort = query.get('sort');
    if (sort) next.set('sort', sort);
    navigate(`/?${next.toString()}`);
  };
  const field = (key: (typeof FILTERS)[number]) => ({
    id: `filter-${key}`,
    name: key,
    value: draft[key] ?? '',
    onChange: (e: { target: { value: string } }) => setDraft({ ...draft, [key]: e.target.value }),
  });
  const sizeField = (key: 'size_min' | 'size_max') => ({
    id: `filter-${key}`,
    name: key,
    type: 'number',
    min: 0,
    step: 'any',
    value: draft[key] ? String(Number(draft[key]) / sizeUnit) : '',
    onChange: (e: { target: { value: string } }) =>
      setDraft({
        ...draft,
        [key]: e.target.value === '' ? '' : String(Math.round(Number(e.target.value) * sizeUnit)),
      }),
  });
  /** A select among `options`, the empty one (no filter) shown as `blank`. */
  const choice = (
    key: (typeof FILTERS)[number],
    label: string,
    options: readonly string[],
    blank: string,
  ) => (
    <div>
      <label htmlFor={`filter-${key}`}>{label}</label>
      <select {...field(key)}>
        {options.map((s) => (
          <option key={s} value={s}>
            {s || blank}
          </option>
        ))}
      </select>
    </div>
  );
  return (
    <form className="filters" onSubmit={apply} aria-label="Filter images">
      <div>
        <label htmlFor="filter-name">Name</label>
        <input {...field('name')} />
      </div>
      {choice('status', 'Status', STATUSES, 'any')}
      {choice('visibility', 'Visibility', VISIBILITIES, 'default')}
      {choice('disk_format', 'Format', FORMATS, 'any')}
      <div>
        <label htmlFor="filter-tag">Tag</label>
        <input {...field('tag')} />
      </div>
      <div>
        <label htmlFor="filter-size_min">Size from (MiB)</label>
        <input {...sizeField('size_min')} />
      </div>
      <div>
        <label htmlFor="filter-size_max">Size to (MiB)</label>
        <input {...sizeField('size_max')} />
      </div>
      <div>
        <label htmlFor="filter-os_hidden">Hidden</label>
        <select {...field('os_hidden')}>
          <option value="">not hidden</option>
          <option value="true">hidden only</option>
        </select>
      </div>
      <div className="filter-actions">
        <button type="submit" className="primary">
          Apply filters
        </button>
        <button type="button" onClick={() => navigate('/')}>
          Clear
        </button>
      </div>
    </form>
  );
}

/**
 * Images shared with the caller's project that await its answer. Glance's `member_status=pending`
 * list also holds the caller's own shared images (an owner sees them whatever the filter): those
 * are in the `accepted` list too, so what is pending and not accepted is shared *with* the caller.
 */
function PendingShares({ onAnswered }: { onAnswered: () => void }) {
  const [images, setImages] = useState<Image[]>([]);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    Promise.all([
      api.listImages('visibility=shared&member_status=pending&limit=100'),
      api.listImages('visibility=shared&member_status=accepted&limit=1000'),
    ])
      .then(([pending, accepted]) => {
        const also = new Set(accepted.images.map((image) => image.id));
        setImages(pending.images.filter((image) => !also.has(image.id)));
      })
      .catch(() => setImages([]));
  }, []);
  useEffect(load, [load]);
  const answer = async (image: Image, status: 'accepted' | 'rejected') => {
    setError(null);
    try {
      // A consumer sees only its own membership: that row names the caller's project.
      const { members } = await api.members(image.id);
      const mine = members.find((m: Member) => m.member_id !== image.owner);
      if (!mine) throw new Error('This image has no membership for your project.');
      await api.answerMember(image.id, mine.member_id, status);
      load();
      onAnswered();
    } catch (e) {
      setError(e);
    }
  };
  if (images.length === 0) return null;
  return (
    <section className="pending-shares" aria-labelledby="pending-title">
      <h2 id="pending-title">Shared with your project, awaiting your answer</h2>
      <ErrorText error={error} />
      <ul>
        {images.map((image) => (
          <li key={image.id}>
            <Link to={`/images/${image.id}`}>{image.name ?? image.id}</Link> from {image.owner ?? 'unknown'}{' '}
            <button type="button" className="primary" onClick={() => answer(image, 'accepted')}>
              Accept
            </button>{' '}
            <button type="button" onClick={() => answer(image, 'rejected')}>
              Reject
            </button>{' '}
            <CopyCommand command={hangar('accept', image.id)} />
          </li>
        ))}
      </ul>
    </section>
  );
}

export function Catalogue() {
  const { query } = useLocation();
  const queryString = apiQuery(query);
  const [images, setImages] = useState<Image[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [refs, setRefs] = useState<Map<string, string[]>>(new Map());
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    // The rows render as soon as the list is in; their references fill in when those arrive.
    api
      .listImages(queryString)
      .then((list) => {
        setImages(list.images);
        setNext(markerOf(list.next));
        setError(null);
      })
      .catch(setError);
    referencesByImage()
      .then(setRefs)
      .catch(() => undefined);
  }, [queryString]);
  useEffect(load, [load]);
  const busy = images?.some((image) => BUSY.has(image.status)) ?? false;
  usePolling(load, 2000, busy);

  const setSort = (sort: string) => {
    const nextQuery = new URLSearchParams(query);
    nextQuery.set('sort', sort);
    nextQuery.delete('marker');
    navigate(`/?${nextQuery.toString()}`);
  };
  const page = (marker: string | null) => {
    const nextQuery = new URLSearchParams(query);
    if (marker) nextQuery.set('marker', marker);
    else nextQuery.delete('marker');
    navigate(`/?${nextQuery.toString()}`);
  };
  const cliFilters = FILTERS.filter((k) => query.get(k)).flatMap((k) => ['--filter', `${k}=${query.get(k)}`]);

  return (
    <section>
      <div className="page-head">
        <h1>Images</h1>
        <Link to="/upload" className="button primary">
          Upload an image
        </Link>
      </div>
      {/* After the first page: its two list calls must not delay the catalogue's first render. */}
      {images !== null && <PendingShares onAnswered={load} />}
      <Filters query={query} />
      <div className="toolbar">
        <label htmlFor="sort">Sort</label>
        <select
          id="sort"
          value={query.get('sort') || 'created_at:desc'}
          onChange={(e) => setSort(e.target.value)}
        >
          {SORTS.map(([value, label]) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </select>
        <CopyCommand command={hangar('images', ...cliFilters)} />
        <CopyCommand label="Copy as curl" command={curl('GET', `/v2/images?${queryString}`)} />
      </div>
      <ErrorText error={error} />
      {images === null && !error && <p aria-live="polite">Loading…</p>}
      {images && (
        <div className="table-wrap">
          <table className="catalogue">
            <caption className="visually-hidden">Images</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">References</th>
                <th scope="col">Status</th>
                <th scope="col">Format</th>
                <th scope="col">Size</th>
                <th scope="col">Visibility</th>
                <th scope="col">Protected</th>
                <th scope="col">Owner</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody aria-live="polite">
              {images.length === 0 && (
                <tr>
                  <td colSpan={9}>No images match.</td>
                </tr>
              )}
              {images.map((image) => (
                <tr key={image.id} data-image-id={image.id}>
                  <td data-label="Name">
                    <Link to={`/images/${image.id}`}>{image.name || <em>(no name)</em>}</Link>
                  </td>
                  <td data-label="References">{(refs.get(image.id) ?? []).join(', ') || '—'}</td>
                  <td data-label="Status">
                    <StatusBadge status={image.status} />
                  </td>
                  <td data-label="Format">{image.disk_format ?? '—'}</td>
                  <td data-label="Size">{formatBytes(image.size)}</td>
                  <td data-label="Visibility">{image.visibility}</td>
                  <td data-label="Protected">{image.protected ? 'yes' : 'no'}</td>
                  <td data-label="Owner">{image.owner ?? '—'}</td>
                  <td data-label="Updated">{formatTime(image.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav className="pager" aria-label="Pages">
        <button type="button" disabled={!query.get('marker')} onClick={() => page(null)}>
          First page
        </button>
        <button type="button" disabled={!next} onClick={() => page(next)}>
          Next page
        </button>
      </nav>
    </section>
  );
}
