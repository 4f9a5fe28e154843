#!/usr/bin/env bash
# cmake --install into a temporary prefix: the three programs land in PREFIX/bin and run from
# there (not from the build tree), and the licence beside the README in PREFIX/share/doc.
# usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cmake --install "$build" --prefix "$prefix" >/dev/null || fail "cmake --install"
for program in stackprocd stackproc stackproc-local; do
  [[ -x "$prefix/bin/$program" ]] || fail "no $prefix/bin/$program"
done
# Each output taken whole first: `grep -q` in a pipe under pipefail fails the check when it stops
# reading before the program has written everything.
prints() { # TEXT PROGRAM ARGS...
  local text=$1 output
  shift
  output=$("$prefix/bin/$1" "${@:2}") && grep -q -- "$text" <<<"$output"
}
prints --data-root stackprocd --help || fail "stackprocd --help"
prints OME-Zarr stackproc-local formats || fail "stackproc-local formats"
prints submit stackproc --help || fail "stackproc --help"
prints assemble stackproc-local --help || fail "stackproc-local --help"
grep -q "Apache License" "$prefix/share/doc/stackproc/LICENSE" || fail "no LICENSE"
[[ -f "$prefix/share/doc/stackproc/README.md" ]] || fail "no README"
echo "install: 3 programs in $prefix/bin, LICENSE and README in share/doc/stackproc"
