#!/usr/bin/env bash
# OpenStack tempest 33 (Debian's `tempest` package) against a Hangar of its own, in keystone mode,
# as an operator replacing Glance would run it. Used by test/tempest/image-v2.test.ts (npm test);
# runnable by hand: `bash test/tempest/run-tempest.sh` (HANGAR_TEMPEST_REGEX picks other tests).
#
# It starts Keystone (test/keystone/start-keystone.sh, idempotent), Hangar (`tsx local/main.ts`,
# memory storage, a free port), a web server for tempest's `http_image` (3 MiB, for web-download),
# registers the image endpoints in a Keystone region of this run's own (test/tempest/catalog.py),
# writes a stestr workspace with etc/tempest.conf (from tempest.conf.in) and runs tempest.
# Everything it started and registered is removed on every exit, failure and signals included.
#
# stdout: one JSON line at the end (summary.py: ran, passed, skipped, failed, failures, skips;
# plus seconds, timedOut, workspace). stderr: progress and a human summary. Exit 0 when tempest ran
# to the end (whatever its result), non-zero when the harness itself failed.
# The workspace (tempest.log, hangar.log, the subunit stream) is kept when a test failed or when
# HANGAR_TEMPEST_KEEP=1, removed otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/test/tempest"
PY=/usr/bin/python3 # Debian's: tempest's own libraries (subunit, testtools) live there
REGEX="${HANGAR_TEMPEST_REGEX:-^tempest\.api\.image\.v2}"
CONCURRENCY="${HANGAR_TEMPEST_CONCURRENCY:-2}"
# Real Glance takes about 150 s here; a stuck run must not hold CI for ever.
BUDGET="${HANGAR_TEMPEST_TIMEOUT_SECONDS:-1200}"
REGION="hangar-tempest-$$"

say() { echo "run-tempest: $*" >&2; }

for tool in tempest stestr; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    say "$tool is missing; install Debian's tempest package (scripts/provision.sh does)"
    exit 1
  fi
done

WS="$(mktemp -d "${TMPDIR:-/tmp}/hangar-tempest.XXXXXX")"
mkdir -p "$WS/logs" "$WS/etc" "$WS/www" "$WS/hangar"
HANGAR_PID=''
HTTP_PID=''
TEMPEST_PID=''
REGISTERED=''
KEEP="${HANGAR_TEMPEST_KEEP:-0}"

# Stops a child: SIGTERM to it (each leads its own process group, via setsid), then, after the
# grace, SIGKILL to whatever of its group is left (stand-ins, stestr workers).
stop_group() {
  local pid="$1" grace="$2"
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((grace * 5))); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  stop_group "$TEMPEST_PID" 10
  if [ -n "$REGISTERED" ]; then
    "$PY" "$HERE/catalog.py" unregister "$REGION" || say "could not remove region $REGION from the catalogue"
  fi
  # Hangar stops its DynamoDB Local and s3rver on SIGTERM; the group kill catches any straggler.
  stop_group "$HANGAR_PID" 30
  stop_group "$HTTP_PID" 5
  if [ "$KEEP" = 1 ] || [ "$code" -ne 0 ]; then
    rm -f "$WS/www/blob.img"
    say "workspace kept: $WS"
  else
    rm -rf "$WS"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# Each child also gets SIGTERM when this script dies, even by SIGKILL (then no trap runs; the
# next run's `catalog.py sweep` removes the endpoints).
ORPHAN=()
if command -v setpriv >/dev/null 2>&1; then ORPHAN=(setpriv --pdeathsig TERM --); fi

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# 1. Keystone, with its admin account.
KEYSTONE_JSON="$(bash "$ROOT/test/keystone/start-keystone.sh" | tail -n 1)"
IDENTITY="$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["url"])' "$KEYSTONE_JSON")"
PASSWORD="$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["password"])' "$KEYSTONE_JSON")"
export HANGAR_TEMPEST_IDENTITY="$IDENTITY" HANGAR_TEMPEST_PASSWORD="$PASSWORD"
"$PY" "$HERE/catalog.py" sweep

