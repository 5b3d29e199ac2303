#!/usr/bin/env bash
# A real OpenStack Keystone for the keystone-mode tests: Debian's `keystone` package, its own
# config and sqlite database under $HANGAR_KEYSTONE_DIR, served by uwsgi on 127.0.0.1:5000.
# Idempotent: when a Keystone already answers there (and accepts our admin password) it only
# re-checks the test accounts. Never needs root: everything lives in the state directory.
#
# Measured on these machines (and so not optional):
# - one uwsgi process with one thread: sqlite otherwise fails with thread errors;
# - the database in WAL mode: role and service creation otherwise fail with "database is locked";
# - no reused connections (they get reset): our clients send `Connection: close`, and uwsgi
#   says `Connection: close` on every answer so other clients (the openstack CLI) do not reuse either.
#
# Accounts it makes (all in the Default domain), printed as JSON on stdout at the end:
#   admin/admin (bootstrap, role admin), hangar/service (role service: validates tokens),
#   alice/projA and bob/projB (role member).
set -euo pipefail
trap 'echo "start-keystone: failed at line $LINENO; logs in ${DIR:-?}/log" >&2' ERR

DIR="${HANGAR_KEYSTONE_DIR:-${TMPDIR:-/tmp}/hangar-keystone}"
HOST=127.0.0.1
PORT=5000
URL="http://$HOST:$PORT"
PASSWORD="${HANGAR_KEYSTONE_TEST_PASSWORD:-hangar-test-secret}"
PY=/usr/bin/python3
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for tool in keystone-manage uwsgi keystone-wsgi-public; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "start-keystone: $tool is missing; install the keystone, uwsgi-core and uwsgi-plugin-python3 packages (.ci/run does)" >&2
    exit 1
  fi
done

answers() {
  curl -fsS -m 2 -H 'Connection: close' "$URL/v3" 2>/dev/null | grep -q '"id": *"v3'
}

mkdir -p "$DIR"
# Serialises concurrent callers (e.g. two test files starting at once).
exec 9>"$DIR/.lock"
flock 9

if ! answers; then
  CONF="$DIR/keystone.conf"
  DB="$DIR/keystone.db"
  if [ ! -f "$DIR/.bootstrapped" ]; then
    rm -rf "$DIR/fernet-keys" "$DIR/credential-keys" "$DB" "$DB-wal" "$DB-shm"
    # Keystone refuses to trust key repositories others can read.
    mkdir -p -m 0700 "$DIR/fernet-keys" "$DIR/credential-keys"
    mkdir -p "$DIR/log"
    cat >"$CONF" <<EOF
[DEFAULT]
log_dir = $DIR/log
log_file = keystone.log
[database]
connection = sqlite:///$DB
[fernet_tokens]
key_repository = $DIR/fernet-keys
[credential]
key_repository = $DIR/credential-keys
[token]
provider = fernet
expiration = 3600
[oslo_policy]
policy_dirs = /etc/keystone/policy.d
EOF
    keystone-manage --config-file "$CONF" db_sync 2>>"$DIR/log/manage.log"
    # WAL is a property of the database file, so setting it once here sticks.
    "$PY" -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL").fetchone()[0])' "$DB" >/dev/null
    user="$(id -un)"
    group="$(id -gn)"
    keystone-manage --config-file "$CONF" fernet_setup --keystone-user "$user" --keystone-group "$group" 2>>"$DIR/log/manage.log"
    keystone-manage --config-file "$CONF" credential_setup --keystone-user "$user" --keystone-group "$group" 2>>"$DIR/log/manage.log"
    keystone-manage --config-file "$CONF" bootstrap \
      --bootstrap-password "$PASSWORD" \
      --bootstrap-username admin --bootstrap-project-name admin --bootstrap-role-name admin \
      --bootstrap-admin-url "$URL/v3/" --bootstrap-internal-url "$URL/v3/" \
      --bootstrap-public-url "$URL/v3/" --bootstrap-region-id RegionOne 2>>"$DIR/log/manage.log"
    touch "$DIR/.bootstrapped"
  fi
  # A stale uwsgi from an earlier run (pid file, checked by name) goes first.
  if [ -f "$DIR/uwsgi.pid" ]; then
    old="$(cat "$DIR/uwsgi.pid")"
    if [ -n "$old" ] && [ "$(cat "/proc/$old/comm" 2>/dev/null || true)" = uwsgi ]; then kill "$old" || true; sleep 1; fi
    rm -f "$DIR/uwsgi.pid"
  fi
  # 9>&-: the daemon must not inherit the lock, or the next caller waits forever.
  uwsgi --plugins python3 --http-socket "$HOST:$PORT" --wsgi-file "$(command -v keystone-wsgi-public)" \
    --processes 1 --threads 1 --master --die-on-term --buffer-size 65535 \
    --add-header 'Connection: close' \
    --env "OS_KEYSTONE_CONFIG_FILES=$CONF" --chdir "$DIR" \
    --pidfile "$DIR/uwsgi.pid" --daemonize "$DIR/log/uwsgi.log" 9>&-
  for _ in $(seq 1 150); do
    if answers; then break; fi
    sleep 0.2
  done
  if ! answers; then
    echo "start-keystone: Keystone did not answer on $URL; see $DIR/log/uwsgi.log:" >&2
    tail -n 30 "$DIR/log/uwsgi.log" >&2 || true
    exit 1
  fi
fi

# The test accounts, created when missing (so a Keystone started by hand gets them too).
# urllib opens a new connection per request and sends Connection: close.
"$PY" - "$URL" "$PASSWORD" "$HERE" <<'PYTHON'
import json, sys

url, password = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
from keystone_api import Keystone

keystone = Keystone(url + '/v3', 'start-keystone')
call = keystone.call
token = keystone.admin_token(password)

def find(kind, name):
    _, body, _ = call('GET', f'/{kind}?name={name}', token=token)
    items = body[kind]
    return items[0]['id'] if items else None

def ensure(kind, name, extra):
    found = find(kind, name)
    if found:
        return found
    _, body, _ = call('POST', f'/{kind}', {kind[:-1]: {'name': name, **extra}}, token=token)
    return body[kind[:-1]]['id']

roles = {name: ensure('roles', name, {}) for name in ('admin', 'member', 'reader', 'service')}
projects = {name: ensure('projects', name, {'domain_id': 'default'}) for name in ('admin', 'service', 'projA', 'projB')}
users = {}
for user, project, role in (('hangar', 'service', 'service'), ('alice', 'projA', 'member'), ('bob', 'projB', 'member')):
    users[user] = ensure('users', user, {'domain_id': 'default', 'password': password, 'default_project_id': projects[project]})
    call('PUT', f'/projects/{projects[project]}/users/{users[user]}/roles/{roles[role]}', token=token)
users['admin'] = find('users', 'admin')
print(json.dumps({'url': url + '/v3', 'password': password, 'projects': projects, 'users': users, 'roles': roles}))
PYTHON
