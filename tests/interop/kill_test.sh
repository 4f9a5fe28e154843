#!/usr/bin/env bash
# kill -9, with the real binaries.
# 1. The server, mid-job: restarted on the same --state-dir it lists its jobs again; the one it
#    was running is INTERRUPTED, its output absent and no temporary file left, and resumed it
#    writes what an uninterrupted run writes; the one queued behind it runs by itself.
#    The same across SIGTERM with jobs running (a graceful stop that runs out of grace).
# 2. Clients (Python grpcio, which SIGKILLs itself) mid-download and mid-upload: the server goes
#    on serving, the result is still whole for the next reader, the upload's job ends.
# usage: kill_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/common.sh" "$1" "$2"
cli=$build/client/stackproc
local_tool=$build/core/stackproc-local
fail() { echo "FAIL: $*" >&2; exit 1; }
has() { grep -q -- "$1" <<<"$2"; }
state_of() { "$cli" status "$1" | sed -n '1s/^job [0-9a-f]*: \([a-z]*\).*/\1/p'; }

# Two outputs of one job: the same bytes apart from the record of each run (its time, executor and
# input name: core/stack/provenance.h).
same_output_py=$(dirname "$(realpath "$0")")/../tools/same_output.py
same_output() { /usr/bin/python3 "$same_output_py" "$@"; }

slow=bilateral:d=25,sigma_color=50,sigma_space=9
"$local_tool" generate "$work/data/in.tif" --shape 96x512x512 --type uint8 >/dev/null
"$local_tool" generate "$work/data/small.tif" --shape 8x256x256 --type uint16 >/dev/null

# ---- 1. the server killed mid-job ----
start_server --state-dir "$work/state" --max-running-jobs 1 --stream-grace 2
export STACKPROC_SERVER=127.0.0.1:$port
done_job=$("$cli" submit --input small.tif --op invert --output done.tif)
"$cli" watch "$done_job" >/dev/null || fail "first job"
running=$("$cli" submit --input in.tif --op "$slow" --output slow.tif)
queued=$("$cli" submit --input small.tif --op gaussian:ksize=5 --output queued.tif)
for _ in $(seq 300); do
  has 'progress [1-9][0-9]*/96' "$("$cli" status "$running")" && break
  sleep 0.05
done
has 'progress [1-9][0-9]*/96' "$("$cli" status "$running")" || fail "the slow job never ran"
# What the kill will leave behind: the job's temporary output.
compgen -G "$work/data/.slow.tif.tmp-$running-*" >/dev/null || fail "no temporary output"
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null || true

start_server --state-dir "$work/state" --max-running-jobs 1 --shutdown-grace 0
export STACKPROC_SERVER=127.0.0.1:$port
grep -q 'event=jobs_restored count=3 queued=1' "$work/log" || fail "restore: $(cat "$work/log")"
# One server per job table: a second one on it is refused, naming the first.
if timeout 10 "$build/server/stackprocd" --listen 127.0.0.1:0 --data-root "$work/data" \
    --state-dir "$work/state" >/dev/null 2>"$work/second.log"; then
  fail "a second server started on the same state directory"
fi
grep -q "another stackprocd (pid $server_pid) uses the state directory" "$work/second.log" ||
  fail "second server: $(cat "$work/second.log")"
[[ $(state_of "$done_job") == succeeded ]] || fail "finished job: $(state_of "$done_job")"
[[ $(state_of "$running") == interrupted ]] || fail "running job: $(state_of "$running")"
has 'server stopped while the job was running' "$("$cli" status "$running")" || fail "reason"
[[ ! -e "$work/data/slow.tif" ]] || fail "a killed job left its output"
! compgen -G "$work/data/.slow.tif.tmp-*" >/dev/null || fail "temporary output not removed"
"$cli" resume "$running" --wait >/dev/null || fail "resume: $("$cli" status "$running")"
# The job that had not started runs by itself.
"$cli" watch "$queued" >/dev/null || fail "queued job after the restart: $("$cli" status "$queued")"
"$local_tool" run --input "$work/data/in.tif" --op "$slow" --output "$work/slow_ref.tif" \
  >/dev/null 2>&1
same_output "$work/data/slow.tif" "$work/slow_ref.tif" || fail "resumed output differs from the core's"
"$local_tool" run --input "$work/data/small.tif" --op gaussian:ksize=5 \
  --output "$work/queued_ref.tif" >/dev/null 2>&1
same_output "$work/data/queued.tif" "$work/queued_ref.tif" || fail "resumed queued output differs"

