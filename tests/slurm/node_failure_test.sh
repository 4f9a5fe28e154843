#!/usr/bin/env bash
# stackprocd --executor slurm on a real cluster of 3 nodes (tests/slurm/nodes.sh), one of which
# dies while it runs a shard: every process in its network namespace killed at once, slurmd and
# the task with it, as a machine that loses power. The controller marks the node down and the
# task NODE_FAIL; the server submits that shard again, alone, and it runs on a node still up. The
# output must be the bytes of the same job run whole, and the log must name the dead node.
# usage: node_failure_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
local_tool=$build/core/stackproc-local
work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]]; then kill -9 "$server_pid" && wait "$server_pid"; fi 2>/dev/null || true
  "$here/nodes.sh" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- server log" >&2; grep -v '^$' "$work/server.log" | tail -n 20 >&2 || true
  squeue --all >&2 || true
  exit 1
}
wait_until() { # SECONDS COMMAND...: polls every 0.2 s
  local tries=$(($1 * 5)); shift
  while ((tries-- > 0)); do "$@" && return 0; sleep 0.2; done
  return 1
}

# Two outputs of one job: the same bytes apart from the record of each run (its time, executor and
# input name: core/stack/provenance.h).
same_output_py=$(dirname "$(realpath "$0")")/../tools/same_output.py
same_output() { /usr/bin/python3 "$same_output_py" "$@"; }

"$here/nodes.sh" start "$work/cluster" 3
export SLURM_CONF=$work/cluster/slurm.conf
data=$work/data
mkdir -p "$data"
ops=(--op bilateral:d=25,sigma_color=50,sigma_space=9 --op median:ksize=5)
"$local_tool" generate "$data/in.tif" --shape 60x1024x1024 --type uint8 >/dev/null
"$local_tool" run --input "$data/in.tif" --output "$work/whole.tif" "${ops[@]}" >/dev/null 2>&1

"$build/server/stackprocd" --listen 127.0.0.1:0 --data-root "$data" --state-dir "$work/state" \
  --executor slurm --slurm-poll 1 --slurm-retries 1 --slurm-cpus-per-shard 1 \
  --slurm-worker "$local_tool" >"$work/server.log" 2>&1 &
server_pid=$!
port=
wait_until 20 grep -q 'listening on 127.0.0.1:' "$work/server.log" || fail "the server did not start"
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/server.log" | cut -d: -f2)
cli() { "$build/client/stackproc" --server "127.0.0.1:$port" "$@"; }

job=$(cli submit --input in.tif "${ops[@]}" --output out.tif --shards 6 | grep -o '[0-9a-f]\{10\}' | head -n 1)
[[ -n "$job" ]] || fail "no job id"
# A shard running on n2 that has begun its slices.
on_n2() {
  local index
  index=$(squeue --noheader --array --name="stackproc-$job-shard" --states=RUNNING \
    --format='%K %N' | awk '$2 == "n2" { print $1; exit }')
  [[ -n "$index" ]] && grep -qs 'slices_done=[1-9]' "$data/.out.tif.tmp-$job-slurm/shard-$index.progress" &&
    echo "$index" >"$work/killed_shard"
}
wait_until 120 on_n2 || fail "no shard of job $job ran on n2"
"$here/nodes.sh" kill "$work/cluster" 2
echo "killed node n2 while it ran shard $(cat "$work/killed_shard") of job $job"

finished() { cli status "$job" | head -n 1 | grep -q -E ': (succeeded|failed|cancelled)'; }
wait_until 240 finished || fail "job $job did not end after n2 died"
cli status "$job" | head -n 1 | grep -q ': succeeded' || fail "job $job: $(cli status "$job" | head -n 3)"
same_output "$data/out.tif" "$work/whole.tif" || fail "the output differs from the whole run's"
grep 'event=shard_retried' "$work/server.log" | grep -q 'on n2 (NODE_FAIL)' ||
  fail "the retry does not name n2 and NODE_FAIL"
left=$(ls -A "$data" | sort | tr '\n' ' ')
[[ "$left" == "in.tif out.tif " ]] || fail "the data root holds: $left"
grep 'event=shard_retried' "$work/server.log" | sed 's/.* reason=/retried: /'
echo "node failure: shard $(cat "$work/killed_shard") lost with n2, run again elsewhere; the output is the whole run's bytes"
