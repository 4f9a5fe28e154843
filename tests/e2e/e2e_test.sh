#!/usr/bin/env bash
# End to end with the real binaries: stackprocd on a free port, driven by the stackproc CLI.
# usage: e2e_test.sh BUILD_DIR
set -euo pipefail
build=$1
server=$build/server/stackprocd
cli=$build/client/stackproc
local_tool=$build/core/stackproc-local
work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/data"
fail() { echo "FAIL: $*" >&2; exit 1; }
# Captures first: `cmd | grep -q` under pipefail fails when grep exits before cmd finishes.
has() { grep -q -- "$1" <<<"$2"; }

# Two outputs of one job: the same bytes apart from the record of each run (its time, executor and
# input name: core/stack/provenance.h).
same_output_py=$(dirname "$(realpath "$0")")/../tools/same_output.py
same_output() { /usr/bin/python3 "$same_output_py" "$@"; }

"$local_tool" generate "$work/data/in.tif" --shape 20x128x160 --type uint16 >/dev/null
STACKPROC_DATA_ROOT="$work/data" "$server" --listen 127.0.0.1:0 >"$work/out" 2>"$work/log" &
echo $! >"$work/pid"
for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$work/out")
[[ -n "$port" ]] || fail "server did not start: $(cat "$work/log")"
export STACKPROC_SERVER=127.0.0.1:$port

[[ "$("$cli" health)" == SERVING ]] || fail "health"

# No server at an address: said so, and how to start one (not only gRPC's words).
closed=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if err=$("$cli" --server "127.0.0.1:$closed" list 2>&1); then fail "list reached no server"; fi
has "no stackprocd answers at 127.0.0.1:$closed: start one" "$err" || fail "no server: $err"

# Every subcommand's -h/--help prints its own usage (generate -h wrote a stack named -h); a
# misspelt last flag is named, not taken for one that needs a value.
out=$(cd "$work" && "$local_tool" generate -h)
has '^usage: stackproc-local generate OUT \[--shape DxHxW\]' "$out" || fail "generate -h: $out"
[[ ! -e "$work/-h" ]] || fail "generate -h wrote a file named -h"
has '^usage: stackproc-local run --input IN' "$("$local_tool" run --help)" || fail "run --help"
has '^usage: stackproc status JOB' "$("$cli" status -h)" || fail "status -h"
if err=$("$local_tool" run --input "$work/data/in.tif" --output "$work/x.tif" --overwrit 2>&1); then
  fail "run took --overwrit"
fi
has "unknown flag --overwrit for stackproc-local run" "$err" || fail "--overwrit: $err"
if err=$("$cli" submit --input in.tif --output x.tif --wiat 2>&1); then fail "submit took --wiat"; fi
has "unknown flag --wiat for stackproc submit" "$err" || fail "--wiat: $err"
[[ $(wc -l <<<"$err") -eq 1 ]] || fail "--wiat printed more than its error: $err"
if err=$("$cli" submit --input in.tif --output 2>&1); then fail "submit took --output with no value"; fi
has "^stackproc: --output needs a value" "$err" || fail "--output with no value: $err"
has '^gaussian' "$("$cli" ops)" || fail "ops lists no gaussian"

# A path job, waited for, non-terminal stdout: plain progress lines then a summary. (This job
# may end before the watch attaches: then its last line is its only progress line.)
out=$("$cli" submit --input in.tif --op gaussian:ksize=5 --op resize:scale=0.5 --output out.tif --wait)
has 'state=succeeded stage=done slices=20/20' "$out" || fail "no progress lines: $out"
has 'succeeded: 20x64x80 uint16 -> out.tif' "$out" || fail "no summary: $out"
# One that takes a while (a bilateral filter, ~0.3 s) shows itself running.
"$local_tool" generate "$work/data/big.tif" --shape 32x512x512 --type uint16 >/dev/null
out=$("$cli" submit --input big.tif --op bilateral:d=5 --output big-out.tif --wait)
has 'state=running stage=streaming' "$out" || fail "no running progress line: $out"
[[ -f "$work/data/out.tif" ]] || fail "no output file"

