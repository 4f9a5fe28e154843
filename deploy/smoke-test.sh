#!/usr/bin/env bash
# Builds the Docker image and proves it serves: starts a container over a temporary data
# directory, runs a path job and a streamed job against it with the host's stackproc CLI,
# checks both outputs against the core run on the host, checks the container user is not root
# and that `docker stop` (SIGTERM) ends it cleanly, runs deploy/README's TLS and token recipe
# (the CLI inside the container and outside), and reports the image's size and build time.
#
# Uses `docker` when a daemon answers, else ../shared/tools/container (buildah + podman, for
# machines without a Docker daemon); with neither it says so and exits 0.
#   deploy/smoke-test.sh [BUILD_DIR]   host binaries from BUILD_DIR (default build/release)
# STACKPROC_SMOKE_REUSE_IMAGE=1 skips the build when the image exists (podman engine only).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$repo/build/release}" && pwd)
tool=${STACKPROC_CONTAINER_TOOL:-$repo/../shared/tools/container}
tag=localhost/stackproc:smoke
name=stackproc-smoke-$$
cli=$build/client/stackproc
local_tool=$build/core/stackproc-local
say() { echo "smoke-test: $*"; }
# Two outputs of one job: the same bytes apart from each run's record of itself (its time,
# executor and input name: tests/tools/same_output.py says what else it compares).
same_output() { /usr/bin/python3 "$repo/tests/tools/same_output.py" "$@"; }
fail() { say "FAIL: $*" >&2; exit 1; }

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine() { docker "$@"; }
  log_args=()
  build_image() { docker build -f "$repo/deploy/Dockerfile" -t "$tag" "$repo"; }
elif [[ -x "$tool" ]]; then
  engine() { "$tool" podman "$@"; }
  # Podman's default log driver is journald where systemd runs, which `podman logs` may not read.
  log_args=(--log-driver k8s-file)
  build_image() { "$tool" build "$repo" "$tag" "$repo/deploy/Dockerfile"; }
else
  say "SKIPPED: no Docker daemon and no $tool"
  exit 0
fi

work=$(mktemp -d)
cleanup() {
  engine rm -f "$name" "$name-tls" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

if [[ -n "${STACKPROC_SMOKE_REUSE_IMAGE:-}" ]] && engine image exists "$tag" 2>/dev/null; then
  say "reusing the image $tag (STACKPROC_SMOKE_REUSE_IMAGE)"
else
  t0=$SECONDS
  build_image >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; fail "image build"; }
  say "image $tag built in $((SECONDS - t0))s"
fi
size=$(engine image inspect --format '{{.Size}}' "$tag")
say "image size $((size / 1024 / 1024)) MiB"

# The image listens beyond loopback (0.0.0.0:50051): without a token file or client
# certificates it refuses to start, saying why.
if refusal=$(engine run --rm --network none "$tag" 2>&1); then
  fail "the image served beyond loopback without tokens"
fi
grep -q -- "--allow-unauthenticated" <<<"$refusal" || fail "the image's refusal: $refusal"
say "without tokens beyond loopback the image refuses to start: $(grep -m 1 -o 'stackprocd: .*' <<<"$refusal" | cut -c 1-100)..."

# The container runs as uid 10001: its data directory must be writable by it.
mkdir -m 0777 "$work/data"
"$local_tool" generate "$work/data/in.tif" --shape 24x256x320 --type uint16 >/dev/null
"$local_tool" run --input "$work/data/in.tif" --op gaussian:ksize=5 --op resize:scale=0.5 \
  --output "$work/ref.tif" >/dev/null 2>&1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Host networking (what the no-daemon engine offers); with Docker this is the same as -p.
web_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
engine run -d --network host "${log_args[@]}" --name "$name" -v "$work/data:/data" \
  -e STACKPROC_LISTEN="127.0.0.1:$port" -e STACKPROC_HTTP_LISTEN="127.0.0.1:$web_port" \
  -e STACKPROC_MEMORY_BUDGET=1G "$tag" >/dev/null
export STACKPROC_SERVER=127.0.0.1:$port
for _ in $(seq 100); do "$cli" health >/dev/null 2>&1 && break; sleep 0.2; done
[[ "$("$cli" health)" == SERVING ]] || { engine logs "$name" || true; fail "not serving"; }

"$cli" submit --input in.tif --op gaussian:ksize=5 --op resize:scale=0.5 --output out.tif \
  --wait >"$work/submit.log" || { cat "$work/submit.log"; fail "path job"; }
same_output "$work/data/out.tif" "$work/ref.tif" || fail "path job output differs from the core's"
say "path job: $(tail -1 "$work/submit.log")"

"$cli" process "$work/data/in.tif" -o "$work/streamed.tif" --op gaussian:ksize=5 \
  --op resize:scale=0.5 >"$work/process.log" || { cat "$work/process.log"; fail "streamed job"; }
