#!/usr/bin/env bash
# stackprocd --executor slurm against a real SLURM cluster (tests/slurm/cluster.sh): path jobs
# cut in z-range shards that run as job arrays and come back as the file the server alone would
# have written. Checked through the public CLI:
#   1. a job in 4 shards: the bytes of the same job run whole; `status` names the executor, the
#      array and the shards; the output's folder holds nothing else afterwards
#   1b. a whole-stack step (normalize over the stack): statistics gathered per range, summed,
#      then the pieces: the whole run's bytes
#   2. a small job with shards 0 (the server decides) runs on the server
#   3. the server stopped (SIGTERM) mid-job: the array goes on; a shard killed meanwhile (as a
#      node dying) is seen by the restarted server, which re-attaches, submits that shard again
#      alone and finishes the job: the whole run's bytes
#   4. a cancelled job: its array cancelled, nothing left beside the output
#   5. a corrupt page: its shard fails on every attempt (--slurm-retries 1), and the job fails
#      naming the shard, its slices, its node and its log's last lines; nothing left
# usage: executor_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
local_tool=$build/core/stackproc-local
work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]]; then kill -9 "$server_pid" && wait "$server_pid"; fi 2>/dev/null || true
  "$here/cluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- server log" >&2; tail -n 20 "$work/server.log" >&2 || true
  exit 1
}

# Two outputs of one job: the same bytes apart from the record of each run (its time, executor and
# input name: core/stack/provenance.h).
same_output_py=$(dirname "$(realpath "$0")")/../tools/same_output.py
same_output() { /usr/bin/python3 "$same_output_py" "$@"; }

"$here/cluster.sh" start "$work/cluster"
export SLURM_CONF=$work/cluster/slurm.conf
data=$work/data
mkdir -p "$data"

start_server() {
  "$build/server/stackprocd" --listen 127.0.0.1:0 --data-root "$data" --state-dir "$work/state" \
    --executor slurm --slurm-poll 1 --slurm-retries 1 --slurm-cpus-per-shard 1 \
    --slurm-worker "$local_tool" >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/server.log" | tail -n 1 | cut -d: -f2 || true)
    [[ -n "$port" ]] && "$build/client/stackproc" --server "127.0.0.1:$port" health >/dev/null 2>&1 &&
      return 0
    sleep 0.1
  done
  fail "the server did not start"
}
cli() { "$build/client/stackproc" --server "127.0.0.1:$port" "$@"; }
# The same job run whole by stackproc-local, to compare with.
whole() { # INPUT OUTPUT ARGS...
  local input=$1 output=$2; shift 2
  "$local_tool" run --input "$data/$input" --output "$work/$output" "$@" >/dev/null 2>&1
}
# Only what the job was given and made: no shard folder, no temporary file.
only() { # FILE...
  local left
  left=$(ls -A "$data" | sort | tr '\n' ' ')
  [[ "$left" == "$(printf '%s\n' "$@" | sort | tr '\n' ' ')" ]] || fail "the data root holds: $left"
}
field() { cli status "$1" | sed -n "s/^  $2 *//p"; }
state() { cli status "$1" | head -n 1 | sed 's/^job [^:]*: \([a-z]*\).*/\1/'; }
is() { [[ "$(state "$1")" == "$2" ]]; }
# Both shards of job $1, output $2, have begun their slices.
running() {
  cli status "$1" | grep -q ' 2 running,' &&
    grep -qs 'slices_done=[1-9]' "$data/.$2.tmp-$1-slurm/shard-1.progress"
}
wait_until() { # SECONDS COMMAND...: polls every 0.2 s
  local tries=$(($1 * 5)); shift
  while ((tries-- > 0)); do "$@" && return 0; sleep 0.2; done
  return 1
}
start_server

# 1. Four shards, uint16 deflate.
"$local_tool" generate "$data/in.tif" --shape 40x384x256 --type uint16 >/dev/null
ops=(--op gaussian:ksize=5 --op resize:scale=0.5)
cli submit --input in.tif "${ops[@]}" --compression deflate --output out.tif --shards 4 --wait \
  >"$work/submit.out" || fail "the sharded job failed: $(cat "$work/submit.out")"
