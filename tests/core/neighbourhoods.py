#!/usr/bin/python3
"""z-neighbourhoods: the 3-D operations against scipy.ndimage (a reference no one here wrote),
and a pipeline with them making the same bytes in every job kind.

- gaussian3d, mean3d and median3d on uint8, uint16 and float32 stacks (written by tifffile) equal
  scipy.ndimage's gaussian_filter, uniform_filter and median_filter with mode="mirror" (OpenCV's
  BORDER_REFLECT_101) and the same truncate: float32 within 1e-3 relative, integers within one
  grey level (the reference rounded), the median exactly; the first and last planes included.
- A 2-channel OME-TIFF through "median3d -> gaussian3d -> resize": a path job streamed, held in
  memory, run with a window of a few planes, cut in 4 shards (each reading its neighbours'
  planes) and assembled, streamed through stackprocd from the client, and into an OME-Zarr store:
  the same bytes (outputs compared by tests/tools/same_output.py; the store's pixels by zarrita).
- gaussian3d:units=physical on a stack of anisotropic voxels (Fiji's calibration) equals scipy
  with each axis's sigma in voxels, after a resize too; refused on a stack with no voxel size.
- Bad input: a neighbourhood deeper than the stack, one larger than the window: a clear error,
  nothing written, and the server keeps serving.

usage: neighbourhoods.py BUILD_DIR"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.ndimage as nd
import tifffile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools"))
import suite  # noqa: E402
import zarr_read  # noqa: E402
from suite import check, same  # noqa: E402

BUILD = sys.argv[1]
LOCAL = os.path.join(BUILD, "core", "stackproc-local")
TMP = tempfile.mkdtemp(prefix="stackproc-halo-")


def volume(shape, dtype, seed):
    """Smooth structures (blurred blobs) plus Poisson noise, scaled to the type's range."""
    rng = np.random.default_rng(seed)
    blobs = nd.gaussian_filter(rng.random(shape), (0,) * (len(shape) - 3) + (1.5, 4, 4))
    blobs = (blobs - blobs.min()) / (blobs.max() - blobs.min())
    top = {"uint8": 200, "uint16": 40000, "float32": 1000}[dtype]
    noisy = rng.poisson(blobs * top * 0.8 + top * 0.05).astype(np.float64)
    return np.clip(noisy, 0, top).astype(dtype)


def run(inp, out, ops, *extra, ok=True):
    return suite.run(BUILD, inp, out, ops, *extra, ok=ok)


# --- against scipy.ndimage --------------------------------------------------------------------
def references(v):
    f = v.astype(np.float64)
    return {
        "gaussian3d:sigma=1.5,sigma_z=0.8":
            nd.gaussian_filter(f, (0.8, 1.5, 1.5), mode="mirror", truncate=4.0),
        "gaussian3d:sigma=1,sigma_z=2,truncate=2.5":
            nd.gaussian_filter(f, (2, 1, 1), mode="mirror", truncate=2.5),
        "mean3d": nd.uniform_filter(f, 3, mode="mirror"),
        "mean3d:size=5,size_z=3": nd.uniform_filter(f, (3, 5, 5), mode="mirror"),
        "median3d": nd.median_filter(v, 3, mode="mirror"),
        "median3d:size=5": nd.median_filter(v, 5, mode="mirror"),
    }


for dtype in ("uint8", "uint16", "float32"):
    v = volume((11, 45, 61), dtype, 1)
    inp = os.path.join(TMP, f"in-{dtype}.tif")
    tifffile.imwrite(inp, v)
    for op, ref in references(v).items():
        out = os.path.join(TMP, "out.tif")
        run(inp, out, [op])
        got = tifffile.imread(out)
        what = f"{op} on {dtype} equals scipy.ndimage"
        if got.shape != v.shape or got.dtype != v.dtype:
            check(False, f"{what}: {got.shape} {got.dtype}")
        elif op.startswith("median3d"):
            check(np.array_equal(got, ref), f"{what} exactly")
        elif dtype == "float32":
            err = np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)
            check(err.max() <= 1e-3, f"{what} within 1e-3 relative (worst {err.max():.2e})")
        else:
            err = np.abs(got.astype(np.float64) - np.round(ref))
            check(err.max() <= 1, f"{what} within 1 grey level (worst {err.max():.0f})")

