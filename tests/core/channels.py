#!/usr/bin/python3
"""Channels and time points through stackproc-local, against tools no one here wrote.

Inputs are written by tifffile (OME-TIFF CZYX, TCZYX and ZCYX, ImageJ hyperstacks); every output
is read back by tifffile, whose series must have the input's axes and shape and whose log must
stay silent (it warns when OME-XML counts disagree with the pages). Pixels are compared with a
direct OpenCV call per plane, per-channel statistics with numpy on that channel alone. Files that
lie about their planes, and operations naming a channel the stack lacks, must be refused with
nothing written.

usage: channels.py BUILD_DIR"""
import io
import logging
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import tifffile

BUILD = sys.argv[1]
LOCAL = os.path.join(BUILD, "core", "stackproc-local")
TMP = tempfile.mkdtemp(prefix="stackproc-channels-")
H, W = 48, 64

log = io.StringIO()
logging.getLogger("tifffile").addHandler(logging.StreamHandler(log))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def stack(shape, seed):
    """uint16 planes that differ from each other, channel by channel in range (so statistics of
    both channels together differ from either's)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1000, shape + (H, W)).astype(np.float64)
    index = np.arange(int(np.prod(shape))).reshape(shape)
    a += (index * 97 % 1000)[..., None, None]
    return a.astype(np.uint16)


def run(inp, out, *ops, expect_ok=True):
    args = [LOCAL, "run", "--input", inp, "--output", out, "--overwrite"]
    for op in ops:
        args += ["--op", op]
    p = subprocess.run(args, capture_output=True, text=True)
    if expect_ok and p.returncode != 0:
        raise SystemExit(f"stackproc-local failed: {p.stderr}")
    return p


def read(path):
    log.truncate(0)
    log.seek(0)
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.axes, series.asarray(), tif.imagej_metadata, log.getvalue()


def gaussian(plane, sigma):
    return cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


def per_plane(data, f):
    flat = data.reshape((-1, H, W))
    return np.stack([f(p) for p in flat]).reshape(data.shape)


def ome_round_trip(axes, shape, seed):
    data = stack(shape, seed)
    inp, out = f"{TMP}/{axes}.ome.tif", f"{TMP}/{axes}_out.ome.tif"
    tifffile.imwrite(inp, data, ome=True, photometric="minisblack", metadata={"axes": axes})
    run(inp, out, "gaussian:sigma=1.5")
    got_axes, got, _, warnings = read(out)
    check(got_axes == axes and got.shape == data.shape,
          f"OME-TIFF {axes}: tifffile reads {got_axes} {got.shape}, wrote {axes} {data.shape}")
    check(warnings == "", f"OME-TIFF {axes}: tifffile has no warning ({warnings.strip()!r})")
    check(np.array_equal(got, per_plane(data, lambda p: gaussian(p, 1.5))),
          f"OME-TIFF {axes}: every plane is cv2.GaussianBlur of its own")


ome_round_trip("CZYX", (2, 10), 1)
ome_round_trip("TCZYX", (2, 3, 4), 2)
ome_round_trip("ZCYX", (5, 2), 3)

# ImageJ hyperstack: channels fastest, its description's counts kept.
data = stack((3, 4, 2), 4)  # T, Z, C
tifffile.imwrite(f"{TMP}/hyper.tif", data, imagej=True, metadata={"axes": "TZCYX"})
run(f"{TMP}/hyper.tif", f"{TMP}/hyper_out.tif", "gaussian:sigma=1.5")
axes, got, ij, warnings = read(f"{TMP}/hyper_out.tif")
check(axes == "TZCYX" and got.shape == data.shape and ij.get("channels") == 2 and
      ij.get("frames") == 3 and ij.get("slices") == 4,
      f"ImageJ hyperstack: {axes} {got.shape}, channels/frames/slices kept ({ij})")
check(np.array_equal(got, per_plane(data, lambda p: gaussian(p, 1.5))),
      "ImageJ hyperstack: every plane is cv2.GaussianBlur of its own")

# Per-channel statistics: normalize over the stack takes each channel's own percentiles.
data = stack((2, 6), 5)
data[1] = data[1] // 4 + 3000  # a dim channel next to a bright one
tifffile.imwrite(f"{TMP}/two.ome.tif", data, ome=True, photometric="minisblack",
                 metadata={"axes": "CZYX"})


def stretched(channel, low, high):
    flat = np.sort(channel.ravel())
    lo = float(flat[int(np.floor(low / 100 * (flat.size - 1)))])
    hi = float(flat[int(np.floor(high / 100 * (flat.size - 1)))])
    alpha = 65535.0 / (hi - lo)
    return np.clip(np.rint(channel * alpha - lo * alpha), 0, 65535).astype(np.uint16)


run(f"{TMP}/two.ome.tif", f"{TMP}/norm.ome.tif", "normalize:low=1,high=99,scope=stack")
_, got, _, _ = read(f"{TMP}/norm.ome.tif")
for c in range(2):
    want = stretched(data[c], 1, 99)
    diff = np.abs(got[c].astype(int) - want.astype(int)).max()
    check(diff <= 1, f"normalize scope=stack: channel {c} is its own percentile stretch "
                     f"(numpy on that channel alone; largest difference {diff})")
together = stretched(data, 1, 99)
check(not np.array_equal(got, together), "normalize scope=stack: not one histogram of both")

# Per time point: each (t, c) z-stack its own.
data = stack((2, 2, 3), 6)
tifffile.imwrite(f"{TMP}/tc.ome.tif", data, ome=True, photometric="minisblack",
                 metadata={"axes": "TCZYX"})
run(f"{TMP}/tc.ome.tif", f"{TMP}/tc_norm.ome.tif", "normalize:low=2,high=98,scope=timepoint")
_, got, _, _ = read(f"{TMP}/tc_norm.ome.tif")
diff = max(np.abs(got[t, c].astype(int) - stretched(data[t, c], 2, 98).astype(int)).max()
           for t in range(2) for c in range(2))
check(diff <= 1, f"normalize scope=timepoint: each (t, c) z-stack its own (largest diff {diff})")

# Per-channel parameters and steps limited to channels.
data = stack((2, 6), 7)
run(f"{TMP}/two.ome.tif", f"{TMP}/own.ome.tif", "gaussian:sigma=1,c1.sigma=3")
_, got, _, _ = read(f"{TMP}/own.ome.tif")
src = tifffile.imread(f"{TMP}/two.ome.tif")
check(np.array_equal(got[0], per_plane(src[0], lambda p: gaussian(p, 1))) and
      np.array_equal(got[1], per_plane(src[1], lambda p: gaussian(p, 3))),
      "gaussian:sigma=1,c1.sigma=3: channel 0 with sigma 1, channel 1 with sigma 3")
run(f"{TMP}/two.ome.tif", f"{TMP}/only.ome.tif", "gaussian:sigma=2,channels=1", "invert")
_, got, _, _ = read(f"{TMP}/only.ome.tif")
check(np.array_equal(got[0], 65535 - src[0]) and
      np.array_equal(got[1], 65535 - per_plane(src[1], lambda p: gaussian(p, 2))),
      "gaussian:channels=1 -> invert: channel 0 only inverted, channel 1 blurred then inverted")


# Refusals: nothing written, the reason named.
def refused(inp, op, words, what):
    out = f"{TMP}/refused.tif"
    if os.path.exists(out):
        os.remove(out)
    p = run(inp, out, op, expect_ok=False)
    check(p.returncode != 0 and all(w in p.stderr for w in words) and not os.path.exists(out),
          f"{what}: refused naming {words} ({p.stderr.strip()[:160]!r}), nothing written")


refused(f"{TMP}/two.ome.tif", "gaussian:c5.sigma=2", ["channel 5", "2 channels"],
        "a channel the stack lacks")
refused(f"{TMP}/two.ome.tif", "resize:scale=0.5,channels=0", ["keep the slices"],
        "a resize limited to one channel")
pixels = ('<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="64" SizeY="48" '
          'SizeZ="10" SizeC="2" SizeT="1">{}</Pixels>')
ome = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
       'Schemas/OME/2016-06"><Image ID="Image:0">{}</Image></OME>')
lying = stack((15,), 8)
tifffile.imwrite(f"{TMP}/lies.tif", lying, description=ome.format(pixels.format("")),
                 metadata=None)
refused(f"{TMP}/lies.tif", "invert", ["SizeC=2", "SizeZ=10", "20 planes", "15"],
        "OME-XML counts that the pages do not make")
tifffile.imwrite(f"{TMP}/order.tif", stack((20,), 9), metadata=None, description=ome.format(
    pixels.format('<TiffData IFD="0" FirstC="1" PlaneCount="10"/>'
                  '<TiffData IFD="10" FirstC="0" PlaneCount="10"/>')))
refused(f"{TMP}/order.tif", "invert", ["TiffData", "DimensionOrder"],
        "OME-XML TiffData out of DimensionOrder")

if failures:
    print(f"{len(failures)} failed")
    sys.exit(1)
print("all passed")
