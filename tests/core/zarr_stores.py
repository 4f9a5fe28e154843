#!/usr/bin/python3
"""Writes Zarr v2 arrays and OME-Zarr images with zarr-python and numcodecs (independent of
stackproc) for the OME-Zarr input tests. Every good store holds the same 13x70x90 stack (as
uint16 unless named otherwise), chunked so that edge chunks are partial:

  ref_u16.raw, ref_u8.raw, ref_f32.raw    the stacks, C order, native endian: the references
  ngff.zarr          OME-NGFF 0.4 image: level 0 "s0" (blosc lz4, byte shuffle, chunks 4x32x40)
                     and level 1 "s1"; axes z,y,x in micrometer, scale [2.0, 0.5, 0.25]
  tczyx.zarr         OME-NGFF 0.4 image of axes t,c,z,y,x (t and c of length 1), chunks 1x1x13x70x90
  none / zlib / gzip / zstd / blosc_zstd_bit / blosc_zlib / blosc_lz4hc .zarr
                     plain arrays with those compressors, chunks 5x33x41
  big_endian.zarr    ">u2", zstd;   float32_be.zarr ">f4" (ref_f32);   uint8.zarr "|u1" (ref_u8)
  nested.zarr        dimension_separator "/", chunks 1x70x90
  sparse.zarr        fill_value 7, only z 0-4 written (chunks 5x70x90): the rest reads as 7
                     (its reference: sparse.raw)
Bad stores, each to be refused naming the file:
  four_d.zarr (2x13x70x90), lzma.zarr (LZMA compressor), fortran.zarr (order F),
  int16.zarr ("<i2"), truncated.zarr (a chunk cut short), lying.zarr (.zarray says chunks
  5x33x41, the chunks hold 4x33x41), filters.zarr (a Delta filter), plain_group.zarr (a group
  without multiscales)

usage: zarr_stores.py OUTDIR"""
import json, os, sys
import numpy as np
import zarr
from numcodecs import Blosc, Delta, GZip, LZMA, Zlib, Zstd

out = sys.argv[1]
rng = np.random.default_rng(5)
# Smooth-ish data with noise: compressible, as microscopy is.
base = rng.integers(0, 4000, (13, 70, 90)).astype(np.uint16)
stack = (base // 2 + np.arange(90, dtype=np.uint16) * 300).astype(np.uint16)
stack.tofile(f"{out}/ref_u16.raw")
u8 = (stack >> 8).astype(np.uint8)
u8.tofile(f"{out}/ref_u8.raw")
f32 = (stack.astype(np.float32) / 65535.0).astype(np.float32)
f32.tofile(f"{out}/ref_f32.raw")


def array(name, data, chunks, compressor, **kw):
    z = zarr.open_array(f"{out}/{name}", mode="w", shape=data.shape, chunks=chunks,
                        dtype=kw.pop("dtype", data.dtype), compressor=compressor, **kw)
    z[...] = data
    return z


def ngff(name, levels, axes, scales):
    g = zarr.open_group(f"{out}/{name}", mode="w")
    datasets = []
    for path, data, chunks in levels:
        g.create_dataset(path, data=data, chunks=chunks,
                         compressor=Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE))
        datasets.append({"path": path, "coordinateTransformations": [
            {"type": "scale", "scale": scales[path]}]})
    g.attrs["multiscales"] = [{"version": "0.4", "name": name, "axes": axes,
                               "datasets": datasets}]


space = lambda n: {"name": n, "type": "space", "unit": "micrometer"}
ngff("ngff.zarr", [("s0", stack, (4, 32, 40)), ("s1", stack[:, ::2, ::2], (4, 32, 40))],
     [space("z"), space("y"), space("x")],
     {"s0": [2.0, 0.5, 0.25], "s1": [2.0, 1.0, 0.5]})
ngff("tczyx.zarr", [("0", stack[None, None], (1, 1, 13, 70, 90))],
     [{"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"},
      space("z"), space("y"), space("x")],
     {"0": [1.0, 1.0, 3.0, 0.5, 0.5]})

for name, compressor in [
        ("none", None), ("zlib", Zlib(level=1)), ("gzip", GZip(level=5)), ("zstd", Zstd(level=3)),
        ("blosc_zstd_bit", Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE)),
        ("blosc_zlib", Blosc(cname="zlib", clevel=5, shuffle=Blosc.SHUFFLE)),
        ("blosc_lz4hc", Blosc(cname="lz4hc", clevel=5, shuffle=Blosc.NOSHUFFLE))]:
    array(f"{name}.zarr", stack, (5, 33, 41), compressor)
array("big_endian.zarr", stack, (5, 33, 41), Zstd(level=1), dtype=">u2")
array("float32_be.zarr", f32, (5, 33, 41), Blosc(cname="lz4"), dtype=">f4")
array("uint8.zarr", u8, (5, 33, 41), Blosc(cname="zstd"))
array("nested.zarr", stack, (1, 70, 90), Zlib(level=1), dimension_separator="/")
sparse = zarr.open_array(f"{out}/sparse.zarr", mode="w", shape=stack.shape, chunks=(5, 70, 90),
                         dtype=stack.dtype, compressor=Zstd(level=1), fill_value=7)
sparse[0:5] = stack[0:5]
expected = np.full_like(stack, 7)
expected[0:5] = stack[0:5]
expected.tofile(f"{out}/sparse.raw")

# Bad stores.
array("four_d.zarr", np.stack([stack, stack]), (1, 5, 33, 41), Zlib(level=1))
array("lzma.zarr", stack, (5, 33, 41), LZMA())
array("fortran.zarr", stack, (5, 33, 41), None, order="F")
array("int16.zarr", stack.astype(np.int16), (5, 33, 41), None)
array("truncated.zarr", stack, (5, 33, 41), Zstd(level=1))
chunk = f"{out}/truncated.zarr/1.1.1"
with open(chunk, "rb") as f:
    data = f.read()
with open(chunk, "wb") as f:
    f.write(data[: len(data) // 2])
array("lying.zarr", stack, (4, 33, 41), Zstd(level=1))
with open(f"{out}/lying.zarr/.zarray") as f:
    meta = json.load(f)
meta["chunks"] = [5, 33, 41]
with open(f"{out}/lying.zarr/.zarray", "w") as f:
    json.dump(meta, f)
array("filters.zarr", stack, (5, 33, 41), None, filters=[Delta(dtype="<u2")])
zarr.open_group(f"{out}/plain_group.zarr", mode="w").create_dataset("a", data=stack)
