#!/usr/bin/python3
"""Reads TIFF files written by stackproc with tifffile (an independent reader) and compares
them with raw references. Files compressed with codecs tifffile cannot decode without
imagecodecs (LZW, ZSTD, the floating-point predictor) are first decompressed by libtiff's tiffcp.

usage: check_written.py DIR NAME DTYPE D H W [NAME DTYPE D H W ...]   exit 0 when all match"""
import subprocess, sys
import numpy as np
import tifffile

d = sys.argv[1]
args = sys.argv[2:]
bad = 0
for i in range(0, len(args), 5):
    name, dtype, shape = args[i], args[i + 1], tuple(int(v) for v in args[i + 2:i + 5])
    path = f"{d}/{name}.tif"
    with tifffile.TiffFile(path) as tif:
        codec, predictor = tif.pages[0].compression, tif.pages[0].predictor
    if codec not in (1, 8, 32946) or predictor == 3:
        subprocess.run(["tiffcp", "-c", "none", path, f"{d}/{name}.plain.tif"], check=True)
        path = f"{d}/{name}.plain.tif"
    got = tifffile.imread(path)
    want = np.fromfile(f"{d}/{name}.raw", dtype=dtype).reshape(shape)
    if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
        print(f"MISMATCH {name}: {got.shape} {got.dtype} vs {want.shape} {want.dtype}")
        bad += 1
    else:
        print(f"ok {name}")
sys.exit(1 if bad else 0)
