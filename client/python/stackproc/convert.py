"""Python values to the API's messages and back: operations, compression, pixel types,
metadata and job states."""

import dataclasses
import re

import numpy as np

from stackproc import errors
from stackproc.v1 import operation_pb2, service_pb2

# numpy's types by the API's pixel types, little-endian as the wire carries them.
DTYPES = {
    operation_pb2.PIXEL_TYPE_UINT8: np.dtype("<u1"),
    operation_pb2.PIXEL_TYPE_UINT16: np.dtype("<u2"),
    operation_pb2.PIXEL_TYPE_FLOAT32: np.dtype("<f4"),
}
_PIXEL_TYPES = {dtype.kind + str(dtype.itemsize): pt for pt, dtype in DTYPES.items()}


def pixel_type(dtype):
    """The API's PixelType for a numpy dtype (of either byte order)."""
    dtype = np.dtype(dtype)
    try:
        return _PIXEL_TYPES[dtype.kind + str(dtype.itemsize)]
    except KeyError:
        raise TypeError(f"pixel type {dtype} is not supported (uint8, uint16 or float32)") from None


def op_spec(op):
    """An OpSpec from the text form "name:key=value,..." or a dict {"name": ..., key: value}."""
    if isinstance(op, str):
        name, _, rest = op.strip().partition(":")
        params = {}
        for item in filter(None, (i.strip() for i in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"operation {op!r}: parameter {item!r} has no value (key=value)")
            params[key.strip()] = value.strip()
    elif isinstance(op, dict):
        params = dict(op)
        name = params.pop("name", "")
    else:
        raise TypeError(f"an operation is a text or a dict, not {type(op).__name__}")
    if not name.strip():
        raise ValueError(f"operation {op!r} has no name (name:key=value,... or {{'name': ...}})")
    return operation_pb2.OpSpec(name=name.strip(), params={k: _text(v) for k, v in params.items()})


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def op_specs(ops):
    """OpSpecs for one operation or a list of them (none: a conversion)."""
    if ops is None:
        return []
    if isinstance(ops, (str, dict)):
        ops = [ops]
    return [op_spec(op) for op in ops]


def _names(enum, prefix, unspecified):
    """The API enum's values by their CLI names: COMPRESSION_ZSTD is "zstd"."""
    return {(unspecified if name.endswith("_UNSPECIFIED") else name[len(prefix):].lower()): value
            for name, value in enum.items() if unspecified or not name.endswith("_UNSPECIFIED")}


_CODECS = _names(service_pb2.Compression, "COMPRESSION_", "default")
_PREDICTORS = _names(service_pb2.Predictor, "PREDICTOR_", None)


def compression(text):
    """(Compression, level, Predictor) from the CLI's form "CODEC" or
    "CODEC:level=N,predictor=none|differencing" (None: the default); InvalidArgument otherwise,
    as the server would say (which also checks the level's range and who takes a predictor)."""
    if text is None:
        return service_pb2.COMPRESSION_UNSPECIFIED, 0, service_pb2.PREDICTOR_UNSPECIFIED
    name, _, keys = text.strip().partition(":")
    level, predictor = 0, service_pb2.PREDICTOR_UNSPECIFIED
    ok = name in _CODECS and (not _ or keys)
    for pair in keys.split(",") if keys else []:
        key, _, value = pair.partition("=")
        if key == "level" and value.isdigit() and int(value) > 0:
            level = int(value)
        elif key == "predictor" and value in _PREDICTORS:
            predictor = _PREDICTORS[value]
        else:
            ok = False
    if not ok:
        raise errors.InvalidArgument(f"compression {text!r}: one of {', '.join(_CODECS)}, "
                                     "optionally with :level=N,predictor=none|differencing")
    return _CODECS[name], level, predictor


@dataclasses.dataclass
class Metadata:
    """A stack's physical size, carried with its pixels both ways.

    pixel_size: (y, x) in `unit` per pixel; spacing: z step in `unit`; description: the
    ImageJ or OME-XML text as the TIFF holds it (made from the fields above when empty);
    resolution_unit: the TIFF's (1 none, as ImageJ writes with a unit in the description;
    2 inch; 3 centimetre); channels: each channel's name and display settings where the stack
    has them, a dict of "name", "rgba" (0xRRGGBBAA) and "window" ((start, end) in pixel
    values) each, or None.
    """
    pixel_size: tuple = None
    spacing: float = None
    unit: str = None
    description: str = ""
    resolution_unit: int = 1
    channels: list = None

    def to_proto(self, header, depth, z_stack=True):
        """Fills the description and resolution fields of a StreamHeader (of `depth` planes:
        one z-stack, or planes of time points and channels that header.dimensions states)."""
        description = self.description
        if not description and (self.spacing or self.unit):
            counts = f"images={depth}\nslices={depth}\n" if z_stack else ""
            description = "ImageJ=1.11a\n" + counts
            if self.spacing:
                description += f"spacing={self.spacing}\n"
            if self.unit:
                description += f"unit={self.unit}\n"
        header.description = description
        if self.pixel_size:
            header.y_resolution, header.x_resolution = (1.0 / s for s in self.pixel_size)
            header.resolution_unit = self.resolution_unit
        for channel in self.channels or []:
            info = header.dimensions.channel_info.add(name=channel.get("name", ""))
            if channel.get("rgba") is not None:
                info.rgba = channel["rgba"]
            if channel.get("window") is not None:
                info.window_start, info.window_end = channel["window"]

    @classmethod
    def from_proto(cls, header):
        """From a ResultHeader (what the pipeline made of the input's metadata)."""
        fields = dict(re.findall(r"^(\w+)=(.*)$", header.description, re.MULTILINE))
        pixel_size = None
        if header.x_resolution > 0 and header.y_resolution > 0:
            pixel_size = (1.0 / header.y_resolution, 1.0 / header.x_resolution)
        spacing = float(fields["spacing"]) if "spacing" in fields else None
        channels = []
        for info in header.dimensions.channel_info:
            channel = {"name": info.name}
            if info.HasField("rgba"):
                channel["rgba"] = info.rgba
            if info.HasField("window_start") and info.HasField("window_end"):
                channel["window"] = (info.window_start, info.window_end)
            channels.append(channel)
        return cls(pixel_size, spacing, fields.get("unit"), header.description,
                   header.resolution_unit or 1, channels or None)


@dataclasses.dataclass
class JobStatus:
    """A job as the server last described it."""
    id: str
    state: str              # queued, running, succeeded, failed, cancelled, interrupted
    stage: str              # what it does now, or why it waits
    slices_done: int
    slices_total: int
    bytes_per_second: float
    eta_seconds: float      # negative when unknown
    input: str              # the input path ("" for a streamed job)
    output: str             # the output path ("" for an in-memory result)
    error_code: int         # a grpc status number, 0 when none
    error: str
    proto: service_pb2.Job = dataclasses.field(repr=False)

    @property
    def ended(self):
        return self.state in ("succeeded", "failed", "cancelled", "interrupted")

    @classmethod
    def from_proto(cls, job):
        p = job.progress
        return cls(job.id, service_pb2.JobState.Name(job.state)[len("JOB_STATE_"):].lower(),
                   p.stage, p.slices_done, p.slices_total, p.bytes_per_second, p.eta_seconds,
                   job.spec.input_path, job.spec.output.path, job.error.code, job.error.message,
                   job)


@dataclasses.dataclass
class Preview:
    """A pipeline on a few slices: the slices (z), as read (before: a (n, y, x) array) and as
    each variant made them (after: a (variants, n, y, x) array, after[i] labelled labels[i]; a
    list of (n, y, x) arrays when a sweep gives the variants other sizes or types), with what
    to know (notes), and where each slice lies in the input (places: (t, c, z) tuples, c the
    channel's number there)."""
    z: list
    before: np.ndarray
    after: np.ndarray
    labels: list
    notes: list
    places: list = dataclasses.field(default_factory=list)