# The same pipeline through the core tool must give the same bytes.
"$local_tool" run --input "$work/data/in.tif" --op gaussian:ksize=5 --op resize:scale=0.5 \
  --output "$work/ref.tif" >/dev/null 2>&1
same_output "$work/data/out.tif" "$work/ref.tif" || fail "server output differs from the core's"
# One rule for every command: an existing output is replaced only with --overwrite.
cp "$work/ref.tif" "$work/ref-before.tif"
if err=$("$local_tool" run --input "$work/data/in.tif" --op invert --output "$work/ref.tif" 2>&1); then
  fail "stackproc-local run replaced an existing file"
fi
has "exists" "$err" || fail "run overwrite error: $err"
cmp "$work/ref-before.tif" "$work/ref.tif" || fail "a refused run touched the existing file"
"$local_tool" run --input "$work/data/in.tif" --op gaussian:ksize=5 --op resize:scale=0.5 \
  --output "$work/ref.tif" --overwrite >/dev/null 2>&1 || fail "run --overwrite"

# Outputs that would be lost or mislabelled are refused, nothing written: a name of no format
# (it was written as a TIFF), an in-memory job given a file too (it ran and wrote nothing).
if err=$("$local_tool" run --input "$work/data/in.tif" --output "$work/out.png" 2>&1); then
  fail "stackproc-local wrote out.png"
fi
has "says none: NAME.tif" "$err" || fail "unknown output format: $err"
[[ ! -e "$work/out.png" ]] || fail "a refused run left out.png"
if err=$("$cli" submit --input in.tif --op invert --output x.png --wait 2>&1); then
  fail "submit took x.png"
fi
has "says none: NAME.tif" "$err" || fail "submit: unknown output format: $err"
if err=$("$cli" submit --input in.tif --op invert --output kept.tif --in-memory 2>&1); then
  fail "submit took --output with --in-memory"
fi
has "give one" "$err" || fail "--output with --in-memory: $err"
[[ ! -e "$work/data/kept.tif" ]] || fail "a refused submit wrote kept.tif"

# A streamed job from a local file: the same bytes as the path job, listed with the others.
out=$("$cli" process "$work/data/in.tif" -o "$work/streamed.tif" --op gaussian:ksize=5 \
  --op resize:scale=0.5)
has "succeeded: 20x64x80 uint16 -> $work/streamed.tif" "$out" || fail "process: $out"
same_output "$work/streamed.tif" "$work/ref.tif" || fail "streamed output differs from the core's"
# What made it: the server's job, on the input as the client named it.
made=$("$local_tool" info "$work/streamed.tif")
has "$work/data/in.tif (t=1 c=1 z=20 y=128 x=160 uint16" "$made" && has ", stackprocd job " "$made" ||
  fail "the streamed output's record: $made"
# A codec and channels chosen by the client are its record's too: rerun makes the same bytes.
"$cli" process "$work/data/in.tif" -o "$work/streamed-zstd.tif" --op invert --compression zstd \
  --channels 0 >/dev/null 2>&1 || fail "process --compression zstd --channels 0"
"$local_tool" rerun "$work/streamed-zstd.tif" --output "$work/rerun-zstd.tif" >/dev/null 2>&1 ||
  fail "rerun of a streamed output"
same_output "$work/streamed-zstd.tif" "$work/rerun-zstd.tif" ||
  fail "rerun of a streamed output (zstd, channel 0) differs"
# Of a stack of channels the record states the input as it is (both channels), as a path job's
# does, beside the channel chosen; rerun reads that channel of it again.
/usr/bin/python3 -c 'import numpy, sys, tifffile
tifffile.imwrite(sys.argv[1], numpy.arange(2 * 3 * 32 * 40, dtype=numpy.uint16).reshape(2, 3, 32, 40),
                 ome=True, metadata={"axes": "CZYX"})' "$work/data/two.ome.tif"
"$cli" process "$work/data/two.ome.tif" -o "$work/streamed-c1.tif" --op invert --channels 1 \
  >/dev/null 2>&1 || fail "process --channels 1 of two channels"
