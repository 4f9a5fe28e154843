#!/usr/bin/python3
"""The 1 GiB gaussian job with each input and output format, beside TIFF -> TIFF, side by side
in one run: stackproc-local run --op gaussian:ksize=5 over a 128x2048x2048 uint16 stack (a
synthetic microscopy-like stack from stackproc-local generate), every case in turn, --reps
times, medians printed with the output's size and the ratio to TIFF -> TIFF.

  inputs    TIFF (uncompressed), plane sequence (128 TIFF files), OME-Zarr (blosc-lz4, the
            default; and uncompressed)
  outputs   TIFF none and zstd, plane sequence, OME-Zarr none / lz4 (blosc, default) / zstd
            (blosc) / deflate (zlib), OME-Zarr with --pyramid 2, OME-Zarr in 16x256x256 chunks

Work files go to --dir (/dev/shm by default: the page cache, so that formats, not the disk, are
compared; outputs are removed after each run). Wall time is the process's, start to exit.

usage: formats.py [--build build/release] [--dir /dev/shm] [--reps 3] [--shape 128x2048x2048]
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


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default=os.path.join(SOURCE, "build", "release"))
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shape", default="128x2048x2048")
    args = ap.parse_args()
    tool = os.path.join(args.build, "core", "stackproc-local")
    work = tempfile.mkdtemp(prefix="stackproc-formats-", dir=args.dir)
    try:
        run = lambda *a: subprocess.run([tool, *a], check=True, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        src = os.path.join(work, "in.tif")
        run("generate", src, "--shape", args.shape, "--type", "uint16")
        inputs = {"TIFF": src, "planes": os.path.join(work, "planes/"),
                  "OME-Zarr lz4": os.path.join(work, "in.zarr"),
                  "OME-Zarr none": os.path.join(work, "in-none.zarr")}
        run("run", "--input", src, "--output", inputs["planes"])
        run("run", "--input", src, "--output", inputs["OME-Zarr lz4"])
        run("run", "--input", src, "--output", inputs["OME-Zarr none"], "--compression", "none")
        out = lambda name: os.path.join(work, name)
        cases = [  # (label, input, output, extra flags)
            ("TIFF -> TIFF", "TIFF", out("o.tif"), []),
            ("TIFF -> TIFF zstd", "TIFF", out("o.tif"), ["--compression", "zstd"]),
            ("TIFF -> planes", "TIFF", out("o/"), []),
            ("TIFF -> OME-Zarr none", "TIFF", out("o.zarr"), ["--compression", "none"]),
            ("TIFF -> OME-Zarr lz4 (default)", "TIFF", out("o.zarr"), []),
            ("TIFF -> OME-Zarr zstd", "TIFF", out("o.zarr"), ["--compression", "zstd"]),
            ("TIFF -> OME-Zarr deflate", "TIFF", out("o.zarr"), ["--compression", "deflate"]),
            ("TIFF -> OME-Zarr lz4 --pyramid 2", "TIFF", out("o.zarr"), ["--pyramid", "2"]),
            ("TIFF -> OME-Zarr lz4 16x256x256", "TIFF", out("o.zarr"),
             ["--chunks", "16x256x256"]),
            ("planes -> TIFF", "planes", out("o.tif"), []),
            ("OME-Zarr none -> TIFF", "OME-Zarr none", out("o.tif"), []),
            ("OME-Zarr lz4 -> TIFF", "OME-Zarr lz4", out("o.tif"), []),
        ]
        times = {label: [] for label, *_ in cases}
        sizes = {}
        for _ in range(args.reps):
            for label, source, target, flags in cases:
                start = time.perf_counter()
                run("run", "--input", inputs[source], "--op", "gaussian:ksize=5",
                    "--output", target, *flags)
                times[label].append(time.perf_counter() - start)
                sizes[label] = size_of(target.rstrip("/"))
                remove(target.rstrip("/"))
        stack_mb = size_of(src) / 1e6
        base = statistics.median(times["TIFF -> TIFF"])
        print(f"gaussian:ksize=5 on {args.shape} uint16 ({stack_mb:.0f} MB), stackproc-local, "
              f"{os.cpu_count()} cores, {args.dir}, medians of {args.reps}")
        print(f"{'case':36s} {'time s':>7s} {'MB/s':>6s} {'x TIFF':>7s} {'output MB':>10s}")
        for label, *_ in cases:
            t = statistics.median(times[label])
            print(f"{label:36s} {t:7.2f} {stack_mb / t:6.0f} {t / base:7.2f} "
                  f"{sizes[label] / 1e6:10.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
