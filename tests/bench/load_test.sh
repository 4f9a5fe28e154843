#!/usr/bin/env bash
# The load test: the real stackprocd (job table in SQLite, 3 jobs at once) on a free loopback
# port, and stackproc-load against it. ctest runs a short, small configuration; for figures:
#   tests/bench/load_test.sh build/release --clients 16 --streams 4 --jobs 2000 --seconds 60
# usage: load_test.sh BUILD_DIR [stackproc-load flags...]
set -euo pipefail
build=$1
shift
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/data"
"$build/server/stackprocd" --listen 127.0.0.1:0 --data-root "$work/data" \
  --state-dir "$work/state" --max-running-jobs 3 >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$work/out")
[[ -n "$port" ]] || { echo "stackprocd did not start: $(cat "$work/log")" >&2; exit 1; }
"$build/tests/bench/stackproc-load" --server "127.0.0.1:$port" --server-pid "$pid" \
  --data-root "$work/data" "$@"
kill -TERM "$pid"
wait "$pid" || { echo "stackprocd exited with $?: $(tail -5 "$work/log")" >&2; exit 1; }
