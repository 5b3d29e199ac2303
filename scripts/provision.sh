#!/usr/bin/env bash
# What a fresh Debian machine needs besides Node, in one place (README.md, .ci/run, package.json):
#   bash scripts/provision.sh          everything `npm test` needs: the Debian packages, the libvirt
#                                      daemons, a Keystone on 127.0.0.1:5000 (`npm run test:ci`)
#   bash scripts/provision.sh runtime  only what `npm start` needs: a JDK 17+ for DynamoDB Local and its
#                                      loopback launcher (npm's prestart; returns at once when
#                                      there is a java with the compiler module)
# Idempotent: packages already installed are not fetched again, running daemons are left alone.
# Runs as root, or with sudo for what needs root.
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=''
if [ "$(id -u)" -ne 0 ]; then SUDO='sudo'; fi

RUNTIME_PACKAGES=(openjdk-17-jdk-headless)
TEST_PACKAGES=(
  "${RUNTIME_PACKAGES[@]}"
  qemu-system-x86 qemu-utils
  libvirt-daemon-system libvirt-clients
  cloud-image-utils genisoimage xorriso mtools
  busybox-static cpio xz-utils zstd
  syslinux syslinux-common dosfstools e2fsprogs
  python3-glanceclient python3-openstackclient
  keystone uwsgi-core uwsgi-plugin-python3 curl util-linux
  tempest
  # The web console's browser tests (test/console/): Debian's chromium, driven by playwright-core.
  chromium
)

say() { echo "provision: $*" >&2; }

# Installs those of the packages that are not fully installed (dpkg's own status, so a runner
# left half-provisioned by an interrupted install is completed, not skipped).
install_missing() {
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    say "no apt-get here: install the equivalents of these Debian packages by hand: $*"
    exit 1
  fi
  local missing=() package
  for package in "$@"; do
    if [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)" != 'install ok installed' ]; then
      missing+=("$package")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then return 0; fi
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null 2>&1; then
    say "not root and no sudo: cannot install ${missing[*]}"
    exit 1
  fi
  say "installing ${missing[*]}"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

if [ "${1:-}" = runtime ]; then
  # Any JDK will do (the same lookup as local/stand-ins.ts): a machine with its own keeps it. A JRE
  # alone is not enough: local/dynamodb/LoopbackDynamoDbLocal.java runs with the source launcher.
  java_bin="$(command -v java 2>/dev/null || true)"
  if [ -z "$java_bin" ] && [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then java_bin="$JAVA_HOME/bin/java"; fi
  if [ -n "$java_bin" ] && "$java_bin" --list-modules 2>/dev/null | grep -q '^jdk.compiler@'; then
    exit 0
  fi
  install_missing "${RUNTIME_PACKAGES[@]}"
  exit 0
elif [ -n "${1:-}" ]; then
  say "unknown argument $1 (none, or runtime)"
  exit 2
fi

install_missing "${TEST_PACKAGES[@]}"

# No systemd on CI runners: start the libvirt daemons by hand, each unless it already runs.
# (Their pid files, not pgrep: procps is not in minimal images.)
start_daemon() {
  local pid
  pid="$(cat "/run/$1.pid" 2>/dev/null || true)"
  # The name check guards against a stale pid file whose pid was reused.
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$1" ]; then
    say "$1 already running"
  else
    $SUDO "$1" -d
  fi
}
# No udev either: Debian's rule would make /dev/kvm root:kvm 0660. Left root-only, libvirt re-probes
# qemu on every call and `virsh define` takes tens of seconds instead of milliseconds.
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
  $SUDO chgrp kvm /dev/kvm && $SUDO chmod 0660 /dev/kvm
fi
start_daemon virtlogd
start_daemon libvirtd
# libvirtd daemonizes before its socket is up; the e2e tests need the socket.
for _ in $(seq 1 50); do
  if $SUDO virsh -c qemu:///system version >/dev/null 2>&1; then break; fi
  sleep 0.2
done

# A real Keystone on 127.0.0.1:5000 for the keystone-mode and tempest tests (idempotent; no root needed).
bash test/keystone/start-keystone.sh >/dev/null
say "ready"