# --- gaussian3d in the stack's physical units -----------------------------------------------------
# Voxels of 0.4 (x) x 0.5 (y) x 2.5 (z) micrometres, as Fiji states them: one sigma of 1 um is
# 2.5 pixels along x, 2 along y and 0.4 z-slices.
v = volume((13, 45, 61), "float32", 3)
inp = os.path.join(TMP, "calibrated.tif")
tifffile.imwrite(inp, v, imagej=True, resolution=(1 / 0.4, 1 / 0.5),
                 metadata={"spacing": 2.5, "unit": "um", "axes": "ZYX"})
out = os.path.join(TMP, "physical.tif")
run(inp, out, ["gaussian3d:sigma=1,units=physical"])
ref = nd.gaussian_filter(v.astype(np.float64), (1 / 2.5, 1 / 0.5, 1 / 0.4), mode="mirror")
err = np.abs(tifffile.imread(out) - ref) / np.maximum(np.abs(ref), 1.0)
check(err.max() <= 1e-3, f"gaussian3d:sigma=1,units=physical on 0.4 x 0.5 x 2.5 um voxels equals "
      f"scipy's sigmas (0.4, 2, 2.5) in voxels (worst {err.max():.2e} relative)")
# After a resize the pixels are twice as large: the same distance is half as many pixels.
even = os.path.join(TMP, "calibrated-even.tif")
tifffile.imwrite(even, v[:, :44, :60], imagej=True, resolution=(1 / 0.4, 1 / 0.5),
                 metadata={"spacing": 2.5, "unit": "um", "axes": "ZYX"})
run(even, out, ["resize:scale=0.5", "gaussian3d:sigma=1,sigma_z=5,units=physical"])
halved = os.path.join(TMP, "halved.tif")
run(even, halved, ["resize:scale=0.5"])
ref = nd.gaussian_filter(tifffile.imread(halved).astype(np.float64), (2, 1, 1.25), mode="mirror")
err = np.abs(tifffile.imread(out) - ref) / np.maximum(np.abs(ref), 1.0)
check(err.max() <= 1e-3, f"after resize:scale=0.5 the voxel is 0.8 x 1 um: sigmas (2, 1, 1.25) in "
      f"voxels (worst {err.max():.2e} relative)")
plain = os.path.join(TMP, "in-float32.tif")  # no voxel size stated
refused = os.path.join(TMP, "refused.tif")
p = run(plain, refused, ["gaussian3d:sigma=1,units=physical"], ok=False)
check(p.returncode != 0 and "needs the voxel's size along x, y and z" in p.stderr
      and not os.path.exists(refused),
      f"units=physical on a stack with no voxel size is refused: {p.stderr.strip()}")
p = run(inp, refused, ["gaussian3d:sigma=30,units=physical"], ok=False)
check(p.returncode != 0 and "75 voxels along x" in p.stderr,
      f"a distance of more than 50 voxels is refused: {p.stderr.strip()}")
p = run(inp, refused, ["gaussian3d:sigma=80"], ok=False)
check(p.returncode != 0 and "sigma=80 is not valid in voxels (0.1 to 50" in p.stderr,
      f"in voxels, sigma stays 0.1 to 50: {p.stderr.strip()}")

# --- every job kind, the same bytes -----------------------------------------------------------
data = os.path.join(TMP, "data")
os.mkdir(data)
cz = volume((2, 12, 64, 80), "uint16", 2)
src = os.path.join(data, "in.ome.tif")
tifffile.imwrite(src, cz, ome=True, metadata={"axes": "CZYX"})
ops = ["median3d", "gaussian3d:sigma=1,sigma_z=1.5", "resize:scale=0.5"]
path_out = os.path.join(TMP, "path.tif")
run(src, path_out, ops)
made = tifffile.imread(path_out)
# The per-channel 3-D steps by scipy, the resize by OpenCV's INTER_AREA halving (block means).
expected = []
for c in range(2):
    a = nd.median_filter(cz[c], 3, mode="mirror").astype(np.float64)
    a = np.round(nd.gaussian_filter(a, (1.5, 1, 1), mode="mirror", truncate=4.0))
    a = a.reshape(12, 32, 2, 40, 2).mean(axis=(2, 4))
    expected.append(a)
expected = np.stack(expected)
check(made.shape == (2, 12, 32, 40) and np.abs(made - np.round(expected)).max() <= 1,
      "2 channels: median3d and gaussian3d per channel volume, then resize, as scipy's")

