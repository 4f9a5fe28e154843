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


# tifffile's series axes for a stack's pages (before y, x and samples), as the API names them.
_PAGE_AXES = {"T": "t", "C": "c", "Z": "z", "Q": "z", "I": "z"}
_RGB = (("red", 0xFF0000FF), ("green", 0x00FF00FF), ("blue", 0x0000FFFF))


class _Input:
    """A local TIFF stack as process_file sends it. Its pages one plane each, their description
    saying what they are (dims None: the server reads it), when they are one sample a pixel and
    no channels are chosen. Otherwise planes in ImageJ's order (channel fastest, then z, then
    t) and `dims` for the StreamHeader: the samples of an RGB(A) file are its channels (named
    and coloured as stackproc-local names them), and `channels` chooses among those or among
    the channels tifffile's series finds."""

    def __init__(self, path, channels):
        self.tif = _tifffile().TiffFile(path)
        try:
            self._read(path, channels)
        except BaseException:
            self.tif.close()
            raise

    def _read(self, path, channels):
        pages = self.tif.pages
        first = pages[0]
        self.dtype, self.dims = first.dtype, None
        self.meta = {"description": first.description or ""}
        tags = first.tags
        if "XResolution" in tags and "YResolution" in tags:
            (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
            self.meta.update(x_resolution=xn / xd if xd else 0, y_resolution=yn / yd if yd else 0,
                             resolution_unit=int(tags["ResolutionUnit"].value)
                             if "ResolutionUnit" in tags else 2)
        samples = first.samplesperpixel
        height, width = first.imagelength, first.imagewidth
        self.imagej = _imagej_channels_of(self.tif.imagej_metadata or {})
        if samples == 1 and not channels:
            self.shape = (len(pages), height, width)
            self.plane = lambda p: pages[p].asarray()
            return
        series = self.tif.series[0]
        lead = [a for a in series.axes if a not in "YXS"]
        size = dict(zip(series.axes, series.shape))
        names = [_PAGE_AXES.get(a) for a in lead]
        lead_shape = tuple(size[a] for a in lead)
        if None in names or len(set(names)) != len(names) or \
                int(np.prod(lead_shape)) != len(pages):
            raise errors.InvalidArgument(
                f"{path}: tifffile reads its {len(pages)} pages as {series.axes} "
                f"{series.shape}: not planes of time points, channels and z-slices")
        sizes = dict(zip(names, lead_shape))
        if samples > 1 and sizes.get("c", 1) > 1:
            raise errors.InvalidArgument(f"{path}: pages of {samples} samples in "
                                         f"{sizes['c']} channels; `stackproc process` reads it")
        count = samples if samples > 1 else sizes.get("c", 1)
        chosen = list(channels) if channels else list(range(count))
        for c in chosen:
            if not 0 <= c < count:
                raise errors.InvalidArgument(f"{path}: no channel {c}: it has {count} "
                                             "(numbered from 0)")
        if len(set(chosen)) != len(chosen):
            raise errors.InvalidArgument(f"{path}: channels {chosen}: each once")
        times, slices, n = sizes.get("t", 1), sizes.get("z", 1), len(chosen)
        planar = samples > 1 and first.planarconfig == 2
        in_order = series.pages  # in the order of the series' axes (an OME TiffData's too)
        last = [None, None]  # the page decoded last: an RGB page gives a plane per sample

        def plane(p):
            t, z, c = p // (slices * n), p // n % slices, chosen[p % n]
            at = {"t": t, "c": 0 if samples > 1 else c, "z": z}
            i = int(np.ravel_multi_index([at[a] for a in names], lead_shape)) if names else 0
            if last[0] != i:
                if in_order[i] is None:
                    raise errors.InvalidArgument(f"{path}: tifffile finds no page {i} of its "
                                                 "series")
                last[:] = i, in_order[i].asarray()
            page = last[1]
            if samples == 1:
                return page
            return page[c] if planar else page[..., c]

        self.shape, self.plane = (times * n * slices, height, width), plane
        self.dims = {"times": times, "channels": n, "order": "CZT", "count": count,
                     "chosen": chosen, "info": [self._channel(c, samples, first) for c in chosen]}
        pixels = _ome_pixels(self.tif.ome_metadata)
        sizes_xy = [pixels.get(k) for k in ("PhysicalSizeY", "PhysicalSizeX")]
        if all(sizes_xy):  # the description will not say it: the tags do (unit in it)
            self.meta.update(y_resolution=1 / float(sizes_xy[0]),
                             x_resolution=1 / float(sizes_xy[1]), resolution_unit=1)

    def _channel(self, c, samples, first):
        """Channel c's name and colour: an RGB sample's, or the OME-XML's name, or ImageJ's
        colour and window."""
        if samples > 1:
            if first.photometric == 2 and c < 3:
                return {"name": _RGB[c][0], "rgba": _RGB[c][1]}
            return {}
        channel = dict(self.imagej[c]) if c < len(self.imagej) else {}
        elements = re.findall(r"<(?:\w+:)?Channel\b[^>]*>", self.tif.ome_metadata or "")
        if c < len(elements):
            name = re.search(r'\bName="([^"]*)"', elements[c])
            colour = re.search(r'\bColor="(-?\d+)"', elements[c])
            if name:
                channel["name"] = html.unescape(name.group(1))
            if colour:
                channel["rgba"] = int(colour.group(1)) & 0xFFFFFFFF
        return channel

    def hyperstack_description(self):
        """The ImageJ hyperstack description of the planes as sent (stackproc-local's for
        them: core/stack/metadata.cc DefaultDescription), with the input's z step."""
        planes, times, channels = self.shape[0], self.dims["times"], self.dims["channels"]
        lines = ["ImageJ=1.11a", f"images={planes}"]
        lines += [f"channels={channels}"] if channels > 1 else []
        lines += [f"slices={planes // (times * channels)}"]
        lines += [f"frames={times}"] if times > 1 else []
        if times * channels > 1:
            lines += ["hyperstack=true", f"mode={'composite' if channels > 1 else 'grayscale'}"]
        lines += ["loop=false"]
        spacing, unit = self._calibration()
        lines += [f"spacing={spacing}"] if spacing else []
        lines += [f"unit={unit}"] if unit else []
        return "\n".join(lines) + "\n"

    def _calibration(self):
        """(z step, unit) from ImageJ's description or OME-XML (either may be None)."""
        ij = self.tif.imagej_metadata or {}
        if "spacing" in ij or "unit" in ij:
            return ij.get("spacing"), ij.get("unit")
        pixels = _ome_pixels(self.tif.ome_metadata)
        unit = pixels.get("PhysicalSizeZUnit", pixels.get("PhysicalSizeXUnit", "\u00b5m"))
        unit = "micron" if unit == "\u00b5m" else unit
        if "PhysicalSizeZ" in pixels:
            return float(pixels["PhysicalSizeZ"]), unit
        return None, unit if "PhysicalSizeX" in pixels else None

    def recorded_input(self, record):
        """The server's record of the job (it saw the planes sent) made the file's: every
        channel and the channels chosen, as stackproc-local's record of the same run."""
        if self.dims is None or not self.dims["chosen"] or "input" not in record:
            return record
        count, chosen = self.dims["count"], self.dims["chosen"]
        if chosen != list(range(count)):
            record["channels"] = "+".join(str(c) for c in chosen)
        shape = record["input"].get("shape", {})
        if "c" in shape:
            shape["c"] = count
            record["input"]["bytes"] = int(np.prod([shape[a] for a in "tczyx"])) * \
                self.dtype.itemsize
        return record


def _ome_pixels(ome_xml):
    """The attributes of an OME-XML's (first) Pixels element, HTML entities decoded."""
    element = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", ome_xml or "")
    return {k: html.unescape(v) for k, v in
            re.findall(r'\b(\w+)="([^"]*)"', element.group(0))} if element else {}


def _recording_codec(description, compression_text, restate=lambda record: record):
    """`description` with its provenance record (which the server wrote for the job) saying the
    codec this client writes with: the server ran the pipeline, the file's codec is chosen here.
    The record is where stackproc puts it (core/stack/provenance.h): an OME-XML MapAnnotation's
    M element, tifffile's JSON key, or a "stackproc=" line; `restate` amends the JSON forms (the
    input and channels chosen here, which only come with an ImageJ description)."""
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
            obj["stackproc"] = restate(obj["stackproc"])
            return json.dumps(obj)
    lines = description.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("stackproc="):
            record = json.loads(line[len("stackproc="):])
            record["compression"] = text
            record = restate(record)
            lines[i] = "stackproc=" + json.dumps(record, separators=(",", ":")).replace(
                "=", "\\u003d")
    return "\n".join(lines)


class _TiffSink:
    """Result slices appended to a TIFF as they complete (BigTIFF past 4 GB)."""

    def __init__(self, path, codec, compression_text=None, restate=lambda record: record):
        self.path, self.codec, self.writer = path, codec, None
        self.compression_text, self.restate = compression_text, restate

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
                                                    self.compression_text, self.restate) or None
            if self.meta.description.startswith("ImageJ="):
                extra["extratags"] = _imagej_channels(self.meta.channels)
            if self.meta.pixel_size:
                extra["resolution"] = (1 / self.meta.pixel_size[1], 1 / self.meta.pixel_size[0])
                extra["resolutionunit"] = self.meta.resolution_unit
        self.writer.write(self.buffer, contiguous=self.codec["compression"] is None,
                          metadata=None, **self.codec, **extra)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _imagej_channels_of(ij):
    """Each channel's colour (a lookup table's brightest entry when it ramps up from black) and
    window from an ImageJ file's LUTs and Ranges, as stackproc-local reads them
    (core/tiff/imagej_metadata.cc); [] when it has neither for every channel."""
    count = int(ij.get("channels", 1))
    luts = ij.get("LUTs")  # tifffile gives one channel's table as a bare (3, 256) array
    luts = [] if luts is None else [luts] if np.ndim(luts) == 2 else list(luts)
    ranges = list(ij.get("Ranges") or [])
    by_colour, by_range = len(luts) == count, len(ranges) == 2 * count
    channels = [{} for _ in range(count)] if by_colour or by_range else []
    for c, channel in enumerate(channels):
        lut = np.asarray(luts[c]) if by_colour else None
        if lut is not None and lut.shape == (3, 256) and not lut[:, 0].any() and \
                (np.diff(lut.astype(int), axis=1) >= 0).all() and lut[:, 255].any():
            r, g, b = (int(v) for v in lut[:, 255])
            channel["rgba"] = r << 24 | g << 16 | b << 8 | 0xFF
        if by_range and np.isfinite(ranges[2 * c:2 * c + 2]).all() and \
                ranges[2 * c] <= ranges[2 * c + 1]:
            channel["window"] = (float(ranges[2 * c]), float(ranges[2 * c + 1]))
    return channels


