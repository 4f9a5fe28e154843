#!/usr/bin/python3
"""Writes plane sequences with tifffile, an independent TIFF writer, for the sequence tests.

  OUTDIR/seq/p1.tif .. p11.tif   one 40x56 uint16 plane each (unpadded numbers: natural order)
  OUTDIR/seq/p12.tif             two planes (a file of several pages gives them in order)
  OUTDIR/seq/.p0.tif, notes.txt  left out (hidden, not TIFF)
  OUTDIR/seq.raw                 the 13 planes in order, C order, native endian: the reference
  OUTDIR/gap/z0000.tif .. z0005.tif without z0003.tif
  OUTDIR/mixed/a1.tif (40x56), a2.tif (40x57)
  OUTDIR/chan/img_c0_z0001.tif .. img_c1_z0003.tif   2 channels x 3 slices, z from 1
  OUTDIR/chan.raw                the 6 planes in c, z order
  OUTDIR/tcz/T1_C1_Z1.tif .. T2_C2_Z2.tif            2 time points x 2 channels x 2 slices
  OUTDIR/tcz.raw                 the 8 planes in t, c, z order
  OUTDIR/holes/img_c0_z1.tif .. img_c1_z3.tif without img_c1_z2.tif

usage: plane_sequences.py OUTDIR"""
import os, sys
import numpy as np
import tifffile

out = sys.argv[1]
rng = np.random.default_rng(3)
stack = rng.integers(0, 65536, (13, 40, 56), dtype=np.uint16)
for d in ("seq", "gap", "mixed"):
    os.makedirs(f"{out}/{d}", exist_ok=True)
for i in range(11):
    tifffile.imwrite(f"{out}/seq/p{i + 1}.tif", stack[i], photometric="minisblack")
tifffile.imwrite(f"{out}/seq/p12.tif", stack[11:], photometric="minisblack")
with open(f"{out}/seq/.p0.tif", "wb") as f:
    f.write(b"not a tiff")
with open(f"{out}/seq/notes.txt", "w") as f:
    f.write("acquisition notes\n")
stack.tofile(f"{out}/seq.raw")
for i in (0, 1, 2, 4, 5):
    tifffile.imwrite(f"{out}/gap/z{i:04d}.tif", stack[i], photometric="minisblack")
tifffile.imwrite(f"{out}/mixed/a1.tif", stack[0], photometric="minisblack")
tifffile.imwrite(f"{out}/mixed/a2.tif", np.zeros((40, 57), np.uint16), photometric="minisblack")

# Names that carry the channel and time point in other forms than stackproc's own.
for d in ("chan", "tcz", "holes"):
    os.makedirs(f"{out}/{d}", exist_ok=True)
chan = rng.integers(0, 65536, (2, 3, 40, 56), dtype=np.uint16)
for c in range(2):
    for z in range(3):
        tifffile.imwrite(f"{out}/chan/img_c{c}_z{z + 1:04d}.tif", chan[c, z], photometric="minisblack")
        if (c, z) != (1, 1):
            tifffile.imwrite(f"{out}/holes/img_c{c}_z{z + 1}.tif", chan[c, z],
                             photometric="minisblack")
chan.tofile(f"{out}/chan.raw")
tcz = rng.integers(0, 65536, (2, 2, 2, 40, 56), dtype=np.uint16)
for t in range(2):
    for c in range(2):
        for z in range(2):
            tifffile.imwrite(f"{out}/tcz/T{t + 1}_C{c + 1}_Z{z + 1}.tif", tcz[t, c, z],
                             photometric="minisblack")
tcz.tofile(f"{out}/tcz.raw")
