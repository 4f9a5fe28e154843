#!/usr/bin/python3
"""The light-sheet corrections through stackproc-local, against references no one here wrote.

- background (rolling ball) equals image - skimage.restoration.rolling_ball(image, radius=r)
  within one grey level (float32: 1e-3 of the range) for radii 3, 8 and 15, on uint8, uint16
  and float32; a light background equals the same on the inverted image, inverted back.
- destripe on synthetic images (smooth structures and Poisson noise) with thin full-height
  stripes of known amplitude added: PSNR against the stripe-free image raised by 10 dB at
  least; on the stripe-free image it changes less than 1% of the range (RMS); horizontal too.
- flatfield equals its formula in numpy and scipy.ndimage, channel by channel: the flat is the
  channel's mean plane less dark, smoothed (gaussian_filter, mode mirror, truncate 4), divided
  by its mean; the result (image - dark) / flat. Cut in 3 ranges with their statistics gathered
  first, the shards assemble into the whole run's bytes.
- flatfield with a flat and a dark frame measured apart (image files; a flat per channel):
  (image - dark) / (flat / mean(flat)) in numpy; with a flat file the step is per plane (it
  streams, and cuts into ranges with no statistics); through stackprocd the files are found
  beneath its data root (a path job, a streamed job), one outside it refused.
- Bad input: a dark level above the background (the flat not above 0 everywhere), a flat of
  another size, a zero in the flat, a flat of several planes, sigma beside a flat file, a dark
  level beside a dark frame: refused, nothing written.
- The README's light-sheet example (docs/examples/light-sheet.sh) is run by the docs test.

usage: corrections.py BUILD_DIR"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.ndimage as nd
import tifffile
from skimage.restoration import rolling_ball

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools"))
import suite  # noqa: E402
from suite import check  # noqa: E402

BUILD = sys.argv[1]
LOCAL = os.path.join(BUILD, "core", "stackproc-local")
TMP = tempfile.mkdtemp(prefix="stackproc-corrections-")
FULL = {"uint8": 255, "uint16": 65535, "float32": 1.0}


def run(inp, out, ops, *extra, ok=True):
    return suite.run(BUILD, inp, out, ops, *extra, ok=ok)


def through(array, ops, name="in.tif"):
    inp, out = os.path.join(TMP, name), os.path.join(TMP, "out.tif")
    tifffile.imwrite(inp, array)
    run(inp, out, ops)
    return tifffile.imread(out)


def scene(shape, seed, top):
    """Smooth structures on a sloping background, with Poisson noise, in [0, top]."""
    rng = np.random.default_rng(seed)
    blobs = nd.gaussian_filter(rng.random(shape), (0,) * (len(shape) - 2) + (3, 3))
    blobs = (blobs - blobs.min()) / (blobs.max() - blobs.min())
    y, x = np.mgrid[0:shape[-2], 0:shape[-1]]
    slope = 0.3 * (x / shape[-1] + 0.5 * y / shape[-2])
    return np.clip(rng.poisson((0.5 * blobs + slope + 0.05) * top * 0.6), 0, top).astype(np.float64)


# --- background ------------------------------------------------------------------------------
for dtype in ("uint8", "uint16", "float32"):
    full = FULL[dtype]
    top = 200 if dtype == "uint8" else 40000 if dtype == "uint16" else 1000
    v = scene((3, 60, 70), 1, top)
    v = (v / 1000.0 if dtype == "float32" else v).astype(dtype)
    for r in (3, 8, 15):
        for light in ("no", "yes"):
            got = through(v, [f"background:radius={r},light={light}"])
            if light == "no":
                want = np.stack([p.astype(np.float64) - rolling_ball(p, radius=r) for p in v])
            else:
                inv = (full - v.astype(np.float64)).astype(dtype)
                want = np.stack([full - (i.astype(np.float64) - rolling_ball(i, radius=r))
                                 for i in inv])
            err = np.abs(got.astype(np.float64) - want).max()
            bound = 1e-3 * float(v.max()) if dtype == "float32" else 1
            check(err <= bound, f"background:radius={r},light={light} on {dtype}: image - "
                  f"skimage's rolling_ball within {bound:g} (worst {err:.3g})")

# --- destripe --------------------------------------------------------------------------------
def psnr(a, b, peak):
    return 10 * np.log10(peak ** 2 / np.mean((a.astype(np.float64) - b) ** 2))


rng = np.random.default_rng(7)
clean = np.round(scene((4, 256, 256), 3, 40000)).astype(np.uint16)
stripes = np.zeros(256)
for column in rng.choice(np.arange(4, 250), 24, replace=False):
    stripes[column:column + rng.integers(1, 3)] = rng.choice([-1, 1]) * rng.uniform(1500, 6000)
for axis, shape in (("vertical", (1, 1, 256)), ("horizontal", (1, 256, 1))):
    striped = np.clip(clean + stripes.reshape(shape), 0, 65535).astype(np.uint16)
    got = through(striped, [f"destripe:axis={axis}"])
    before, after = psnr(striped, clean, 65535), psnr(got, clean, 65535)
    check(after - before >= 10, f"destripe:axis={axis} raises the PSNR against the stripe-free "
          f"image by {after - before:.1f} dB ({before:.1f} -> {after:.1f})")
    untouched = through(clean, [f"destripe:axis={axis}"])
    rms = np.sqrt(np.mean((untouched.astype(np.float64) - clean) ** 2)) / float(np.ptp(clean))
    check(rms < 0.01, f"destripe:axis={axis} on a stripe-free image changes it by {100 * rms:.2f}% "
          "of its range (RMS)")

# A slice one pixel across the stripes has nothing to compare with: it comes out as it went in.
small = np.round(scene((2, 40, 30), 4, 30000)).astype(np.uint16)
for axis, crop in (("vertical", "crop:width=1,height=40"), ("horizontal", "crop:width=30,height=1")):
    check(np.array_equal(through(small, [crop, f"destripe:axis={axis}"]), through(small, [crop])),
          f"destripe:axis={axis} on slices one pixel across the stripes leaves them as they are")

# --- flatfield -------------------------------------------------------------------------------
dark, sigma = 100.0, 12.0
y, x = np.mgrid[0:80, 0:96]
falloff = np.exp(-((x - 40) ** 2 + (y - 45) ** 2) / (2 * 60.0 ** 2))  # the illumination
cz = np.stack([scene((10, 80, 96), 5 + c, 30000) * falloff + dark for c in range(2)])
cz = np.round(cz).astype(np.uint16)
src = os.path.join(TMP, "cz.ome.tif")
tifffile.imwrite(src, cz, ome=True, metadata={"axes": "CZYX"})
out = os.path.join(TMP, "flat.tif")
run(src, out, [f"flatfield:dark={dark:g},sigma={sigma:g}"])
got = tifffile.imread(out)
want = []
for c in range(2):
    mean = cz[c].astype(np.float64).mean(axis=0) - dark
    flat = nd.gaussian_filter(mean, sigma, mode="mirror", truncate=4.0)
    flat /= flat.mean()
    want.append(np.clip(np.round((cz[c] - dark) / flat), 0, 65535))
want = want_estimated = np.stack(want)
err = np.abs(got.astype(np.float64) - want).max()
check(got.shape == cz.shape and err <= 1,
      f"flatfield: (image - dark) / flat, each channel's flat its mean plane smoothed, as numpy "
      f"and scipy compute it (worst {err:.0f})")
corner, centre = got[:, :, 5:15, 80:90].mean(), got[:, :, 40:50, 35:45].mean()
raw_corner, raw_centre = cz[:, :, 5:15, 80:90].mean(), cz[:, :, 40:50, 35:45].mean()
print(f"     corner/centre brightness {raw_corner / raw_centre:.2f} before, "
      f"{corner / centre:.2f} after")
# Cut in 3 ranges: the statistics of each, summed, give every range the whole stack's flat.
stats = []
for shard in range(3):
    path = os.path.join(TMP, f"flat-{shard}.stats")
    subprocess.run([LOCAL, "stats", "--input", src, "--op", f"flatfield:dark={dark:g},sigma={sigma:g}",
                    "--shards", "3", "--shard", str(shard), "--output", path], check=True,
                   capture_output=True)
    stats += ["--stats", path]
parts = []
for shard in range(3):
    part = os.path.join(TMP, f"flat-part-{shard}.tif")
    run(src, part, [f"flatfield:dark={dark:g},sigma={sigma:g}"], *stats, "--shards", "3",
        "--shard", str(shard))
    parts.append(part)
assembled = os.path.join(TMP, "flat-assembled.tif")
subprocess.run([LOCAL, "assemble", "--output", assembled] + parts, check=True, capture_output=True)
check(suite.same(out, assembled),
      "flatfield cut in 3 ranges with their statistics: the whole run's bytes")
refused = os.path.join(TMP, "refused.tif")
p = run(src, refused, ["flatfield:dark=60000"], ok=False)
check(p.returncode != 0 and "must be above 0 everywhere" in p.stderr and not os.path.exists(refused),
      f"a dark level above the background is refused, nothing written: {p.stderr.strip()}")

# --- flatfield with a flat and a dark frame measured apart --------------------------------------
flats = [np.round(1000 + 3000 * falloff * (1 + 0.2 * c)).astype(np.uint16) for c in range(2)]
dark_frame = np.round(dark + 5 * np.sin(x / 7.0)).astype(np.uint16)
for c, f in enumerate(flats):
    tifffile.imwrite(os.path.join(TMP, f"flat{c}.tif"), f)
tifffile.imwrite(os.path.join(TMP, "dark.tif"), dark_frame)
flat0, flat1 = (os.path.join(TMP, f"flat{c}.tif") for c in range(2))
darkf = os.path.join(TMP, "dark.tif")


def corrected(stack, flat, dark):
    return np.clip(np.round((stack.astype(np.float64) - dark) / (flat / flat.mean())), 0, 65535)


files_op = f"flatfield:flat={flat0},c1.flat={flat1},dark_frame={darkf}"
out = os.path.join(TMP, "flat-files.tif")
run(src, out, [files_op])
got = tifffile.imread(out).astype(np.float64)
want = np.stack([corrected(cz[c], flats[c].astype(np.float64), dark_frame) for c in range(2)])
err = np.abs(got - want).max()
check(err <= 1, f"flatfield with flat files (one per channel) and a dark frame: (image - dark) / "
      f"(flat / mean(flat)) as numpy computes it (worst {err:.0f})")
rerun = os.path.join(TMP, "flat-rerun.tif")
p = subprocess.run([LOCAL, "rerun", out, "--output", rerun], capture_output=True, text=True)
check(p.returncode == 0 and suite.same(out, rerun, "time,executor"),
      f"rerun of the output (its record names the files) makes the same bytes {p.stderr.strip()}")
# A channel's own flat beside the others' estimates: channel 1 by its file, channel 0 estimated.
out_mixed = os.path.join(TMP, "flat-mixed.tif")
run(src, out_mixed, [f"flatfield:dark={dark:g},sigma={sigma:g},c1.flat={flat1}"])
mixed = tifffile.imread(out_mixed).astype(np.float64)
err = max(np.abs(mixed[0] - want_estimated[0]).max(),
          np.abs(mixed[1] - corrected(cz[1], flats[1].astype(np.float64), dark)).max())
check(err <= 1, f"c1.flat beside an estimate: channel 1 by its flat file, channel 0 by the "
      f"estimate (worst {err:.0f})")
p = run(src, os.path.join(TMP, "flat-stream.tif"), [files_op], "--mode", "streaming")
check(p.returncode == 0 and np.array_equal(tifffile.imread(os.path.join(TMP, "flat-stream.tif")),
                                           tifffile.imread(out)),
      "with flat files the step is per plane: it streams, the same pixels")
parts = []
for shard in range(3):  # no statistics to gather
    parts.append(os.path.join(TMP, f"flat-files-{shard}.tif"))
    run(src, parts[-1], [files_op], "--shards", "3", "--shard", str(shard))
subprocess.run([LOCAL, "assemble", "--overwrite", "--output", assembled] + parts, check=True,
               capture_output=True)
check(suite.same(out, assembled), "cut in 3 ranges with no statistics: the whole run's bytes")
small_flat, zero_flat, two_flat = (os.path.join(TMP, n) for n in ("small.tif", "zero.tif", "two.tif"))
tifffile.imwrite(small_flat, flats[0][:40, :48])
zeros = flats[0].copy()
zeros[7, 9] = 0
tifffile.imwrite(zero_flat, zeros)
tifffile.imwrite(two_flat, np.stack([flats[0], flats[0]]), metadata={"axes": "ZYX"})
for op, says in ((f"flatfield:flat={small_flat}", "is 48x40 pixels; the slices are 96x80"),
                 (f"flatfield:flat={zero_flat}", "is 0 at x=9, y=7"),
                 (f"flatfield:flat={two_flat}", "holds 2 planes; it must be one"),
                 (f"flatfield:flat={flat0},sigma=5", "sigma means nothing beside flat"),
                 (f"flatfield:dark_frame={darkf},dark=3", "dark means nothing beside dark_frame"),
                 (f"flatfield:flat={TMP}/missing.tif", "missing.tif")):
    p = run(src, refused, [op], ok=False)
    check(p.returncode != 0 and says in p.stderr and not os.path.exists(refused),
          f"refused, nothing written: {p.stderr.strip()}")

p = subprocess.run([LOCAL, "preview", src, "--op", files_op, "--roi", "0,0,16,16", "-o",
                    os.path.join(TMP, "p.png")], capture_output=True, text=True)
check(p.returncode != 0 and "is an image of whole slices" in p.stderr,
      f"a preview of a region with a flat image is refused: {p.stderr.strip()}")

# Through stackprocd: the files beneath its data root, by the path a client gives.
data = os.path.join(TMP, "data")
os.makedirs(data)
for name in ("cz.ome.tif", "flat0.tif", "flat1.tif", "dark.tif"):
    os.link(os.path.join(TMP, name), os.path.join(data, name))
server_op = "flatfield:flat=flat0.tif,c1.flat=flat1.tif,dark_frame=dark.tif"
with suite.server(BUILD, data) as (target, cli):
    p = cli("submit", "--input", "cz.ome.tif", "--output", "job.tif", "--wait", "--op", server_op)
    check(p.returncode == 0 and np.array_equal(tifffile.imread(os.path.join(data, "job.tif")),
                                               tifffile.imread(out)),
          f"a server's path job reads the flat files beneath its data root {p.stderr.strip()}")
    streamed = os.path.join(TMP, "flat-streamed.tif")
    p = cli("process", src, "-o", streamed, "--op", server_op)
    check(p.returncode == 0 and np.array_equal(tifffile.imread(streamed), tifffile.imread(out)),
          f"so does a streamed job {p.stderr.strip()}")
    p = cli("process", src, "-o", refused, "--op", f"flatfield:flat={flat0}")
    check(p.returncode != 0 and "absolute paths are not allowed" in p.stderr
          and not os.path.exists(refused),
          f"a flat outside the data root is refused: {p.stderr.strip()}")
    sys.path.insert(0, os.path.join(BUILD, "python"))
    import stackproc  # noqa: E402
    from stackproc import errors  # noqa: E402
    client = stackproc.Client(target)
    try:
        client.process(cz, ["flatfield:flat=../cz.ome.tif"], axes="CZYX")
        check(False, "a flat above the data root is refused")
    except errors.PermissionDenied as e:
        check("outside" in str(e) or "not allowed" in str(e),
              f"a flat above the data root: PermissionDenied from Python ({e})")
    try:  # a ',' would end the path in the recorded text form (reached only by a dict's value)
        client.process(cz, [{"name": "flatfield", "flat": "a,b.tif"}], axes="CZYX")
        check(False, "a flat path with a ',' is refused")
    except errors.InvalidArgument as e:
        check("an image file (no ',')" in str(e), f"a flat path with a ',': InvalidArgument ({e})")
    check(cli("health").stdout.strip() == "SERVING", "and the server keeps serving")

suite.finish()