def _imagej_channels(channels):
    """The IJMetadata tags of an ImageJ hyperstack's channel colours (a table from black to the
    colour, grey for a channel without one) and windows (when every channel has one), as
    stackproc-local writes them (core/tiff/imagej_metadata.cc); none when there is neither."""
    channels = channels or []
    coloured = any(c.get("rgba") is not None for c in channels)
    windowed = bool(channels) and all(c.get("window") is not None for c in channels)
    metadata = {}
    if windowed:
        metadata["Ranges"] = tuple(v for c in channels for v in c["window"])
    if coloured:
        ramp = np.arange(256, dtype=np.uint32)
        metadata["LUTs"] = [np.stack([ramp * ((c.get("rgba", 0xFFFFFFFF) >> s) & 0xFF) // 255
                                      for s in (24, 16, 8)]).astype(np.uint8) for c in channels]
    return list(_tifffile().imagej_metadata_tag(metadata, "<")) if metadata else []


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
                 wire_compression, channels=None):
    output_path = os.fspath(output_path)
    if not output_path.lower().endswith((".tif", ".tiff")):
        raise errors.InvalidArgument(f"{output_path}: process_file writes TIFF (NAME.tif); "
                                     "`stackproc process` writes OME-Zarr and planes too")
    if os.path.lexists(output_path) and not overwrite:
        raise errors.AlreadyExists(f"{output_path} exists (pass overwrite=True to replace it)")
    codec = _codec(compression_text)
    stack = _Input(input_path, channels)
    shape, dtype, raw = stack.shape, stack.dtype, stack.meta
    folder, name = os.path.split(os.path.abspath(output_path))
    temp = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    sink = _TiffSink(temp, codec, compression_text, stack.recorded_input)
    try:
        wire = DTYPES[pixel_type(dtype)]
        # the channels' names, colours and windows beyond what the description says
        channels = stack.dims["info"] if stack.dims else stack.imagej
        header = client._header(shape, dtype, ops, Metadata(channels=channels))
        if stack.dims is None:
            header.description = raw["description"]
        else:  # the planes as dims say; of the description only the z step is kept
            header.description = stack.hyperstack_description()
            d = header.dimensions
            d.times, d.channels, d.order = stack.dims["times"], stack.dims["channels"], "CZT"
        header.name = os.fspath(input_path)  # the input as the output's record names it
        for key in ("x_resolution", "y_resolution", "resolution_unit"):
            if key in raw:
                setattr(header, key, raw[key])

        def slice_bytes(z):
            return memoryview(np.ascontiguousarray(stack.plane(z), dtype=wire)).cast("B")

        client._process(header, slice_bytes, sink, progress, wire_compression)
        sink.close()
        os.replace(temp, output_path)
    except BaseException:  # an error, or Ctrl-C: nothing is left under either name
        sink.close()
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    finally:
        stack.tif.close()
    return output_path