made=$("$local_tool" info "$work/streamed-c1.tif")
has "(t=1 c=2 z=3 y=32 x=40 uint16" "$made" || fail "a streamed record of two channels: $made"
"$local_tool" rerun "$work/streamed-c1.tif" --output "$work/rerun-c1.tif" >/dev/null 2>&1 ||
  fail "rerun of a streamed output of channel 1"
same_output "$work/streamed-c1.tif" "$work/rerun-c1.tif" ||
  fail "rerun of a streamed output (channel 1 of 2) differs"
has 'upload from 127.0.0.1 -> streamed back' "$("$cli" list)" || fail "streamed job not listed: $("$cli" list)"
if err=$("$cli" process "$work/data/in.tif" -o "$work/streamed.tif" --op invert 2>&1); then
  fail "process overwrote an existing file"
fi
has exists "$err" || fail "overwrite error: $err"

# The same stack as a folder of planes, written by tifffile: the same bytes, as a path job
# (every plane opened beneath the data root) and as a streamed job from a local folder.
/usr/bin/python3 -c '
import os, sys, tifffile
stack = tifffile.imread(sys.argv[1])
os.makedirs(sys.argv[2])
for z, plane in enumerate(stack):
    tifffile.imwrite(f"{sys.argv[2]}/z{z:04d}.tif", plane, photometric="minisblack")
' "$work/data/in.tif" "$work/data/planes"
# (The planes carry tifffile's description, not in.tif's: the pixels are compared.)
same_pixels() {
  /usr/bin/python3 -c 'import sys, numpy, tifffile
sys.exit(not numpy.array_equal(tifffile.imread(sys.argv[1]), tifffile.imread(sys.argv[2])))' "$1" "$2"
}
"$cli" submit --input planes/ --op gaussian:ksize=5 --op resize:scale=0.5 --output seq.tif \
  --wait >/dev/null || fail "path job over planes"
same_pixels "$work/data/seq.tif" "$work/ref.tif" || fail "planes path job differs from the core's"
"$cli" process "$work/data/planes/z%04d.tif" -o "$work/seq-streamed.tif" --op gaussian:ksize=5 \
  --op resize:scale=0.5 >/dev/null || fail "streamed job over planes"
same_pixels "$work/seq-streamed.tif" "$work/ref.tif" || fail "planes streamed job differs"
# And written as planes (a folder of its own), read back by tifffile file by file.
"$cli" process "$work/data/planes" -o "$work/planes-out/" --op gaussian:ksize=5 \
  --op resize:scale=0.5 >/dev/null || fail "streamed job to planes"
/usr/bin/python3 -c 'import glob, sys, numpy, tifffile
planes = numpy.stack([tifffile.imread(f) for f in sorted(glob.glob(sys.argv[1] + "/z*.tif"))])
sys.exit(not numpy.array_equal(planes, tifffile.imread(sys.argv[2])))' \
  "$work/planes-out" "$work/ref.tif" || fail "planes written by process differ from the core's"

# OME-Zarr: a path job writes a store (NGFF 0.5, sharded) with a pyramid; zarrita reads level 0
# as the core's bytes; a streamed job reads that store from a local folder and writes a local
# NGFF 0.4 store of its own (chunks across slices), which zarr-python reads; an in-memory result
# downloads as a store.
"$cli" submit --input in.tif --op gaussian:ksize=5 --op resize:scale=0.5 --output out.ome.zarr \
  --pyramid 1 --wait >/dev/null || fail "path job to OME-Zarr"
same_zarr() { /usr/bin/python3 "$(dirname "$same_output_py")/zarr_read.py" same "$1" "$2"; }
same_zarr "$work/data/out.ome.zarr" "$work/ref.tif" || fail "OME-Zarr path job differs from the core's"
# A codec's level travels from the CLI through the server: the bytes stackproc-local writes.
"$cli" submit --input in.tif --op invert --compression deflate:level=1 --output level1.tif \
  --wait >/dev/null || fail "a job with deflate:level=1"
"$local_tool" run --input "$work/data/in.tif" --op invert --compression deflate:level=1 \
  --output "$work/level1-ref.tif" >/dev/null 2>&1
