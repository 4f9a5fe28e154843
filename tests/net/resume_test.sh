#!/usr/bin/env bash
# A streamed job whose connection is cut resumes (issue 32): stackprocd on 127.0.0.1 with a
# short --stream-grace, the CLI through tests/net/delay_proxy.py, which resets the connection
# once after N bytes up (mid-upload) or down (mid-download). The CLI reconnects by itself and
# the output is the bytes of the same job run locally (with and without wire compression). A
# client killed mid-download is taken up by a new process (`process --resume JOB`), and its
# output is still the local run's bytes. A client killed mid-job leaves the job waiting out the
# grace, then cancelled (a --resume then says so); one stopped by Ctrl-C cancels its job at once.
# usage: resume_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
work=$(mktemp -d)
server_pid= proxy_pid= client_pid= slow_pid=
cleanup() {
  for pid in $client_pid $slow_pid $proxy_pid $server_pid; do kill -9 "$pid" && wait "$pid"; done 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  tail -n 20 "$work/server.log" >&2 2>/dev/null || true
  exit 1
}
same_output() { /usr/bin/python3 "$here/../tools/same_output.py" "$@" --differ time,executor,input.name; }
cli() { "$build/client/stackproc" "$@"; }
export XDG_STATE_HOME=$work/state  # the CLI's resume records

mkdir -p "$work/data"
"$build/core/stackproc-local" generate "$work/in.tif" --shape 32x512x1024 --type uint16 >/dev/null
ops=(--op gaussian:sigma=1.5)
"$build/core/stackproc-local" run --input "$work/in.tif" "${ops[@]}" --output "$work/local.tif" \
  >/dev/null 2>&1 || fail "the local run"

grace=8  # long enough for a new CLI to start and take a job up on a loaded machine
"$build/server/stackprocd" --listen 127.0.0.1:0 --data-root "$work/data" --stream-grace "$grace" \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
[[ -n "$port" ]] || fail "stackprocd did not start"
export STACKPROC_SERVER=127.0.0.1:$port

proxy() { # CUT...: a proxy in front of the server, cutting as told; sets proxy_port
  [[ -z "$proxy_pid" ]] || { kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; }
  /usr/bin/python3 "$here/delay_proxy.py" 127.0.0.1:0 "127.0.0.1:$port" 0 "$@" >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  for _ in $(seq 50); do grep -q "listening on" "$work/proxy.log" && break; sleep 0.1; done
  proxy_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/proxy.log")
  [[ -n "$proxy_port" ]] || fail "the proxy did not start: $(cat "$work/proxy.log")"
}
cut_run() { # NAME CUT [FLAG...]: the job through a proxy that cuts once; the output compared
  local name=$1 cut=$2
  shift 2
  proxy --cut "$cut"
  STACKPROC_SERVER=127.0.0.1:$proxy_port cli process "$work/in.tif" -o "$work/$name.tif" \
    "${ops[@]}" "$@" >"$work/$name.out" 2>"$work/$name.err" ||
    fail "$name: $(tail -n 3 "$work/$name.err")"
  grep -q "^cut " "$work/proxy.log" || fail "$name: the proxy never cut"
  grep -q "resuming job" "$work/$name.err" || fail "$name: no resume: $(cat "$work/$name.err")"
  same_output "$work/local.tif" "$work/$name.tif" >/dev/null ||
    fail "$name: the output is not the local run's bytes"
  echo "ok: $name: $(grep '^cut' "$work/proxy.log"), resumed ($(grep -c 'resuming job' "$work/$name.err") time(s)), the local run's bytes"
}

cut_run upload up:12000000 --wire-compression none
cut_run download down:12000000 --wire-compression none
# What the client lacked of the results sent came from the server's tail.
grep "event=stream_resumed" "$work/server.log" | tail -n 1 | grep -q "from_tail=[1-9]" ||
  fail "the download's resume took nothing from the tail: $(grep event=stream "$work/server.log")"
cut_run compressed up:6000000 --wire-compression lz4
cut_run first-slice up:600000 --wire-compression none  # before the first slice is whole

