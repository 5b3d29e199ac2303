/** Shared pieces: copy-as-command, errors in words, confirmation dialogs, sizes and times. */
import { type ReactNode, useEffect, useId, useRef, useState } from 'react';
import { ApiError } from './api.ts';

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function describeError(error: unknown): string {
  if (error instanceof ApiError) return `${error.message} (HTTP ${error.status})`;
  if (error instanceof Error) return error.message;
  return String(error);
}

export function ErrorText({ error }: { error: unknown }) {
  if (error === null || error === undefined) return null;
  return (
    <p className="error" role="alert">
      {describeError(error)}
    </p>
  );
}

/** A button that reveals the equivalent command and copies it to the clipboard. */
export function CopyCommand({ command, label = 'Copy as command' }: { command: string; label?: string }) {
  const [shown, setShown] = useState(false);
  const [copied, setCopied] = useState(false);
  const id = useId();
  const copy = async () => {
    setShown(true);
    try {
      await navigator.clipboard.writeText(command);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      // No clipboard (an insecure origin, or denied): the command is shown to select by hand.
    }
  };
  return (
    <span className="copy-command">
      <button type="button" className="link" aria-controls={id} aria-expanded={shown} onClick={copy}>
        {copied ? 'Copied' : label}
      </button>
      {shown && (
        <code id={id} className="command">
          {command}
        </code>
      )}
    </span>
  );
}

/**
 * A button whose action needs confirming in a modal dialog (keyboard: focus moves to the dialog,
 * Escape cancels). The dialog says what will happen and offers the command.
 */
export function ConfirmButton({
  label,
  title,
  children,
  onConfirm,
  danger = false,
  disabled = false,
  confirmLabel,
}: {
  label: string;
  title: string;
  children?: ReactNode;
  onConfirm: () => Promise<void> | void;
  danger?: boolean;
  disabled?: boolean;
  confirmLabel?: string;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const titleId = useId();
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      dialog.current?.close();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button
        type="button"
        className={danger ? 'danger' : undefined}
        disabled={disabled}
        onClick={() => {
          setError(null);
          dialog.current?.showModal();
        }}
      >
        {label}
      </button>
      <dialog ref={dialog} aria-labelledby={titleId}>
        <h2 id={titleId}>{title}</h2>
        {children}
        <ErrorText error={error} />
        <div className="actions">
          <button type="button" className={danger ? 'danger' : 'primary'} disabled={busy} onClick={confirm}>
            {confirmLabel ?? label}
          </button>
          <button type="button" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
        </div>
      </dialog>
    </>
  );
}

/** Re-runs `load` every `ms` while `active` (and the tab is visible): the pages' live updates. */
export function usePolling(load: () => void, ms: number, active: boolean): void {
  const saved = useRef(load);
  saved.current = load;
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') saved.current();
    }, ms);
    return () => clearInterval(timer);
  }, [ms, active]);
}

export function StatusBadge({ status }: { status: string }) {
  const busy = status === 'saving' || status === 'importing' || status === 'uploading';
  return (
    <span className={`badge status-${status}`}>
      {busy && <span className="spinner" aria-hidden="true" />}
      {status}
      {busy && <span className="visually-hidden"> (in progress)</span>}
    </span>
  );
}

/** A labelled number input (the create form's sizes, the retention policy's counts). */
export function NumberField({
  id,
  label,
  min,
  value,
  onChange,
}: {
  id: string;
  label: string;
  min: number;
  value: number;
  onChange: (value: number) => void;
}) {
  return (
    <div>
      <label htmlFor={id}>{label}</label>
      <input
        id={id}
        type="number"
        min={min}
        value={value}
        onChange={(e) => onChange(Number(e.target.value))}
      />
    </div>
  );
}

export function TextField(props: {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  type?: string;
  autoComplete?: string;
  disabled?: boolean;
}) {
  return (
    <div>
      <label htmlFor={props.id}>{props.label}</label>
      <input
        id={props.id}
        name={props.id}
        type={props.type ?? 'text'}
        autoComplete={props.autoComplete ?? 'off'}
        value={props.value}
        disabled={props.disabled}
        onChange={(e) => props.onChange(e.target.value)}
      />
    </div>
  );
}