kinds = {
    "held in memory": [path_out.replace("path", "memory"), "--mode", "in-memory"],
    "with a window of a few planes": [path_out.replace("path", "window"), "--window-mib", "1"],
}
for kind, (out, *extra) in kinds.items():
    run(src, out, ops, *extra)
    check(same(path_out, out), f"a path job {kind} makes the streamed job's bytes")
parts = []
for shard in range(4):
    part = os.path.join(TMP, f"part-{shard}.tif")
    run(src, part, ops, "--shards", "4", "--shard", str(shard))
    parts.append(part)
assembled = os.path.join(TMP, "assembled.tif")
subprocess.run([LOCAL, "assemble", "--output", assembled] + parts, check=True, capture_output=True)
check(same(path_out, assembled), "4 shards, each reading its neighbours' planes, assemble into "
      "the whole run's bytes")
store = os.path.join(TMP, "out.ome.zarr")
run(src, store, ops, "--chunks", "1x16x20", "--zarr-shards", "4x32x40")
array, _ = zarr_read.read(store)
check(np.array_equal(array.reshape(made.shape), made), "into an OME-Zarr store: the same pixels "
      "(zarrita)")
store_shards = os.path.join(TMP, "filled.ome.zarr")
run(src, store_shards, ops, "--chunks", "1x16x20", "--zarr-shards", "4x32x40", "--fill-store")
for shard in range(3):
    run(src, store_shards, ops, "--chunks", "1x16x20", "--zarr-shards", "4x32x40", "--fill-store",
        "--shards", "3", "--shard", str(shard))
array, _ = zarr_read.read(store_shards)
check(np.array_equal(array.reshape(made.shape), made),
      "a store filled by 3 shards on its files: the same pixels")

# --- bad input -------------------------------------------------------------------------------
deep = os.path.join(TMP, "deep.tif")
p = run(src, deep, ["gaussian3d:sigma=4"], ok=False)
check(p.returncode != 0 and "needs 16 z-slices on each side of a plane" in p.stderr
      and "the stack has 12 z-slices per volume" in p.stderr and not os.path.exists(deep),
      f"a sigma too large for the stack's depth is refused, nothing written: {p.stderr.strip()}")
big = os.path.join(TMP, "big.tif")
tifffile.imwrite(big, volume((6, 512, 512), "uint16", 3))
wide = os.path.join(TMP, "wide.tif")
p = run(big, wide, ["median3d:size=5"], "--window-mib", "1", ok=False)
check(p.returncode != 0 and "more than the run's window of 1 MiB" in p.stderr
      and not os.path.exists(wide),
      f"a neighbourhood larger than the window is refused, nothing written: {p.stderr.strip()}")

# --- streamed through stackprocd ---------------------------------------------------------------
with suite.server(BUILD, data) as (target, cli):
    streamed = os.path.join(TMP, "streamed.tif")
    p = cli("process", src, "-o", streamed, *sum((["--op", op] for op in ops), []))
    check(p.returncode == 0 and same(path_out, streamed),
          f"streamed through the server: the path job's bytes {p.stderr.strip()}")
    p = cli("submit", "--input", "in.ome.tif", "--output", "job.tif", "--wait",
            *sum((["--op", op] for op in ops), []))
    check(p.returncode == 0 and same(path_out, os.path.join(data, "job.tif")),
          f"a server's path job: the same bytes {p.stderr.strip()}")
    refused = os.path.join(TMP, "refused.tif")
    p = cli("process", src, "-o", refused, "--op", "median3d:size=5", "--op", "gaussian3d:sigma=4")
    check(p.returncode != 0 and "needs 16 z-slices" in p.stderr and not os.path.exists(refused),
          f"the server refuses a neighbourhood deeper than the stack: {p.stderr.strip()}")
    # From Python: an array of (c, z, y, x) streamed, the path job's pixels; the refusal's code.
    sys.path.insert(0, os.path.join(BUILD, "python"))
    import stackproc  # noqa: E402
    from stackproc import errors  # noqa: E402
    client = stackproc.Client(target)
    result = client.process(cz, ops, axes="CZYX")
    check(np.array_equal(np.asarray(result).reshape(made.shape), made),
          "the Python client's array: the path job's pixels")
    try:
        client.process(cz, ["gaussian3d:sigma=4"], axes="CZYX")
        check(False, "the Python client's too deep neighbourhood is refused")
    except errors.InvalidArgument as e:
        check("needs 16 z-slices" in str(e), f"refused from Python as InvalidArgument: {e}")
    check(cli("health").stdout.strip() == "SERVING", "and keeps serving")

suite.finish()
