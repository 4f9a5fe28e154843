#!/usr/bin/env bash
# The main job, end to end on this machine: builds stackproc, starts the server (stackprocd) on a
# free port over a data directory, generates a sample microscopy-like stack there, submits a
# pipeline through the CLI (stackproc) with live progress, streams the same stack through the
# server with `stackproc process`, and prints where the outputs are.
# Installs the Debian 12 dependencies first.
#   deploy/demo.sh [DATA_DIR]      (default: ./demo-data)
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
# The programs and the Python package (what `cmake --install` installs).
cmake --build build/release -j "$(nproc)" --target stackprocd stackproc stackproc-local stackproc_python

data="$(realpath -m "${1:-demo-data}")"
mkdir -p "$data"
bin=build/release
"$bin/core/stackproc-local" generate "$data/sample.tif" --shape 64x1024x1024 --type uint16 \
  --overwrite

log="$data/stackprocd.log"
"$bin/server/stackprocd" --listen 127.0.0.1:0 --data-root "$data" >"$data/stackprocd.out" 2>"$log" &
server_pid=$!
trap 'kill -TERM $server_pid 2>/dev/null; wait $server_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening "$data/stackprocd.out" 2>/dev/null && break; sleep 0.1; done
cat "$data/stackprocd.out"
export STACKPROC_SERVER="127.0.0.1:$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$data/stackprocd.out")"

"$bin/client/stackproc" submit --input sample.tif \
  --op gaussian:ksize=5 --op clahe:clip=2.0 --op resize:scale=0.5 \
  --output sample-processed.tif --compression deflate --overwrite --wait
# The same pipeline as a streamed job: the client uploads the file, the server sends the
# processed slices back as they are done, the client writes them locally.
"$bin/client/stackproc" process "$data/sample.tif" -o "$data/sample-streamed.tif" \
  --op gaussian:ksize=5 --op clahe:clip=2.0 --op resize:scale=0.5 --overwrite
echo "server log ($log):"
cat "$log"
echo "output: $data/sample-processed.tif (path job), $data/sample-streamed.tif (streamed job)"