same_output "$work/data/level1.tif" "$work/level1-ref.tif" || fail "deflate:level=1 through the server"
# No --op: a conversion, with its progress, listed as such.
out=$("$cli" submit --input in.tif --output converted.ome.zarr --wait)
has "slices=20/20" "$out" || fail "a conversion's progress: $out"
has "(none: a conversion)" "$("$cli" status "$(head -n 1 <<<"$out")")" || fail "a conversion's ops"
same_zarr "$work/data/converted.ome.zarr" "$work/data/in.tif" || fail "the conversion changed pixels"
[[ -f "$work/data/out.ome.zarr/1/zarr.json" ]] || fail "no pyramid level"
"$cli" process "$work/data/out.ome.zarr" -o "$work/copy.zarr" --chunks 4x32x32 --zarr-format 2 \
  --compression lz4 >/dev/null || fail "streamed job from and to OME-Zarr"
[[ -f "$work/copy.zarr/0/.zarray" ]] || fail "--zarr-format 2 wrote no .zarray"
same_zarr "$work/copy.zarr" "$work/ref.tif" || fail "streamed OME-Zarr differs"
if err=$("$cli" process "$work/data/in.tif" -o "$work/bad.tif" --op invert --chunks 1x8x8 2>&1); then
  fail "chunks accepted for a TIFF output"
fi
has "OME-Zarr outputs" "$err" || fail "chunks error: $err"

# A job cut in 4 z-ranges as a job array runs it (the index from SLURM_ARRAY_TASK_ID, and from
# Kubernetes' JOB_COMPLETION_INDEX), the shards assembled: the bytes of the one-run file.
for i in 0 1 2 3; do
  if ((i % 2)); then index=(env JOB_COMPLETION_INDEX=$i); else index=(env SLURM_ARRAY_TASK_ID=$i); fi
  "${index[@]}" "$local_tool" run --input "$work/data/in.tif" --op gaussian:ksize=5 \
    --op resize:scale=0.5 --shards 4 --output "$work/part$i.tif" >/dev/null 2>&1 || fail "shard $i"
done
has "from 4 shards" "$("$local_tool" assemble --output "$work/assembled.tif" "$work"/part{0,1,2,3}.tif)" \
  || fail "assemble"
same_output "$work/assembled.tif" "$work/ref.tif" || fail "assembled shards differ from the one-run file"

# Ctrl-C on process: the streamed job is cancelled, nothing is left beside the output's name
# (not even its temporary file), and the CLI exits 130.
"$local_tool" generate "$work/slow.tif" --shape 24x1024x1024 --type uint16 >/dev/null
"$cli" process "$work/slow.tif" -o "$work/interrupted.tif" --op bilateral:d=9 >/dev/null \
  2>"$work/interrupted.err" &
pid=$!
for _ in $(seq 300); do compgen -G "$work/.interrupted.tif.tmp-*" >/dev/null && break; sleep 0.1; done
compgen -G "$work/.interrupted.tif.tmp-*" >/dev/null || fail "process wrote no temporary file"
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[[ $rc -eq 130 ]] || fail "interrupted process exited $rc: $(cat "$work/interrupted.err")"
has "job was cancelled" "$(cat "$work/interrupted.err")" || fail "$(cat "$work/interrupted.err")"
! compgen -G "$work/*interrupted.tif*" >/dev/null || fail "left: $(ls -a "$work" | grep interrupted)"
for _ in $(seq 100); do has cancelled "$("$cli" list)" && break; sleep 0.1; done
has cancelled "$("$cli" list)" || fail "the interrupted job is not cancelled: $("$cli" list)"

