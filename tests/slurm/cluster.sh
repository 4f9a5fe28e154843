#!/usr/bin/env bash
# A real single-node SLURM cluster that the tests start and stop themselves: Debian 12's
# slurm-wlm daemons (slurmctld, slurmd) and a munged of its own, as plain background processes
# under DIR (no systemd, nothing of the machine's own munge or slurm configuration touched).
# One partition, "batch", holds this machine with all its CPUs; the ports are free ones picked
# at start, so the cluster does not collide with another one on the machine.
#
#   cluster.sh start DIR   configure and start everything in DIR, wait until the node takes
#                          jobs; then `export SLURM_CONF=DIR/slurm.conf` for sbatch and squeue
#   cluster.sh stop DIR    cancel its jobs, stop what start started (TERM, then KILL)
#
# Needs root (slurmd runs jobs as their submitter; munged, as root, needs --force) and the
# packages slurmctld slurmd slurm-client munge (deploy/install-deps.sh installs them).
set -euo pipefail
action=${1:-}
dir=${2:-}
[[ -n "$action" && -n "$dir" ]] || { sed -n '8,12p' "$0" | sed 's/^# //'; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "cluster.sh: a test cluster needs root (munged, slurmd)" >&2; exit 1; }
export SLURM_CONF=$dir/slurm.conf
# shellcheck source=tests/slurm/munge.sh
source "$(dirname "$(realpath "$0")")/munge.sh"

free_port() { /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

node_takes_jobs() { sinfo --noheader --format=%T | grep -qx idle; }

start() {
  mkdir -p "$dir"/{spool,state,log}
  chmod 0700 "$dir"
  # munge: a key and a socket of this cluster's own.
  start_munge "$dir"

  local host cpus memory
  host=$(hostname -s)
  cpus=$(nproc)
  memory=$(awk '/MemTotal/ { print int($2 / 1024 * 0.8) }' /proc/meminfo)
  cat >"$SLURM_CONF" <<CONF
ClusterName=stackproc-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
MpiDefault=none
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
MailProg=/bin/true
DefMemPerCPU=$((memory / cpus))
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=120
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=batch Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  /usr/sbin/slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.started"
  until_true 20 scontrol ping || { echo "slurmctld did not start:" >&2; tail -5 "$dir/log/slurmctld.log" >&2; stop; exit 1; }
  /usr/sbin/slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.started"
  until_true 30 node_takes_jobs || { echo "the node takes no jobs:" >&2; tail -5 "$dir/log/slurmd.log" >&2; stop; exit 1; }
}

stop() {
  [[ -f "$SLURM_CONF" ]] && scancel --cluster=stackproc-test --full --user="$(id -un)" >/dev/null 2>&1 || true
  for daemon in slurmd slurmctld; do
    local file=$dir/$daemon.started pid
    [[ -s "$file" ]] || continue
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    until_true 5 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
  done
  stop_munge "$dir"
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) echo "cluster.sh: start or stop, not '$action'" >&2; exit 2 ;;
esac
