#!/usr/bin/python3
"""The seed's own size on a disk: a 4000 x 2048 x 2048 uint8 stack (16.8 GB), file to file.

Generates the stack (stackproc-local generate) in --dir, which must have room for it twice
(checked first, and said so), then runs, alternating, --reps times, with the page cache
dropped before each run when this process may (root; else said so):
  cp+sync     cp IN OUT; sync: the physical floor of reading and writing it
  path-job    stackproc submit --wait through stackprocd (gaussian:ksize=5), server RSS
  path-job zarr / zarr 0.4   the same job to an OME-Zarr store: NGFF 0.5 (Zarr v3, sharded,
              the default) and NGFF 0.4 (--zarr-format 2, a file per chunk); files written
  seed_loop   ../shared/reference/seed_loop.py, when the stack fits in available memory
  seed_mp     ../shared/reference/seed_mp.py, when it fits twice (it holds it twice)
and once, a preview: `stackproc preview` of gaussian -> clahe -> resize on 3 slices (the
seed-size input's pages read alone). Prints medians and ratios to cp+sync. Takes minutes.

usage: seed_size.py [--build build/release] [--dir /var/tmp/stackproc-seed] [--reps 1]
                    [--shape 4000x2048x2048] [--keep]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import PYTHON, REFERENCE, Server, run, table  # noqa: E402


def drop_caches():
    """Whether the page cache could be dropped (root): reads then come from the disk."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return True
    except OSError:
        return False


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--build", default="build/release")
    p.add_argument("--dir", default="/var/tmp/stackproc-seed")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--shape", default="4000x2048x2048")
    p.add_argument("--keep", action="store_true", help="keep the generated stack for a rerun")
    a = p.parse_args()
    build = os.path.abspath(a.build)
    d, h, w = (int(x) for x in a.shape.split("x"))
    size = d * h * w
    data = os.path.join(a.dir, "data")
    os.makedirs(data, exist_ok=True)
    stack = os.path.join(data, "seed.tif")
    free = shutil.disk_usage(a.dir).free + (os.path.getsize(stack) if os.path.exists(stack) else 0)
    if free < 2.05 * size:
        sys.exit(f"{a.dir} has {free / 1e9:.1f} GB free: the stack ({size / 1e9:.1f} GB) and one "
                 f"output need {2.05 * size / 1e9:.1f} GB; give --dir on a larger disk")
    if not os.path.exists(stack):
        t0 = time.perf_counter()
        subprocess.run([f"{build}/core/stackproc-local", "generate", stack, "--shape", a.shape,
                        "--type", "uint8"], check=True, stdout=subprocess.DEVNULL)
        print(f"generated {stack} ({size / 1e9:.1f} GB) in {time.perf_counter() - t0:.0f} s")
    out = os.path.join(data, "out.tif")
    store = os.path.join(data, "out.ome.zarr")
    server = Server(build, data, log="seed-stackprocd.log")
    cli = [f"{build}/client/stackproc", "--server", server.address]
    job = cli + ["submit", "--input", "seed.tif", "--op", "gaussian:ksize=5", "--overwrite",
                 "--wait", "--output"]
    methods = {
        "cp+sync": (["sh", "-c", f"cp {stack} {out} && sync"], None),
        "path-job": (job + ["out.tif"], server.proc.pid),
        "path-job zarr": (job + ["out.ome.zarr"], server.proc.pid),
        "path-job zarr 0.4": (job + ["out.ome.zarr", "--zarr-format", "2"], server.proc.pid),
    }
    files = {}
    skipped = []
    if available_bytes() > 1.1 * size:
        methods["seed_loop"] = ([PYTHON, os.path.join(REFERENCE, "seed_loop.py"), stack, out], None)
    else:
        skipped.append(f"seed_loop (holds the stack: {size / 1e9:.1f} GB, "
                       f"{available_bytes() / 1e9:.1f} GB available)")
    if available_bytes() > 2.2 * size:
        methods["seed_mp"] = ([PYTHON, os.path.join(REFERENCE, "seed_mp.py"), stack, out], None)
    else:
        skipped.append(f"seed_mp (holds the stack twice: {2 * size / 1e9:.1f} GB, "
                       f"{available_bytes() / 1e9:.1f} GB available)")
    rows = {name: [] for name in methods}
    cold = True
    try:
        for _ in range(a.reps):
            for name, (cmd, pid) in methods.items():
                if os.path.exists(out):
                    os.unlink(out)
                shutil.rmtree(store, ignore_errors=True)
                cold = drop_caches() and cold
                rows[name].append(run(cmd, pid))
                if os.path.exists(store):
                    files[name] = sum(len(f) for _, _, f in os.walk(store))
        if os.path.exists(out):
            os.unlink(out)
        shutil.rmtree(store, ignore_errors=True)
        preview = cli + ["preview", "seed.tif", "--op", "gaussian:ksize=5", "--op", "clahe",
                         "--op", "resize:scale=0.5", "--slices", "3", "-o",
                         os.path.join(a.dir, "preview.png"), "--overwrite"]
        # Cold: the 4000 page directories are read from the disk to open the file; then again
        # with them in the page cache (the input open, as a user tuning parameters has it),
        # other slices each time.
        cold = drop_caches() and cold
        preview_cold = run(preview)[0]
        preview_warm = statistics.median(
            run(preview[:-4] + [str(k), *preview[-3:]])[0] for k in (2, 4, 5))
    finally:
        server.stop()
    table(f"{a.shape} uint8 ({size / 1e9:.1f} GB) on {a.dir}, gaussian:ksize=5, file to file, "
          f"median of {a.reps}, page cache {'dropped before each run' if cold else 'warm (not root)'}",
          rows, size / 1e6, ["cp+sync"])
    for s in skipped:
        print(f"  not run: {s}")
    for name, n in files.items():
        print(f"  {name}: {n} files written")
    print(f"\n  stackproc preview of gaussian -> clahe -> resize on 3 slices, through the server: "
          f"{preview_cold:.2f} s from a cold cache (the file's page directories read first), "
          f"{preview_warm:.2f} s with them cached (median of 2, 4 and 5 other slices)")
    if not a.keep:
        os.unlink(stack)


if __name__ == "__main__":
    main()
