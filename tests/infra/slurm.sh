#!/usr/bin/env bash
# A single-node Slurm cluster for tests (DESIGN.md section 10): munged, slurmctld, slurmd on 127.0.0.1.
#
#   tests/infra/slurm.sh setup|start|stop|teardown|status|env
#
# setup     install slurm-wlm + munge if missing, write $AILURO_INFRA_DIR/slurm/slurm.conf
# start     start munged (as user munge), slurmctld, slurmd -N localhost; wait for the node to be idle
# stop      stop the three daemons by PID
# teardown  stop, then delete the work dir
# env       print SLURM_CONF for tests
#
# Ports $AILURO_SLURM_PORT and +1 (default 26817/26818), bound to 127.0.0.1 only
# (CommunicationParameters=NoInAddrAny,NoCtldInAddrAny). Finished jobs are recorded by
# jobcomp/filetxt, which `sacct -c` reads (no slurmdbd).
set -euo pipefail

INFRA=${AILURO_INFRA_DIR:-/tmp/ailuro-infra}
W=$INFRA/slurm
PORT=${AILURO_SLURM_PORT:-26817}
CONF=$W/slurm.conf
# munged's own socket/pid dir; a private one so we never touch a system munged
MUNGE_DIR=$W/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
# More slots than cores (config_overrides): pilots mostly wait on the network, and tests need
# several at once on a 2-core machine.
CPUS=${AILURO_SLURM_CPUS:-8}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { cat "$1" 2>/dev/null || true; }

case "${1:-}" in
setup)
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
  fi
  [ -s /etc/munge/munge.key ] || { echo "slurm.sh: /etc/munge/munge.key missing (munge postinst)" >&2; exit 1; }
  mkdir -p "$W"/{state,spool,log} "$MUNGE_DIR"
  chown munge:munge "$MUNGE_DIR"
  cat > "$CONF" <<CFG
ClusterName=ailuro
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$W/state
SlurmdSpoolDir=$W/spool
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
MpiDefault=none
MinJobAge=300
JobCompType=jobcomp/filetxt
JobCompLoc=$W/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CFG
  echo "slurm configured in $W" ;;
start)
  [ -f "$CONF" ] || "$0" setup
  export SLURM_CONF=$CONF
  if ! alive "$(pid_of "$MUNGE_DIR/munged.pid")"; then
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --pid-file="$MUNGE_DIR/munged.pid" \
      --seed-file="$MUNGE_DIR/munged.seed" --log-file="$MUNGE_DIR/munged.log"
  fi
  alive "$(pid_of "$W/slurmctld.pid")" || slurmctld -f "$CONF"
  alive "$(pid_of "$W/slurmd.pid")" || slurmd -f "$CONF" -N localhost
  for _ in $(seq 1 120); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ] && break
    sleep 0.5
  done
  [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ] \
    || { echo "slurm.sh: node not idle (state '$state'); see $W/log" >&2; exit 1; }
  echo "slurm up on 127.0.0.1:$PORT; export SLURM_CONF=$CONF" ;;
stop)
  pids=()
  for f in "$W/slurmd.pid" "$W/slurmctld.pid" "$MUNGE_DIR/munged.pid"; do
    p=$(pid_of "$f")
    if alive "$p"; then kill -TERM "$p"; pids+=("$p"); fi
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 60); do alive "$p" || break; sleep 0.25; done
  done
  echo "slurm stopped" ;;
teardown)
  "$0" stop
  rm -rf --one-file-system "$W"
  echo "slurm work dir removed" ;;
status)
  SLURM_CONF=$CONF sinfo ;;
env)
  echo "SLURM_CONF=$CONF" ;;
*)
  echo "usage: $0 setup|start|stop|teardown|status|env" >&2; exit 2 ;;
esac