# cancel says what the job came to (it was running when asked): cancelled.
cp "$work/slow.tif" "$work/data/slow.tif"
job=$("$cli" submit --input slow.tif --op bilateral:d=9 --output never.tif)
for _ in $(seq 100); do has running "$("$cli" status "$job")" && break; sleep 0.1; done
# Ctrl-C on watch: the job goes on, and the CLI says how to follow or stop it.
"$cli" watch "$job" >/dev/null 2>"$work/watch.err" &
pid=$!
sleep 0.5
kill -INT "$pid"
rc=0; wait "$pid" || rc=$?
[[ $rc -eq 130 ]] || fail "interrupted watch exited $rc: $(cat "$work/watch.err")"
has "job goes on on the server; stackproc watch $job follows it again, stackproc cancel $job" \
  "$(cat "$work/watch.err")" || fail "interrupted watch: $(cat "$work/watch.err")"
has running "$("$cli" status "$job")" || fail "the watched job stopped with its watch"
has "job $job: cancelled" "$("$cli" cancel "$job")" || fail "cancel says: $("$cli" status "$job")"
[[ ! -e "$work/data/never.tif" ]] || fail "a cancelled job wrote its output"

# Usage: asked for (--help, -h, help) on stdout with exit 0; an unknown command exit 2.
for asked in --help -h help; do
  has "commands:" "$("$cli" $asked)" || fail "stackproc $asked"
done
if err=$("$cli" frobnicate 2>&1); then fail "an unknown command succeeded"; else rc=$?; fi
[[ $rc -eq 2 ]] && has "unknown command 'frobnicate'" "$err" || fail "unknown command: $rc $err"
if err=$("$local_tool" frobnicate 2>&1); then fail "stackproc-local: an unknown command succeeded"; else rc=$?; fi
[[ $rc -eq 2 ]] && has "unknown command 'frobnicate'" "$err" ||
  fail "stackproc-local unknown command: $rc $err"

# In memory, then download; status and list; errors exit non-zero with one line.
job=$("$cli" submit --input in.tif --op invert --in-memory)
"$cli" watch "$job" >/dev/null || fail "watch"
has succeeded "$("$cli" status "$job")" || fail "status"
has "$job" "$("$cli" list)" || fail "list"
has wrote "$("$cli" download "$job" -o "$work/local.tif")" || fail "download"
if err=$("$cli" download "$job" -o "$work/local.tif" 2>&1); then fail "download replaced a file"; fi
has "use --overwrite" "$err" || fail "download overwrite error: $err"
has wrote "$("$cli" download "$job" -o "$work/local.tif" --overwrite)" || fail "download --overwrite"
has wrote "$("$cli" download "$job" -o "$work/local.zarr")" || fail "download to OME-Zarr"
same_zarr "$work/local.zarr" "$work/local.tif" || fail "downloaded OME-Zarr differs from the TIFF"
"$cli" delete "$job" >/dev/null || fail "delete"
if err=$("$cli" submit --input ../x.tif --op invert --output y.tif 2>&1); then fail "escape accepted"; fi
[[ $(echo "$err" | wc -l) -eq 1 && "$err" == *"outside the data root"* ]] || fail "error line: $err"
if "$cli" status nosuchjob 2>/dev/null; then fail "unknown job accepted"; fi

# SIGTERM: graceful shutdown, exit 0, log lines are key=value.
kill -TERM "$(cat "$work/pid")"
wait "$(cat "$work/pid")" || fail "server exit code $?"
grep -q 'event=job_finished job=[0-9a-f]* state=succeeded duration_s=' "$work/log" || fail "log"
! grep -q warning "$work/log" || fail "a loopback server warned: $(cat "$work/log")"

# With --auth-token-file: the CLI needs STACKPROC_TOKEN (or --token), health does not; the job
# log names the owner. Without it beyond loopback, the server refuses to start, or with
# --allow-unauthenticated warns.
token=e2e-token-0123456789abcdef
printf '# e2e\nlab %s\n' "$token" >"$work/tokens"
wrap=()  # what start runs the server under (a network namespace of its own)
start() {
  "${wrap[@]}" "$server" --data-root "$work/data" "$@" >"$work/out" 2>"$work/log" &
  echo $! >"$work/pid"
  for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\) .*/\1/p' "$work/out")
  [[ -n "$port" ]] || fail "server did not start: $(cat "$work/log")"
  export STACKPROC_SERVER=127.0.0.1:$port
}
# --threads 0 is refused (left out, the server takes every core).
if err=$("$server" --data-root "$work/data" --listen 127.0.0.1:0 --threads 0 2>&1); then
  fail "stackprocd took --threads 0"
