#!/usr/bin/python3
"""What z-neighbourhoods cost: the 3-D operations beside scipy.ndimage on one core and beside
the 2-D gaussian on the same stack, and the rings' cost on a streamed job.

The stack is microscopy-like (stackproc-local generate: smooth structures under Poisson-like
noise), --planes planes of --side x --side, uint16 by default, in --dir (/dev/shm: no disk). Each
case runs --reps times in turn, medians printed:

  stackproc-local run --threads 1 / 2 --op OP     file to file, wall time start to exit
  scipy.ndimage (one core)                        the filter alone, on the array in memory
                                                  (its reading and writing left out: in its
                                                  favour)
  streamed: stackproc process through stackprocd  over loopback, file to file, beside the
                                                  path job of the same op

usage: neighbourhoods.py [--build build/release] [--dir /dev/shm] [--reps 3] [--planes 32]
                         [--side 1024] [--type uint16] [--no-scipy] [--stream-only]
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

import scipy.ndimage as nd
import tifffile

CASES = [  # (op, scipy's call on the array)
    ("gaussian:sigma=2", lambda v: nd.gaussian_filter(v, (0, 2, 2), mode="mirror")),
    ("gaussian3d:sigma=2", lambda v: nd.gaussian_filter(v, 2, mode="mirror")),
    ("gaussian3d:sigma=2,sigma_z=0.8", lambda v: nd.gaussian_filter(v, (0.8, 2, 2), mode="mirror")),
    ("mean3d", lambda v: nd.uniform_filter(v, 3, mode="mirror")),
    ("median3d", lambda v: nd.median_filter(v, 3, mode="mirror")),
    ("median3d:size=5", lambda v: nd.median_filter(v, 5, mode="mirror")),
]


def timed(args, env=None):
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default="build/release")
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--planes", type=int, default=32)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--type", default="uint16")
    parser.add_argument("--no-scipy", action="store_true")
    parser.add_argument("--stream-only", action="store_true", help="only the streamed table")
    a = parser.parse_args()
    local = os.path.join(a.build, "core", "stackproc-local")
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        src = os.path.join(d, "in.tif")
        subprocess.run([local, "generate", src, "--type", a.type, "--shape",
                        f"{a.planes}x{a.side}x{a.side}"], check=True, capture_output=True)
        volume = tifffile.imread(src)
        mb = volume.nbytes / 1e6
        print(f"{a.planes}x{a.side}x{a.side} {a.type} ({mb:.0f} MB), {a.reps} reps, medians\n")
        print(f"{'operation':32s} {'1 thread':>14s} {'2 threads':>14s} {'scipy 1 core':>14s}"
              f" {'1 thread / scipy':>17s}")
        out = os.path.join(d, "out.tif")
        for op, call in [] if a.stream_only else CASES:
            times = {1: [], 2: [], "scipy": []}
            for _ in range(a.reps):
                for threads in (1, 2):
                    times[threads].append(timed([local, "run", "--input", src, "--output", out,
                                                 "--overwrite", "--threads", str(threads),
                                                 "--op", op]))
                if not a.no_scipy:
                    start = time.perf_counter()
                    call(volume)
                    times["scipy"].append(time.perf_counter() - start)
            m = {k: statistics.median(v) for k, v in times.items() if v}
            scipy = f"{mb / m['scipy']:8.1f} MB/s" if "scipy" in m else "-"
            ratio = f"{m['scipy'] / m[1]:16.2f}x" if "scipy" in m else "-"
            print(f"{op:32s} {mb / m[1]:8.1f} MB/s {mb / m[2]:8.1f} MB/s {scipy:>14s} {ratio:>17s}",
                  flush=True)

        # Streamed through the server beside the path job: the rings' cost in a stream.
        data = os.path.join(d, "data")
        os.mkdir(data)
        os.rename(src, os.path.join(data, "in.tif"))
        src = os.path.join(data, "in.tif")
        server = subprocess.Popen([os.path.join(a.build, "server", "stackprocd"), "--listen",
                                   "127.0.0.1:0", "--data-root", data],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            port = server.stdout.readline().rsplit(":", 1)[1].split()[0]
            env = dict(os.environ, STACKPROC_SERVER=f"127.0.0.1:{port}")
            cli = os.path.join(a.build, "client", "stackproc")
            print(f"\n{'streamed over loopback':32s} {'streamed':>14s} {'path job':>14s}"
                  f" {'streamed/path':>14s}")
            for op in ("gaussian:sigma=2", "gaussian3d:sigma=2,sigma_z=0.8", "median3d"):
                streamed, path = [], []
                for _ in range(a.reps):
                    streamed.append(timed([cli, "process", src, "-o", out, "--overwrite",
                                           "--op", op], env))
                    path.append(timed([local, "run", "--input", src, "--output", out,
                                       "--overwrite", "--op", op]))
                s, p = statistics.median(streamed), statistics.median(path)
                print(f"{op:32s} {mb / s:8.1f} MB/s {mb / p:8.1f} MB/s {s / p:13.2f}x", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
