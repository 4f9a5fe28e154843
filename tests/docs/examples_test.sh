#!/usr/bin/env bash
# The README's examples run as written: each docs/examples/*.sh must appear verbatim in the
# README (inside a ```sh block), and runs here with the build's programs on PATH, in a
# directory of its own, then what it made is checked (tifffile, zarrita, and the same job run by
# stackproc-local). The server examples show the default port (50051; the TLS recipe listens on
# every address, as a facility's server does): here they run on a free port of 127.0.0.1, the
# address and port the only words changed. Each runs in a process group of its own, and only
# those groups are stopped at the end.
# usage: examples_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
export PATH=$build/server:$build/client:$build/core:$PATH
work=$(mktemp -d)
groups=()
cleanup() {
  for group in "${groups[@]}"; do kill -- "-$group" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
py() { /usr/bin/python3 -c "$@"; }
port=$(py 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export STACKPROC_LISTEN=127.0.0.1:$port STACKPROC_SERVER=127.0.0.1:$port

# Two outputs of one job: the same bytes apart from the record of each run (its time, executor and
# input name: core/stack/provenance.h).
same_output_py=$(dirname "$(realpath "$0")")/../tools/same_output.py
same_output() { /usr/bin/python3 "$same_output_py" "$@"; }

for example in "$src"/docs/examples/*.sh; do
  name=$(basename "$example" .sh)
  py 'import sys; sys.exit(open(sys.argv[2]).read().strip() not in open(sys.argv[1]).read())' \
    "$src/README.md" "$example" || fail "$name: the README does not show docs/examples/$name.sh as it is"
  mkdir "$work/$name"
  sed -e "s/0\.0\.0\.0:50051/127.0.0.1:$port/g; s/127\.0\.0\.1:50051/127.0.0.1:$port/g" \
    "$example" >"$work/$name.sh"
  (cd "$work/$name" && exec setsid timeout 300 bash -euo pipefail "$work/$name.sh") \
    >"$work/$name.log" 2>&1 &
  groups+=($!)
  if ! wait $!; then
    tail -n 20 "$work/$name.log" >&2
    fail "$name exited non-zero"
  fi
  echo "ok: $name ran as the README shows it"
done

cd "$work/cluster-by-hand"
stackproc-local run --input stack.tif --op gaussian:ksize=5 --compression deflate \
  --output whole.tif >/dev/null 2>&1
same_output whole.tif out.tif || fail "cluster-by-hand: the assembled shards differ from the whole run"
stackproc-local run --input stack.tif --op gaussian:ksize=5 --op normalize:scope=stack \
  --output whole-normalized.tif >/dev/null 2>&1
same_output whole-normalized.tif normalized.tif ||
  fail "cluster-by-hand: the normalized shards differ from the whole run"

cd "$work/preview"
cmp preview.png "$src/docs/images/preview.png" ||
  fail "preview: the README's picture is not what its command draws now (copy preview.png there)"

cd "$work/local-quickstart"
py 'import sys, tifffile
sys.path.insert(0, sys.argv[1])
import zarr_read  # zarrita reads NGFF 0.5
assert tifffile.imread("blurred.tif").shape == (64, 1024, 1024)
assert zarr_read.read("small.ome.zarr", "0")[0].shape == (64, 512, 512)
assert zarr_read.read("small.ome.zarr", "2")[0].shape[1:] == (128, 128)' "$src/tests/tools" ||
  fail "local-quickstart: its outputs"

cd "$work/light-sheet"
stackproc-local run --input sheet.tif --output ref.tif --op flatfield:dark=50,sigma=40 \
  --op destripe --op gaussian3d:sigma=2,sigma_z=0.8 >/dev/null 2>&1
/usr/bin/python3 "$src/tests/tools/zarr_read.py" same sheet.ome.zarr ref.tif ||
  fail "light-sheet: the store holds other pixels than the same pipeline into a TIFF"

cd "$work/server-quickstart"
stackproc-local run --input stacks/run42/stack.tif --op gaussian:ksize=5 --op clahe \
  --output ref-clahe.tif >/dev/null 2>&1
same_output ref-clahe.tif stacks/run42/stack-clahe.tif || fail "server-quickstart: the path job's output"
stackproc-local run --input stacks/run42/stack.tif --op gaussian:ksize=5 --output ref-blurred.tif \
  >/dev/null 2>&1
same_output ref-blurred.tif blurred.tif || fail "server-quickstart: the streamed job's output"
py 'import tifffile; assert tifffile.imread("small.tif").shape == (64, 256, 256)' ||
  fail "server-quickstart: the downloaded result"

cd "$work/tls-tokens"
py 'import numpy, tifffile
a, b = tifffile.imread("stacks/in.tif"), tifffile.imread("stacks/inverted.tif")
assert numpy.array_equal(b, numpy.iinfo(a.dtype).max - a)' || fail "tls-tokens: the job's output"
grep -q "tls=on access=tokens" "$work/tls-tokens.log" || fail "tls-tokens: $(cat "$work/tls-tokens.log")"
echo "docs examples: 5 ran as written, their outputs checked"
