#!/usr/bin/python3
"""Compression levels: speed against size on microscopy-like 16-bit data, to choose defaults.

A 12-bit camera-like stack in uint16 (blobs, background, noise: ../shared/reference/gen_stack.py,
written by tifffile) is converted by stackproc-local (no --op: a conversion) to TIFF and to
OME-Zarr with each codec and level, and the result read back (converted to an uncompressed
TIFF), --reps times, medians. MB/s are of the uncompressed stack; ratio is stack bytes / output
bytes. All on one 2-core machine, in --dir.

TIFF's deflate has no predictor by default (ImageJ undoes none for deflate), lzw and zstd
differencing: the predictor=... rows show what the other choice costs or saves.

usage: levels.py [--build build/release] [--dir /dev/shm] [--reps 3] [--shape 64x1024x1024]
                 [--format TIFF|OME-Zarr]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
CASES = [("TIFF", "tif", c) for c in (
    "none", "deflate:level=1", "deflate:level=1,predictor=differencing", "deflate:level=3",
    "deflate:level=6", "deflate:level=6,predictor=differencing", "deflate:level=9", "lzw",
    "lzw:predictor=none", "zstd:level=1", "zstd:level=1,predictor=none", "zstd:level=3",
    "zstd:level=9", "zstd:level=19")] + [
    ("OME-Zarr", "zarr", c) for c in (
        "lz4:level=1", "lz4:level=5", "lz4:level=9", "zstd:level=1", "zstd:level=3",
        "zstd:level=9", "deflate:level=1", "deflate:level=6")]


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def timed(argv):
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(SOURCE, "build/release"))
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shape", default="64x1024x1024")
    parser.add_argument("--format", choices=("TIFF", "OME-Zarr"), help="only this format's rows")
    args = parser.parse_args()
    tool = os.path.join(os.path.abspath(args.build), "core/stackproc-local")
    depth, height, width = args.shape.split("x")
    work = tempfile.mkdtemp(dir=args.dir)
    try:
        stack = os.path.join(work, "in.tif")
        subprocess.run(["/usr/bin/python3", os.path.join(SOURCE, "../shared/reference/gen_stack.py"),
                        stack, depth, height, width, "uint16"], check=True)
        raw = int(depth) * int(height) * int(width) * 2
        print(f"{args.shape} uint16, 12-bit camera-like (gen_stack.py), {raw / 1e6:.0f} MB, "
              f"stackproc-local on 2 cores, {args.dir}, medians of {args.reps}")
        print(f"{'format':9} {'codec':38} {'write MB/s':>10} {'read MB/s':>10} {'ratio':>6}")
        for fmt, ext, codec in CASES:
            if args.format and fmt != args.format:
                continue
            out = os.path.join(work, f"out.{ext}")
            back = os.path.join(work, "back.tif")
            writes, reads = [], []
            for _ in range(args.reps):
                writes.append(timed([tool, "run", "--input", stack, "--output", out,
                                     "--compression", codec, "--overwrite"]))
                reads.append(timed([tool, "run", "--input", out, "--output", back,
                                    "--overwrite"]))
            ratio = raw / size_of(out)
            print(f"{fmt:9} {codec:38} {raw / 1e6 / statistics.median(writes):10.0f} "
                  f"{raw / 1e6 / statistics.median(reads):10.0f} {ratio:6.2f}")
            shutil.rmtree(out, ignore_errors=True) if ext == "zarr" else os.remove(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
