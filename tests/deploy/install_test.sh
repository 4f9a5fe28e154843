#!/usr/bin/env bash
# cmake --install into a temporary prefix: the three programs land in PREFIX/bin and run from
# there (not from the build tree), the Python package in PREFIX/lib/python3.X/dist-packages
# imports from there, and the licence lies beside the README in PREFIX/share/doc.
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
site=$(echo "$prefix"/lib/python3.*/dist-packages)
[[ -f "$site/stackproc/v1/service_pb2_grpc.py" ]] || fail "no Python package in $prefix/lib"
where=$(cd / && PYTHONPATH=$site /usr/bin/python3 -c 'import stackproc; print(stackproc.__file__)') ||
  fail "the installed Python package does not import"
[[ "$where" == "$site/stackproc/__init__.py" ]] || fail "stackproc imported from $where"
grep -q "Apache License" "$prefix/share/doc/stackproc/LICENSE" || fail "no LICENSE"
[[ -f "$prefix/share/doc/stackproc/README.md" ]] || fail "no README"
echo "install: 3 programs in $prefix/bin, the Python package in $site, LICENSE and README in share/doc/stackproc"
