/** What the Upload page's forms share: the disk formats, the format a name suggests, and the image fields. */

export const FORMATS = ['qcow2', 'raw', 'iso', 'vmdk', 'vdi', 'vhd', 'vhdx', 'ami', 'ari', 'aki', 'ploop'];

/** The format a file's name suggests (the service checks the content itself). */
export function formatFromName(name: string): string {
  const ext = name.toLowerCase().split(/[?#]/)[0]?.split('.').pop() ?? '';
  if (ext === 'img' || ext === 'raw' || ext === 'bin') return 'raw';
  return FORMATS.includes(ext) ? ext : 'qcow2';
}

/** A failure whose message is the service's (or the browser's) reason, shown as it is. */
export class UploadFailed extends Error {}

type Field = readonly [string, (value: string) => void];

/** The name, disk format and visibility every form asks for; `prefix` keeps their element ids apart. */
export function ImageFields(props: {
  prefix: string;
  busy: boolean;
  name: Field;
  diskFormat: Field;
  visibility: Field;
}) {
  const { prefix, busy } = props;
  const [name, setName] = props.name;
  const [diskFormat, setDiskFormat] = props.diskFormat;
  const [visibility, setVisibility] = props.visibility;
  return (
    <>
      <div>
        <label htmlFor={`${prefix}-name`}>Name</label>
        <input id={`${prefix}-name`} value={name} disabled={busy} onChange={(e) => setName(e.target.value)} />
      </div>
      <div>
        <label htmlFor={`${prefix}-format`}>Disk format</label>
        <select
          id={`${prefix}-format`}
          value={diskFormat}
          disabled={busy}
          onChange={(e) => setDiskFormat(e.target.value)}
        >
          {FORMATS.map((f) => (
            <option key={f}>{f}</option>
          ))}
        </select>
      </div>
      <div>
        <label htmlFor={`${prefix}-visibility`}>Visibility</label>
        <select
          id={`${prefix}-visibility`}
          value={visibility}
          disabled={busy}
          onChange={(e) => setVisibility(e.target.value)}
        >
          <option>private</option>
          <option>shared</option>
          <option>community</option>
          <option>public</option>
        </select>
      </div>
    </>
  );
}
