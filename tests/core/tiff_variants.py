#!/usr/bin/python3
"""Writes TIFF stacks of every layout stackproc reads, with independent tools: tifffile for
the layouts it can encode without imagecodecs, libtiff's tiffcp for LZW, PackBits and ZSTD.
Each NAME.tif comes with NAME.raw (C-order pixels, native endian) as the reference.

usage: tiff_variants.py OUTDIR        (prints one line per file: NAME DTYPE D H W)"""
import os, subprocess, sys
import numpy as np
import tifffile

out = sys.argv[1]
D, H, W = 5, 67, 93  # odd sizes: partial strips and partial tiles
rng = np.random.default_rng(7)
data = {
    "u8": rng.integers(0, 256, (D, H, W), dtype=np.uint8),
    "u16": (rng.integers(0, 4096, (D, H, W)) * np.arange(1, W + 1) % 65536).astype(np.uint16),
    "f32": rng.normal(0.5, 0.2, (D, H, W)).astype(np.float32),
}

def write(name, kind, **kw):
    tifffile.imwrite(f"{out}/{name}.tif", data[kind], photometric="minisblack", **kw)
    data[kind].tofile(f"{out}/{name}.raw")
    print(name, kind, D, H, W)

def tiffcp(src, name, kind, *args):
    subprocess.run(["tiffcp", *args, f"{out}/{src}.tif", f"{out}/{name}.tif"], check=True)
    data[kind].tofile(f"{out}/{name}.raw")
    print(name, kind, D, H, W)

write("u8_none", "u8")
write("u16_none", "u16")
write("f32_none", "f32")
write("u16_rows7", "u16", rowsperstrip=7)
write("u16_deflate", "u16", compression="zlib")
write("u16_deflate_pred", "u16", compression="zlib", predictor=True)
# Deflate strips are inflated by ISA-L (core/tiff/strip_decoder.h): many strips, a short
# last one, 8-bit differencing, float32 without a predictor.
write("u8_deflate_pred_rows7", "u8", compression="zlib", predictor=True, rowsperstrip=7)
write("u16_deflate_pred_rows5", "u16", compression=("zlib", 9), predictor=True, rowsperstrip=5)
write("f32_deflate", "f32", compression="zlib")

write("u8_tiled", "u8", tile=(32, 48))
write("u16_tiled_deflate", "u16", tile=(32, 32), compression="zlib")
write("u16_bigendian", "u16", byteorder=">")
write("f32_bigendian", "f32", byteorder=">")
write("u16_bigtiff", "u16", bigtiff=True)
write("u16_bigtiff_bigendian_tiled", "u16", bigtiff=True, byteorder=">", tile=(16, 16))
tiffcp("u8_none", "u8_lzw", "u8", "-c", "lzw")
tiffcp("u16_none", "u16_lzw_pred", "u16", "-c", "lzw:2")
tiffcp("u16_none", "u16_packbits", "u16", "-c", "packbits")
tiffcp("u16_none", "u16_zstd", "u16", "-c", "zstd")
tiffcp("u16_none", "u16_zstd_pred", "u16", "-c", "zstd:2")
tiffcp("f32_none", "f32_zstd", "f32", "-c", "zstd")
tiffcp("f32_none", "f32_deflate_floatpred", "f32", "-c", "zip:3")
tiffcp("u16_none", "u16_tiled_zstd", "u16", "-t", "-w", "32", "-l", "16", "-c", "zstd")
tiffcp("u16_none", "u16_adobe_deflate_bigendian", "u16", "-B", "-c", "zip")

# ImageJ's layout for stacks over 4 GiB (tifffile: truncate=True): one directory whose
# description says images=N, the N planes stored one after another. ImageJ writes big-endian.
def imagej_raw(name, kind, **kw):
    tifffile.imwrite(f"{out}/{name}.tif", data[kind], imagej=True, truncate=True,
                     metadata={"axes": "ZYX"}, **kw)
    data[kind].tofile(f"{out}/{name}.raw")
    print(name, kind, D, H, W)

imagej_raw("u8_imagej_raw", "u8")
imagej_raw("u16_imagej_raw_bigendian", "u16", byteorder=">")
imagej_raw("f32_imagej_raw_bigendian", "f32", byteorder=">")
