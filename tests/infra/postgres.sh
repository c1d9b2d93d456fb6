#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:${PGPORT:-5432} with trust auth for user postgres.
# start: use the machine's cluster (pg_ctlcluster) if it is installed but down.
set -euo pipefail
PGPORT=${PGPORT:-5432}
case "${1:-start}" in
start)
  if pg_isready -h 127.0.0.1 -p "$PGPORT" -q; then
    echo "PostgreSQL already up on 127.0.0.1:$PGPORT"; exit 0
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 60); do
    pg_isready -h 127.0.0.1 -p "$PGPORT" -q && { echo "PostgreSQL $version up on 127.0.0.1:$PGPORT"; exit 0; }
    sleep 0.5
  done
  echo "PostgreSQL did not come up on 127.0.0.1:$PGPORT" >&2; exit 1 ;;
status)
  pg_isready -h 127.0.0.1 -p "$PGPORT" ;;
*)
  echo "usage: $0 start|status" >&2; exit 2 ;;
esac
