/**
 * Keystone credentials the way OpenStack clients take them (an openrc file's OS_* variables):
 * OS_TOKEN as it is, or OS_AUTH_URL + OS_USERNAME + OS_PASSWORD + OS_PROJECT_NAME (or
 * OS_PROJECT_ID) exchanged for a project-scoped token with POST /v3/auth/tokens. The token lives
 * for this run only: nothing is stored, since Keystone tokens expire within hours.
 */
import { z } from 'zod';
import { CliError, ExitCode } from './errors.ts';

export interface KeystoneCredentials {
  authUrl: string;
  username: string;
  password: string;
  userDomainName: string;
  project: { name: string; domainName: string } | { id: string };
}

/** The password credentials OS_* describe, or undefined when they describe none. */
export function keystoneCredentials(env: NodeJS.ProcessEnv = process.env): KeystoneCredentials | undefined {
  const { OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_PROJECT_ID } = env;
  if (!OS_AUTH_URL || !OS_USERNAME) return undefined;
  if (!OS_PASSWORD)
    throw new CliError('OS_AUTH_URL and OS_USERNAME are set but OS_PASSWORD is not.', ExitCode.usage);
  if (!OS_PROJECT_NAME && !OS_PROJECT_ID)
    throw new CliError('Keystone credentials need OS_PROJECT_NAME (or OS_PROJECT_ID).', ExitCode.usage);
  return {
    authUrl: OS_AUTH_URL,
    username: OS_USERNAME,
    password: OS_PASSWORD,
    // The defaults of python-openstackclient's openrc files.
    userDomainName: env.OS_USER_DOMAIN_NAME || 'Default',
    project: OS_PROJECT_ID
      ? { id: OS_PROJECT_ID }
      : { name: OS_PROJECT_NAME ?? '', domainName: env.OS_PROJECT_DOMAIN_NAME || 'Default' },
  };
}

/** `http://host:5000`, `…/v3` or `…/v3/` → `…/v3/auth/tokens`. */
export function tokensUrl(authUrl: string): string {
  const base = authUrl.replace(/\/+$/, '');
  return `${/\/v3$/.test(base) ? base : `${base}/v3`}/auth/tokens`;
}

const KeystoneError = z.looseObject({ error: z.looseObject({ message: z.string() }) });

export async function issueToken(credentials: KeystoneCredentials): Promise<string> {
  const url = tokensUrl(credentials.authUrl);
  const scope =
    'id' in credentials.project
      ? { project: { id: credentials.project.id } }
      : { project: { name: credentials.project.name, domain: { name: credentials.project.domainName } } };
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: {
            methods: ['password'],
            password: {
              user: {
                name: credentials.username,
                domain: { name: credentials.userDomainName },
                password: credentials.password,
              },
            },
          },
          scope,
        },
      }),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`Cannot reach Keystone at ${url}: ${cause?.code ?? cause?.message ?? String(error)}`);
  }
  const token = response.headers.get('x-subject-token');
  if (response.status === 201 && token) {
    await response.body?.cancel();
    return token;
  }
  const text = await response.text();
  const parsed = KeystoneError.safeParse(text ? JSON.parse(text) : undefined);
  throw new CliError(
    `Keystone refused the OS_* credentials of ${credentials.username}: ${parsed.success ? parsed.data.error.message : text.trim() || response.statusText} (${response.status} from POST ${url})`,
  );
}
