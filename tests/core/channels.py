#!/usr/bin/python3
"""Channels and time points through stackproc-local, against tools no one here wrote.

Inputs are written by tifffile (OME-TIFF CZYX, TCZYX and ZCYX, ImageJ hyperstacks, RGB and
n-sample pages, chunky and planar); every output is read back by tifffile, whose series must have
the input's axes and shape and whose log must stay silent (it warns when OME-XML counts disagree with the pages). Pixels are compared with a
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools"))
import zarr_read  # noqa: E402

BUILD = sys.argv[1]
LOCAL = os.path.join(BUILD, "core", "stackproc-local")
SAME_OUTPUT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools",
                           "same_output.py")
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

# Debian's ImageJ (the reader behind Fiji's File > Open), under Xvfb: the output is a
# hyperstack of 2 channels, 4 slices and 3 frames, each plane where tifffile has it.
MACRO = r'''
setBatchMode(true);
open(getArgument());
getDimensions(w, h, channels, slices, frames);
print("IJDIMS " + channels + " " + slices + " " + frames);
for (t = 1; t <= frames; t++) for (z = 1; z <= slices; z++) for (c = 1; c <= channels; c++) {
  Stack.setPosition(c, z, t);
  getRawStatistics(n, mean);
  print("IJMEAN " + (t - 1) + " " + (z - 1) + " " + (c - 1) + " " + d2s(mean, 6));
}
'''
with open(f"{TMP}/dims.ijm", "w") as f:
    f.write(MACRO)
ij_out = subprocess.run(["timeout", "300", "xvfb-run", "-a", "java", "-Xmx512m", "-jar",
                         "/usr/share/java/ij.jar", "-batch", f"{TMP}/dims.ijm",
                         f"{TMP}/hyper_out.tif"], capture_output=True, text=True).stdout
dims = [l.split()[1:] for l in ij_out.splitlines() if l.startswith("IJDIMS")]
means = {tuple(map(int, l.split()[1:4])): float(l.split()[4])
         for l in ij_out.splitlines() if l.startswith("IJMEAN")}
check(dims == [["2", "4", "3"]] and len(means) == 24 and all(
    abs(means[(t, z, c)] - got[t, z, c].mean()) < 1e-3
    for t in range(3) for z in range(4) for c in range(2)),
      f"ImageJ opens the hyperstack output as 2 channels x 4 slices x 3 frames, each plane's "
      f"mean tifffile's ({dims})")

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


# A job cut in z-ranges (a cluster's shards): each range knows which channel its planes are,
# statistics gathered apart add up per channel, and the assembled shards equal the whole run.
src = tifffile.imread(f"{TMP}/two.ome.tif")  # (2, 6, H, W): planes 0-5 channel 0, 6-11 channel 1
for ops in (["gaussian:sigma=2,channels=1"], ["normalize:low=1,high=99,scope=stack"]):
    whole = f"{TMP}/whole.ome.tif"
    run(f"{TMP}/two.ome.tif", whole, *ops)
    cuts = [(0, 4), (4, 9), (9, 12)]  # ranges across the channels' boundary
    extra = []
    if "scope=stack" in ops[0]:
        for i, (a, b) in enumerate(cuts):
            subprocess.run([LOCAL, "stats", "--input", f"{TMP}/two.ome.tif", "--op", ops[0],
                            "--output", f"{TMP}/s{i}.stats", "--z-range", f"{a}:{b}"],
                           check=True, capture_output=True)
        extra = sum((["--stats", f"{TMP}/s{i}.stats"] for i in range(len(cuts))), [])
    shards = []
    for i, (a, b) in enumerate(cuts):
        shard = f"{TMP}/shard{i}.tif"
        subprocess.run([LOCAL, "run", "--input", f"{TMP}/two.ome.tif", "--output", shard,
                        "--overwrite", "--z-range", f"{a}:{b}", *extra] +
                       sum((["--op", o] for o in ops), []), check=True, capture_output=True)
        shards.append(shard)
    subprocess.run([LOCAL, "assemble", "--output", f"{TMP}/assembled.ome.tif", "--overwrite",
                    *shards], check=True, capture_output=True)
    axes, got, _, warnings = read(f"{TMP}/assembled.ome.tif")
    check(axes == "CZYX" and warnings == "" and np.array_equal(got, read(whole)[1]),
          f"{ops[0]} in z-ranges {cuts}, assembled: {axes}, equal to the whole run")

# An ImageJ hyperstack in 3 shards (--shards 3 --shard I), assembled: the whole run's file.
run(f"{TMP}/hyper.tif", f"{TMP}/hyper_whole.tif", "gaussian:sigma=1,c1.sigma=2")
for i in range(3):
    subprocess.run([LOCAL, "run", "--input", f"{TMP}/hyper.tif", "--output", f"{TMP}/hs{i}.tif",
                    "--overwrite", "--shards", "3", "--shard", str(i), "--op",
                    "gaussian:sigma=1,c1.sigma=2"], check=True, capture_output=True)
p = subprocess.run([LOCAL, "assemble", "--output", f"{TMP}/hyper_asm.tif", "--overwrite"] +
                   [f"{TMP}/hs{i}.tif" for i in range(3)], capture_output=True, text=True)
axes, got, ij, _ = read(f"{TMP}/hyper_asm.tif") if p.returncode == 0 else ("", None, {}, "")
check(axes == "TZCYX" and np.array_equal(got, read(f"{TMP}/hyper_whole.tif")[1]),
      f"an ImageJ hyperstack in 3 shards assembles into the whole run ({axes}; {p.stderr[-150:]!r})")

# A preview of a few planes of a 2-channel stack: each plane with its own channel's op.
p = subprocess.run([LOCAL, "preview", f"{TMP}/two.ome.tif", "--op", "gaussian:sigma=2,channels=1",
                    "-o", f"{TMP}/preview.raw", "--format", "raw", "-z", "1,7", "--overwrite"],
                   capture_output=True)
check(p.returncode == 0, f"a preview of planes 1 and 7 of a 2-channel stack runs ({p.stderr[-200:]!r})")
p = subprocess.run([LOCAL, "preview", f"{TMP}/two.ome.tif", "--op", "invert", "-o",
                    f"{TMP}/preview.png", "--slices", "2", "--overwrite"], capture_output=True,
                   text=True)
check(p.returncode == 0 and "(c=0 z=1, c=1 z=1, c=0 z=4, c=1 z=4)" in p.stdout,
      f"a default preview of 2 channels shows each z-slice of both ({p.stdout.strip()!r})")
# --channels: only the chosen channel's planes, labelled by its number in the input.
p = subprocess.run([LOCAL, "preview", f"{TMP}/two.ome.tif", "--op", "invert", "--channels", "1",
                    "-o", f"{TMP}/preview1.raw", "--format", "raw", "--slices", "2",
                    "--overwrite"], capture_output=True, text=True)
raw = np.fromfile(f"{TMP}/preview1.raw", "<u2") if p.returncode == 0 else np.zeros(0)
two = tifffile.imread(f"{TMP}/two.ome.tif")  # C, Z, Y, X
check(p.returncode == 0 and np.array_equal(raw, (65535 - two[1, [1, 4]]).ravel()),
      f"a preview of --channels 1: channel 1's z=1 and z=4 inverted ({p.stdout.strip()[:120]!r})")
p = subprocess.run([LOCAL, "preview", f"{TMP}/two.ome.tif", "--op", "invert", "--channels", "1",
                    "-o", f"{TMP}/preview1.png", "--slices", "2", "--overwrite"],
                   capture_output=True, text=True)
check(p.returncode == 0 and "(c=1 z=1, c=1 z=4)" in p.stdout,
      f"its montage labels the planes by the input's channel ({p.stdout.strip()!r})")
p = subprocess.run([LOCAL, "preview", f"{TMP}/two.ome.tif", "--channels", "2", "-o",
                    f"{TMP}/refused.png"], capture_output=True, text=True)
check(p.returncode != 0 and "channel 2" in p.stderr and not os.path.exists(f"{TMP}/refused.png"),
      f"a preview of a channel the stack lacks: refused ({p.stderr.strip()!r})")

# Bio-Formats names the file itself in every TiffData's UUID: still one file.
pages = stack((8,), 10)
bf = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/'
      'OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" '
      f'Type="uint16" SizeX="{W}" SizeY="{H}" SizeZ="4" SizeC="2" SizeT="1">' +
      ''.join(f'<TiffData FirstC="{p // 4}" FirstZ="{p % 4}" IFD="{p}" PlaneCount="1">'
              '<UUID FileName="bf.ome.tif">urn:uuid:1</UUID></TiffData>' for p in range(8)) +
      '</Pixels></Image></OME>')
tifffile.imwrite(f"{TMP}/bf.ome.tif", pages, description=bf, metadata=None)
run(f"{TMP}/bf.ome.tif", f"{TMP}/bf_out.ome.tif", "invert:channels=1")
_, got, _, _ = read(f"{TMP}/bf_out.ome.tif")
check(np.array_equal(got.reshape(8, H, W)[:4], pages[:4]) and
      np.array_equal(got.reshape(8, H, W)[4:], 65535 - pages[4:]),
      "a Bio-Formats OME-TIFF (UUID FileName in each TiffData): channel 1 inverted, 0 kept")

# OME-Zarr: a c, z, y, x image (zarr-python, chunks holding both channels and 3 z each) in,
# stores out with t and c axes and omero channels, read back by zarr-python.
import zarr  # noqa: E402

data = stack((2, 7), 11)
store = zarr.open_group(f"{TMP}/in.zarr", mode="w")
store.create_dataset("0", data=data, chunks=(2, 3, 32, 40), compressor=None)
store.attrs["multiscales"] = [{
    "version": "0.4", "datasets": [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": [1, 2.0, 0.5, 0.5]}]}],
    "axes": [{"name": "c", "type": "channel"}, {"name": "z", "type": "space", "unit": "micrometer"},
             {"name": "y", "type": "space", "unit": "micrometer"},
             {"name": "x", "type": "space", "unit": "micrometer"}]}]
store.attrs["omero"] = {"channels": [{"label": "DAPI", "color": "0000FF", "window": {
    "start": 100, "end": 4000, "min": 0, "max": 65535}}, {"label": "GFP", "color": "00FF00"}]}
run(f"{TMP}/in.zarr", f"{TMP}/from_zarr.ome.tif", "gaussian:sigma=1,c1.sigma=2")
axes, got, _, warnings = read(f"{TMP}/from_zarr.ome.tif")
check(axes == "CZYX" and warnings == "" and
      np.array_equal(got[0], per_plane(data[0], lambda p: gaussian(p, 1))) and
      np.array_equal(got[1], per_plane(data[1], lambda p: gaussian(p, 2))),
      f"OME-Zarr c,z,y,x (chunks across channels) -> OME-TIFF: {axes}, each channel its sigma")
with tifffile.TiffFile(f"{TMP}/from_zarr.ome.tif") as tif:
    names = [c.get("Name") for c in tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
             ["Channel"]]
check(names == ["DAPI", "GFP"], f"omero channel labels become OME Channel names ({names})")


def zarr_out(inp, name, ops, *flags):
    out = f"{TMP}/{name}.ome.zarr"
    args = [LOCAL, "run", "--input", inp, "--output", out, "--overwrite", *flags]
    for op in ops:
        args += ["--op", op]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"stackproc-local failed: {p.stderr}")
    group = Store(out)
    ms = group.attrs["multiscales"][0]
    return group, [a["name"] for a in ms["axes"]], ms


class Store:
    """An OME-Zarr output as its readers see it: NGFF 0.4 through zarr-python, 0.5 through
    zarrita (tests/tools/zarr_read.py); attrs the image's (0.5's "ome" attributes)."""
    def __init__(self, path):
        self.path = path
        _, info = zarr_read.read(path, "0")
        self.attrs = info["group"].get("ome", info["group"])

    def __getitem__(self, level):
        return zarr_read.read(self.path, level)[0]


# NGFF 0.4 (zarr-python), and 0.5 for the others (zarrita).
group, names, ms = zarr_out(f"{TMP}/in.zarr", "roundtrip", ["invert"], "--chunks", "3x32x32",
                            "--zarr-format", "2")
check(names == ["c", "z", "y", "x"] and np.array_equal(group["0"][:], 65535 - data) and
      [c["label"] for c in group.attrs["omero"]["channels"]] == ["DAPI", "GFP"] and
      ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1, 2.0, 0.5, 0.5],
      f"OME-Zarr -> OME-Zarr in z-chunks of 3: axes {names}, pixels, omero labels, scale")
window = group.attrs["omero"]["channels"][0].get("window", {})
check((window.get("start"), window.get("end")) == (100, 4000) and
      (window.get("min"), window.get("max")) == (0, 65535),
      f"a step that keeps the pixel type keeps the display window, min and max the type's "
      f"({window})")
group, names, ms = zarr_out(f"{TMP}/in.zarr", "converted", ["convert:to=uint8"])
check(all("window" not in c for c in group.attrs["omero"]["channels"]),
      f"a convert to uint8 drops the uint16 display window, which is in another type's values "
      f"({group.attrs['omero']['channels']})")
data = stack((3, 4, 2), 12)  # T, Z, C: an ImageJ hyperstack, planes channel fastest
tifffile.imwrite(f"{TMP}/hyper2.tif", data, imagej=True, metadata={"axes": "TZCYX"})
group, names, ms = zarr_out(f"{TMP}/hyper2.tif", "hyper", ["invert"], "--pyramid", "1")
want = 65535 - data.transpose(0, 2, 1, 3, 4)  # t, c, z
level1 = group["1"][:]
# Level 1: 2x2x2 means (z is halved too: its voxels are as long as they are wide).
mean = want.reshape(3, 2, 2, 2, H // 2, 2, W // 2, 2).mean(axis=(3, 5, 7))
check(names == ["t", "c", "z", "y", "x"] and np.array_equal(group["0"][:], want) and
      level1.shape[:2] == (3, 2) and np.abs(level1.astype(float) - mean).max() <= 1,
      f"ImageJ hyperstack (CZT) -> OME-Zarr t,c,z with a pyramid level: {names}, level 1 "
      f"{level1.shape}")

# An ImageJ hyperstack's channel colours and display ranges (the LUTs and Ranges of its
# IJMetadata, as tifffile writes them for Fiji) go through: into an ImageJ output's (laid out by
# hand, and through libtiff), and into an OME-Zarr store's omero channels.
def ramp(rgb):
    return np.array([np.arange(256) * v // 255 for v in rgb], np.uint8)


luts = [ramp((0, 255, 0)), ramp((255, 0, 255))]
data = stack((3, 2), 19)  # Z, C: ImageJ's order
tifffile.imwrite(f"{TMP}/luts.tif", data, imagej=True,
                 metadata={"axes": "ZCYX", "LUTs": luts, "Ranges": (10.0, 900.0, 20.0, 1800.0)})
for codec in ("none", "deflate"):
    out = f"{TMP}/luts_{codec}.tif"
    p = subprocess.run([LOCAL, "run", "--input", f"{TMP}/luts.tif", "--output", out,
                        "--overwrite", "--op", "invert", "--compression", codec],
                       capture_output=True, text=True)
    axes, got, ij, warnings = read(out) if p.returncode == 0 else ("", None, {}, p.stderr)
    check(axes == "ZCYX" and warnings == "" and np.array_equal(got, 65535 - data) and
          np.array_equal(np.asarray(ij.get("LUTs")), np.asarray(luts)) and
          tuple(ij.get("Ranges", ())) == (10.0, 900.0, 20.0, 1800.0),
          f"ImageJ LUTs and Ranges -> an ImageJ hyperstack ({codec}) keeps them "
          f"({ij.get('Ranges')}, {warnings})")
# ImageJ itself: each channel's LUT ends at its colour, and its display range is the input's.
with open(f"{TMP}/luts.ijm", "w") as f:
    f.write(r'''
setBatchMode(true);
open(getArgument());
getDimensions(w, h, channels, slices, frames);
for (c = 1; c <= channels; c++) {
  Stack.setChannel(c);
  getLut(r, g, b);
  getMinAndMax(low, high);
  print("IJLUT " + r[255] + " " + g[255] + " " + b[255] + " " + low + " " + high);
}
''')
for codec in ("none", "deflate"):
    ij_out = subprocess.run(["timeout", "300", "xvfb-run", "-a", "java", "-Xmx512m", "-jar",
                             "/usr/share/java/ij.jar", "-batch", f"{TMP}/luts.ijm",
                             f"{TMP}/luts_{codec}.tif"], capture_output=True, text=True).stdout
    seen = [l.split()[1:] for l in ij_out.splitlines() if l.startswith("IJLUT")]
    check(seen == [["0", "255", "0", "10", "900"], ["255", "0", "255", "20", "1800"]],
          f"ImageJ opens the output ({codec}) with the channels' colours and ranges ({seen})")
# In shards, assembled: the whole run's bytes, the LUTs and Ranges too (the shards keep the whole
# stack's metadata).
for i in range(2):
    subprocess.run([LOCAL, "run", "--input", f"{TMP}/luts.tif", "--output", f"{TMP}/ls{i}.tif",
                    "--overwrite", "--shards", "2", "--shard", str(i), "--op", "invert",
                    "--compression", "deflate"], check=True, capture_output=True)
subprocess.run([LOCAL, "assemble", "--output", f"{TMP}/luts_asm.tif", "--overwrite",
                f"{TMP}/ls0.tif", f"{TMP}/ls1.tif"], check=True, capture_output=True)
p = subprocess.run([sys.executable, SAME_OUTPUT, f"{TMP}/luts_deflate.tif", f"{TMP}/luts_asm.tif",
                    "--differ", "time,executor,input.name"], capture_output=True, text=True)
check(p.returncode == 0, f"an ImageJ hyperstack with LUTs in 2 shards assembles into the whole "
      f"run's bytes ({(p.stdout + p.stderr)[-200:]!r})")
group, names, ms = zarr_out(f"{TMP}/luts.tif", "luts", ["invert"])
chans = group.attrs["omero"]["channels"]
check([c.get("color") for c in chans] == ["00FF00", "FF00FF"] and
      [(c["window"]["start"], c["window"]["end"]) for c in chans] == [(10, 900), (20, 1800)],
      f"ImageJ LUTs and Ranges -> omero colours and windows ({chans})")

# A plane folder of a stack of time points and channels: one file per (t, c, z), named so.
data = tifffile.imread(f"{TMP}/TCZYX.ome.tif")  # (2, 3, 4)
run(f"{TMP}/TCZYX.ome.tif", f"{TMP}/tc_planes/", "invert")
names = sorted(os.listdir(f"{TMP}/tc_planes"))
want = sorted([f"t{t}_c{c}_z{z:04d}.tif" for t in range(2) for c in range(3) for z in range(4)] +
              ["stackproc.json"])  # and what made them
check(names == want and all(
    np.array_equal(tifffile.imread(f"{TMP}/tc_planes/t{t}_c{c}_z{z:04d}.tif"),
                   65535 - data[t, c, z]) for t in range(2) for c in range(3) for z in range(4)),
      f"a plane folder names each plane by t, c and z ({names[:2]}...)")
run(f"{TMP}/tc_planes/", f"{TMP}/tc_back.ome.tif", "invert")
axes, got, _, warnings = read(f"{TMP}/tc_back.ome.tif")
check(axes == "TCZYX" and warnings == "" and np.array_equal(got, data),
      f"that folder read back: its names say 2 time points and 3 channels ({axes} {got.shape})")
os.remove(f"{TMP}/tc_planes/t1_c0_z0002.tif")
p = subprocess.run([LOCAL, "run", "--input", f"{TMP}/tc_planes/", "--output", f"{TMP}/gap.tif"],
                   capture_output=True, text=True)
check(p.returncode != 0 and "missing" in p.stderr and not os.path.exists(f"{TMP}/gap.tif"),
      f"a plane missing from a folder named by t and c: refused ({p.stderr.strip()[-140:]!r})")

# A z-range of a stack of channels is not a store of its own: refused, nothing written.
p = subprocess.run([LOCAL, "run", "--input", f"{TMP}/two.ome.tif", "--output", f"{TMP}/zr.zarr",
                    "--z-range", "0:7"], capture_output=True, text=True)
check(p.returncode != 0 and "whole time points and channels" in p.stderr and
      not os.path.exists(f"{TMP}/zr.zarr"), f"a z-range of 2 channels to OME-Zarr: refused "
      f"({p.stderr.strip()[-120:]!r})")

# Display settings of the wrong type, and an axis of another type with one element, are read.
store = zarr.open_group(f"{TMP}/odd.zarr", mode="w")
store.create_dataset("0", data=stack((2, 3), 14)[:, None], chunks=(1, 1, 3, 48, 64))
store.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}], "axes": [
    {"name": "c", "type": "channel"}, {"name": "angle", "type": "angle"},
    {"name": "z", "type": "space"}, {"name": "y", "type": "space"},
    {"name": "x", "type": "space"}]}]
store.attrs["omero"] = {"channels": [{"label": None, "color": 255}, {"label": 7}]}
p = subprocess.run([LOCAL, "run", "--input", f"{TMP}/odd.zarr", "--output", f"{TMP}/odd.tif",
                    "--overwrite"], capture_output=True, text=True)
check(p.returncode == 0 and read(f"{TMP}/odd.tif")[0] == "CZYX",
      f"omero fields of the wrong type and a length-1 'angle' axis are read ({p.stderr[-150:]!r})")

# --channels: only some channels go through; the output says so.
src = tifffile.imread(f"{TMP}/two.ome.tif")
# OME-XML channels, self-closing and not, keep their names when some are chosen.
names3 = {"Name": ["DAPI", "GFP", "RFP"]}
tifffile.imwrite(f"{TMP}/named.ome.tif", stack((3, 2), 15), ome=True, photometric="minisblack",
                 metadata={"axes": "CZYX", "Channel": names3})
for chosen, want_names in (("1", ["GFP"]), ("2+0", ["RFP", "DAPI"])):
    subprocess.run([LOCAL, "run", "--input", f"{TMP}/named.ome.tif", "--output",
                    f"{TMP}/named_out.ome.tif", "--overwrite", "--channels", chosen], check=True,
                   capture_output=True)
    with tifffile.TiffFile(f"{TMP}/named_out.ome.tif") as tif:
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
        channel = pixels["Channel"]
        got_names = [c.get("Name") for c in (channel if isinstance(channel, list) else [channel])]
    check(got_names == want_names and pixels["SizeC"] == len(want_names),
          f"--channels {chosen}: OME Channel names {got_names}, SizeC {pixels['SizeC']}")
p = subprocess.run([LOCAL, "run", "--input", f"{TMP}/two.ome.tif", "--output",
                    f"{TMP}/one.ome.tif", "--overwrite", "--channels", "1", "--op", "invert"],
                   capture_output=True, text=True)
axes, got, _, warnings = read(f"{TMP}/one.ome.tif")
check(p.returncode == 0 and axes == "ZYX" and warnings == "" and
      np.array_equal(got, 65535 - src[1]), f"--channels 1: channel 1 alone ({axes} {got.shape})")
data = stack((2, 3), 13)  # Z, C: a 3-channel hyperstack
tifffile.imwrite(f"{TMP}/three.tif", data, imagej=True, metadata={"axes": "ZCYX"})
p = subprocess.run([LOCAL, "run", "--input", f"{TMP}/three.tif", "--output", f"{TMP}/two_of.tif",
                    "--overwrite", "--channels", "2+0"], capture_output=True, text=True)
axes, got, ij, warnings = read(f"{TMP}/two_of.tif")
check(p.returncode == 0 and axes == "ZCYX" and ij.get("channels") == 2 and
      np.array_equal(got, data[:, [2, 0]]),
      f"--channels 2+0 of an ImageJ hyperstack: channels 2 then 0 ({axes} {got.shape}, {ij})")
group, names, _ = zarr_out(f"{TMP}/three.tif", "two_of", [], "--channels", "2+0")
labels = [c["label"] for c in group.attrs["omero"]["channels"]]
check(names == ["c", "z", "y", "x"] and labels == ["2", "0"] and
      np.array_equal(group["0"][:], data[:, [2, 0]].transpose(1, 0, 2, 3)),
      f"--channels 2+0 of channels without names: labelled by their numbers in the input {labels}")

# Multi-sample TIFFs: each sample is a channel (a page's samples are its channels, stored
# fastest), chunky or planar, striped or tiled, plain or with Deflate's horizontal predictor.
def samples_round_trip(name, data, samples_axis, axes_out, **write):
    """data holds the samples on `samples_axis`; the output must be their planes, one channel
    each, where tifffile says the input has them."""
    inp, out = f"{TMP}/{name}.tif", f"{TMP}/{name}_out.tif"
    tifffile.imwrite(inp, data, **write)
    run(inp, out, "gaussian:sigma=1.5")
    got_axes, got, _, warnings = read(out)
    planes = np.moveaxis(data, samples_axis, -3)  # ..., channel, y, x
    want = per_plane(planes, lambda p: gaussian(p, 1.5))
    check(got_axes == axes_out and warnings == "" and np.array_equal(got.reshape(want.shape), want),
          f"{name}: read as {got.shape} {got_axes} (no warning: {warnings.strip()!r}), each "
          "sample's plane cv2.GaussianBlur of its own")


rgb = stack((4, 3), 13).transpose(0, 2, 3, 1).astype(np.uint8)  # Z, Y, X, S
samples_round_trip("rgb", rgb, -1, "ZCYX", photometric="rgb")
samples_round_trip("rgb_deflate", rgb, -1, "ZCYX", photometric="rgb", compression="zlib",
                   predictor=True)
samples_round_trip("rgb_tiled", rgb, -1, "ZCYX", photometric="rgb", tile=(16, 16))
samples_round_trip("rgb_planar", stack((4, 3), 14), 1, "ZCYX", photometric="rgb",
                   planarconfig="separate")
samples_round_trip("rgba", stack((2, 4), 15).transpose(0, 2, 3, 1), -1, "ZCYX",
                   photometric="rgb", extrasamples=["unassalpha"])
samples_round_trip("five_samples", stack((3, 5), 16), 1, "ZCYX", photometric="minisblack",
                   planarconfig="separate")
samples_round_trip("rgb_tz.ome", stack((2, 4, 3), 17).transpose(0, 1, 3, 4, 2), -1, "TZCYX",
                   photometric="rgb", metadata={"axes": "TZYXS"})
# A folder of RGB planes: each file's description counts its own planes; the output's counts
# are the folder's (3 channels x 4 z), and it reads back.
os.makedirs(f"{TMP}/rgb_planes", exist_ok=True)
for z in range(4):
    tifffile.imwrite(f"{TMP}/rgb_planes/z{z}.tif", rgb[z], photometric="rgb")
run(f"{TMP}/rgb_planes", f"{TMP}/rgb_planes.tif", "invert")
got_axes, got, _, warnings = read(f"{TMP}/rgb_planes.tif")
again = run(f"{TMP}/rgb_planes.tif", f"{TMP}/rgb_planes_again.tif", "invert", expect_ok=False)
check(got_axes == "ZCYX" and warnings == "" and
      np.array_equal(got, 255 - rgb.transpose(0, 3, 1, 2)) and again.returncode == 0,
      f"a folder of RGB planes -> TIFF: {got_axes} {got.shape}, reads back ({again.stderr[-120:]!r})")
group, names, _ = zarr_out(f"{TMP}/rgb.tif", "rgb", [])
omero = group.attrs["omero"]["channels"]
check(names == ["c", "z", "y", "x"] and
      np.array_equal(group["0"][:], rgb.transpose(3, 0, 1, 2)) and
      [c["label"] for c in omero] == ["red", "green", "blue"] and
      [c["color"] for c in omero] == ["FF0000", "00FF00", "0000FF"],
      f"RGB -> OME-Zarr: c,z,y,x, channels labelled and coloured red, green, blue ({omero})")

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
p = subprocess.run([LOCAL, "run", "--input", f"{TMP}/two.ome.tif", "--output", f"{TMP}/none.tif",
                    "--channels", "2"], capture_output=True, text=True)
check(p.returncode != 0 and "channel 2" in p.stderr and not os.path.exists(f"{TMP}/none.tif"),
      f"--channels 2 of a 2-channel stack: refused ({p.stderr.strip()!r})")
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

tifffile.imwrite(f"{TMP}/rgb_lies.tif", rgb, photometric="rgb", metadata=None,
                 description=ome.format(pixels.format("").replace('Type="uint16"', 'Type="uint8"')
                                        .replace('SizeZ="10"', 'SizeZ="4"')))
refused(f"{TMP}/rgb_lies.tif", "invert", ["SizeC=2", "3 samples"],
        "OME-XML SizeC that is no multiple of an RGB file's samples")
tifffile.imwrite(f"{TMP}/palette.tif", stack((2,), 18).astype(np.uint8), photometric="palette",
                 colormap=np.zeros((3, 256), np.uint16))
refused(f"{TMP}/palette.tif", "invert", ["photometric interpretation 3"], "a palette TIFF")

if failures:
    print(f"{len(failures)} failed")
    sys.exit(1)
print("all passed")