same_output "$work/streamed.tif" "$work/ref.tif" || fail "streamed output differs from the core's"
say "streamed job: $(tail -1 "$work/process.log")"
# The web page's JSON lists both jobs, served by the image's stackprocd.
jobs=$(python3 -c 'import json, sys, urllib.request
print(len(json.load(urllib.request.urlopen(sys.argv[1], timeout=10))["jobs"]))' \
  "http://127.0.0.1:$web_port/api/status") || fail "the web page's /api/status"
[[ "$jobs" == 2 ]] || fail "the web page lists $jobs jobs, not 2"
say "web page: /api/status lists the 2 jobs"

uid=$(engine exec "$name" id -u)
[[ "$uid" != 0 ]] || fail "the container runs as root"
[[ "$(engine exec "$name" stackproc --server "127.0.0.1:$port" health)" == SERVING ]] ||
  fail "the CLI inside the image"
engine exec "$name" stackproc-local formats | grep -q '^TIFF' ||
  fail "stackproc-local (a cluster's shards run it) is not in the image"
say "container user uid=$uid; stackproc health inside the container: SERVING; stackproc-local runs"

t0=$SECONDS
engine stop -t 20 "$name" >/dev/null
stop_s=$((SECONDS - t0))
code=$(engine inspect --format '{{.State.ExitCode}}' "$name")
[[ "$code" == 0 ]] || { engine logs "$name" || true; fail "exit code $code after SIGTERM"; }
((stop_s < 15)) || fail "SIGTERM took ${stop_s}s: the server did not shut down by itself"
# To a file first: `grep -q` in a pipe under pipefail can fail the check when it stops reading early.
engine logs "$name" >"$work/server.log" 2>&1 || true
grep -q 'event=job_finished' "$work/server.log" || { cat "$work/server.log"; fail "no job log lines"; }
say "server log: $(grep -c 'event=job_finished' "$work/server.log") job_finished lines"
say "stopped by SIGTERM in ${stop_s}s, exit code 0"

# deploy/README's recipe with TLS and tokens, files mounted read-only: the CLI inside the
# container (the health check's command, and docker exec) reads the CA while the server's
# certificate variables sit beside it; a lab machine's CLI submits over TLS with a token.
tls=$work/tls
mkdir -m 0755 "$tls"
ossl() { openssl "$@" >/dev/null 2>>"$work/openssl.log" || fail "openssl $1: $(cat "$work/openssl.log")"; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=smoke-ca -keyout "$tls/ca.key" \
  -out "$tls/ca.pem"
ossl req -newkey rsa:2048 -nodes -subj /CN=stackprocd -keyout "$tls/server.key" \
  -out "$tls/server.csr"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/ext"
ossl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
  -days 2 -extfile "$tls/ext" -out "$tls/server.pem"
token=smoke-token-0123456789abcdef
printf 'lab %s\n' "$token" >"$tls/tokens"
chmod 0644 "$tls"/*  # uid 10001 reads them
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
engine run -d --network host "${log_args[@]}" --name "$name-tls" -v "$work/data:/data" \
  -v "$tls:/etc/stackproc:ro" -e STACKPROC_LISTEN="127.0.0.1:$port" \
  -e STACKPROC_SERVER="127.0.0.1:$port" -e STACKPROC_MEMORY_BUDGET=1G \
  -e STACKPROC_AUTH_TOKEN_FILE=/etc/stackproc/tokens \
  -e STACKPROC_TLS_CERT=/etc/stackproc/server.pem -e STACKPROC_TLS_KEY=/etc/stackproc/server.key \
  -e STACKPROC_TLS_CA=/etc/stackproc/ca.pem "$tag" >/dev/null
for _ in $(seq 100); do engine exec "$name-tls" stackproc health >/dev/null 2>&1 && break; sleep 0.2; done
[[ "$(engine exec "$name-tls" stackproc health)" == SERVING ]] ||
  { engine logs "$name-tls" || true; fail "stackproc health inside a TLS container"; }
engine exec -e STACKPROC_TOKEN="$token" "$name-tls" stackproc list >/dev/null ||
  fail "docker exec ... stackproc list with TLS and a token"
STACKPROC_TLS_CA=$tls/ca.pem STACKPROC_TOKEN=$token "$cli" --server "127.0.0.1:$port" submit \
  --input in.tif --op gaussian:ksize=5 --op resize:scale=0.5 --output tls.tif --wait \
  >"$work/tls.log" || { cat "$work/tls.log"; fail "a job over TLS with a token"; }
same_output "$work/data/tls.tif" "$work/ref.tif" || fail "the TLS job's output differs from the core's"
say "TLS + tokens: health and list inside the container, a job from outside: $(tail -1 "$work/tls.log")"
say "1 passed, 0 failed"
