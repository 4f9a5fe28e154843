#!/usr/bin/env bash
# A streamed job over a real, shaped link (tests/net/link.sh): stackprocd in a network namespace
# of its own behind a veth pair shaped to 1 Gbit/s each way, then to 100 Mbit/s with 20 ms of round
# trip (tests/net/delay_proxy.py in front). The CLI streams a uint16 stack through it, with and
# without wire compression (auto: lz4 to the namespace's address; zstd through the proxy, whose
# loopback address auto would take for this machine); the output must be the bytes of the same
# job run locally (tests/tools/same_output.py). Prints each job's
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
start_server() { # RATE [FLAG...]
  "$here/link.sh" down "$work/link" >/dev/null 2>&1 || true
  "$here/link.sh" up "$work/link" "$1"
  addr=$("$here/link.sh" addr "$work/link")
  "$here/link.sh" exec "$work/link" "$build/server/stackprocd" --listen "$addr:50051" \
    --data-root "$work/data" --allow-unauthenticated "${@:2}" >"$work/server.log" 2>&1 &
  # (--allow-unauthenticated: the namespace's address is our own link's)
  server_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && return 0; sleep 0.1; done
  fail "stackprocd did not start in the namespace"
}
stream() { # TARGET NAME [FLAG...]: the job through TARGET, the output compared; prints the time
  local start end target=$1 name=$2
  shift 2
  start=$(date +%s.%N)
  STACKPROC_SERVER=$target "$build/client/stackproc" process "$work/in.tif" -o "$work/$name.tif" \
    "${ops[@]}" "$@" >"$work/$name.out" 2>"$work/$name.err" ||
    fail "$name: $(tail -n 3 "$work/$name.err")"
  end=$(date +%s.%N)
  same_output "$work/local.tif" "$work/$name.tif" >/dev/null ||
    fail "$name: the output is not the local run's bytes"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }' 
}
floor() { # MBIT: seconds to move the stack one way at MBIT
  awk -v n="$bytes" -v m="$1" 'BEGIN { printf "%.2f", n * 8 / (m * 1000000) }' 
}

start_server 1gbit
t=$(stream "$addr:50051" gbit --wire-compression none)
echo "ok: over 1 Gbit/s each way, the local run's bytes: ${t} s (floor $(floor 1000) s)"
t=$(stream "$addr:50051" gbit-auto)
grep -q "(compression lz4)" "$work/gbit-auto.out" || fail "auto chose: $(tail -n 1 "$work/gbit-auto.out")"
echo "ok: the same, wire compression auto (lz4 to a namespace's address): ${t} s; $(tail -n 1 "$work/gbit-auto.out")"

kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
start_server 100mbit --stream-grace 5
/usr/bin/python3 "$here/delay_proxy.py" 127.0.0.1:0 "$addr:50051" 20 >"$work/proxy.log" 2>&1 &
proxy_pid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/proxy.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/proxy.log")
[[ -n "$port" ]] || fail "the delaying proxy did not start: $(cat "$work/proxy.log")"
t=$(stream "127.0.0.1:$port" mbit)
echo "ok: over 100 Mbit/s with 20 ms of round trip, the local run's bytes: ${t} s (floor $(floor 100) s)"
t=$(stream "127.0.0.1:$port" mbit-zstd --wire-compression zstd)
echo "ok: the same, wire compression zstd: ${t} s"
# The link dies mid-job (link.sh cut: no packet gets through, no socket sees an error):
# keepalive (proto/wire.h) ends the client's call, and the server's, in seconds instead of TCP's
# many minutes; the client tries to resume until the server's --stream-grace (5 s here) has
# run out, then gives up, writing nothing; the server cancels the job then.
STACKPROC_SERVER=$addr:50051 "$build/client/stackproc" process "$work/in.tif" -o "$work/cut.tif" \
  "${ops[@]}" --wire-compression none >"$work/cut.out" 2>"$work/cut.err" &
client_pid=$!
sleep 1
"$here/link.sh" cut "$work/link"
cut_at=$SECONDS
while kill -0 "$client_pid" 2>/dev/null && ((SECONDS - cut_at < 60)); do sleep 1; done
kill -0 "$client_pid" 2>/dev/null && fail "the client still waits $((SECONDS - cut_at)) s after the cut"
code=0
wait "$client_pid" || code=$?
client_s=$((SECONDS - cut_at))
((code != 0)) || fail "the client succeeded over a cut link"
[[ ! -e "$work/cut.tif" ]] || fail "a cut job left an output"
list() { "$here/link.sh" exec "$work/link" "$build/client/stackproc" --server "$addr:50051" list; }
while ! list | grep -q "cancelled" && ((SECONDS - cut_at < 60)); do sleep 1; done
list | grep -q "cancelled" || fail "the server did not end the job: $(list)"
echo "ok: a cut link ends the client's call in ${client_s} s ($(tail -n 1 "$work/cut.err")) and" \
  "the server's job in $((SECONDS - cut_at)) s"
echo "all passed"