whole in.tif whole.tif "${ops[@]}" --compression deflate
same_output "$work/whole.tif" "$data/out.tif" || fail "4 shards put together differ from the whole run"
job=$(head -n 1 "$work/submit.out")
executor=$(field "$job" executor)
[[ "$executor" =~ ^slurm,\ SLURM\ job\ [0-9]+:\ 4\ shards,\ 4\ done,\ 0\ running,\ 0\ pending,\ 0\ failed ]] ||
  fail "status says: executor $executor"
grep -q "shards_done=4/4" "$work/submit.out" || fail "the watch did not show the shards: $(cat "$work/submit.out")"
only in.tif out.tif
echo "ok: 4 shards = the whole run ($executor)"

# 1b. A whole-stack step (normalize over the stack): an array gathers each range's histogram,
# the server sums them, a second array makes the pieces with the sum: the whole run's bytes.
wops=(--op gaussian:ksize=3 --op normalize:scope=stack,low=2,high=98 --op resize:scale=0.5)
cli submit --input in.tif "${wops[@]}" --output whole-stack.tif --shards 3 --wait \
  >"$work/whole-stack.out" || fail "the whole-stack job failed: $(cat "$work/whole-stack.out")"
whole in.tif whole-stack-ref.tif "${wops[@]}"
same_output "$work/whole-stack-ref.tif" "$data/whole-stack.tif" ||
  fail "a whole-stack step over 3 shards differs from the whole run"
grep -q "slices=80/80" "$work/whole-stack.out" || fail "two passes of 40: $(cat "$work/whole-stack.out")"
[[ "$(field "$(head -n 1 "$work/whole-stack.out")" executor)" =~ SLURM\ job\ [0-9]+\ then\ [0-9]+:\ 3\ shards ]] ||
  fail "two arrays: $(field "$(head -n 1 "$work/whole-stack.out")" executor)"
only in.tif out.tif whole-stack.tif
echo "ok: normalize:scope=stack in 3 shards (statistics, then pieces) = the whole run"

# 1c. An OME-Zarr output: the server makes the store, 3 tasks fill whole shards of it (8 slices
# of level 0, 8 of level 1 = 16 of level 0), it is renamed into place: no assembly, the whole
# run's bytes (but the record's time and executor). A 4th range would split a level-1 shard.
zops=(--op gaussian:ksize=3 --compression zstd --zarr-shards 8x256x256 --pyramid 1)
if err=$(cli submit --input in.tif "${zops[@]}" --output refused.ome.zarr --shards 4 2>&1); then
  fail "4 shards of a store of 16-slice files accepted"
fi
[[ "$err" == *"at most 3"* ]] || fail "the refusal of 4 shards: $err"
cli submit --input in.tif "${zops[@]}" --output out.ome.zarr --shards 3 --wait \
  >"$work/zarr.out" || fail "the sharded OME-Zarr job failed: $(cat "$work/zarr.out")"
whole in.tif out.ome.zarr "${zops[@]}"  # a store's name is its image's
same_output "$work/out.ome.zarr" "$data/out.ome.zarr" ||
  fail "a store filled by 3 shards differs from the whole run's"
[[ "$(field "$(head -n 1 "$work/zarr.out")" executor)" =~ 3\ shards,\ 3\ done ]] ||
  fail "3 shards: $(field "$(head -n 1 "$work/zarr.out")" executor)"
only in.tif out.tif whole-stack.tif out.ome.zarr
echo "ok: an OME-Zarr store filled by 3 shards = the whole run"

# 2. shards 0 on a small stack: the server runs it.
job=$(cli submit --input in.tif --op gaussian:ksize=3 --output small.tif --shards 0)
wait_until 30 is "$job" succeeded || fail "the small job: $(cli status "$job")"
[[ "$(field "$job" executor)" == local ]] || fail "a small job went to the cluster: $(cli status "$job")"
echo "ok: a small job with shards 0 runs on the server"