fi
has "threads takes 1 or more" "$err" || fail "--threads 0: $err"

# A token file every user can read is warned of, as ssh warns of a key file.
chmod 644 "$work/tokens"
start --listen 127.0.0.1:0 --auth-token-file "$work/tokens"
grep -q "warning: .*tokens can be read by every user of this machine (mode 0644): chmod 600" \
  "$work/log" || fail "a token file readable by all was not warned of: $(cat "$work/log")"
kill -TERM "$(cat "$work/pid")"
wait "$(cat "$work/pid")" || fail "server exit code $?"
chmod 600 "$work/tokens"
start --listen 127.0.0.1:0 --auth-token-file "$work/tokens"
! grep -q warning "$work/log" || fail "a private token file was warned of: $(cat "$work/log")"
[[ "$("$cli" health)" == SERVING ]] || fail "health with tokens"
if err=$("$cli" list 2>&1); then fail "list without a token"; fi
has 'needs a token' "$err" || fail "no-token error: $err"
if err=$("$cli" --token wrong-token-0123456789 list 2>&1); then fail "list with a wrong token"; fi
has 'unknown token' "$err" || fail "wrong-token error: $err"
out=$(STACKPROC_TOKEN=$token "$cli" submit --input in.tif --op invert --output tok.tif --wait)
has 'succeeded' "$out" || fail "submit with a token: $out"
grep -q 'event=job_submitted .* owner="lab"' "$work/log" || fail "owner not logged"
kill -TERM "$(cat "$work/pid")"
wait "$(cat "$work/pid")" || fail "server exit code $?"
# Beyond loopback without tokens or client certificates: refused, unless asked for (then warned).
# Every address ([::], IPv6's and IPv4's) is asked for inside a network namespace of the test's
# own (unshare --net: only its own loopback, down), so nothing listens beyond this machine.
if err=$(unshare --net "$server" --data-root "$work/data" --listen '[::]:0' 2>&1); then
  fail "a server beyond loopback without tokens started"
fi
has '--allow-unauthenticated on a trusted network' "$err" || fail "the refusal says: $err"
wrap=(unshare --net)
start --listen '[::]:0' --allow-unauthenticated
wrap=()
grep -q 'warning: listening on \[::\]:0 without --auth-token-file' "$work/log" ||
  fail "no warning: $(cat "$work/log")"
kill -TERM "$(cat "$work/pid")"
wait "$(cat "$work/pid")" || fail "server exit code $?"

# Each size limit's refusal names the flag that sets it, for path jobs and streamed ones.
for limit in "--max-slices 5" "--max-side 32" "--max-stack-bytes 1000"; do
  start --listen 127.0.0.1:0 $limit
  for how in "submit --input in.tif --op invert --output limited.tif" \
    "process $work/data/in.tif -o $work/limited.tif --op invert"; do
    if err=$("$cli" $how 2>&1); then fail "$limit: $how was not refused"; fi
    has "(${limit% *})" "$err" || fail "$limit: $how: $err"
  done
  info=$("$cli" info)  # and `info` tells a client the limit before it sends anything
  case $limit in
    --max-slices*) has "limits: 5 slices" "$info" || fail "info: $info" ;;
    --max-side*) has "32 pixels per side" "$info" || fail "info: $info" ;;
  esac
  kill -TERM "$(cat "$work/pid")"
  wait "$(cat "$work/pid")" || fail "server exit code $?"
done

