#!/usr/bin/python3
"""A job cut in z-ranges against the same job run whole, and the assembly against cp, side by
side in one run: stackproc-local over a 128x2048x2048 uint16 stack (1 GiB), --reps times,
medians.

  whole        stackproc-local run --op OP (the local run)
  shards       N runs of stackproc-local run --shards N --shard I, one after another (this
               node: the overhead of cutting a job, not the speed-up of running shards apart)
  assemble     stackproc-local assemble of the N shards (strips copied, never decoded)
  cp           cat of the same N shard files into one file (+ sync when --dir is a disk): the
               floor for moving those bytes

for gaussian:ksize=5 (I/O-bound) and bilateral:d=5 (compute-bound), uncompressed and deflate.

usage: shards.py [--build build/release] [--dir /dev/shm] [--reps 3] [--shards 4]
                 [--shape 128x2048x2048]
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(SOURCE, "build", "release"))
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shape", default="128x2048x2048")
    args = ap.parse_args()
    tool = os.path.join(args.build, "core", "stackproc-local")
    work = tempfile.mkdtemp(prefix="stackproc-shards-", dir=args.dir)
    disk = not args.dir.startswith("/dev/shm")

    def run(*a):
        subprocess.run([tool, *a], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def timed(fn):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    try:
        src = os.path.join(work, "in.tif")
        run("generate", src, "--shape", args.shape, "--type", "uint16")
        rows = []
        for op in ("gaussian:ksize=5", "bilateral:d=5"):
            for compression in ("none", "deflate"):
                t = {"whole": [], "shards": [], "assemble": [], "cp": []}
                size = 0
                for _ in range(args.reps):
                    whole = os.path.join(work, "whole.tif")
                    t["whole"].append(timed(lambda: run(
                        "run", "--input", src, "--op", op, "--compression", compression,
                        "--output", whole)))
                    parts = [os.path.join(work, f"part{i}.tif") for i in range(args.shards)]
                    t["shards"].append(timed(lambda: [run(
                        "run", "--input", src, "--op", op, "--compression", compression,
                        "--shards", str(args.shards), "--shard", str(i), "--output", p)
                        for i, p in enumerate(parts)]))
                    out = os.path.join(work, "assembled.tif")
                    t["assemble"].append(timed(lambda: run("assemble", "--output", out, *parts)))
                    if subprocess.run(["cmp", "-s", whole, out]).returncode != 0:
                        raise SystemExit(f"{op} {compression}: assembled file differs")
                    size = os.path.getsize(out)
                    copy = os.path.join(work, "copy.tif")
                    t["cp"].append(timed(lambda: subprocess.run(
                        f"cat {' '.join(parts)} > {copy}" + (" && sync" if disk else ""),
                        shell=True, check=True)))
                    for f in glob.glob(os.path.join(work, "*.tif")):
                        if f != src:
                            os.remove(f)
                rows.append((op, compression, size, {k: statistics.median(v) for k, v in t.items()}))
        print(f"{args.shape} uint16, {args.shards} shards run one after another, "
              f"{os.cpu_count()} cores, {args.dir}, medians of {args.reps}")
        print(f"{'pipeline':18s} {'codec':8s} {'out MB':>7s} {'whole s':>8s} {'shards s':>9s} "
              f"{'x whole':>8s} {'assemble s':>11s} {'cp s':>6s} {'x cp':>6s}")
        for op, compression, size, m in rows:
            total = m["shards"] + m["assemble"]
            print(f"{op:18s} {compression:8s} {size / 1e6:7.0f} {m['whole']:8.2f} "
                  f"{m['shards']:9.2f} {total / m['whole']:8.2f} {m['assemble']:11.2f} "
                  f"{m['cp']:6.2f} {m['assemble'] / m['cp']:6.2f}")
        print("x whole: (shards + assemble) / whole; x cp: assemble / cp of the same shard files")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
