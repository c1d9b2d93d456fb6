#!/usr/bin/env bash
# A one-node HTCondor pool for tests: Debian trixie's minicondor in a debootstrap chroot
# (bookworm packages no HTCondor daemons; see DESIGN.md section 10).
#
#   tests/infra/htcondor.sh setup|start|stop|teardown|status|env
#
# setup     debootstrap trixie + minicondor into $AILURO_INFRA_DIR/htcondor/root (~35 s, once)
# start     mount /proc, /dev, the shared job dir and (read-only) the repo + its Python into the
#           chroot at the same paths, start condor_master, wait for an Unclaimed slot, write an
#           IDTOKEN for user "panda" (uid 1000) and a client CONDOR_CONFIG for host-side bindings
# stop      stop condor_master by PID (waits for its daemons), then unmount everything
# teardown  stop, then delete the chroot
# env       print the variables tests need (CONDOR_CONFIG, AILURO_HTC_SHARED)
#
# Jobs never run as root: the client authenticates as panda@<uid domain>, so jobs run as panda.
# The job directory ($AILURO_INFRA_DIR/htcondor/jobs) has the same path inside and outside.
# Everything listens on 127.0.0.1 only (shared port $AILURO_HTC_PORT, default 29618).
set -euo pipefail
# the daemons and tools inside the chroot read their own config, never a client config from the caller
unset CONDOR_CONFIG

