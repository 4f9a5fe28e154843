#!/usr/bin/python3
"""What channels cost: a 2-channel 1 GiB OME-TIFF job against the same pixels as two 0.5 GiB
single-channel jobs, side by side in one sitting, and (with --old) the single-channel job
against another build's stackproc-local (the same job before and after a change).

The stacks are uint16, microscopy-like (stackproc-local generate: smooth structures under
Poisson-like noise), 64 planes a channel of 2048 x 2048. tifffile writes every input: each
channel as an OME-TIFF of its own, and both as the channels of one. Each
case runs --reps times in turn, wall time start to exit; medians and ratios printed.

  two channels        stackproc-local run --input two.ome.tif --op OPS --output out.tif
  one, then the other stackproc-local run --input c0.tif ... ; ... --input c1.tif ...
  one of both's size  stackproc-local run --input z.ome.tif ... (the planes as one z-stack:
                      what a job of this size costs without channels)

usage: channels.py [--build build/release] [--old OTHER_BUILD] [--dir /dev/shm] [--reps 5]
                   [--ops gaussian:sigma=2 normalize:scope=stack]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import tifffile


def timed(args):
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default="build/release")
    parser.add_argument("--old", help="another build directory: its single-channel job beside")
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--planes", type=int, default=64)
    parser.add_argument("--ops", nargs="+", default=["gaussian:sigma=2", "normalize:scope=stack"])
    a = parser.parse_args()
    local = os.path.join(a.build, "core", "stackproc-local")
    ops = sum((["--op", op] for op in a.ops), [])
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        for c in range(2):
            subprocess.run([local, "generate", f"{d}/c{c}.tif", "--type", "uint16", "--seed",
                            str(c + 1), "--shape", f"{a.planes}x2048x2048"], check=True,
                           capture_output=True)
        # Every input written by tifffile alike (one writer's layout): each channel alone, and
        # both as the channels of one OME-TIFF.
        both = np.stack([tifffile.imread(f"{d}/c{c}.tif") for c in range(2)])
        for c in range(2):
            tifffile.imwrite(f"{d}/c{c}.tif", both[c], ome=True, photometric="minisblack",
                             metadata={"axes": "ZYX"})
        tifffile.imwrite(f"{d}/two.ome.tif", both, ome=True, photometric="minisblack",
                         metadata={"axes": "CZYX"})
        tifffile.imwrite(f"{d}/z.ome.tif", both.reshape((-1,) + both.shape[2:]), ome=True,
                         photometric="minisblack", metadata={"axes": "ZYX"})
        del both
        cases = {
            "2 channels, one job": [[local, "run", "--input", f"{d}/two.ome.tif", *ops,
                                     "--output", f"{d}/out.tif", "--overwrite"]],
            "1 channel, two jobs": [[local, "run", "--input", f"{d}/c{c}.tif", *ops,
                                     "--output", f"{d}/out.tif", "--overwrite"]
                                    for c in range(2)],
            "1 channel of both's planes": [[local, "run", "--input", f"{d}/z.ome.tif", *ops,
                                            "--output", f"{d}/out.tif", "--overwrite"]],
        }
        if a.old:
            old = os.path.join(a.old, "core", "stackproc-local")
            cases["1 channel, two jobs (--old)"] = [
                [old, "run", "--input", f"{d}/c{c}.tif", *ops, "--output", f"{d}/out.tif",
                 "--overwrite"] for c in range(2)]
        times = {name: [] for name in cases}
        for _ in range(a.reps):
            for name, runs in cases.items():
                times[name].append(sum(timed(r) for r in runs))
        gib = 2 * a.planes * 2048 * 2048 * 2 / 2**30
        base = statistics.median(times["1 channel, two jobs"])
        print(f"{gib:.2f} GiB uint16, ops {' -> '.join(a.ops)}, {a.reps} reps, medians:")
        for name, t in times.items():
            m = statistics.median(t)
            print(f"  {name:30s} {m:6.2f} s  ({gib / m:.2f} GiB/s)  x{m / base:.3f}")


if __name__ == "__main__":
    main()
