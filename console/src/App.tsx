/** The shell: sign-in gate, navigation, and the page for the current route. */
import { useEffect, useState } from 'react';
import { storedToken, storeToken } from './api.ts';
import { Catalogue } from './pages/Catalogue.tsx';
import { Hosts } from './pages/Hosts.tsx';
import { ImagePage } from './pages/ImagePage.tsx';
import { InstancePage, Instances } from './pages/Instances.tsx';
import { ReferencePage, References } from './pages/References.tsx';
import { SignIn } from './pages/SignIn.tsx';
import { Upload } from './pages/Upload.tsx';
import { Link, useLocation } from './router.tsx';

const NAV: Array<{ to: string; label: string; match: RegExp }> = [
  { to: '/', label: 'Images', match: /^\/(images\/.*)?$/ },
  { to: '/upload', label: 'Upload', match: /^\/upload/ },
  { to: '/references', label: 'References', match: /^\/references/ },
  { to: '/instances', label: 'Instances', match: /^\/instances/ },
  { to: '/hosts', label: 'Hosts', match: /^\/hosts/ },
];

function Page({ path }: { path: string }) {
  if (path === '/' || path === '') return <Catalogue />;
  const [, section, rest] = /^\/([a-z]+)(?:\/([^/]+))?\/?$/.exec(path) ?? [];
  const param = rest === undefined ? undefined : decodeURIComponent(rest);
  if (section === 'images' && param) return <ImagePage id={param} />;
  if (section === 'upload' && !param) return <Upload />;
  if (section === 'references') return param ? <ReferencePage reference={param} /> : <References />;
  if (section === 'instances') return param ? <InstancePage id={param} /> : <Instances />;
  if (section === 'hosts' && !param) return <Hosts />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no console page at this address. <Link to="/">Back to the images</Link>.
      </p>
    </section>
  );
}

export function App() {
  const [token, setToken] = useState(storedToken);
  const location = useLocation();
  useEffect(() => {
    // A token the service stops accepting (expired, revoked) sends the user back to sign in.
    const signOut = () => {
      storeToken(null);
      setToken(null);
    };
    window.addEventListener('hangar:unauthorized', signOut);
    return () => window.removeEventListener('hangar:unauthorized', signOut);
  }, []);

  if (!token)
    return (
      <main id="main">
        <SignIn
          onSignedIn={(t) => {
            storeToken(t);
            setToken(t);
          }}
        />
      </main>
    );
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Hangar</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map((item) => (
              <li key={item.to}>
                <Link to={item.to} aria-current={item.match.test(location.path) ? 'page' : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <button
          type="button"
          className="link sign-out"
          onClick={() => {
            storeToken(null);
            setToken(null);
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Page path={location.path} />
      </main>
    </>
  );
}
