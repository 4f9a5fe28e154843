#!/usr/bin/python3
"""Reads an array of a Zarr store with a reader no one here wrote: Zarr v2 (NGFF 0.4) with
Debian's zarr-python, Zarr v3 (NGFF 0.5, sharded or not) with zarrita under node
(tests/tools/zarrita: installed from the npm registry on first use, into
$STACKPROC_ZARRITA_DIR or ~/.cache/stackproc/zarrita-VERSION).

As a module: read(store, path="0") -> (numpy array, info), where info has "shape", "chunks" and
"group" (the group's attributes); write(store, data, dimension_names, attributes) makes an
NGFF 0.5 image of a uint16 array with zarrita (its array "0", a chunk per plane). As a command:
  zarr_read.py same STORE TIFF [PATH]   exit 0 when the array at PATH (default "0") holds the
                                        TIFF's pixels (tifffile), 1 (saying how not) otherwise
  zarr_read.py install                  installs zarrita (tests/run.sh does, before the tests)
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy

HERE = os.path.dirname(os.path.realpath(__file__))
PACKAGE = os.path.join(HERE, "zarrita", "package.json")


def zarrita_dir():
    version = json.load(open(PACKAGE))["dependencies"]["zarrita"]
    default = os.path.join(os.path.expanduser("~"), ".cache", "stackproc", f"zarrita-{version}")
    return os.environ.get("STACKPROC_ZARRITA_DIR", default)


def install():
    """The folder whose node_modules hold zarrita, installed once (under a lock: tests run in
    parallel)."""
    where = zarrita_dir()
    os.makedirs(where, exist_ok=True)
    with open(os.path.join(where, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(where, "node_modules", "zarrita", "package.json")):
            shutil.copy(PACKAGE, os.path.join(where, "package.json"))
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=where,
                           check=True, timeout=600)
        for script in ("read.mjs", "write.mjs"):
            shutil.copy(os.path.join(HERE, "zarrita", script), os.path.join(where, script))
    return where


def read(store, path="0"):
    if not os.path.exists(os.path.join(store, "zarr.json")):
        import zarr  # Zarr v2: Debian's zarr-python 2
        group = zarr.open_group(store, mode="r")
        array = group[path]
        return array[...], {"shape": list(array.shape), "chunks": list(array.chunks),
                            "group": dict(group.attrs)}
    where = install()
    with tempfile.NamedTemporaryFile(suffix=".raw") as raw:
        p = subprocess.run(["node", os.path.join(where, "read.mjs"), os.path.abspath(store), path,
                            raw.name], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"zarrita could not read {store}/{path}: {p.stderr.strip()}")
        info = json.loads(p.stdout.strip().splitlines()[-1])
        dtype = {"uint8": "<u1", "uint16": "<u2", "float32": "<f4"}[info["dtype"]]
        return numpy.fromfile(raw.name, dtype=dtype).reshape(info["shape"]), info


def write(store, data, dimension_names, attributes):
    where = install()
    with tempfile.NamedTemporaryFile(suffix=".raw") as raw:
        numpy.ascontiguousarray(data, dtype="<u2").tofile(raw.name)
        spec = {"shape": list(data.shape), "dimension_names": list(dimension_names),
                "attributes": attributes}
        p = subprocess.run(["node", os.path.join(where, "write.mjs"), os.path.abspath(store),
                            raw.name, json.dumps(spec)], capture_output=True, text=True,
                           timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"zarrita could not write {store}: {p.stderr.strip()}")


def main():
    if sys.argv[1:] == ["install"]:
        print(f"zarr_read: zarrita in {install()}")
        return
    if len(sys.argv) < 4 or sys.argv[1] != "same":
        sys.exit(__doc__)
    import tifffile
    store, tiff = sys.argv[2], sys.argv[3]
    got, _ = read(store, sys.argv[4] if len(sys.argv) > 4 else "0")
    want = tifffile.imread(tiff)
    if got.shape != want.shape or not numpy.array_equal(got, want):
        print(f"{store}: {got.shape} {got.dtype}, not the pixels of {tiff} ({want.shape} "
              f"{want.dtype})", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
