#!/usr/bin/env bash
# Shards of a job run as a real SLURM job array (tests/slurm/cluster.sh): uint8 and uint16,
# uncompressed and deflate, each cut in 4 z-ranges by `stackproc-local run --shards 4` with the
# index SLURM gives each task (SLURM_ARRAY_TASK_ID), assembled, and compared byte for byte with
# the same job run whole. A task that fails makes sbatch --wait fail, naming its log. An OME-Zarr
# store made once and filled by an array's tasks is the whole run's; 4 tasks of 3-D steps (each
# reading its neighbours' planes) too. Then an array cancelled
# mid-run (scancel) leaves no output and no temporary file.
# usage: shards_test.sh BUILD_DIR
set -euo pipefail
build=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
tool=$build/core/stackproc-local
work=$(mktemp -d)
trap '"$here/cluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Two outputs of one job: the same bytes apart from the record of each run (its time, executor and
# input name: core/stack/provenance.h).
same_output_py=$(dirname "$(realpath "$0")")/../tools/same_output.py
same_output() { /usr/bin/python3 "$same_output_py" "$@"; }

"$here/cluster.sh" start "$work/cluster"
export SLURM_CONF=$work/cluster/slurm.conf

variants=(uint8:none uint8:deflate uint16:none uint16:deflate)
for type in uint8 uint16; do
  "$tool" generate "$work/in-$type.tif" --shape 29x256x192 --type "$type" >/dev/null
