#!/usr/bin/env bash
# Builds (once) a Debian unstable tree holding the real test peers: Synapse, Asterisk and Dovecot.
# Debian 12 packages neither Synapse nor Asterisk; unstable has both. The tree is cached: a second
# run returns at once, and a tree built for fewer packages gets only the missing ones installed.
# Needs root and apt (debootstrap is installed here if missing).
set -euo pipefail

ROOT="${VOICEMAIL_TESTBED_ROOT:-/var/cache/matrix-appservice-voicemail/testbed-rootfs}"
PACKAGES="matrix-synapse asterisk asterisk-core-sounds-en dovecot-imapd"
EXTRA_PACKAGES="python3-matrix-nio sqlite3"
STAMP="$ROOT/.testbed-ready"
STAMP_CONTENT="v1 $PACKAGES"

# On the host, not in the tree: SIPp (Debian package sip-tester) scripts SIP peers for the tests,
# and the PostgreSQL store tests start their own server from the host's postgresql package. Quick
# when already there; a failure to install only warns (tests needing them say so).
host_missing=""
command -v sipp >/dev/null 2>&1 || host_missing="$host_missing sip-tester"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || host_missing="$host_missing postgresql"
if [ -n "$host_missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "testbed: installing$host_missing on the host"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $host_missing >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $host_missing >/dev/null 2>&1 ||
      echo "testbed: warning: could not install$host_missing on the host" >&2
  fi
fi
# `--host-packages` (npm's pretest): only the host's packages, never a failure; the tree is
# built by the end-to-end tests when they first need it.
[ "${1:-}" = "--host-packages" ] && exit 0

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_CONTENT" ]; then
  echo "testbed: cached tree at $ROOT"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "testbed: building the test peers needs root (debootstrap, chroot)" >&2
  exit 3
fi

# A tree built earlier for fewer packages: install what is missing instead of building anew.
if [ -f "$STAMP" ] && grep -q '^v1 ' "$STAMP"; then
  missing=""
  for p in $PACKAGES; do
    case " $(cut -d' ' -f2- "$STAMP") " in *" $p "*) ;; *) missing="$missing $p" ;; esac
  done
  if [ -n "$missing" ]; then
    echo "testbed: adding$missing to the cached tree"
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
    chroot "$ROOT" apt-get update -qq
    if chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >"$ROOT.apt.log" 2>&1; then
      chroot "$ROOT" apt-get clean
      echo "$STAMP_CONTENT" >"$STAMP"
      echo "testbed: tree ready at $ROOT"
      exit 0
    fi
    tail -30 "$ROOT.apt.log" >&2
    echo "testbed: adding packages failed; building the tree anew" >&2
    umount "$ROOT/proc" 2>/dev/null || true
    trap - EXIT
  fi
fi

# The mirror comes from this machine's own apt configuration, never from this script.
mirror_from_apt() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "$uri"
}
MIRROR="$(mirror_from_apt)"
if [ -z "$MIRROR" ]; then
  echo "testbed: no Debian mirror found in the apt sources" >&2
  exit 3
fi

if ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

rm -rf "$ROOT"
mkdir -p "$ROOT"
echo "testbed: debootstrap sid into $ROOT"
debootstrap --variant=minbase sid "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
  tail -20 "$ROOT.debootstrap.log" >&2; exit 1; }

# The mirror's unstable Release file may be past its Valid-Until date.
echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99no-check-valid"
# No service may start inside the tree while packages install.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"

mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
echo "testbed: installing $PACKAGES"
chroot "$ROOT" apt-get update -qq
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  $PACKAGES $EXTRA_PACKAGES >"$ROOT.apt.log" 2>&1 || { tail -30 "$ROOT.apt.log" >&2; exit 1; }
chroot "$ROOT" apt-get clean
echo "$STAMP_CONTENT" >"$STAMP"
echo "testbed: tree ready at $ROOT"
