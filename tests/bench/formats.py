#!/usr/bin/python3
"""The 1 GiB gaussian job with each input and output format, beside TIFF -> TIFF, side by side
in one run: stackproc-local run --op gaussian:ksize=5 over a 128x2048x2048 uint16 stack (a
synthetic microscopy-like stack from stackproc-local generate), every case in turn, --reps
times, medians printed with the output's size and the ratio to TIFF -> TIFF.

  inputs    TIFF (uncompressed), plane sequence (128 TIFF files), OME-Zarr 0.5 (Zarr v3,
            sharded: the default) and 0.4 (Zarr v2), each blosc-lz4 (the default) and
            uncompressed
  outputs   TIFF none, zstd and deflate, plane sequence, OME-Zarr 0.5 and 0.4 each none / lz4
            (blosc, default) / zstd (0.5: the zstd codec; 0.4: blosc's) / deflate (0.5: gzip;
            0.4: zlib), with --pyramid 2, and in 16x256x256 chunks

Each output's size and the files it is made of are printed beside its time, and each OME-Zarr
0.5 output's time over the TIFF output's of the same codec (lz4 over uncompressed TIFF).

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
        inputs = {"TIFF": src, "planes": os.path.join(work, "planes/")}
        run("run", "--input", src, "--output", inputs["planes"])
        for version, format_flags in (("0.5", []), ("0.4", ["--zarr-format", "2"])):
            for codec in ("lz4", "none"):
                name = f"OME-Zarr {version} {codec}"
                inputs[name] = os.path.join(work, f"in-{version}-{codec}.zarr")
                run("run", "--input", src, "--output", inputs[name], "--compression", codec,
                    *format_flags)
        out = lambda name: os.path.join(work, name)
        cases = [  # (label, input, output, extra flags)
            ("TIFF -> TIFF", "TIFF", out("o.tif"), []),
            ("TIFF -> TIFF zstd", "TIFF", out("o.tif"), ["--compression", "zstd"]),
            ("TIFF -> TIFF deflate", "TIFF", out("o.tif"), ["--compression", "deflate"]),
            ("TIFF -> planes", "TIFF", out("o/"), []),
        ]
        for version, format_flags in (("0.5", []), ("0.4", ["--zarr-format", "2"])):
            for label, flags in (("none", ["--compression", "none"]), ("lz4 (default)", []),
                                 ("zstd", ["--compression", "zstd"]),
                                 ("deflate", ["--compression", "deflate"]),
                                 ("lz4 --pyramid 2", ["--pyramid", "2"]),
                                 ("lz4 16x256x256", ["--chunks", "16x256x256"])):
                cases.append((f"TIFF -> OME-Zarr {version} {label}", "TIFF", out("o.zarr"),
                              flags + format_flags))
        cases += [("planes -> TIFF", "planes", out("o.tif"), [])]
        cases += [(f"{name} -> TIFF", name, out("o.tif"), []) for name in inputs
                  if name.startswith("OME-Zarr")]
        times = {label: [] for label, *_ in cases}
        sizes = {}
        files = {}
        for _ in range(args.reps):
            for label, source, target, flags in cases:
                start = time.perf_counter()
                run("run", "--input", inputs[source], "--op", "gaussian:ksize=5",
                    "--output", target, *flags)
                times[label].append(time.perf_counter() - start)
                sizes[label] = size_of(target.rstrip("/"))
                files[label] = 1 if os.path.isfile(target) else sum(
                    len(f) for _, _, f in os.walk(target.rstrip("/")))
                remove(target.rstrip("/"))
        stack_mb = size_of(src) / 1e6
        base = statistics.median(times["TIFF -> TIFF"])
        print(f"gaussian:ksize=5 on {args.shape} uint16 ({stack_mb:.0f} MB), stackproc-local, "
              f"{os.cpu_count()} cores, {args.dir}, medians of {args.reps}")
        print(f"{'case':40s} {'time s':>7s} {'MB/s':>6s} {'x TIFF':>7s} {'output MB':>10s} "
              f"{'files':>6s}")
        for label, *_ in cases:
            t = statistics.median(times[label])
            print(f"{label:40s} {t:7.2f} {stack_mb / t:6.0f} {t / base:7.2f} "
                  f"{sizes[label] / 1e6:10.0f} {files[label]:6d}")
        print("OME-Zarr 0.5 over TIFF of the same codec (lz4: over uncompressed TIFF):")
        for codec, tiff in (("none", ""), ("lz4 (default)", ""), ("zstd", " zstd"),
                            ("deflate", " deflate")):
            ratio = (statistics.median(times[f"TIFF -> OME-Zarr 0.5 {codec}"]) /
                     statistics.median(times[f"TIFF -> TIFF{tiff}"]))
            print(f"  {codec:14s} {ratio:5.2f}x   files: 0.5 "
                  f"{files[f'TIFF -> OME-Zarr 0.5 {codec}']}, 0.4 "
                  f"{files[f'TIFF -> OME-Zarr 0.4 {codec}']}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
