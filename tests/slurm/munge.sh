# Sourced by the test clusters (cluster.sh, nodes.sh): a munged of the cluster's own under DIR
# (its key, its socket; the machine's own munge untouched), and the polling both use.

# Polls `$@` every 0.1 s for up to $1 seconds.
until_true() {
  local tries=$(($1 * 10)); shift
  while ((tries-- > 0)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

# start_munge DIR: a key and a munged at DIR/munge.sock (slurm.conf: AuthInfo=socket=...).
start_munge() {
  local dir=$1
  mungekey --create --keyfile="$dir/munge.key" --force >/dev/null 2>&1 ||
    dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 0600 "$dir/munge.key"
  /usr/sbin/munged --force --socket="$dir/munge.sock" --key-file="$dir/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed"
  until_true 10 test -S "$dir/munge.sock" || { echo "munged did not start" >&2; exit 1; }
}

# stop_munge DIR
stop_munge() {
  if [[ -s "$1/munged.pid" ]]; then
    kill -TERM "$(cat "$1/munged.pid")" 2>/dev/null || true
    rm -f "$1/munged.pid"
  fi
}