# TLS, then mutual TLS, with certificates made here by openssl: a CA, the server's (for
# 127.0.0.1), and a client's whose common name becomes the jobs' owner.
tls=$work/tls
mkdir "$tls"
ossl() { openssl "$@" 2>>"$tls/openssl.log" >/dev/null || fail "openssl $1: $(cat "$tls/openssl.log")"; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=e2e-ca -keyout "$tls/ca.key" \
  -out "$tls/ca.pem"
for who in server alice; do
  ossl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$tls/$who.key" -out "$tls/$who.csr"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/ext"
  ossl x509 -req -in "$tls/$who.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext" -out "$tls/$who.pem"
done
start --listen 127.0.0.1:0 --tls-cert "$tls/server.pem" --tls-key "$tls/server.key"
has 'tls=on access=open' "$(cat "$work/out")" || fail "listening line: $(cat "$work/out")"
if err=$("$cli" list 2>&1); then fail "a plaintext client reached a TLS server"; fi
has "wants --tls-ca CA.pem" "$err" || fail "a plaintext client against TLS is not told why: $err"
export STACKPROC_TLS_CA=$tls/ca.pem
[[ "$("$cli" health)" == SERVING ]] || fail "health over TLS"
has succeeded "$("$cli" submit --input in.tif --op invert --output tls.tif --overwrite --wait)" ||
  fail "submit over TLS"
same_output "$work/data/tls.tif" "$work/data/tok.tif" || fail "TLS job output differs"
kill -TERM "$(cat "$work/pid")"
wait "$(cat "$work/pid")" || fail "server exit code $?"

start --listen 127.0.0.1:0 --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" \
  --tls-client-ca "$tls/ca.pem"
if "$cli" list >/dev/null 2>&1; then fail "a client without a certificate got in"; fi
# The client's own certificate has variables of its own: the server's (STACKPROC_TLS_CERT/KEY,
# set beside the CLI in the server's container) are not the client's.
export STACKPROC_TLS_CERT=$tls/server.pem STACKPROC_TLS_KEY=$tls/server.key
if "$cli" list >/dev/null 2>&1; then fail "the CLI took the server's certificate as its own"; fi
export STACKPROC_CLIENT_CERT=$tls/alice.pem STACKPROC_CLIENT_KEY=$tls/alice.key
job=$("$cli" submit --input in.tif --op invert --in-memory)
has 'owner    alice' "$("$cli" status "$job")" || fail "owner is not the certificate's name"
kill -TERM "$(cat "$work/pid")"
wait "$(cat "$work/pid")" || fail "server exit code $?"
unset STACKPROC_TLS_CA STACKPROC_TLS_CERT STACKPROC_TLS_KEY STACKPROC_CLIENT_CERT STACKPROC_CLIENT_KEY

# A flag a command does not take (a typo) is refused, naming it, by each program: exit 2.
for program in "$cli submit --input in.tif --outptu x.tif" "$server --data-root $work/data --lsiten 1" \
  "$local_tool run --input in.tif --bogus 1"; do
  if err=$($program 2>&1); then fail "$program: accepted"; else code=$?; fi
  has 'unknown flag --' "$err" || fail "$program: $err"
  [[ $code == 2 ]] || fail "$program: exit $code"
done

# A unix socket, for clients on the server's machine: no warning (no network), and the same
# bytes for a path job and a streamed job as over TCP.
"$server" --data-root "$work/data" --listen "unix:$work/stackproc.sock" >"$work/out" 2>"$work/log" &
echo $! >"$work/pid"
for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.1; done
has "listening on unix:$work/stackproc.sock" "$(cat "$work/out")" || fail "unix: $(cat "$work/log")"
export STACKPROC_SERVER=unix:$work/stackproc.sock
[[ "$("$cli" health)" == SERVING ]] || fail "health over a unix socket"
"$cli" process "$work/data/in.tif" -o "$work/unix.tif" --op gaussian:ksize=5 --op resize:scale=0.5 \
  >/dev/null || fail "process over a unix socket"
same_output "$work/unix.tif" "$work/ref.tif" || fail "streamed output over a unix socket differs"
"$cli" submit --input in.tif --op gaussian:ksize=5 --op resize:scale=0.5 --output unix.tif \
  --wait >/dev/null || fail "submit over a unix socket"
same_output "$work/data/unix.tif" "$work/ref.tif" || fail "path job over a unix socket differs"
kill -TERM "$(cat "$work/pid")"
wait "$(cat "$work/pid")" || fail "server exit code $?"
! grep -q warning "$work/log" || fail "a unix-socket server warned: $(cat "$work/log")"
echo "e2e: 1 passed, 0 failed"
