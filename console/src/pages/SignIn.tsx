/** Sign-in with a token: checked against the service before it is kept (for this tab's session only). */
import { type FormEvent, useState } from 'react';
import { errorMessage } from '../api.ts';

export function SignIn({ onSignedIn }: { onSignedIn: (token: string) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const value = token.trim();
    if (!value) {
      setError('Enter a token.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const response = await fetch('/v2/images?limit=1', {
        headers: { 'x-auth-token': value, accept: 'application/json' },
      });
      if (response.status === 401) setError('The service does not accept this token.');
      else if (!response.ok) setError(errorMessage(response.status, await response.text()));
      else onSignedIn(value);
    } catch (e) {
      setError(`The service cannot be reached: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="sign-in">
      <h1>Sign in to Hangar</h1>
      <form onSubmit={submit}>
        <label htmlFor="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          aria-describedby="token-help"
        />
        <p id="token-help" className="help">
          A token from the token file (<code>npm start</code> prints a development admin token) or from
          Keystone. It is kept for this browser tab only and forgotten when the tab closes.
        </p>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </section>
  );
}
