stackproc-local generate stack.tif --shape 40x256x256 --type uint16    # a stack to cut
mkdir -p parts
# shard I of 4: on a cluster each I is one task of an array (sbatch --array=0-3, where
# --shard may be left out: SLURM_ARRAY_TASK_ID says it; or JOB_COMPLETION_INDEX in a
# Kubernetes Indexed Job); --z-range A:B names the slices instead
for I in 0 1 2 3; do
  stackproc-local run --input stack.tif --op gaussian:ksize=5 --compression deflate \
      --shards 4 --shard $I --output parts/part-$I.tif
done
# then, once every shard is done
stackproc-local assemble --output out.tif parts/part-0.tif parts/part-1.tif \
    parts/part-2.tif parts/part-3.tif

# a pipeline with a whole-stack step: its statistics first (one array), then the pieces
for I in 0 1 2 3; do
  stackproc-local stats --input stack.tif --op gaussian:ksize=5 --op normalize:scope=stack \
      --shards 4 --shard $I --output parts/stats-$I.stats
done
for I in 0 1 2 3; do
  stackproc-local run --input stack.tif --op gaussian:ksize=5 --op normalize:scope=stack \
      --stats parts/stats-0.stats --stats parts/stats-1.stats --stats parts/stats-2.stats \
      --stats parts/stats-3.stats --shards 4 --shard $I --output parts/norm-$I.tif
done
stackproc-local assemble --output normalized.tif parts/norm-0.tif parts/norm-1.tif \
    parts/norm-2.tif parts/norm-3.tif