# 3. Stopped server, killed shard, restart: re-attached, retried, finished.
"$local_tool" generate "$data/slow.tif" --shape 60x1024x1024 --type uint16 >/dev/null
slow=(--op bilateral:d=9)
job=$(cli submit --input slow.tif "${slow[@]}" --output slow-out.tif --shards 2)
wait_until 60 running "$job" slow-out.tif || fail "the shards did not start: $(cli status "$job"; squeue)"
array=$(field "$job" executor | sed 's/.*SLURM job \([0-9]*\).*/\1/')
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=
grep -q "event=job_detached job=$job" "$work/server.log" || fail "the job was not left to the cluster"
[[ -n "$(squeue --noheader --jobs="$array")" ]] || fail "stopping the server stopped the array"
# Shard 1's processes, as its own cluster lists them (array index 1's job id, then its PIDs),
# killed as if its node died.
task=$(squeue --noheader --jobs="$array" --format='%K %A' | awk '$1 == 1 { print $2 }')
pids=$([[ -n "$task" ]] && scontrol listpids "$task" | awk 'NR > 1 { print $1 }')
[[ -n "$pids" ]] || fail "shard 1 was not running: $(squeue --jobs="$array")"
kill -KILL $pids
start_server
grep -q "reattached=1" "$work/server.log" || fail "the restarted server did not re-attach"
wait_until 120 is "$job" succeeded || fail "the re-attached job: $(cli status "$job")"
grep -q "event=shard_retried job=$job" "$work/server.log" || fail "the killed shard was not retried"
[[ "$(field "$job" executor)" =~ then\ [0-9]+:\ 2\ shards,\ 2\ done.*\ 1\ failed ]] ||
  fail "status after the retry: $(field "$job" executor)"
whole slow.tif slow-whole.tif "${slow[@]}"
same_output "$work/slow-whole.tif" "$data/slow-out.tif" || fail "the re-attached job's output differs"
only in.tif out.tif whole-stack.tif out.ome.zarr small.tif slow.tif slow-out.tif
echo "ok: the server stopped and restarted: re-attached, shard 1 retried, the whole run's bytes"

# 4. Cancel.
job=$(cli submit --input slow.tif "${slow[@]}" --output cancelled.tif --shards 2)
wait_until 60 running "$job" cancelled.tif || fail "the shards did not start: $(cli status "$job")"
array=$(field "$job" executor | sed 's/.*SLURM job \([0-9]*\).*/\1/')
cli cancel "$job" >/dev/null
wait_until 60 is "$job" cancelled || fail "not cancelled: $(cli status "$job")"
[[ -z "$(squeue --noheader --jobs="$array" --states=PENDING,RUNNING,COMPLETING 2>/dev/null)" ]] ||
  fail "the array still runs after the job was cancelled: $(squeue)"
only in.tif out.tif whole-stack.tif out.ome.zarr small.tif slow.tif slow-out.tif
echo "ok: cancelled: the array cancelled, nothing left"

# 5. A corrupt page in shard 3's slices fails that shard on both attempts, then the job.
"$local_tool" generate "$data/bad.tif" --shape 8x256x256 --type uint8 --compression deflate >/dev/null
/usr/bin/python3 - "$data/bad.tif" <<'PY'
import sys, tifffile
with tifffile.TiffFile(sys.argv[1]) as tif:
    page = tif.pages[7]
    offset, size = page.dataoffsets[0], page.databytecounts[0]
with open(sys.argv[1], "r+b") as f:
    f.seek(offset)
    f.write(bytes(range(256)) * (size // 256) + bytes(size % 256))
PY
job=$(cli submit --input bad.tif --op gaussian:ksize=3 --output bad-out.tif --shards 4)
wait_until 60 is "$job" failed || fail "the job with a corrupt page: $(cli status "$job")"
error=$(field "$job" error)
[[ "$error" == *"shard 3 of 4 (slices 6-7) failed on $(hostname -s)"* && "$error" == *"page 7"* &&
   "$error" == *"2 attempts"* ]] || fail "the failure says: $error"
only in.tif out.tif whole-stack.tif out.ome.zarr small.tif slow.tif slow-out.tif bad.tif
echo "ok: a shard failing twice fails the job: $error"
echo "slurm executor: sharded, re-attached, retried, cancelled and failed as the job contract says"
