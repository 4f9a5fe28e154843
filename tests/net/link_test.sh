#!/usr/bin/env bash
# A streamed job over a real, shaped link (tests/net/link.sh): stackprocd in a network namespace
# of its own behind a veth pair shaped to 1 Gbit/s each way, then to 100 Mbit/s with 20 ms of round
# trip (tests/net/delay_proxy.py in front). The CLI streams a uint16 stack through it; the output
# must be the bytes of the same job run locally (tests/tools/same_output.py). Prints each job's
# time beside the link's floor, max(bytes up, bytes down) / rate (figures, not asserted: this
# machine is shared; tests/bench/link.py measures).
# usage: link_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
work=$(mktemp -d)
server_pid= proxy_pid=
cleanup() {
  for pid in $proxy_pid $server_pid; do kill -9 "$pid" && wait "$pid"; done 2>/dev/null || true
  "$here/link.sh" down "$work/link" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  tail -n 20 "$work/server.log" >&2 2>/dev/null || true
  exit 1
}
same_output() { /usr/bin/python3 "$here/../tools/same_output.py" "$@" --differ time,executor,input.name; }

mkdir -p "$work/data"
"$build/core/stackproc-local" generate "$work/in.tif" --shape 32x512x1024 --type uint16 >/dev/null
ops=(--op gaussian:sigma=1.5)
"$build/core/stackproc-local" run --input "$work/in.tif" "${ops[@]}" --output "$work/local.tif" \
  >/dev/null 2>&1 || fail "the local run"
bytes=$(stat -c %s "$work/in.tif")

# A server in the namespace, on its address only.
start_server() { # RATE
  "$here/link.sh" down "$work/link" >/dev/null 2>&1 || true
  "$here/link.sh" up "$work/link" "$1"
  addr=$("$here/link.sh" addr "$work/link")
  "$here/link.sh" exec "$work/link" "$build/server/stackprocd" --listen "$addr:50051" \
    --data-root "$work/data" --allow-unauthenticated >"$work/server.log" 2>&1 &  # our own link
  server_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && return 0; sleep 0.1; done
  fail "stackprocd did not start in the namespace"
}
stream() { # TARGET NAME: the job through TARGET, the output compared; prints the time
  local start end
  start=$(date +%s.%N)
  STACKPROC_SERVER=$1 "$build/client/stackproc" process "$work/in.tif" -o "$work/$2.tif" \
    "${ops[@]}" >/dev/null 2>"$work/$2.err" || fail "$2: $(tail -n 3 "$work/$2.err")"
  end=$(date +%s.%N)
  same_output "$work/local.tif" "$work/$2.tif" >/dev/null ||
    fail "$2: the output is not the local run's bytes"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }' 
}
floor() { # MBIT: seconds to move the stack one way at MBIT
  awk -v n="$bytes" -v m="$1" 'BEGIN { printf "%.2f", n * 8 / (m * 1000000) }' 
}

start_server 1gbit
t=$(stream "$addr:50051" gbit)
echo "ok: over 1 Gbit/s each way, the local run's bytes: ${t} s (floor $(floor 1000) s)"

kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
start_server 100mbit
/usr/bin/python3 "$here/delay_proxy.py" 127.0.0.1:0 "$addr:50051" 20 >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/proxy.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/proxy.log")
[[ -n "$port" ]] || fail "the delaying proxy did not start: $(cat "$work/proxy.log")"
t=$(stream "127.0.0.1:$port" mbit)
echo "ok: over 100 Mbit/s with 20 ms of round trip, the local run's bytes: ${t} s (floor $(floor 100) s)"
echo "all passed"
