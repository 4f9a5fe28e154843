# Sourced by the interop tests: a work directory removed on exit, Python stubs generated now
# from our .proto files, and the real stackprocd on a free port.
#   source common.sh BUILD_DIR SOURCE_DIR
#   start_server [stackprocd flags...]    sets $port and $server_pid; data root $work/data
build=$1
src=$2
work=$(mktemp -d)
trap 'kill "${server_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/data" "$work/stubs"
protoc --proto_path="$src/proto" --python_out="$work/stubs" --grpc_python_out="$work/stubs" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  "$src/proto/stackproc/v1/operation.proto" "$src/proto/stackproc/v1/service.proto"
export PYTHONPATH="$work/stubs"

start_server() {
  "$build/server/stackprocd" --listen 127.0.0.1:0 --data-root "$work/data" "$@" \
    >"$work/out" 2>"$work/log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q listening "$work/out" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on [^:]*:\([0-9]*\).*/\1/p' "$work/out")
  [[ -n "$port" ]] || { echo "stackprocd did not start: $(cat "$work/log")" >&2; exit 1; }
}
