#!/usr/bin/env bash
# XRootD storage elements for the DDM tests: an "EOS-like" disk SE, a "Castor-like" tape SE whose
# recall is modelled by the DDM catalog, and a tape SE that stages through XRootD's prepare protocol.
#
#   tests/infra/xrootd.sh setup          create the network namespace and the directories
#   tests/infra/xrootd.sh start [NAME]   start all servers (or one: disk | tape | stage)
#   tests/infra/xrootd.sh stop [NAME]    stop all servers and delete the namespace (or stop one)
#   tests/infra/xrootd.sh status         print what runs and the endpoints
#
# xrootd always listens on the wildcard address, so the servers run inside a network namespace
# made here ($AILURO_XRD_NETNS, default ailuro-se) with `lo` up and one veth pair to the host on a
# private /30: the host side is $AILURO_XRD_HOST_ADDR, the namespace side $AILURO_XRD_ADDR. Tests
# (host namespace, where PostgreSQL on 127.0.0.1 stays reachable) use root://$AILURO_XRD_ADDR:PORT.
# Nothing is routed anywhere else. xrootd refuses root, so it runs as user xrootd (-R xrootd).
# Servers are stopped by PID; `stop` without a name also deletes the namespace and the veth pair.
#
# Ports: disk root 21094, disk http 21095, tape root 21096, tape http 21097 (XrdHttp doors),
# stage root 21098.
# The "tape" SE is an ordinary XRootD server: "on tape until staged" is modelled by the DDM catalog
# (staging = "delay"). The "stage" SE is a real staging service: the server exports only a disk
# buffer ($DIR/stage/data); the tape is $DIR/stage/tape beside it, which it does not serve. XRootD's
# prepare plug-in (ofs.preplib libXrdOfsPrepGPI.so) runs tests/infra/tape_robot.py (copied to
# $DIR/stage/) for `xrdfs prepare -s` (recall after $AILURO_TAPE_DELAY_S seconds, default 1),
# `xrdfs query prepare` (EOS-CTA's JSON: online, on_tape, path_exists, error_text) and
# `xrdfs prepare -e` (migrate to tape, then evict from the buffer).
set -euo pipefail

NETNS=${AILURO_XRD_NETNS:-ailuro-se}
DIR=${AILURO_XRD_DIR:-/tmp/ailuro-xrootd}
HOST_ADDR=${AILURO_XRD_HOST_ADDR:-10.213.47.1}
NS_ADDR=${AILURO_XRD_ADDR:-10.213.47.2}
VETH_HOST=${NETNS}0
VETH_NS=${NETNS}1

TAPE_DELAY_S=${AILURO_TAPE_DELAY_S:-1}
SERVERS="disk tape stage"
HERE=$(cd "$(dirname "$0")" && pwd)

port_of() { case "$1" in disk) echo 21094 ;; tape) echo 21096 ;; stage) echo 21098 ;; *) echo "unknown server $1" >&2; exit 2 ;; esac; }
http_port_of() { case "$1" in disk) echo 21095 ;; tape) echo 21097 ;; esac; }
pidfile_of() { echo "$DIR/$1/run/$1/xrootd.pid"; }

setup() {
  command -v xrootd >/dev/null || { echo "xrootd is not installed (apt-get install xrootd-server xrootd-client)" >&2; exit 1; }
  if ! ip netns list | grep -qw "$NETNS"; then
    ip netns add "$NETNS"
    ip netns exec "$NETNS" ip link set lo up
    ip link add "$VETH_HOST" type veth peer name "$VETH_NS"
    ip link set "$VETH_NS" netns "$NETNS"
    ip addr add "$HOST_ADDR/30" dev "$VETH_HOST"
    ip link set "$VETH_HOST" up
    ip netns exec "$NETNS" ip addr add "$NS_ADDR/30" dev "$VETH_NS"
    ip netns exec "$NETNS" ip link set "$VETH_NS" up
  fi
  for name in $SERVERS; do
    mkdir -p "$DIR/$name/data" "$DIR/$name/run" "$DIR/$name/home"
    cat >"$DIR/$name/xrootd.cfg" <<CFG
all.export /
oss.localroot $DIR/$name/data
all.adminpath $DIR/$name/run
all.pidpath $DIR/$name/run
all.homepath $DIR/$name/home
xrd.port $(port_of "$name")
xrootd.chksum adler32
CFG
    if [[ $name == stage ]]; then
      mkdir -p "$DIR/stage/tape" "$DIR/stage/requests"
      install -m 0755 "$HERE/tape_robot.py" "$DIR/stage/tape_robot.py"
      # no shell wrapper: sh would drop xrootd's effective user and run the robot as root
      printf '{"tape": "%s", "buffer": "%s", "state": "%s", "delay_s": %s}\n' \
        "$DIR/stage/tape" "$DIR/stage/data" "$DIR/stage/requests" "$TAPE_DELAY_S" >"$DIR/stage/tape_robot.json"
      echo "ofs.preplib libXrdOfsPrepGPI.so -admit all -maxfiles 64 -run $DIR/stage/tape_robot.py" >>"$DIR/stage/xrootd.cfg"
    else
      echo "xrd.protocol XrdHttp:$(http_port_of "$name") libXrdHttp.so" >>"$DIR/$name/xrootd.cfg"
    fi
  done
  chown -R xrootd:xrootd "$DIR"
  chmod 755 "$DIR"
}

running() { local p; p=$(pidfile_of "$1"); [[ -f $p ]] && kill -0 "$(cat "$p")" 2>/dev/null; }

start_one() {
  local name=$1 port HTTP
  port=$(port_of "$name")
  HTTP=$(http_port_of "$name")
  if running "$name"; then echo "$name already running (pid $(cat "$(pidfile_of "$name")"))"; return; fi
  ip netns exec "$NETNS" xrootd -c "$DIR/$name/xrootd.cfg" -n "$name" -R xrootd -l "$DIR/$name/xrootd.log" -b
  for _ in $(seq 1 100); do
    if [[ -f $(pidfile_of "$name") ]] && (exec 3<>"/dev/tcp/$NS_ADDR/$port") 2>/dev/null; then
      echo "$name: root://$NS_ADDR:$port${HTTP:+ http://$NS_ADDR:$HTTP} (pid $(cat "$(pidfile_of "$name")"))"
      return
    fi
    sleep 0.05
  done
  echo "$name did not start; log:" >&2; tail -20 "$DIR/$name/xrootd.log"* >&2 || true; exit 1
}

stop_one() {
  local name=$1 p pid
  p=$(pidfile_of "$name")
  [[ -f $p ]] || return 0
  pid=$(cat "$p")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$p"
}

case "${1:-}" in
setup) setup ;;
start)
  setup
  if [[ -n ${2:-} ]]; then start_one "$2"; else for name in $SERVERS; do start_one "$name"; done; fi ;;
stop)
  if [[ -n ${2:-} ]]; then stop_one "$2"; exit 0; fi
  for name in $SERVERS; do stop_one "$name"; done
  if ip netns list | grep -qw "$NETNS"; then ip netns del "$NETNS"; fi
  ip link del "$VETH_HOST" 2>/dev/null || true ;;
status)
  for name in $SERVERS; do
    if running "$name"; then echo "$name running: root://$NS_ADDR:$(port_of "$name")"; else echo "$name stopped"; fi
  done ;;
*) echo "usage: $0 setup|start [disk|tape|stage]|stop [disk|tape|stage]|status" >&2; exit 2 ;;
esac