# 2. Hangar in keystone mode, validating tokens with the service account start-keystone.sh makes.
say "starting Hangar (workspace $WS)"
(
  cd "$ROOT"
  exec env HANGAR_PORT=0 HANGAR_HOST=127.0.0.1 HANGAR_DATA_DIR="$WS/hangar" HANGAR_STORAGE=memory \
    HANGAR_AUTH_MODE=keystone HANGAR_KEYSTONE_URL="$IDENTITY" HANGAR_KEYSTONE_USER=hangar \
    HANGAR_KEYSTONE_PASSWORD="$PASSWORD" HANGAR_KEYSTONE_PROJECT=service \
    HANGAR_WEB_DOWNLOAD_ALLOW=127.0.0.1 HANGAR_REQUIRE_IMAGE_FORMAT_MATCH=false \
    HANGAR_LOG_LEVEL="${HANGAR_TEMPEST_LOG_LEVEL:-warn}" \
    setsid "${ORPHAN[@]}" "$ROOT/node_modules/.bin/tsx" local/main.ts
) >"$WS/logs/hangar.out" 2>"$WS/logs/hangar.log" </dev/null &
HANGAR_PID=$!
URL=''
for _ in $(seq 1 600); do
  URL="$(sed -n 's/^Hangar is listening on \(http[^ ]*\).*/\1/p' "$WS/logs/hangar.out")"
  [ -n "$URL" ] && break
  kill -0 "$HANGAR_PID" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$URL" ]; then
  say "Hangar did not start within 120 s; its log:"
  tail -n 30 "$WS/logs/hangar.log" >&2 || true
  exit 1
fi
say "Hangar listens on $URL"

# 3. Its endpoints in the catalogue (removed again by cleanup).
REGISTERED=1
"$PY" "$HERE/catalog.py" register "$REGION" "$URL"

# 4. tempest's http_image: 3 MiB for the web-download import tests.
head -c $((3 * 1024 * 1024)) /dev/urandom >"$WS/www/blob.img"
HTTP_PORT="$(free_port)"
(cd "$WS/www" && exec setsid "${ORPHAN[@]}" "$PY" -m http.server "$HTTP_PORT" --bind 127.0.0.1) \
  >"$WS/logs/http.log" 2>&1 </dev/null &
HTTP_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null -m 2 "http://127.0.0.1:$HTTP_PORT/blob.img" 2>/dev/null && break
  kill -0 "$HTTP_PID" 2>/dev/null || break
  sleep 0.1
done
if ! curl -fsS -o /dev/null -m 2 "http://127.0.0.1:$HTTP_PORT/blob.img"; then
  say "the http_image server did not start; $(cat "$WS/logs/http.log")"
  exit 1
fi

# 5. The stestr workspace and tempest.conf.
cat >"$WS/.stestr.conf" <<EOF
[DEFAULT]
test_path=/usr/lib/python3/dist-packages/tempest/test_discover
top_dir=/usr/lib/python3/dist-packages
group_regex=([^\.]*\.)*
EOF
sed -e "s|@WS@|$WS|g" -e "s|@ADMIN_PASSWORD@|$PASSWORD|g" -e "s|@IDENTITY_URI@|$IDENTITY|g" \
  -e "s|@IMAGE_REGION@|$REGION|g" -e "s|@HTTP_IMAGE@|http://127.0.0.1:$HTTP_PORT/blob.img|g" \
  "$HERE/tempest.conf.in" >"$WS/etc/tempest.conf"

# 6. tempest, bounded. In the background so that a signal reaches the trap at once.
say "tempest run --regex '$REGEX' --concurrency $CONCURRENCY (at most $BUDGET s; log $WS/logs/tempest-run.log)"
started=$(date +%s)
(
  cd "$WS"
  exec env TEMPEST_CONFIG_DIR="$WS/etc" TEMPEST_CONFIG=tempest.conf \
    setsid "${ORPHAN[@]}" timeout -k 30 "$BUDGET" tempest run --regex "$REGEX" --concurrency "$CONCURRENCY"
) >"$WS/logs/tempest-run.log" 2>&1 </dev/null &
TEMPEST_PID=$!
status=0
wait "$TEMPEST_PID" || status=$?
TEMPEST_PID=''
seconds=$(($(date +%s) - started))
timed_out=false
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then timed_out=true; fi

# 7. The result, from stestr's record of the run (tempest exits 1 when a test failed).
(cd "$WS" && stestr last --subunit) >"$WS/results.subunit" 2>>"$WS/logs/tempest-run.log" || true
summary="$("$PY" "$HERE/summary.py" "$seconds" "$timed_out" "$status" "$WS" <"$WS/results.subunit")"
if [ "$("$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["failed"])' "$summary")" != 0 ] || $timed_out; then
  KEEP=1
fi
if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
  say "tempest exited with $status; the end of its output:"
  tail -n 20 "$WS/logs/tempest-run.log" >&2 || true
fi
echo "$summary"
