#!/usr/bin/python3
"""A small Zarr v3 writer that follows the specification, written for stackproc's reader tests
without looking at stackproc's writer: https://zarr-specs.readthedocs.io/en/latest/v3/core/
and .../v3/codecs/sharding-indexed/. Compressors come from Debian's numcodecs (blosc, zstd,
gzip); crc32c is computed here (CRC-32C, the Castagnoli polynomial, reflected).

write_array(path, data, chunks, ...) writes one array; write_image(path, data, ...) an NGFF 0.5
image (a group whose "ome" attribute names the array "0")."""
import json
import os

import numcodecs
import numpy

_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C

MISSING = 2**64 - 1


def _compressor(codec, itemsize):
    """(codec JSON, numcodecs object) for ("blosc", cname, clevel, shuffle), ("zstd", level),
    ("gzip", level) or None."""
    if codec is None:
        return None, None
    if codec[0] == "blosc":
        _, cname, clevel, shuffle = codec
        number = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[shuffle]
        return ({"name": "blosc", "configuration": {"cname": cname, "clevel": clevel,
                                                    "shuffle": shuffle, "typesize": itemsize,
                                                    "blocksize": 0}},
                numcodecs.Blosc(cname=cname, clevel=clevel, shuffle=number))
    if codec[0] == "zstd":
        return ({"name": "zstd", "configuration": {"level": codec[1], "checksum": False}},
                numcodecs.Zstd(level=codec[1]))
    if codec[0] == "gzip":
        return {"name": "gzip", "configuration": {"level": codec[1]}}, numcodecs.GZip(codec[1])
    raise ValueError(codec)


def _encode(block, endian, transpose, compressor, chunk_crc):
    """A chunk's bytes through [transpose], bytes, [compressor], [crc32c]."""
    if transpose is not None:
        block = numpy.transpose(block, transpose)
    raw = numpy.ascontiguousarray(block).astype(block.dtype.newbyteorder(
        "<" if endian == "little" else ">")).tobytes()
    if compressor is not None:
        raw = bytes(compressor.encode(raw))
    if chunk_crc:
        raw += crc32c(raw).to_bytes(4, "little")
    return raw


def _chunk(data, index, chunks, fill):
    """The chunk at `index`, padded with the fill value where it passes the array's end."""
    block = numpy.full(chunks, fill, dtype=data.dtype)
    region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, data.shape))
    block[tuple(slice(0, s.stop - s.start) for s in region)] = data[region]
    return block


def write_array(path, data, chunks, shards=None, codec=None, endian="little", transpose=None,
                index_location="end", index_crc=True, key_encoding=("default", "/"),
                fill_value=0, missing=(), chunk_crc=False, attributes=None, dimension_names=None):
    """Writes `data` as a v3 array at `path`. With `shards`, inner chunks of `chunks` are packed
    in shards of that shape; `missing` lists inner chunk indices (whole-array chunk grid) left
    out of their shard's index. Chunks equal to the fill value are written anyway."""
    os.makedirs(path, exist_ok=True)
    itemsize = data.dtype.itemsize
    codec_json, compressor = _compressor(codec, itemsize)
    chain = []
    if transpose is not None:
        chain.append({"name": "transpose", "configuration": {"order": list(transpose)}})
    chain.append({"name": "bytes", "configuration": {"endian": endian}})
    if codec_json:
        chain.append(codec_json)
    if chunk_crc:
        chain.append({"name": "crc32c"})
    grid = shards or chunks
    if shards:
        index_codecs = [{"name": "bytes", "configuration": {"endian": "little"}}]
        if index_crc:
            index_codecs.append({"name": "crc32c"})
        codecs = [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": list(chunks), "codecs": chain, "index_codecs": index_codecs,
            "index_location": index_location}}]
    else:
        codecs = chain
    kind, separator = key_encoding
    meta = {"zarr_format": 3, "node_type": "array", "shape": list(data.shape),
            "data_type": str(data.dtype),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(grid)}},
            "chunk_key_encoding": {"name": kind, "configuration": {"separator": separator}},
            "fill_value": fill_value, "codecs": codecs, "attributes": attributes or {}}
    if dimension_names:
        meta["dimension_names"] = dimension_names
    with open(os.path.join(path, "zarr.json"), "w") as f:
        json.dump(meta, f, indent=2)

    def key(index):
        joined = separator.join(str(i) for i in index)
        return os.path.join(path, *(("c" + separator + joined) if kind == "default"
                                    else joined).split("/"))

    for index in numpy.ndindex(*[-(-n // g) for n, g in zip(data.shape, grid)]):
        if shards:
            per = [s // c for s, c in zip(shards, chunks)]
            body, entries = b"", []
            for inner in numpy.ndindex(*per):
                chunk_index = tuple(i * p + j for i, p, j in zip(index, per, inner))
                outside = any(ci * c >= n for ci, c, n in zip(chunk_index, chunks, data.shape))
                if outside or chunk_index in missing:
                    entries += [MISSING, MISSING]
                    continue
                encoded = _encode(_chunk(data, chunk_index, chunks, fill_value), endian,
                                  transpose, compressor, chunk_crc)
                entries += [len(body), len(encoded)]
                body += encoded
            table = b"".join(e.to_bytes(8, "little") for e in entries)
            if index_crc:
                table += crc32c(table).to_bytes(4, "little")
            if index_location == "start":  # the chunks' offsets count from the file's start
                for i in range(0, len(entries), 2):
                    if entries[i] != MISSING:
                        entries[i] += len(table)
                table = b"".join(e.to_bytes(8, "little") for e in entries)
                if index_crc:
                    table += crc32c(table).to_bytes(4, "little")
                blob = table + body
            else:
                blob = body + table
        else:
            if index in missing:
                continue
            blob = _encode(_chunk(data, index, chunks, fill_value), endian, transpose,
                           compressor, chunk_crc)
        os.makedirs(os.path.dirname(key(index)), exist_ok=True)
        with open(key(index), "wb") as f:
            f.write(blob)


def write_image(path, data, scale, unit="micrometer", **array):
    """An NGFF 0.5 image of z, y, x: the group's zarr.json, and the array "0"."""
    os.makedirs(path, exist_ok=True)
    axes = [{"name": n, "type": "space", "unit": unit} for n in ("z", "y", "x")]
    ome = {"version": "0.5", "multiscales": [{
        "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": list(scale)}]}]}]}
    with open(os.path.join(path, "zarr.json"), "w") as f:
        json.dump({"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}}, f)
    write_array(os.path.join(path, "0"), data, dimension_names=["z", "y", "x"], **array)
