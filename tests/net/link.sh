#!/usr/bin/env bash
# A network link to a server, on this one machine: a network namespace of its own joined to this
# one by a veth pair, each direction shaped by tc's token bucket (tbf) to RATE, its burst 10 ms
# of the rate (a smaller one throttles fast links: 128 KiB holds 1 Gbit/s to a tenth). What runs
# in the namespace (`link.sh exec DIR CMD...`) is the server's side; this side reaches it at the
# address `link.sh addr DIR` prints. Round-trip delay, which this kernel's tc cannot add (no
# netem), comes from tests/net/delay_proxy.py in front of it.
#
#   link.sh up DIR RATE     RATE as tc says it: 1gbit, 100mbit
#   link.sh addr DIR        the server side's address
#   link.sh exec DIR CMD..  CMD in the server's namespace
#   link.sh cut DIR         the link dies: every packet either way is lost from now on
#   link.sh down DIR        remove the namespace and the pair
#
# Needs root and iproute2. Names come from DIR, so two links never share one.
set -euo pipefail
action=${1:-}
dir=${2:-}
[[ -n "$action" && -n "$dir" ]] || { sed -n '9,13p' "$0" | sed 's/^# //'; exit 2; }
tag=$(printf '%s' "$(realpath -m "$dir")" | md5sum | cut -c1-6)
ns=spl$tag
here=vl$tag

# tbf's burst: 10 ms of RATE (bytes), at least 16 KiB.
burst() {
  local bits
  bits=$(numfmt --from=si "$(echo "${1%bit}" | tr a-z A-Z)")
  echo $((bits / 8 / 100 > 16384 ? bits / 8 / 100 : 16384))
}

case "$action" in
  up)
    rate=${3:?rate, e.g. 1gbit}
    [[ $(id -u) -eq 0 ]] || { echo "link.sh: a namespace needs root" >&2; exit 1; }
    mkdir -p "$dir"
    local_net=""
    for _ in $(seq 50); do  # a /30 no address of this machine is in
      local_net=10.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))
      ip -4 addr show | grep -q " $local_net\." || break
    done
    ip netns add "$ns"
    ip link add "$here" type veth peer name eth0 netns "$ns"
    ip addr add "$local_net.1/30" dev "$here"
    ip link set "$here" up
    ip netns exec "$ns" ip addr add "$local_net.2/30" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    b=$(burst "$rate")
    tc qdisc add dev "$here" root tbf rate "$rate" burst "$b" latency 100ms
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst "$b" latency 100ms
    echo "$local_net.2" >"$dir/addr"
    ;;
  addr) cat "$dir/addr" ;;
  exec) shift 2; exec ip netns exec "$ns" "$@" ;;
  cut)  # both ends lose the carrier and every packet is dropped; no socket sees an error
    ip link set "$here" down
    ;;
  down)
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip link del "$here" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ;;
  *) echo "link.sh: unknown action '$action' (up, addr, exec, cut, down)" >&2; exit 2 ;;
esac