# Larger jobs through a proxy with 200 ms of round trip: jobs that last a while.
"$build/core/stackproc-local" generate "$work/big.tif" --shape 96x1024x1024 --type uint16 >/dev/null
/usr/bin/python3 "$here/delay_proxy.py" 127.0.0.1:0 "127.0.0.1:$port" 200 >"$work/slow.log" 2>&1 &
slow_pid=$!
for _ in $(seq 50); do grep -q "listening on" "$work/slow.log" && break; sleep 0.1; done
slow_port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/slow.log")

# A client killed mid-download, taken up by a new process: its record says how many pages its
# output's temporary file holds; `process --resume JOB` cuts the file back to them and fetches
# the rest. Deflate (the same bytes in every process since stop 41: docs/benchmarks.md): the
# pages are appended through libtiff after those kept.
"$build/core/stackproc-local" run --input "$work/big.tif" "${ops[@]}" --compression deflate \
  --output "$work/big-local.tif" >/dev/null 2>&1 || fail "the local run of big.tif"
STACKPROC_SERVER=127.0.0.1:$slow_port "$build/client/stackproc" process "$work/big.tif" \
  -o "$work/taken.tif" "${ops[@]}" --compression deflate --wire-compression none >/dev/null 2>&1 &
client_pid=$!
pages_at_least() { # RECORD N: whether the record says N pages or more are written
  /usr/bin/python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["output_pages"] < int(sys.argv[2]))' "$@" 2>/dev/null
}
record=
for _ in $(seq 400); do
  record=$(compgen -G "$XDG_STATE_HOME/stackproc/streams/*.json" | head -n 1 || true)
  [[ -n "$record" ]] && pages_at_least "$record" 3 && break
  sleep 0.05
done
[[ -n "$record" ]] && pages_at_least "$record" 3 || fail "the client kept no record of its pages"
job=$(basename "$record" .json)
code=0  # not while the process that started it still writes it
STACKPROC_SERVER=127.0.0.1:$slow_port cli process --resume "$job" >/dev/null 2>"$work/early.err" ||
  code=$?
((code != 0)) && grep -q "still being written by another process" "$work/early.err" ||
  fail "--resume beside the running client: $(cat "$work/early.err")"
kill -0 "$client_pid" || fail "the running client did not survive a --resume beside it"
kill -9 "$client_pid"
wait "$client_pid" 2>/dev/null || true
client_pid=
STACKPROC_SERVER=127.0.0.1:$slow_port cli process --resume "$job" >"$work/taken.out" 2>"$work/taken.err" ||
  fail "process --resume: $(tail -n 3 "$work/taken.err")"
grep -q "taking up job $job" "$work/taken.err" || fail "no word of the take-up: $(cat "$work/taken.err")"
same_output "$work/big-local.tif" "$work/taken.tif" >/dev/null ||
  fail "the taken-up output is not the local run's bytes"
[[ ! -e "$record" ]] || fail "the record stayed after the job"
compgen -G "$work/.taken.tif.tmp-*" >/dev/null && fail "a temporary file stayed"
echo "ok: a killed client's job taken up by process --resume ($(sed -n 's/.*at slice \([0-9]*\).*/slice \1/p' "$work/taken.err")), the local run's bytes"
code=0
cli process --resume 0123abcd >/dev/null 2>"$work/none.err" || code=$?
((code != 0)) && grep -q "no record of a streamed job 0123abcd" "$work/none.err" ||
  fail "--resume of no job: $(cat "$work/none.err")"
code=0
cli process --resume "$job" -o "$work/other.tif" >/dev/null 2>"$work/both.err" || code=$?
((code != 0)) && grep -q "give none of them" "$work/both.err" ||
  fail "--resume with an output: $(cat "$work/both.err")"

# A client killed mid-job: the job waits out the grace for it, then is cancelled and freed; a
# later --resume says so, and removes what the client left.
STACKPROC_SERVER=127.0.0.1:$slow_port "$build/client/stackproc" process "$work/big.tif" \
  -o "$work/killed.tif" "${ops[@]}" --wire-compression none >/dev/null 2>&1 &
