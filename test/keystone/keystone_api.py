"""The Keystone v3 calls the test scripts make (start-keystone.sh's accounts, test/tempest/catalog.py's
catalogue), with the standard library only. Every request has its own connection and says
`Connection: close`: the test Keystone's uwsgi resets reused ones.
"""
import json
import urllib.error
import urllib.request


class Keystone:
    def __init__(self, identity, who):
        self.identity = identity.rstrip('/')  # .../v3
        self.who = who  # names the script in its failures

    def call(self, method, path, body=None, token=None, ok=(200, 201, 204)):
        """(status, JSON body or None, headers); an answer outside `ok` ends the script."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.identity + path, data=data, method=method)
        req.add_header('Connection', 'close')
        req.add_header('Accept', 'application/json')
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        if token:
            req.add_header('X-Auth-Token', token)
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                text = res.read().decode()
                return res.status, (json.loads(text) if text else None), res.headers
        except urllib.error.HTTPError as err:
            if err.code in ok:
                return err.code, None, err.headers
            raise SystemExit(f'{self.who}: {method} {path} -> {err.code}: {err.read().decode()[:300]}')

    def admin_token(self, password):
        """A token of the bootstrap admin, scoped to the admin project."""
        _, _, headers = self.call('POST', '/auth/tokens', {'auth': {
            'identity': {'methods': ['password'], 'password': {'user': {
                'name': 'admin', 'domain': {'id': 'default'}, 'password': password}}},
            'scope': {'project': {'name': 'admin', 'domain': {'id': 'default'}}}}})
        return headers['X-Subject-Token']
