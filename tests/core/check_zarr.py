#!/usr/bin/python3
"""Checks an OME-Zarr image written by stackproc with zarr-python (an independent reader):
the NGFF 0.4 metadata field by field, each level's .zarray, level 0's pixels against a direct
OpenCV call on the source TIFF (read by tifffile), and every further level against the mean of
2x2 (2x2x2 where its z scale doubled) blocks of the level before, worked out here in numpy.

usage: check_zarr.py STORE SOURCE.tif EXPECTED.json       exit 0 when everything matches
EXPECTED: {"op": "gaussian5" | "invert" | "resize_half" | "to_float32" | "none",
           "dtype": "uint16", "unit": "micrometer" or null, "scales": [[z, y, x], ...],
           "shapes": [[z, y, x], ...], "chunks": [[z, y, x], ...],
           "compressor": {"id": ..., ...} or null}"""
import json, sys
import cv2
import numpy as np
import tifffile
import zarr

store, source, expected = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
problems = []


def check(what, got, want):
    if got != want:
        problems.append(f"{what}: {got!r}, expected {want!r}")


src = tifffile.imread(source)
op = expected["op"]
if op == "gaussian5":
    want0 = np.stack([cv2.GaussianBlur(s, (5, 5), 0, borderType=cv2.BORDER_REFLECT_101)
                      for s in src])
elif op == "invert":
    want0 = np.iinfo(src.dtype).max - src
elif op == "resize_half":
    want0 = np.stack([cv2.resize(s, (s.shape[1] // 2, s.shape[0] // 2),
                                 interpolation=cv2.INTER_AREA) for s in src])
elif op == "to_float32":
    # What cv::Mat::convertTo(CV_32F, 1 / max) computes: each value times the scale as a float.
    want0 = src.astype(np.float32) * np.float32(1.0 / np.iinfo(src.dtype).max)
else:
    want0 = src


def halve(a, halve_z):
    """Mean of 2x2 blocks in y and x (of the pixels there are at an odd edge), then of pairs of
    slices; integers rounded half up at each step."""
    wide = a.astype(np.float64)
    z, h, w = a.shape
    total = np.zeros((z, (h + 1) // 2, (w + 1) // 2))
    count = np.zeros_like(total)
    for dy in (0, 1):
        for dx in (0, 1):
            part = wide[:, dy::2, dx::2]
            total[:, :part.shape[1], :part.shape[2]] += part
            count[:, :part.shape[1], :part.shape[2]] += 1
    integer = np.issubdtype(a.dtype, np.integer)
    mean = lambda t, n: np.floor((t + n // 2) / n) if integer else t / n
    yx = mean(total, count)
    if halve_z:
        pairs = [mean(yx[i] + yx[i + 1], 2) if i + 1 < z else yx[i] for i in range(0, z, 2)]
        yx = np.stack(pairs)
    return yx.astype(a.dtype)


group = zarr.open_group(store, mode="r")
check("zarr_format", json.loads(group.store[".zgroup"])["zarr_format"], 2)
multiscales = group.attrs["multiscales"]
check("multiscales count", len(multiscales), 1)
ms = multiscales[0]
check("version", ms["version"], "0.4")
unit = expected["unit"]
axes = [{"name": n, "type": "space", **({"unit": unit} if unit else {})} for n in "zyx"]
check("axes", ms["axes"], axes)
levels = len(expected["scales"])
check("dataset paths", [d["path"] for d in ms["datasets"]], [str(k) for k in range(levels)])
for k, dataset in enumerate(ms["datasets"][:levels]):
    check(f"level {k} transformations", dataset["coordinateTransformations"],
          [{"type": "scale", "scale": expected["scales"][k]}])

previous = None
for k in range(levels):
    arr = group[str(k)]
    meta = json.loads(group.store[f"{k}/.zarray"])
    check(f"level {k} shape", list(arr.shape), expected["shapes"][k])
    check(f"level {k} chunks", list(arr.chunks), expected["chunks"][k])
    check(f"level {k} dtype", str(arr.dtype), expected["dtype"])
    check(f"level {k} dimension_separator", meta.get("dimension_separator"), "/")
    check(f"level {k} order", meta["order"], "C")
    comp = meta["compressor"]
    want_comp = expected["compressor"]
    if want_comp is None:
        check(f"level {k} compressor", comp, None)
    else:
        for key, value in want_comp.items():
            check(f"level {k} compressor {key}", comp and comp.get(key), value)
    data = arr[...]
    if k == 0:
        want = want0
    else:
        halve_z = expected["scales"][k][0] == 2 * expected["scales"][k - 1][0]
        want = halve(previous, halve_z)
    if data.shape != want.shape or not np.array_equal(data, want):
        diff = (np.abs(data.astype(np.float64) - want.astype(np.float64)).max()
                if data.shape == want.shape else "shape")
        problems.append(f"level {k} pixels differ (max difference {diff})")
    previous = data

for p in problems:
    print("MISMATCH", p)
print("ok" if not problems else f"{len(problems)} problems")
sys.exit(1 if problems else 0)
