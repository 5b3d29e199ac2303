/** The CLI's reading of OpenStack's OS_* variables and of the Keystone URL forms openrc files use. */
import { describe, expect, it } from 'vitest';
import { keystoneCredentials, tokensUrl } from '../../../cli/keystone.ts';

describe('hangar Keystone credentials', () => {
  it('finds the token endpoint whether OS_AUTH_URL ends in /v3 or not', () => {
    for (const url of ['http://k:5000', 'http://k:5000/', 'http://k:5000/v3', 'http://k:5000/v3/'])
      expect(tokensUrl(url), url).toBe('http://k:5000/v3/auth/tokens');
    expect(tokensUrl('https://cloud/identity')).toBe('https://cloud/identity/v3/auth/tokens');
  });

  it('reads OS_* with Default domains, a project id instead of a name, and refuses half a set', () => {
    const base = { OS_AUTH_URL: 'http://k:5000/v3', OS_USERNAME: 'alice', OS_PASSWORD: 'pw' };
    expect(keystoneCredentials({})).toBeUndefined();
    expect(keystoneCredentials({ OS_AUTH_URL: 'http://k' })).toBeUndefined();
    expect(keystoneCredentials({ ...base, OS_PROJECT_NAME: 'projA' })).toEqual({
      authUrl: 'http://k:5000/v3',
      username: 'alice',
      password: 'pw',
      userDomainName: 'Default',
      project: { name: 'projA', domainName: 'Default' },
    });
    expect(keystoneCredentials({ ...base, OS_PROJECT_ID: 'p1', OS_USER_DOMAIN_NAME: 'corp' })).toMatchObject({
      userDomainName: 'corp',
      project: { id: 'p1' },
    });
    expect(() => keystoneCredentials({ ...base })).toThrow(/OS_PROJECT_NAME/);
    expect(() => keystoneCredentials({ ...base, OS_PASSWORD: '', OS_PROJECT_NAME: 'x' })).toThrow(
      /OS_PASSWORD/,
    );
  });
});
