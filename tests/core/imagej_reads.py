#!/usr/bin/python3
"""Every TIFF output opens right in ImageJ (Debian's ImageJ 1.53t, the reader behind Fiji's
File > Open, under Xvfb) and in tifffile: stacks of 1, 2, 3 and 17 slices of uint8, uint16 and
float32 in every codec, the generator's output, and plane folders through File > Import > Image
Sequence. The stacks are made by numpy and written by tifffile; stackproc-local converts them
(no operation: its output must hold the input's pixels). ImageJ's per-slice mean, min and max
must equal numpy's; a codec ImageJ cannot open (zstd) must be refused, not shown as garbage.

usage: imagej_reads.py BUILD_DIR      exit 0 when every file reads right"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tifffile

BUILD = sys.argv[1]
LOCAL = os.path.join(BUILD, "core", "stackproc-local")
MACRO = r"""
setBatchMode(true);
paths = split(getArgument(), ",");
for (k = 0; k < paths.length; k++) {
  print("IJFILE " + paths[k]);
  if (File.isDirectory(paths[k])) run("Image Sequence...", "open=[" + paths[k] + "] sort");
  else open(paths[k]);
  if (nImages == 0) { print("IJNONE"); continue; }
  print("IJINFO " + nSlices + " " + getWidth() + " " + getHeight() + " " + bitDepth());
  for (i = 1; i <= nSlices; i++) {
    setSlice(i);
    getRawStatistics(n, mean, min, max);
    print("IJSLICE " + d2s(mean, 9) + " " + d2s(min, 9) + " " + d2s(max, 9));
  }
  close("*");
}
"""


def reference(depth, dtype, seed):
    """A stack whose slices differ (so a plane read from the wrong place shows)."""
    rng = np.random.default_rng(seed)
    shape = (depth, 40, 56)
    if dtype == "float32":
        a = rng.normal(0, 50, shape).astype(np.float32)
        return a + np.arange(depth, dtype=np.float32)[:, None, None] * 7
    top = 255 if dtype == "uint8" else 4095  # 12-bit camera-like
    a = rng.integers(0, top // 2, shape)
    return (a + (np.arange(depth)[:, None, None] * 37) % (top // 2)).astype(dtype)


def imagej(paths):
    """{path: (slices, width, height, bit depth, [(mean, min, max), ...]) or None}."""
    out = subprocess.run(
        ["timeout", "300", "xvfb-run", "-a", "java", "-Xmx1g", "-jar", "/usr/share/java/ij.jar",
         "-batch", MACRO_FILE, ",".join(paths)],
        capture_output=True, text=True, check=False).stdout
    seen, current = {}, None
    for line in out.splitlines():
        word, _, rest = line.partition(" ")
        if word == "IJFILE":
            current = rest
            seen[current] = None
        elif word == "IJINFO":
            seen[current] = tuple(int(v) for v in rest.split()) + ([],)
        elif word == "IJSLICE":
            seen[current][4].append(tuple(float(v) for v in rest.split()))
    return seen


def tifffile_reads(path, work):
    """`path` as tifffile reads it: the series its description describes, or, for codecs
    Debian's tifffile lacks (LZW, zstd, the floating-point predictor: it has no imagecodecs),
    tiffcp's uncompressed copy page by page (tiffcp lays pages out as libtiff does, which an
    ImageJ description does not describe)."""
    with tifffile.TiffFile(path) as tif:
        if tif.pages[0].compression in (1, 8, 32946) and tif.pages[0].predictor != 3:
            return tif.asarray()
    out = os.path.join(work, "plain-" + os.path.basename(path))
    subprocess.run(["tiffcp", "-c", "none", path, out], check=True)
    with tifffile.TiffFile(out) as tif:
        return np.stack([page.asarray() for page in tif.pages])


def main():
    work = tempfile.mkdtemp(prefix="stackproc-imagej-")
    global MACRO_FILE
    MACRO_FILE = os.path.join(work, "stats.ijm")
    with open(MACRO_FILE, "w") as f:
        f.write(MACRO)
    bad = []
    expected = {}  # path -> the stack ImageJ must show (None: ImageJ must refuse it)
    try:
        for dtype in ("uint8", "uint16", "float32"):
            for depth in (1, 2, 3, 17):
                want = reference(depth, dtype, depth)
                src = os.path.join(work, f"in-{dtype}-{depth}.tif")
                tifffile.imwrite(src, want, imagej=True, metadata={"axes": "ZYX"})
                for codec in ("none", "deflate", "lzw", "zstd", "deflate:predictor=differencing"):
                    name = f"{dtype}-{depth}-{codec.replace(':', '-').replace('=', '-')}"
                    out = os.path.join(work, name + ".tif")
                    subprocess.run([LOCAL, "run", "--input", src, "--output", out,
                                    "--compression", codec], check=True, capture_output=True)
                    # tifffile: the series as ImageJ's description describes it, and page by page.
                    got = tifffile_reads(out, work)
                    with tifffile.TiffFile(out) as tif:
                        pages = len(tif.pages)
                    if got.reshape(want.shape).tobytes() != want.tobytes() or pages != depth:
                        bad.append(f"{name}: tifffile reads other pixels ({pages} pages)")
                    if depth == 2 and codec == "none":  # the layout that once read wrong
                        with tifffile.TiffFile(out) as tif:
                            if not np.array_equal(tif.asarray()[1], tif.pages[1].asarray()):
                                bad.append(f"{name}: series slice 1 differs from page 1")
                    if "predictor" not in codec:  # ImageJ 1.53 undoes no deflate predictor
                        expected[out] = None if codec == "zstd" else want
                if depth == 3:
                    for codec in ("none", "deflate", "lzw"):
                        folder = os.path.join(work, f"planes-{dtype}-{codec}")
                        subprocess.run([LOCAL, "run", "--input", src, "--output", folder + "/",
                                        "--compression", codec], check=True, capture_output=True)
                        expected[folder] = want
        generated = os.path.join(work, "generated.tif")
        subprocess.run([LOCAL, "generate", generated, "--shape", "3x64x96", "--type", "uint16"],
                       check=True, capture_output=True)
        expected[generated] = tifffile.imread(generated)

        seen = imagej(list(expected))
        for path, want in expected.items():
            name = os.path.basename(path)
            got = seen.get(path, "not reached")
            if want is None:
                if got is not None:
                    bad.append(f"{name}: ImageJ showed a file it cannot decode: {got}")
                continue
            if got is None or got == "not reached":
                bad.append(f"{name}: ImageJ did not open it ({got})")
                continue
            slices, width, height, bits, stats = got
            if (slices, height, width) != want.shape or bits != want.dtype.itemsize * 8:
                bad.append(f"{name}: ImageJ shows {slices}x{height}x{width} {bits}-bit")
                continue
            for z, (mean, lo, hi) in enumerate(stats):
                plane = want[z].astype(np.float64)
                ref = (plane.mean(), plane.min(), plane.max())
                if not np.allclose((mean, lo, hi), ref, rtol=1e-5, atol=1e-3):
                    bad.append(f"{name}: ImageJ's slice {z} mean/min/max {mean:g}/{lo:g}/{hi:g}"
                               f", numpy's {ref[0]:g}/{ref[1]:g}/{ref[2]:g}")
                    break
        print(f"{len(expected)} outputs read by ImageJ, tifffile checked every codec")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for line in bad:
        print("BAD", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