# ---- 1b. the same across a graceful stop (SIGTERM, no grace): the job is interrupted, not lost ----
again=$("$cli" submit --input in.tif --op "$slow" --output slow2.tif)
for _ in $(seq 300); do
  has 'progress [1-9][0-9]*/96' "$("$cli" status "$again")" && break
  sleep 0.05
done
kill -TERM "$server_pid"
wait "$server_pid" || fail "stackprocd exited with $? on SIGTERM"
start_server --state-dir "$work/state" --max-running-jobs 1 --stream-grace 2
export STACKPROC_SERVER=127.0.0.1:$port
[[ $(state_of "$again") == interrupted ]] || fail "after SIGTERM: $(state_of "$again")"
has 'server shut down while the job was running' "$("$cli" status "$again")" || fail "reason"
[[ ! -e "$work/data/slow2.tif" ]] || fail "a stopped job left its output"
! compgen -G "$work/data/.slow2.tif.tmp-*" >/dev/null || fail "temporary output left by SIGTERM"
"$cli" resume "$again" --wait >/dev/null || fail "resume after SIGTERM"
same_output "$work/data/slow2.tif" "$work/slow_ref.tif" || fail "resumed output differs (SIGTERM)"

# ---- 2. clients killed mid-download and mid-upload ----
mem_job=$("$cli" submit --input small.tif --op gaussian:ksize=5 --in-memory)
"$cli" watch "$mem_job" >/dev/null || fail "in-memory job"
/usr/bin/python3 - "$port" "$mem_job" "$work/data/small.tif" <<'PY' || rc=$?
import os, signal, sys, grpc, numpy as np, tifffile
from stackproc.v1 import service_pb2 as pb, service_pb2_grpc as rpc
port, job, path = sys.argv[1:]
stub = rpc.StackProcessorStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
got = 0
for m in stub.ReadResult(pb.ReadResultRequest(job_id=job)):
    got += m.HasField("chunk")
    if got == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-download, no goodbye
PY
[[ ${rc:-0} -eq 137 ]] || fail "the downloading client was not killed (exit ${rc:-0})"
rc=0
/usr/bin/python3 - "$port" 8 256 256 <<'PY' || rc=$?
import os, queue, signal, sys, time, grpc
from stackproc.v1 import operation_pb2 as op, service_pb2 as pb, service_pb2_grpc as rpc
port, d, h, w = sys.argv[1], *map(int, sys.argv[2:])
stub = rpc.StackProcessorStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
outbox = queue.Queue()
header = pb.StreamHeader(shape=pb.StackShape(depth=d, height=h, width=w),
                         pixel_type=op.PIXEL_TYPE_UINT16)
header.ops.add(name="invert")
outbox.put(pb.ProcessStreamRequest(header=header))
for reply in stub.ProcessStream(iter(outbox.get, None)):
    if reply.HasField("job"):  # the server has the job: send two slices of eight, then die
        for z in range(2):
            outbox.put(pb.ProcessStreamRequest(
                chunk=pb.SliceChunk(slice=z, offset=0, data=bytes(h * w * 2))))
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)  # mid-upload
PY
[[ ${rc:-0} -eq 137 ]] || fail "the uploading client was not killed (exit ${rc:-0})"
[[ "$("$cli" health)" == SERVING ]] || fail "health after the killed clients"
# The whole result is still there for the next reader.
"$cli" download "$mem_job" -o "$work/downloaded.tif" >/dev/null || fail "download after kill"
"$local_tool" run --input "$work/data/small.tif" --op gaussian:ksize=5 \
  --output "$work/mem_ref.tif" >/dev/null 2>&1
/usr/bin/python3 -c '
import sys, numpy as np, tifffile
assert np.array_equal(tifffile.imread(sys.argv[1]), tifffile.imread(sys.argv[2])), "download differs"
' "$work/downloaded.tif" "$work/mem_ref.tif" || fail "download after a killed download"
# The upload's job ends (the server sees the connection drop, and no call resumes it within its
# --stream-grace of 2 s) and holds no memory.
stream_job=""
for _ in $(seq 100); do
  stream_job=$("$cli" list | sed -n 's/^\([0-9a-f]*\) *\(cancelled\|failed\) .*upload from .*/\1/p' | tail -1)
  [[ -n "$stream_job" ]] && break
  sleep 0.1
done
[[ -n "$stream_job" ]] || fail "the killed upload's job did not end: $("$cli" list)"
has '0 MiB of server memory' "$("$cli" status "$stream_job")" || fail "memory held"
out=$("$cli" process "$work/data/small.tif" -o "$work/after.tif" --op invert) || fail "process: $out"
echo "kill: passed"
