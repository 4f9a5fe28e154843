# Sourced by the interop tests: a work directory removed on exit, the Python stubs of the build,
# and the real stackprocd on a free port.
#   source common.sh BUILD_DIR SOURCE_DIR
#   start_server [stackprocd flags...]    sets $port and $server_pid; data root $work/data
build=$1
src=$2
work=$(mktemp -d)
trap 'kill "${server_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/data"
export PYTHONPATH="$build/python"  # the stubs the build generated from proto/ (stackproc.v1)

start_server() {
  "$build/server/stackprocd" --listen 127.0.0.1:0 --data-root "$work/data" "$@" \
    >"$work/out" 2>"$work/log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$work/out")
  [[ -n "$port" ]] || { echo "stackprocd did not start: $(cat "$work/log")" >&2; exit 1; }
}