done
# One array of 16 tasks: task t runs shard t % 4 of variant t / 4, on one CPU.
cat >"$work/shard.sh" <<SCRIPT
#!/usr/bin/env bash
set -euo pipefail
variants=(${variants[*]})
v=\${variants[\$((SLURM_ARRAY_TASK_ID / 4))]}
type=\${v%%:*}; codec=\${v##*:}
shard=\$((SLURM_ARRAY_TASK_ID % 4))
exec "$tool" run --input "$work/in-\$type.tif" --op gaussian:ksize=5 --op resize:scale=0.5 \\
  --compression "\$codec" --threads 1 --shards 4 --shard "\$shard" \\
  --output "$work/part-\$type-\$codec-\$shard.tif"
SCRIPT
chmod +x "$work/shard.sh"
sbatch --wait --quiet --array=0-15 --cpus-per-task=1 --job-name=stackproc-shards \
  --output="$work/task-%a.log" "$work/shard.sh" ||
  fail "the array failed: $(tail -n 3 "$work"/task-*.log)"

for v in "${variants[@]}"; do
  type=${v%%:*}
  codec=${v##*:}
  "$tool" run --input "$work/in-$type.tif" --op gaussian:ksize=5 --op resize:scale=0.5 \
    --compression "$codec" --output "$work/whole-$type-$codec.tif" >/dev/null 2>&1
  "$tool" assemble --output "$work/assembled-$type-$codec.tif" \
    "$work/part-$type-$codec-"{0,1,2,3}.tif >/dev/null || fail "assemble $v"
  same_output "$work/whole-$type-$codec.tif" "$work/assembled-$type-$codec.tif" ||
    fail "$v: the shards SLURM ran assemble into another file than the whole run"
done

# An OME-Zarr store by hand: made first (--fill-store, no range), then 2 tasks fill their
# shards of it (ranges on its files: 8 slices of level 0, 8 of level 1 = 16), no assembly: the
# whole run's store (but the record's time and executor).
zarr=(--op gaussian:ksize=5 --compression zstd --zarr-shards 8x128x128 --pyramid 1)
mkdir "$work/filled" "$work/one"
"$tool" run --input "$work/in-uint16.tif" "${zarr[@]}" --output "$work/filled/out.ome.zarr" \
  --fill-store >/dev/null || fail "making the store to fill"
cat >"$work/fill.sh" <<SCRIPT
#!/usr/bin/env bash
exec "$tool" run --input "$work/in-uint16.tif" ${zarr[*]} --threads 1 --shards 2 --fill-store \
  --output "$work/filled/out.ome.zarr"
SCRIPT
chmod +x "$work/fill.sh"
sbatch --wait --quiet --array=0-1 --cpus-per-task=1 --output="$work/fill-%a.log" "$work/fill.sh" ||
  fail "the filling array failed: $(tail -n 3 "$work"/fill-*.log)"
"$tool" run --input "$work/in-uint16.tif" "${zarr[@]}" --output "$work/one/out.ome.zarr" \
  >/dev/null 2>&1
same_output "$work/one/out.ome.zarr" "$work/filled/out.ome.zarr" --differ time,executor ||
  fail "a store 2 SLURM tasks filled differs from the whole run's"
if err=$("$tool" run --input "$work/in-uint16.tif" "${zarr[@]}" --z-range 4:12 --fill-store \
  --output "$work/filled/out.ome.zarr" 2>&1); then
  fail "a range that splits a shard filled it"
fi
[[ "$err" == *"z-chunks of level 0 (8 slices each)"* ]] || fail "the refusal: $err"

# 3-D steps: each of 4 tasks reads the planes around its range that the steps reach (the
# neighbours' slices), so the shards assemble into the whole run's bytes, first and last
# planes included.
three_d=(--op median3d --op gaussian3d:sigma=1,sigma_z=2 --op mean3d:size=3,size_z=5)
cat >"$work/halo.sh" <<SCRIPT
#!/usr/bin/env bash
exec "$tool" run --input "$work/in-uint16.tif" ${three_d[*]} --threads 1 --shards 4 \
  --output "$work/halo-\$SLURM_ARRAY_TASK_ID.tif"
SCRIPT
chmod +x "$work/halo.sh"
sbatch --wait --quiet --array=0-3 --cpus-per-task=1 --output="$work/halo-%a.log" "$work/halo.sh" ||
  fail "the 3-D array failed: $(tail -n 3 "$work"/halo-*.log)"
"$tool" run --input "$work/in-uint16.tif" "${three_d[@]}" --output "$work/halo-whole.tif" \
  >/dev/null 2>&1
"$tool" assemble --output "$work/halo-assembled.tif" "$work"/halo-{0,1,2,3}.tif >/dev/null ||
  fail "assemble the 3-D shards"
same_output "$work/halo-whole.tif" "$work/halo-assembled.tif" ||
  fail "4 SLURM tasks of 3-D steps assemble into another file than the whole run"

# scancel mid-run: each running shard gets SIGTERM, stops between slices, removes its temporary
# file and exits; nothing is left but the progress files the shards kept while they ran.
mkdir "$work/cancel"
"$tool" generate "$work/slow.tif" --shape 48x1024x1024 --type uint16 >/dev/null
cat >"$work/slow.sh" <<SCRIPT
#!/usr/bin/env bash
exec "$tool" run --input "$work/slow.tif" --op bilateral:d=9 --threads 1 --shards 2 \
  --progress-file "$work/cancel/progress-\$SLURM_ARRAY_TASK_ID" \
  --output "$work/cancel/part-\$SLURM_ARRAY_TASK_ID.tif"
SCRIPT
chmod +x "$work/slow.sh"
job=$(sbatch --parsable --array=0-1 --cpus-per-task=1 --output="$work/slow-%a.log" "$work/slow.sh")
started() {
  for i in 0 1; do grep -q 'slices_done=[1-9]' "$work/cancel/progress-$i" 2>/dev/null || return 1; done
}
for _ in $(seq 600); do started && break; sleep 0.1; done
started || fail "the shards did not start: $(squeue; tail -n 2 "$work"/slow-*.log)"
scancel "$job"
for _ in $(seq 600); do [[ -z "$(squeue --noheader --jobs="$job" 2>/dev/null)" ]] && break; sleep 0.1; done
[[ -z "$(squeue --noheader --jobs="$job" 2>/dev/null)" ]] || fail "the array did not end after scancel"
left=$(ls -A "$work/cancel" | grep -v '^progress-[01]$' || true)
[[ -z "$left" ]] || fail "a cancelled shard left: $left"
grep -q "cancelled at slice" "$work"/slow-0.log || fail "shard 0 was not cancelled: $(cat "$work"/slow-0.log)"

echo "slurm shards: 16 tasks, 4 variants byte-equal to the whole run; a store filled by 2 tasks"\
  "= the whole run's; 4 tasks of 3-D steps = the whole run; scancel leaves nothing"
