/**
 * Sign-in: with a token, checked against the service before it is kept (for this tab's session
 * only); or, where the service runs in keystone mode (it then passes Keystone through at
 * /identity/v3 on this origin), with a Keystone user, password and project: the page asks Keystone
 * for a project-scoped token itself and keeps only that token, never the password.
 */
import { type FormEvent, useEffect, useState } from 'react';
import { errorMessage } from '../api.ts';
import { TextField } from '../ui.tsx';

const IDENTITY = '/identity/v3';

/** Keystone errors are {"error": {"message", "code", "title"}}; Glance's are flat. */
function keystoneMessage(status: number, body: string): string {
  if (status === 401) return 'Keystone refused the user name, password or project.';
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } };
    if (typeof parsed.error?.message === 'string') return parsed.error.message;
  } catch {
    // not Keystone's JSON: the generic reading below
  }
  return errorMessage(status, body);
}

/** Whether the service accepts `token`: null if so, else why not, in words. */
async function check(token: string): Promise<string | null> {
  const response = await fetch('/v2/images?limit=1', {
    headers: { 'x-auth-token': token, accept: 'application/json' },
  });
  if (response.status === 401) return 'The service does not accept this token.';
  if (!response.ok) return errorMessage(response.status, await response.text());
  return null;
}

async function keystoneToken(user: string, password: string, project: string, domain: string) {
  const response = await fetch(`${IDENTITY}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: {
          methods: ['password'],
          password: { user: { name: user, domain: { name: domain }, password } },
        },
        scope: { project: { name: project, domain: { name: domain } } },
      },
    }),
  });
  const token = response.headers.get('x-subject-token');
  if (response.status !== 201 || !token)
    throw new Error(keystoneMessage(response.status, await response.text()));
  return token;
}

export function SignIn({ onSignedIn }: { onSignedIn: (token: string) => void }) {
  const [token, setToken] = useState('');
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [project, setProject] = useState('');
  const [domain, setDomain] = useState('Default');
  // Whether Keystone answers on this origin (keystone mode); the password form is then the default.
  const [keystone, setKeystone] = useState(false);
  const [withToken, setWithToken] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    fetch(IDENTITY, { headers: { accept: 'application/json' } })
      .then((response) => setKeystone(response.ok))
      .catch(() => setKeystone(false));
  }, []);
  const withPassword = keystone && !withToken;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    if (withPassword ? !user.trim() || !password || !project.trim() : !token.trim()) {
      setError(withPassword ? 'Enter the user name, password and project.' : 'Enter a token.');
      return;
    }
    setBusy(true);
    try {
      const value = withPassword
        ? await keystoneToken(user.trim(), password, project.trim(), domain.trim() || 'Default')
        : token.trim();
      const refused = await check(value);
      if (refused) setError(refused);
      else onSignedIn(value);
    } catch (e) {
      setError(
        e instanceof TypeError
          ? `The service cannot be reached: ${e.message}`
          : e instanceof Error
            ? e.message
            : String(e),
      );
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="sign-in">
      <h1>Sign in to Hangar</h1>
      <form onSubmit={submit} aria-label={withPassword ? 'Sign in with Keystone' : 'Sign in'}>
        {withPassword ? (
          <>
            <TextField id="user" label="User" value={user} onChange={setUser} autoComplete="username" />
            <TextField
              id="password"
              label="Password"
              type="password"
              value={password}
              onChange={setPassword}
              autoComplete="current-password"
            />
            <TextField id="project" label="Project" value={project} onChange={setProject} />
            <TextField id="domain" label="Domain" value={domain} onChange={setDomain} />
            <p className="help">
              Keystone issues a token for the project; only the token is kept, for this browser tab, and
              forgotten when the tab closes.
            </p>
          </>
        ) : (
          <>
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
          </>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Signing in…' : 'Sign in'}
          </button>
          {keystone && (
            <button
              type="button"
              className="link"
              onClick={() => {
                setWithToken(!withToken);
                setError(null);
              }}
            >
              {withToken ? 'Use a Keystone user and password' : 'Use a token instead'}
            </button>
          )}
        </div>
      </form>
    </section>
  );
}
