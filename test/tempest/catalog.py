"""The image service in Keystone's catalogue for one tempest run.

Each run registers its public/internal/admin endpoints in a region of its own
(hangar-tempest-<pid of the runner>), so runs on a shared Keystone, and tests that repoint
RegionOne's image endpoints, never change what a running tempest talks to. `sweep` removes the
regions of runners that are gone (killed before their cleanup ran), so the catalogue never
keeps pointing at a dead port.

  catalog.py register REGION URL   # prints nothing; exit 0 on success
  catalog.py unregister REGION     # idempotent
  catalog.py sweep
Keystone's URL and the admin password come from HANGAR_TEMPEST_IDENTITY and
HANGAR_TEMPEST_PASSWORD. Every request has its own connection (that uwsgi resets reused ones).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'keystone'))
from keystone_api import Keystone  # noqa: E402

PREFIX = 'hangar-tempest-'
KEYSTONE = Keystone(os.environ['HANGAR_TEMPEST_IDENTITY'], 'catalog.py')  # .../v3
PASSWORD = os.environ['HANGAR_TEMPEST_PASSWORD']
call = KEYSTONE.call


def image_service(token, create):
    _, body, _ = call('GET', '/services?type=image', token=token)
    if body['services']:
        return body['services'][0]['id']
    if not create:
        return None
    _, body, _ = call('POST', '/services', {'service': {'type': 'image', 'name': 'glance'}}, token=token)
    return body['service']['id']


def unregister(token, region):
    _, body, _ = call('GET', f'/endpoints?region_id={region}', token=token)
    for endpoint in body['endpoints']:
        call('DELETE', f'/endpoints/{endpoint["id"]}', token=token, ok=(204, 404))
    call('DELETE', f'/regions/{region}', token=token, ok=(204, 404))


def register(token, region, url):
    service = image_service(token, create=True)
    unregister(token, region)  # a run that reuses a pid after a crash starts clean
    call('POST', '/regions', {'region': {'id': region, 'description': 'tempest run (test/tempest)'}}, token=token)
    for interface in ('public', 'internal', 'admin'):
        call('POST', '/endpoints', {'endpoint': {
            'service_id': service, 'interface': interface, 'url': url, 'region_id': region}}, token=token)


def alive(pid):
    # The runner is bash; a pid reused by something else counts as gone.
    try:
        with open(f'/proc/{pid}/comm') as comm:
            return comm.read().strip() == 'bash'
    except OSError:
        return False


def sweep(token):
    _, body, _ = call('GET', '/regions', token=token)
    for region in body['regions']:
        rid = region['id']
        if rid.startswith(PREFIX) and not alive(rid[len(PREFIX):]):
            unregister(token, rid)
            print(f'catalog.py: removed the endpoints of a finished run ({rid})', file=sys.stderr)


def main(argv):
    token = KEYSTONE.admin_token(PASSWORD)
    if argv[:1] == ['register'] and len(argv) == 3:
        register(token, argv[1], argv[2])
    elif argv[:1] == ['unregister'] and len(argv) == 2:
        unregister(token, argv[1])
    elif argv == ['sweep']:
        sweep(token)
    else:
        raise SystemExit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