INFRA=${AILURO_INFRA_DIR:-/tmp/ailuro-infra}
BASE=$INFRA/htcondor
R=$BASE/root
SHARED=$BASE/jobs
CLIENT=$BASE/client
PORT=${AILURO_HTC_PORT:-29618}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PYTHON=${AILURO_PYTHON:-$REPO/.venv/bin/python}
MIRROR=${AILURO_DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\?$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

mnt() { mountpoint -q "$2" || mount "${@:3}" "$1" "$2"; }

# Host paths pilots need inside the chroot: the repo (with its venv) and the venv's base Python.
bind_paths() {
  local base
  base=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
  case "$base" in
    /usr|/usr/*|/) echo "htcondor.sh: $PYTHON is based on $base; the chroot has its own /usr," \
                        "so pilots need a Python outside /usr (pyenv, uv, ...)" >&2; return 1 ;;
  esac
  printf '%s\n' "$REPO" "$base" ${AILURO_HTC_EXTRA_BINDS:-}
}

master_pid() { cat "$R/run/condor/condor_master.pid" 2>/dev/null || true; }

case "${1:-}" in
setup)
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  mkdir -p "$BASE"
  if [ ! -x "$R/usr/sbin/condor_master" ]; then
    [ -x "$R/usr/bin/apt-get" ] || debootstrap --variant=minbase trixie "$R" "$MIRROR" >"$BASE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$BASE/debootstrap.log" >&2; exit 1; }
    printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf /etc/hosts "$R/etc/"
    mnt proc "$R/proc" -t proc
    trap 'mountpoint -q "$R/proc" && umount "$R/proc"' EXIT
    chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends minicondor >"$BASE/apt.log" 2>&1 \
      || { tail -n 20 "$BASE/apt.log" >&2; exit 1; }
    umount "$R/proc"; trap - EXIT
  fi
  cat > "$R/etc/condor/config.d/99-ailuro" <<CFG
ENABLE_IPV6 = False
# a per-job /tmp mount namespace fails inside a chroot (EINVAL)
MOUNT_UNDER_SCRATCH =
COLLECTOR_PORT = $PORT
SHARED_PORT_PORT = $PORT
COLLECTOR_HOST = 127.0.0.1:$PORT
# more slots than cores: pilots mostly wait on the network, and tests need several at once
NUM_CPUS = ${AILURO_HTC_CPUS:-8}
CFG
  chroot "$R" id panda >/dev/null 2>&1 || chroot "$R" useradd -m -u 1000 panda
  mkdir -p "$SHARED" "$R$SHARED" "$CLIENT/tokens.d"
  chown 1000:1000 "$SHARED"
  echo "htcondor chroot ready in $R" ;;
start)
  [ -x "$R/usr/sbin/condor_master" ] || { echo "htcondor.sh: run setup first" >&2; exit 1; }
  P=$(master_pid)
  if [ -n "$P" ] && kill -0 "$P" 2>/dev/null; then
    # a pool started from another checkout binds that one: its pilots could not run this one's
    # Python (exit 127), so restart it bound to this checkout
    if [ "$(cat "$BASE/binds" 2>/dev/null)" = "$(bind_paths)" ]; then echo "condor already running (pid $P)"; exit 0; fi
    echo "condor running for another checkout (pid $P): restarting it for $REPO"
    "$0" stop
  fi
  mnt proc "$R/proc" -t proc
  mnt /dev "$R/dev" --bind
  mnt /dev/pts "$R/dev/pts" --bind
  mnt "$SHARED" "$R$SHARED" --bind
  binds=$(bind_paths)
  for p in $binds; do
    mkdir -p "$R$p"
    # uid 1000 must traverse the chroot's copies of the parents (e.g. /root is 0700)
    d=$R$p; while [ "$d" != "$R" ]; do d=$(dirname "$d"); chmod o+x "$d"; done
    # and the bound directory itself: a checkout made by `mktemp -d` is 0700, and a bind mount
    # keeps its source's mode, so the pilots (uid 1000) could not read the repository
    [ -n "$(find "$p" -maxdepth 0 -perm -o=x)" ] || chmod o+rx "$p"
    mountpoint -q "$R$p" || { mount --bind "$p" "$R$p" && mount -o remount,bind,ro "$R$p"; }
  done
  printf '%s\n' $binds > "$BASE/binds"
  chroot "$R" /usr/sbin/condor_master -pidfile /run/condor/condor_master.pid
  for _ in $(seq 1 120); do
    chroot "$R" condor_status -af State 2>/dev/null | grep -q Unclaimed && break
    sleep 0.5
  done
  chroot "$R" condor_status -af State 2>/dev/null | grep -q Unclaimed || { echo "htcondor.sh: no slot came up" >&2; exit 1; }
  domain=$(chroot "$R" condor_config_val UID_DOMAIN)
  chroot "$R" condor_token_create -identity "panda@$domain" > "$CLIENT/tokens.d/panda.token"
  chmod 600 "$CLIENT/tokens.d/panda.token"
  cat > "$CLIENT/condor_config" <<CFG
COLLECTOR_HOST = 127.0.0.1:$PORT
ENABLE_IPV6 = False
SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS
SEC_TOKEN_DIRECTORY = $CLIENT/tokens.d
CFG
  echo "htcondor pool up on 127.0.0.1:$PORT; export CONDOR_CONFIG=$CLIENT/condor_config" ;;
stop)
  P=$(master_pid)
  if [ -n "$P" ] && kill -0 "$P" 2>/dev/null; then
    kill -TERM "$P"
    for _ in $(seq 1 120); do kill -0 "$P" 2>/dev/null || break; sleep 0.5; done
  fi
  # condor first, /proc last: unmounting /proc under a live master orphans its daemons
  for m in $(cat "$BASE/binds" 2>/dev/null) ; do mountpoint -q "$R$m" && umount "$R$m"; done
  for m in "$R$SHARED" "$R/dev/pts" "$R/dev" "$R/proc"; do mountpoint -q "$m" && umount "$m"; done
  rm -f "$BASE/binds"
  echo "htcondor stopped" ;;
teardown)
  "$0" stop
  rm -rf --one-file-system "$R"
  echo "htcondor chroot removed" ;;
status)
  P=$(master_pid)
  [ -n "$P" ] && kill -0 "$P" 2>/dev/null && chroot "$R" condor_status ;;
env)
  echo "CONDOR_CONFIG=$CLIENT/condor_config"
  echo "AILURO_HTC_SHARED=$SHARED" ;;
*)
  echo "usage: $0 setup|start|stop|teardown|status|env" >&2; exit 2 ;;
esac