client_pid=$!
for _ in $(seq 100); do cli list | grep -q running && break; sleep 0.05; done
job=$(cli list | awk '$2 == "running" { print $1 }' | head -n 1)
[[ -n "$job" ]] || fail "the killed client's job never ran"
for _ in $(seq 100); do [[ -e "$XDG_STATE_HOME/stackproc/streams/$job.json" ]] && break; sleep 0.05; done
[[ -e "$XDG_STATE_HOME/stackproc/streams/$job.json" ]] || fail "the killed client kept no record"
kill -9 "$client_pid"
wait "$client_pid" 2>/dev/null || true
client_pid=
killed_at=$SECONDS
sleep 1
cli status "$job" | grep -q "running" || fail "the job did not wait for its client: $(cli status "$job")"
while ! cli status "$job" | grep -q "cancelled" && ((SECONDS - killed_at < grace + 10)); do sleep 0.2; done
cli status "$job" | grep -q "stream-grace" ||
  fail "the job was not cancelled after the grace: $(cli status "$job")"
echo "ok: a killed client's job waited, then was cancelled after the ${grace} s grace"
code=0
STACKPROC_SERVER=127.0.0.1:$slow_port cli process --resume "$job" >/dev/null 2>"$work/late.err" || code=$?
((code != 0)) && grep -q "not found\|NOT_FOUND\|no longer" "$work/late.err" ||
  fail "a --resume after the grace: $(cat "$work/late.err")"
[[ ! -e "$XDG_STATE_HOME/stackproc/streams/$job.json" ]] || fail "a lost job's record stayed"
compgen -G "$work/.killed.tif.tmp-*" >/dev/null && fail "a lost job's temporary file stayed"
echo "ok: a --resume after the grace: $(tail -n 1 "$work/late.err" | cut -c1-140)"

# Ctrl-C: the CLI cancels its job before it leaves, rather than leaving it to wait for it.
STACKPROC_SERVER=127.0.0.1:$slow_port "$build/client/stackproc" process "$work/big.tif" \
  -o "$work/interrupted.tif" "${ops[@]}" >/dev/null 2>&1 &
client_pid=$!
for _ in $(seq 100); do cli list | grep -q running && break; sleep 0.05; done
job=$(cli list | awk '$2 == "running" { print $1 }' | head -n 1)
[[ -n "$job" ]] || fail "the interrupted client's job never ran"
kill -INT "$client_pid"
code=0
wait "$client_pid" || code=$?
client_pid=
((code == 130)) || fail "Ctrl-C: exit code $code"
interrupted_at=$SECONDS  # cancelled within a moment, not after the grace (3 s) for a resume
while ! cli status "$job" | grep -q "cancelled" && ((SECONDS - interrupted_at < 2)); do sleep 0.1; done
cli status "$job" | grep -q "cancelled" || fail "Ctrl-C left the job: $(cli status "$job")"
cli status "$job" | grep -q "stream-grace" && fail "Ctrl-C left the job to the grace"
[[ ! -e "$work/interrupted.tif" ]] || fail "Ctrl-C left an output"
echo "ok: Ctrl-C cancels the job at once"

# What a job left before the machine restarted (a record of another boot, and its file) can
# never be taken up: the next `process` sweeps both away; another machine's (a shared home) stay.
stale_record() { # JOB NAME HOST: a record of another boot, and its temporary file
  touch "$work/.$2.tif.tmp-1-2"
  cat >"$XDG_STATE_HOME/stackproc/streams/$1.json" <<JSON
{"job": "$1", "server": "127.0.0.1:$port", "resume_token": "t", "input": "$work/in.tif",
 "channels": [], "input_bytes": 1, "input_mtime_ns": 1, "output": "$work/$2.tif",
 "compression": "none", "overwrite": false, "wire_compression": "none", "boot": "another-boot",
 "host": "$3", "output_temp": ".$2.tif.tmp-1-2", "output_pages": 0, "output_end": 0}
JSON
}
stale_record 5a1e000001 stale "$(hostname)"
stale_record 5a1e000002 elsewhere another-machine
cli process "$work/in.tif" -o "$work/after-restart.tif" "${ops[@]}" >/dev/null 2>&1 ||
  fail "a process after a restart"
[[ ! -e "$XDG_STATE_HOME/stackproc/streams/5a1e000001.json" && ! -e "$work/.stale.tif.tmp-1-2" ]] ||
  fail "what a job left before a restart stayed"
[[ -e "$XDG_STATE_HOME/stackproc/streams/5a1e000002.json" && -e "$work/.elsewhere.tif.tmp-1-2" ]] ||
  fail "another machine's record was swept"
echo "ok: what a job left before a restart is swept by the next process, another machine's not"
echo "all passed"
