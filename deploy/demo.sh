#!/usr/bin/env bash
# The main job, end to end on this machine: builds stackproc, generates a sample microscopy-like
# stack, runs a pipeline over it and writes the result. Installs the Debian 12 dependencies first.
#   deploy/demo.sh [WORKDIR]      (default: ./demo-data)
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target stackproc-local

work="${1:-demo-data}"
mkdir -p "$work"
tool=build/release/core/stackproc-local
"$tool" generate "$work/sample.tif" --shape 64x1024x1024 --type uint16
"$tool" run --input "$work/sample.tif" --output "$work/sample-processed.tif" \
  --op gaussian:ksize=5 --op clahe:clip=2.0 --op resize:scale=0.5 --compression deflate
echo "output: $(realpath "$work/sample-processed.tif")"
