#!/usr/bin/env bash
# A real SLURM cluster of N nodes on this one machine, for the tests that need a node to die:
# slurmctld and one slurmd per node, each in a network namespace of its own joined by a bridge
# (this machine sits on the bridge too, so sbatch and squeue run from here as from a login
# node), and a munged of its own. Everything is named after DIR's cluster (its namespaces, its
# bridge, a subnet picked at start), listens only inside its namespaces, and lives under DIR.
#
#   nodes.sh start DIR N    start N nodes (n1..nN, 2 CPUs each, partition "batch"); then
#                           `export SLURM_CONF=DIR/slurm.conf`
#   nodes.sh kill DIR I     node I dies: every process in its namespace is killed at once
#   nodes.sh stop DIR       stop what start started, remove the namespaces and the bridge
#
# Needs root, iproute2 and Debian's slurmctld, slurmd, slurm-client and munge. Daemons start
# with `nsenter --net` (`ip netns exec` remounts /sys, where slurmd then finds no cgroups).
set -euo pipefail
action=${1:-}
dir=${2:-}
[[ -n "$action" && -n "$dir" ]] || { sed -n '7,10p' "$0" | sed 's/^# //'; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "nodes.sh: a test cluster needs root" >&2; exit 1; }
export SLURM_CONF=$dir/slurm.conf
# shellcheck source=tests/slurm/munge.sh
source "$(dirname "$(realpath "$0")")/munge.sh"

# Names of this cluster's own: from its folder, so two clusters never share one.
tag=$(printf '%s' "$(realpath -m "$dir")" | md5sum | cut -c1-6)
bridge=spb$tag
ns() { echo "sp$tag-$1"; }  # ns ctl | ns n1 ...

start() {
  local n=${1:?number of nodes}
  mkdir -p "$dir"/{spool,state,log}
  chmod 0700 "$dir"
  start_munge "$dir"

  # A /24 no address of this machine is in.
  local net
  for _ in $(seq 50); do
    net=10.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))
    ip -4 addr show | grep -q " $net\." || break
  done
  echo "$net" >"$dir/subnet"
  ip link add "$bridge" type bridge
  ip addr add "$net.1/24" dev "$bridge"
  ip link set "$bridge" up
  add_namespace() { # NAME ADDRESS
    ip netns add "$1"
    ip link add "v$1" type veth peer name eth0 netns "$1"
    ip link set "v$1" master "$bridge"
    ip link set "v$1" up
    ip netns exec "$1" ip addr add "$2/24" dev eth0
    ip netns exec "$1" ip link set eth0 up
    ip netns exec "$1" ip link set lo up
  }
  add_namespace "$(ns ctl)" "$net.2"
  for i in $(seq "$n"); do add_namespace "$(ns "n$i")" "$net.$((10 + i))"; done

  {
    cat <<CONF
ClusterName=stackproc-nodes
SlurmctldHost=$(hostname -s)($net.2)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
SlurmdTimeout=5
JobRequeue=0
MpiDefault=none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=120
CONF
    for i in $(seq "$n"); do
      echo "NodeName=n$i NodeAddr=$net.$((10 + i)) CPUs=2 RealMemory=2000 State=UNKNOWN"
    done
    echo "PartitionName=batch Nodes=n[1-$n] Default=YES MaxTime=INFINITE State=UP"
  } >"$SLURM_CONF"
  nsenter --net="/var/run/netns/$(ns ctl)" /usr/sbin/slurmctld -D -f "$SLURM_CONF" \
    >"$dir/log/slurmctld.out" 2>&1 &
  until_true 20 scontrol ping || { echo "slurmctld did not start" >&2; exit 1; }
  for i in $(seq "$n"); do
    mkdir -p "$dir/spool/n$i"
    nsenter --net="/var/run/netns/$(ns "n$i")" /usr/sbin/slurmd -D -N "n$i" -f "$SLURM_CONF" \
      >"$dir/log/slurmd.n$i.out" 2>&1 &
  done
  until_true 30 bash -c "[[ \$(sinfo --noheader --states=idle --format=%D) == $n ]]" ||
    { echo "the nodes take no jobs:" >&2; sinfo >&2; exit 1; }
}

# Kills every process in namespace $1 (what the cluster started there, its tasks included).
kill_namespace() {
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null || true)
  [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
}

stop() {
  [[ -f "$SLURM_CONF" ]] && scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
  for name in $(ip netns list | awk '{print $1}' | grep "^sp$tag-" || true); do
    kill_namespace "$name"
    ip netns delete "$name" 2>/dev/null || true
  done
  ip link delete "$bridge" 2>/dev/null || true
  stop_munge "$dir"
}

case "$action" in
  start) start "${3:-}" ;;
  kill) kill_namespace "$(ns "n${3:?node}")" ;;
  stop) stop ;;
  *) echo "nodes.sh: start, kill or stop, not '$action'" >&2; exit 2 ;;
esac
