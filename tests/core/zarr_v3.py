#!/usr/bin/python3
"""OME-Zarr 0.5 (Zarr v3, sharded) through stackproc-local, against tools no one here wrote.

Written by stackproc, read by zarrita (tests/tools/zarr_read.py): every codec, custom and
default shards, unsharded, each pyramid level, channels; each compared with the same job's TIFF
(tifffile) or, for pyramid levels, with the same job's NGFF 0.4 store read by zarr-python. The
NGFF 0.5 metadata is checked field by field against the spec (ome/ngff 0.5: "ome" holds the
version; axes, datasets, scales), a shard's index against the sharding spec (its crc32c
computed here), and a chunk of zeros is absent from its index.
Written by a second implementation (tests/tools/zarr_v3_writer.py, numcodecs), read by
stackproc: sharded or not, index at the start or the end, with and without its crc32c, each
compressor, big endian, transpose, both key encodings, missing chunks (the fill value). Corrupt
stores are refused naming the file, nothing written. Written by zarrita: an NGFF 0.5 image of
t, c, z, y, x with omero channels, read as time points and channels.

usage: zarr_v3.py BUILD_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tifffile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools"))
import zarr_read  # noqa: E402
from zarr_v3_writer import MISSING, crc32c, write_array, write_image  # noqa: E402

BUILD = sys.argv[1]
LOCAL = os.path.join(BUILD, "core", "stackproc-local")
TMP = tempfile.mkdtemp(prefix="stackproc-zarr-v3-")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(inp, out, *args, ok=True):
    p = subprocess.run([LOCAL, "run", "--input", inp, "--output", out, "--overwrite", *args],
                       capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"stackproc-local failed: {p.stderr}")
    return p


def load(path):
    with open(path) as f:
        return json.load(f)


# A uint16 stack with an all-zero corner (its chunks are left out of the shards' indexes), with
# ImageJ's physical size: z steps 2 um, pixels 0.25 um.
rng = np.random.default_rng(3)
D, H, W = 21, 150, 170
data = (rng.integers(0, 20000, (D, H, W)) + np.arange(W) * 200).astype(np.uint16)
data[:, :70, :70] = 0
tifffile.imwrite(f"{TMP}/in.tif", data, imagej=True, resolution=(4, 4),
                 metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})

# --- stackproc writes, zarrita reads -----------------------------------------------------------
for codec in ("none", "lz4", "zstd", "deflate"):
    run(f"{TMP}/in.tif", f"{TMP}/{codec}.tif", "--op", "invert", "--op", "invert",
        "--compression", "none")
    run(f"{TMP}/in.tif", f"{TMP}/{codec}.ome.zarr", "--op", "invert", "--op", "invert",
        "--compression", codec, "--chunks", "1x64x64")
    got, info = zarr_read.read(f"{TMP}/{codec}.ome.zarr")
    check(np.array_equal(got, tifffile.imread(f"{TMP}/{codec}.tif")) and
          info["chunks"] == [1, 64, 64],
          f"{codec}: zarrita reads the sharded store as the same job's TIFF ({info['chunks']})")

# The array's zarr.json, field by field (Zarr v3 core spec and sharding_indexed).
meta = load(f"{TMP}/zstd.ome.zarr/0/zarr.json")
sharding = meta["codecs"][0]
want_sharding = {
    "name": "sharding_indexed",
    "configuration": {"chunk_shape": [1, 64, 64],
                      "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                 {"name": "blosc", "configuration": {
                                     "cname": "zstd", "clevel": 1, "shuffle": "shuffle",
                                     "typesize": 2, "blocksize": 0}}],
                      "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                       {"name": "crc32c"}],
                      "index_location": "end"}}
check(meta["zarr_format"] == 3 and meta["node_type"] == "array" and meta["shape"] == [D, H, W] and
      meta["data_type"] == "uint16" and meta["fill_value"] == 0 and
      meta["chunk_grid"] == {"name": "regular", "configuration": {"chunk_shape": [16, 192, 192]}} and
      meta["chunk_key_encoding"] == {"name": "default", "configuration": {"separator": "/"}} and
      meta["dimension_names"] == ["z", "y", "x"] and sharding == want_sharding,
      "zarr.json: v3 array, uint16, shards of 16 slices by the plane in whole chunks, keys c/z/y/x, "
      f"sharding_indexed with blosc-zstd inside and a crc32c'd index at the end ({meta['chunk_grid']})")
group = load(f"{TMP}/zstd.ome.zarr/zarr.json")
ome = group["attributes"]["ome"]
ms = ome["multiscales"][0]
check(group["zarr_format"] == 3 and group["node_type"] == "group" and ome["version"] == "0.5" and
      "version" not in ms and
      ms["axes"] == [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"] and
      ms["datasets"] == [{"path": "0", "coordinateTransformations": [
          {"type": "scale", "scale": [2.0, 0.25, 0.25]}]}] and
      group["attributes"]["stackproc"]["zarr_format"] == 3,
      "group zarr.json: NGFF 0.5 (version under \"ome\", not in the multiscale), axes z,y,x in "
      "micrometer, scale [2, 0.25, 0.25], the record beside \"ome\"")

# A shard's index, read here: 16 x 3 x 3 inner chunks, the 0-corner's absent, the crc32c right.
with open(f"{TMP}/zstd.ome.zarr/0/c/0/0/0", "rb") as f:
    shard = f.read()
n = 16 * 3 * 3
index = shard[-(16 * n + 4):]
entries = [int.from_bytes(index[8 * i:8 * i + 8], "little") for i in range(2 * n)]
absent = [i for i in range(n) if entries[2 * i] == MISSING and entries[2 * i + 1] == MISSING]
want_absent = [z * 9 + y * 3 + x for z in range(16) for y in range(3) for x in range(3)
               if (y, x) == (0, 0) or y * 64 >= H or x * 64 >= W]
spans = sorted((entries[2 * i], entries[2 * i + 1]) for i in range(n) if i not in absent)
contiguous = all(a[0] + a[1] == b[0] for a, b in zip(spans, spans[1:])) and spans[0][0] == 0
check(int.from_bytes(index[-4:], "little") == crc32c(index[:-4]) and absent == want_absent and
      contiguous and spans[-1][0] + spans[-1][1] == len(shard) - len(index),
      f"a shard's index: crc32c right, {len(absent)} chunks absent (zeros, and none beyond the "
      "image), the others back to back before the index")

# Pyramids: every level sharded, each the same as the job's NGFF 0.4 store (zarr-python).
run(f"{TMP}/in.tif", f"{TMP}/pyr.ome.zarr", "--op", "gaussian:ksize=3", "--pyramid", "2")
run(f"{TMP}/in.tif", f"{TMP}/pyr2.ome.zarr", "--op", "gaussian:ksize=3", "--pyramid", "2",
    "--zarr-format", "2")
levels_ok = []
for level in ("0", "1", "2"):
    v3, info = zarr_read.read(f"{TMP}/pyr.ome.zarr", level)
    v2, _ = zarr_read.read(f"{TMP}/pyr2.ome.zarr", level)
    levels_ok.append(np.array_equal(v3, v2) and
                     load(f"{TMP}/pyr.ome.zarr/{level}/zarr.json")["codecs"][0]["name"] ==
                     "sharding_indexed")
scales = [d["coordinateTransformations"]
          for d in load(f"{TMP}/pyr.ome.zarr/zarr.json")["attributes"]["ome"]["multiscales"][0][
              "datasets"]]
scales2 = [d["coordinateTransformations"]
           for d in load(f"{TMP}/pyr2.ome.zarr/.zattrs")["multiscales"][0]["datasets"]]
check(all(levels_ok) and scales == scales2,
      f"a pyramid of 2 levels, each sharded: zarrita reads what zarr-python reads of the 0.4 "
      f"store, with the same scales {[s[0]['scale'] for s in scales]}")

# Shards and chunks of several slices; shards equal to the chunks: no sharding at all.
run(f"{TMP}/in.tif", f"{TMP}/deep.ome.zarr", "--chunks", "2x32x48", "--zarr-shards", "4x64x96")
got, info = zarr_read.read(f"{TMP}/deep.ome.zarr")
grid = load(f"{TMP}/deep.ome.zarr/0/zarr.json")["chunk_grid"]["configuration"]["chunk_shape"]
check(np.array_equal(got, data) and info["chunks"] == [2, 32, 48] and grid == [4, 64, 96],
      f"--chunks 2x32x48 --zarr-shards 4x64x96: zarrita reads the pixels ({grid})")
run(f"{TMP}/in.tif", f"{TMP}/flat.ome.zarr", "--chunks", "1x64x64", "--zarr-shards", "1x64x64")
got, _ = zarr_read.read(f"{TMP}/flat.ome.zarr")
codecs = load(f"{TMP}/flat.ome.zarr/0/zarr.json")["codecs"]
check(np.array_equal(got, data) and codecs[0]["name"] == "bytes" and
      not os.path.exists(f"{TMP}/flat.ome.zarr/0/c/0/0/0") and
      os.path.exists(f"{TMP}/flat.ome.zarr/0/c/0/1/1"),
      "shards of one chunk: an unsharded v3 array, a file per chunk, the zero chunks not written")

# File counts: the default v3 store against the v2 store of the same job (64 slices).
big = np.resize(data, (64, H, W))
tifffile.imwrite(f"{TMP}/big.tif", big)
run(f"{TMP}/big.tif", f"{TMP}/big3.ome.zarr")
run(f"{TMP}/big.tif", f"{TMP}/big2.ome.zarr", "--zarr-format", "2")
count3 = sum(len(f) for _, _, f in os.walk(f"{TMP}/big3.ome.zarr"))
count2 = sum(len(f) for _, _, f in os.walk(f"{TMP}/big2.ome.zarr"))
check(count3 == 2 + 4 and count2 == 3 + 64,
      f"files: {count3} in the sharded store (metadata and 4 shards), {count2} in the 0.4 one")

# Channels: c, z, y, x with omero's channels under "ome"; dimension names say which is which.
two = rng.integers(0, 4000, (2, 6, 40, 56)).astype(np.uint16)
tifffile.imwrite(f"{TMP}/two.ome.tif", two, ome=True, metadata={
    "axes": "CZYX", "Channel": {"Name": ["DAPI", "GFP"]}})
run(f"{TMP}/two.ome.tif", f"{TMP}/two.ome.zarr", "--op", "invert")
got, info = zarr_read.read(f"{TMP}/two.ome.zarr")
ome = info["group"]["ome"]
check(np.array_equal(got, 65535 - two) and
      [a["name"] for a in ome["multiscales"][0]["axes"]] == ["c", "z", "y", "x"] and
      [c["label"] for c in ome["omero"]["channels"]] == ["DAPI", "GFP"] and
      load(f"{TMP}/two.ome.zarr/0/zarr.json")["dimension_names"] == ["c", "z", "y", "x"],
      "2 channels: c,z,y,x, omero labels under \"ome\", dimension names")

# --- a second writer, stackproc reads ----------------------------------------------------------
def read_back(store, want, what):
    out = f"{TMP}/back.tif"
    p = run(store, out, "--compression", "none", ok=False)
    got = tifffile.imread(out) if p.returncode == 0 else None
    check(got is not None and got.shape == want.shape and np.array_equal(got, want),
          f"{what} {p.stderr.strip()[-200:] if p.returncode else ''}")


small = rng.integers(0, 60000, (9, 50, 70)).astype(np.uint16)
fill = 77
holes = small.copy()
holes[2:4, 16:32, 0:16] = fill  # inner chunk (1, 1, 0) of 2x16x16, left out of its shard
write_array(f"{TMP}/w1.zarr", holes, chunks=(2, 16, 16), shards=(4, 32, 32),
            codec=("blosc", "lz4", 5, "shuffle"), fill_value=fill, missing={(1, 1, 0)})
read_back(f"{TMP}/w1.zarr", holes, "sharded, blosc lz4, an inner chunk absent (the fill value 77)")
write_array(f"{TMP}/w2.zarr", small, chunks=(3, 25, 35), shards=(3, 50, 70), codec=("zstd", 3),
            index_location="start", index_crc=False)
read_back(f"{TMP}/w2.zarr", small, "sharded, zstd, the index at the start without crc32c")
write_array(f"{TMP}/w3.zarr", small, chunks=(4, 20, 30), codec=("gzip", 6),
            key_encoding=("v2", "."))
read_back(f"{TMP}/w3.zarr", small, "unsharded, gzip, v2 chunk keys \"0.1.2\"")
write_array(f"{TMP}/w4.zarr", small, chunks=(2, 16, 24), shards=(4, 32, 48), endian="big",
            transpose=(2, 0, 1), chunk_crc=True, codec=("blosc", "zstd", 3, "bitshuffle"))
read_back(f"{TMP}/w4.zarr", small, "big endian, transposed chunks, blosc zstd bitshuffle, "
          "each chunk crc32c'd")
floats = rng.random((5, 30, 40)).astype(np.float32)
write_array(f"{TMP}/w5.zarr", floats, chunks=(1, 30, 40), key_encoding=("default", "."))
read_back(f"{TMP}/w5.zarr", floats, "float32, unsharded, default keys with \".\" (\"c.0.0.0\")")
write_image(f"{TMP}/w6.ome.zarr", small, scale=(3.0, 0.5, 0.5), chunks=(1, 25, 35),
            shards=(9, 50, 70))
read_back(f"{TMP}/w6.ome.zarr", small, "an NGFF 0.5 image: level 0")
p = subprocess.run([LOCAL, "info", f"{TMP}/w6.ome.zarr"], capture_output=True, text=True)
check(p.returncode == 0 and "9 z, 70x50 uint16" in p.stdout,
      f"info of an NGFF 0.5 image: {p.stdout.splitlines()[:1]}")

# An NGFF 0.5 image of t, c, z, y, x with omero's channels, written by zarrita: read as 2 time
# points of 2 channels, their names and the z step carried into the OME-TIFF (tifffile reads it).
tcz = rng.integers(0, 4000, (2, 2, 3, 30, 40)).astype(np.uint16)
zarr_read.write(f"{TMP}/tcz.ome.zarr", tcz, "tczyx", {"ome": {
    "version": "0.5",
    "multiscales": [{"axes": [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] +
                     [{"name": n, "type": "space", "unit": "micrometer"} for n in "zyx"],
                     "datasets": [{"path": "0", "coordinateTransformations": [
                         {"type": "scale", "scale": [1.0, 1.0, 2.0, 0.5, 0.5]}]}]}],
    "omero": {"channels": [
        {"label": "DAPI", "color": "0000FF", "window": {"start": 10, "end": 900}},
        {"label": "GFP", "color": "00FF00", "window": {"start": 20, "end": 1800}}]}}})
run(f"{TMP}/tcz.ome.zarr", f"{TMP}/tcz.ome.tif", "--op", "invert")
with tifffile.TiffFile(f"{TMP}/tcz.ome.tif") as tif:
    series, ome_xml = tif.series[0], tif.ome_metadata
    got = series.asarray()
check(series.axes == "TCZYX" and np.array_equal(got, 65535 - tcz) and 'Name="DAPI"' in ome_xml and
      'Name="GFP"' in ome_xml and 'PhysicalSizeZ="2' in ome_xml,
      f"zarrita's t,c,z,y,x image with omero channels: read as {series.axes} {got.shape}, "
      "channel names and z step kept")
p = subprocess.run([LOCAL, "info", f"{TMP}/tcz.ome.zarr"], capture_output=True, text=True)
check(p.returncode == 0 and "2 time points" in p.stdout and "2 channels" in p.stdout,
      f"info of zarrita's image: {p.stdout.splitlines()[:2]}")


# Bad stores: refused naming the file, nothing written.
def refused(store, words, what):
    out = f"{TMP}/refused.tif"
    p = run(store, out, ok=False)
    check(p.returncode != 0 and all(w in p.stderr for w in words) and not os.path.exists(out),
          f"{what}: refused ({p.stderr.strip()[-160:]})")


def damaged(name, change):
    shutil.copytree(f"{TMP}/w1.zarr", f"{TMP}/{name}")
    change(f"{TMP}/{name}")
    return f"{TMP}/{name}"


def with_codec(path):
    meta = load(f"{path}/zarr.json")
    meta["codecs"][0]["configuration"]["codecs"].append({"name": "bitround"})
    json.dump(meta, open(f"{path}/zarr.json", "w"))


def truncate(path):
    with open(f"{path}/c/0/0/0", "r+b") as f:
        f.truncate(100)


def flip_index(path):
    with open(f"{path}/c/0/0/0", "r+b") as f:
        f.seek(-20, 2)
        b = f.read(1)
        f.seek(-20, 2)
        f.write(bytes([b[0] ^ 0xFF]))


def past_end(path):
    with open(f"{path}/c/0/0/0", "rb") as f:
        blob = bytearray(f.read())
    n = 2 * 2 * 2  # inner chunks of a shard
    table = bytearray(blob[-(16 * n + 4):-4])
    table[0:8] = (len(blob) * 2).to_bytes(8, "little")  # chunk 0 starts past the file's end
    blob[-(16 * n + 4):] = table + crc32c(bytes(table)).to_bytes(4, "little")
    with open(f"{path}/c/0/0/0", "wb") as f:
        f.write(blob)


def lying_shape(path):
    meta = load(f"{path}/zarr.json")
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [8, 32, 32]  # shards of 8, not 4
    json.dump(meta, open(f"{path}/zarr.json", "w"))


refused(damaged("codec.zarr", with_codec), ["codec.zarr/zarr.json", "bitround"],
        "an unknown codec")
refused(damaged("cut.zarr", truncate), ["cut.zarr/c/0/0/0", "truncated"], "a truncated shard")
refused(damaged("crc.zarr", flip_index), ["crc.zarr/c/0/0/0", "crc32c"],
        "a shard index with a bad crc32c")
refused(damaged("past.zarr", past_end), ["past.zarr/c/0/0/0", "outside its data"],
        "an index entry past the shard's end")
refused(damaged("lies.zarr", lying_shape), ["lies.zarr/c/0/0/0"],
        "a zarr.json whose shards are not what the files hold")

shutil.rmtree(TMP)
if failures:
    print(f"{len(failures)} failed")
    sys.exit(1)
print("all passed")
