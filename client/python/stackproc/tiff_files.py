"""Client.process_file: a local TIFF stack through the server into a local TIFF, a slice in
memory at a time on either side."""

import html
import json
import os
import re
import secrets

import numpy as np

from stackproc import errors
from stackproc.convert import DTYPES, Metadata, compression, pixel_type
from stackproc.v1 import service_pb2


def _tifffile():
    import tifffile  # Debian's python3-tifffile; only process_file needs it
    return tifffile


def _input(path):
    """(TiffFile, its pages, shape, dtype, raw StreamHeader metadata) of a local stack."""
    tif = _tifffile().TiffFile(path)
    pages = tif.pages
    first = pages[0]
    if len(first.shape) != 2:
        tif.close()
        raise errors.InvalidArgument(f"{path}: pages of shape {first.shape}; one sample per "
                                     "pixel (2-D pages) is what stackproc reads")
    meta = {"description": first.description or ""}
    tags = first.tags
    if "XResolution" in tags and "YResolution" in tags:
        (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
        meta.update(x_resolution=xn / xd if xd else 0, y_resolution=yn / yd if yd else 0,
                    resolution_unit=int(tags["ResolutionUnit"].value)
                    if "ResolutionUnit" in tags else 2)
    return tif, pages, (len(pages),) + first.shape, first.dtype, meta


def _recording_codec(description, compression_text):
    """`description` with its provenance record (which the server wrote for the job) saying the
    codec this client writes with: the server ran the pipeline, the file's codec is chosen here.
    The record is where stackproc puts it (core/stack/provenance.h): an OME-XML MapAnnotation's
    M element, tifffile's JSON key, or a "stackproc=" line."""
    text = compression_text or "default"
    m = re.search(r'(<(?:\w+:)?M K="compression">)[^<]*(</(?:\w+:)?M>)', description)
    if m and 'Namespace="stackproc"' in description:
        return description[:m.start()] + m.group(1) + html.escape(text) + m.group(2) + \
            description[m.end():]
    if description.lstrip().startswith("{"):
        try:
            obj = json.loads(description)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("stackproc"), dict):
            obj["stackproc"]["compression"] = text
            return json.dumps(obj)
    lines = description.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("stackproc="):
            record = json.loads(line[len("stackproc="):])
            record["compression"] = text
            lines[i] = "stackproc=" + json.dumps(record, separators=(",", ":")).replace(
                "=", "\\u003d")
    return "\n".join(lines)


class _TiffSink:
    """Result slices appended to a TIFF as they complete (BigTIFF past 4 GB)."""

    def __init__(self, path, codec, compression_text=None):
        self.path, self.codec, self.writer = path, codec, None
        self.compression_text = compression_text

    def begin(self, shape, dtype, metadata):
        big = np.prod(shape, dtype=np.int64) * dtype.itemsize > (4 << 30) - (32 << 20)
        self.writer = _tifffile().TiffWriter(self.path, bigtiff=bool(big))
        self.buffer = np.empty(shape[1:], dtype)
        self.meta = metadata

    def slice(self, z):
        return self.buffer.reshape(-1).view(np.uint8)

    def done(self, z):
        extra = {}
        if z == 0:  # the stack's description and resolution go on its first page
            extra["description"] = _recording_codec(self.meta.description or "",
                                                    self.compression_text) or None
            if self.meta.pixel_size:
                extra["resolution"] = (1 / self.meta.pixel_size[1], 1 / self.meta.pixel_size[0])
                extra["resolutionunit"] = self.meta.resolution_unit
        self.writer.write(self.buffer, contiguous=self.codec["compression"] is None,
                          metadata=None, **self.codec, **extra)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _codec(text):
    """tifffile's compression and predictor for `text`: deflate without a predictor unless asked
    (ImageJ/Fiji undo none for deflate), as stackprocd writes it."""
    codec, level, predictor = compression(text)
    if codec in (service_pb2.COMPRESSION_UNSPECIFIED, service_pb2.COMPRESSION_NONE):
        if predictor != service_pb2.PREDICTOR_UNSPECIFIED:
            raise errors.InvalidArgument(f"compression {text!r}: none takes no predictor")
        return {"compression": None}
    if codec == service_pb2.COMPRESSION_DEFLATE:
        return {"compression": ("zlib", level or 1),
                "predictor": predictor == service_pb2.PREDICTOR_DIFFERENCING}
    raise errors.InvalidArgument(f"compression {text!r}: process_file writes none or deflate "
                                 "(tifffile); `stackproc process` writes every codec")


def process_file(client, input_path, output_path, ops, compression_text, overwrite, progress,
                 wire_compression):
    output_path = os.fspath(output_path)
    if not output_path.lower().endswith((".tif", ".tiff")):
        raise errors.InvalidArgument(f"{output_path}: process_file writes TIFF (NAME.tif); "
                                     "`stackproc process` writes OME-Zarr and planes too")
    if os.path.lexists(output_path) and not overwrite:
        raise errors.AlreadyExists(f"{output_path} exists (pass overwrite=True to replace it)")
    codec = _codec(compression_text)
    tif, pages, shape, dtype, raw = _input(input_path)
    wire = DTYPES[pixel_type(dtype)]
    folder, name = os.path.split(os.path.abspath(output_path))
    temp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    sink = _TiffSink(temp, codec, compression_text)
    try:
        header = client._header(shape, dtype, ops, Metadata())
        header.description = raw["description"]
        header.name = os.fspath(input_path)  # the input as the output's record names it
        for key in ("x_resolution", "y_resolution", "resolution_unit"):
            if key in raw:
                setattr(header, key, raw[key])

        def slice_bytes(z):
            return memoryview(np.ascontiguousarray(pages[z].asarray(), dtype=wire)).cast("B")

        client._process(header, slice_bytes, sink, progress, wire_compression)
        sink.close()
        os.replace(temp, output_path)
    except BaseException:  # an error, or Ctrl-C: nothing is left under either name
        sink.close()
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    finally:
        tif.close()
    return output_path

