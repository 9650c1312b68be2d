#!/usr/bin/env bash
# A one-node SLURM on localhost (slurmctld + slurmd + munge from Debian packages): try the cluster
# path on a laptop, and run the scheduler tests for real.
#
#   bash scripts/slurm_local.sh up       # install if missing (root + apt), start; idempotent; prints the env to use
#   eval "$(bash scripts/slurm_local.sh env)"   # SLURM_CONF + the sacct stand-in on PATH, in this shell
#   bash scripts/slurm_local.sh status   # daemons and the node's state
#   bash scripts/slurm_local.sh down     # stop the daemons (by their pid files); the state dir stays
#
# Everything lives under $SLURM_LOCAL_DIR (default /tmp/latentstitch-slurm): config, state, spool,
# logs, pid files, the sacct stand-in. Two measured pitfalls are handled here: without accounting
# the real sacct fails and submitit waits forever on a job the scheduler kills, so bin/sacct
# answers from scontrol (scripts/slurm/sacct); and without DefMemPerCPU every job asks for the
# whole node, so an array runs one job at a time (DefMemPerCPU is set, 1 GiB per CPU by default).
set -euo pipefail

BASE=${SLURM_LOCAL_DIR:-/tmp/latentstitch-slurm}
HERE=$(cd "$(dirname "$0")" && pwd)
MEM_PER_CPU=${SLURM_LOCAL_MEM_PER_CPU:-1024}
PACKAGES=(slurmctld slurmd slurm-client munge)

die() { echo "error: $*" >&2; exit 2; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

env_lines() {
  echo "export SLURM_CONF=$BASE/etc/slurm.conf"
  echo "export PATH=$BASE/bin:\$PATH"
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return
  fi
  [[ $(id -u) == 0 ]] || die "SLURM is not installed and installing it needs root: apt-get install ${PACKAGES[*]}"
  command -v apt-get >/dev/null || die "SLURM is not installed and apt-get is not available: install ${PACKAGES[*]}"
  echo "installing ${PACKAGES[*]} (apt)" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

write_config() {
  mkdir -p "$BASE"/{etc,state,spool,log,run,bin}
  local host node
  host=$(hostname -s)
  # the node line as slurmd measures it (CPUs, sockets, cores, threads, memory), on loopback
  node=$(slurmd -C | head -1 | sed "s/NodeName=[^ ]*/NodeName=$host/")
  cat >"$BASE/etc/slurm.conf.new" <<EOF
ClusterName=latentstitch-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$MEM_PER_CPU
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$BASE/etc/slurm.conf.new" "$BASE/etc/slurm.conf"
  install -m 0755 "$HERE/slurm/sacct" "$BASE/bin/sacct"
}

start_munge() {
  if pgrep -x munged >/dev/null; then
    return
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  [[ -s /etc/munge/munge.key ]] || die "no /etc/munge/munge.key (reinstall the munge package)"
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  echo "$BASE" >/run/munge/.started-by-latentstitch
}

wait_idle() {
  local i state
  for i in $(seq 1 60); do
    state=$(SLURM_CONF=$BASE/etc/slurm.conf sinfo -h -o %T 2>/dev/null | head -1 || true)
    if [[ $state == idle* || $state == mixed* || $state == alloc* ]]; then
      return 0
    fi
    sleep 0.5
  done
  die "the local SLURM node did not come up (state '${state:-none}'); see $BASE/log/slurmctld.log and slurmd.log"
}

up() {
  install_packages
  if alive "$BASE/run/slurmctld.pid" && alive "$BASE/run/slurmd.pid"; then
    wait_idle
    env_lines
    return
  fi
  down quiet
  if (exec 3<>/dev/tcp/127.0.0.1/6817) 2>/dev/null; then
    die "port 6817 is taken: a slurmctld not started from $BASE is running; stop it, or set SLURM_LOCAL_DIR to its dir"
  fi
  write_config
  start_munge
  SLURM_CONF=$BASE/etc/slurm.conf slurmctld -i
  SLURM_CONF=$BASE/etc/slurm.conf slurmd
  wait_idle
  echo "local SLURM up: $(SLURM_CONF=$BASE/etc/slurm.conf sinfo -h -o '%P %D node(s) %c CPUs %m MB %T')" >&2
  env_lines
}

stop_pidfile() {
  local pidfile=$1 i
  alive "$pidfile" || return 0
  kill "$(cat "$pidfile")" 2>/dev/null || true
  for i in $(seq 1 40); do
    alive "$pidfile" || return 0
    sleep 0.25
  done
  kill -9 "$(cat "$pidfile")" 2>/dev/null || true
}

down() {
  if alive "$BASE/run/slurmctld.pid"; then  # jobs first: their steps would outlive the daemons
    SLURM_CONF=$BASE/etc/slurm.conf scancel --quiet --full --partition=local 2>/dev/null || true
    local i
    for i in $(seq 1 20); do
      [[ -z $(SLURM_CONF=$BASE/etc/slurm.conf squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  stop_pidfile "$BASE/run/slurmd.pid"
  stop_pidfile "$BASE/run/slurmctld.pid"
  pkill -9 -f "$BASE/spool/" 2>/dev/null || true  # job scripts of ours still running (their slurmd is gone)
  if ! pgrep -x slurmd >/dev/null; then pkill -9 -x slurmstepd 2>/dev/null || true; fi
  if [[ -f /run/munge/.started-by-latentstitch ]] && [[ $(cat /run/munge/.started-by-latentstitch) == "$BASE" ]]; then
    stop_pidfile /run/munge/munged.pid
    rm -f /run/munge/.started-by-latentstitch
  fi
  [[ ${1:-} == quiet ]] || echo "local SLURM down (state kept in $BASE)" >&2
}

status() {
  local name
  for name in slurmctld slurmd; do
    if alive "$BASE/run/$name.pid"; then echo "$name: running (pid $(cat "$BASE/run/$name.pid"))"; else echo "$name: stopped"; fi
  done
  if pgrep -x munged >/dev/null; then echo "munged: running"; else echo "munged: stopped"; fi
  if alive "$BASE/run/slurmctld.pid"; then
    SLURM_CONF=$BASE/etc/slurm.conf sinfo
  fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  env) env_lines ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
