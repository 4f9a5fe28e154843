"""stackproc.Client: a connection to stackprocd, its jobs and streamed processing."""

import os

import grpc
import numpy as np

from stackproc import errors, streaming
from stackproc.convert import DTYPES, JobStatus, Metadata, Preview
from stackproc.convert import compression as parse_compression
from stackproc.convert import op_spec, op_specs, pixel_type
from stackproc.job import Job
from stackproc.v1 import operation_pb2, service_pb2, service_pb2_grpc

DEFAULT_SERVER = "127.0.0.1:50051"
# Keepalive as the C++ client's (proto/wire.h): a dead link ends a call in about 30 s.
_CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 10_000),
                    ("grpc.http2.max_pings_without_data", 0)]


def _read(path):
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def _channel_list(channels):
    """[2, 0] from [2, 0] or the CLI's "2+0"; [] for None (every channel)."""
    if isinstance(channels, str):
        try:
            return [int(c) for c in channels.split("+")]
        except ValueError:
            raise ValueError(f"channels {channels!r}: numbers from 0 joined by '+'") from None
    return [int(c) for c in channels or []]


class Client:
    """A connection to a stackprocd server.

    Each argument defaults to the variable the `stackproc` CLI reads: STACKPROC_SERVER
    (127.0.0.1:50051; "unix:/path" for a socket), STACKPROC_TOKEN, STACKPROC_TLS_CA (TLS when
    set) and STACKPROC_CLIENT_CERT/STACKPROC_CLIENT_KEY (mutual TLS). Use it in a `with`.
    """

    def __init__(self, target=None, *, token=None, tls_ca=None, tls_cert=None, tls_key=None):
        env = os.environ.get
        self.target = target or env("STACKPROC_SERVER") or DEFAULT_SERVER
        token = token or env("STACKPROC_TOKEN")
        tls_ca = tls_ca or env("STACKPROC_TLS_CA")
        tls_cert = tls_cert or env("STACKPROC_CLIENT_CERT")
        tls_key = tls_key or env("STACKPROC_CLIENT_KEY")
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if tls_ca or tls_cert:
            credentials = grpc.ssl_channel_credentials(
                _read(tls_ca), _read(tls_key), _read(tls_cert))
            self._channel = grpc.secure_channel(self.target, credentials,
                                                options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = service_pb2_grpc.StackProcessorStub(self._channel)
        self._info = None

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Calls, with gRPC's errors as StackprocErrors.
    def _call(self, method, request, timeout=None):
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc(e) from None

    def _stream(self, method, request, timeout=None):
        try:
            yield from getattr(self._stub, method)(
                request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise errors.from_rpc(e) from None

    def server_info(self):
        """The server's version, limits (bytes, slices, pixels per side), chunk and message
        sizes, memory budget and formats, as a dict."""
        if self._info is None:
            reply = self._call("GetServerInfo", service_pb2.GetServerInfoRequest())
            self._info = {
                "version": reply.version, "max_chunk_bytes": reply.max_chunk_bytes,
                "max_message_bytes": reply.max_message_bytes,
                "max_stack_bytes": reply.max_stack_bytes, "max_slices": reply.max_slices,
                "max_side": reply.max_side, "memory_budget_bytes": reply.memory_budget_bytes,
                "tokens_required": reply.tokens_required,
                "wire_compressions": [streaming.wire_name(c) for c in reply.wire_compressions],
                "formats": [{"name": f.name, "named": f.named, "reads": f.reads,
                             "writes": f.writes, "compressions": f.compressions}
                            for f in reply.formats]}
        return self._info

    def health(self):
        """True when the server answers its health check as SERVING."""
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            return check(b"", timeout=10) == b"\x08\x01"  # HealthCheckResponse{status: SERVING}
        except grpc.RpcError as e:
            raise errors.from_rpc(e) from None

    def operations(self):
        """The operations the server runs: a list of dicts with name, doc, params (name,
        type, default, min, max, choices, doc) and the pixel types each takes."""
        reply = self._call("ListOperations", service_pb2.ListOperationsRequest())
        return [{
            "name": op.name, "doc": op.doc,
            "pixel_types": [np.dtype(DTYPES[t]).name for t in op.pixel_types],
            "params": [{"name": p.name, "doc": p.doc, "default": p.default_value,
                        "type": operation_pb2.ParamType.Name(p.type)[len("PARAM_TYPE_"):].lower(),
                        "min": p.min, "max": p.max, "choices": list(p.choices)}
                       for p in op.params]} for op in reply.operations]

    # Jobs on files under the server's data root.
    def submit(self, input, ops, *, output=None, in_memory=False, compression=None,
               overwrite=False, request_id=None, shards=0, channels=None, chunks=None,
               zarr_shards=None, zarr_format=None, pyramid=0):
        """Queues a job on `input` (a path under the server's data root) and returns its Job.

        The result goes to `output` (a path under the data root: NAME.tif, NAME.ome.zarr,
        folder/) or, with in_memory=True, stays on the server for Job.result(). `compression`
        as the CLI's: "deflate", "zstd:level=3", ...; an existing output is replaced only with
        overwrite=True; the same request_id with the same job returns the first job.
        channels: only these channels of the input, in this order (numbered from 0): a list of
        ints, or the CLI's text "2+0"; the operations then number the chosen ones from 0.
        OME-Zarr outputs: chunks and zarr_shards as (depth, height, width), zarr_format 3 (NGFF
        0.5, sharded: the default) or 2 (NGFF 0.4), pyramid levels below full size; as the CLI's
        --chunks, --zarr-shards, --zarr-format and --pyramid.
        Job.result() of a stack with time points or channels is a (t, c, z, y, x) array."""
        if (output is None) == (not in_memory):
            raise ValueError("give output=PATH or in_memory=True (one of them)")
        codec, level, predictor = parse_compression(compression)  # the argument shadows the name
        spec = service_pb2.JobSpec(input_path=os.fspath(input), ops=op_specs(ops), shards=shards,
                                   channels=_channel_list(channels))
        if in_memory:
            spec.output.in_memory.SetInParent()
        else:
            spec.output.path = os.fspath(output)
        spec.output.compression, spec.output.compression_level = codec, level
        spec.output.predictor = predictor
        spec.output.overwrite = overwrite
        for shape, field in ((chunks, spec.output.chunks), (zarr_shards, spec.output.zarr_shards)):
            if shape is not None:
                field.depth, field.height, field.width = shape
        spec.output.zarr_format = zarr_format or 0
        spec.output.pyramid_levels = pyramid
        reply = self._call("SubmitJob", service_pb2.SubmitJobRequest(
            spec=spec, request_id=request_id or ""))
        return Job(self, JobStatus.from_proto(reply.job))

    def job(self, job_id):
        """The Job with this id (NotFound when the server does not know it, or it is another
        caller's)."""
        reply = self._call("GetJob", service_pb2.GetJobRequest(job_id=job_id))
        return Job(self, JobStatus.from_proto(reply.job))

    def jobs(self):
        """Every job the server lists for this caller, oldest first."""
        reply = self._call("ListJobs", service_pb2.ListJobsRequest())
        return [Job(self, JobStatus.from_proto(j)) for j in reply.jobs]

    def resume(self, job_id):
        """Queues an interrupted job again, under the same id, and returns it."""
        reply = self._call("ResumeJob", service_pb2.ResumeJobRequest(job_id=job_id))
        return Job(self, JobStatus.from_proto(reply.job))

    # Previews: a pipeline on a few slices, to judge its parameters by eye.
    def preview(self, input, ops, *, slices=None, count=None, roi=None, channels=None):
        """The pipeline on a few slices of `input` (under the data root; only those are read):
        a Preview with .z, .before (the slices, or their `roi` (x, y, width, height)),
        .after ((variants, n, y, x): one array, or a list of arrays when a sweep gives the
        variants other sizes or types), .labels, .notes and .places (each slice's (t, c, z)
        in the input). `slices`: the z to show, else
        `count` (3) evenly spaced. A text op may sweep a parameter: "clahe:clip=1,2,4" makes
        three variants. `channels` ([2, 0] or "2+0"): only those, as for submit; slices then
        number the chosen channels' planes."""
        request = self._preview_request(input, ops, slices, count, roi, channels)
        request.format = service_pb2.PREVIEW_FORMAT_RAW
        info, stacks, current, flat = None, {}, None, None
        for reply in self._stream("Preview", request):
            kind = reply.WhichOneof("payload")
            if kind == "info":
                info = reply.info
            elif kind == "stack":
                s = reply.stack
                current = np.empty((s.shape.depth, s.shape.height, s.shape.width),
                                   DTYPES[s.pixel_type])
                stacks[s.variant] = current
            elif kind == "chunk":
                c = reply.chunk
                view = current[c.slice].reshape(-1).view(np.uint8)
                view[c.offset:c.offset + len(c.data)] = np.frombuffer(c.data, np.uint8)
        before = stacks.pop(-1)
        after = [stacks[i] for i in sorted(stacks)]
        if len({(a.shape, a.dtype) for a in after}) == 1:
            after = np.stack(after)  # one array, (variants, n, y, x)
        return Preview(list(info.slices), before, after, list(info.labels), list(info.notes),
                       [(p.t, p.c, p.z) for p in info.places])

    def preview_png(self, input, ops, *, slices=None, count=None, roi=None, max_tile_side=512,
                    channels=None):
        """preview()'s slices as the montage PNG `stackproc preview` writes (bytes)."""
        request = self._preview_request(input, ops, slices, count, roi, channels)
        request.format = service_pb2.PREVIEW_FORMAT_PNG
        request.max_tile_side = max_tile_side
        return b"".join(r.png for r in self._stream("Preview", request) if r.HasField("png"))

    def _preview_request(self, input, ops, slices, count, roi, channels=None):
        request = service_pb2.PreviewRequest(input_path=os.fspath(input), slices=slices or [],
                                             count=count or 0, channels=_channel_list(channels))
        for op in [ops] if isinstance(ops, (str, dict)) else (ops or []):
            request.sweep.append(op if isinstance(op, str) else _op_text(op_spec(op)))
        if roi is not None:
            request.region.x, request.region.y, request.region.width, request.region.height = roi
        return request

    # Streamed jobs: the pixels travel over the call.
    def process(self, array, ops, *, out=None, axes=None, metadata=None, progress=False,
                with_metadata=False, wire_compression="auto"):
        """Runs the pipeline on an array of uint8, uint16 or float32 (any byte order, any
        strides) on the server and returns the result array, of the same axes: (z, y, x),
        (t, c, z, y, x), or a 4-D one whose `axes` say which it is ("czyx" or "tzyx"; a 4-D
        array without them is refused, never guessed). Operations run on every plane; a step may
        name channels (gaussian:sigma=2,channels=1, c1.sigma=4).

        `array` is anything with `shape`, `dtype` and numpy-style indexing whose planes
        np.asarray takes (a numpy array or memmap, a zarr array): it is read one plane at a time
        as the upload goes, so it need not fit in memory. `out`, when given, is anything that takes
        `out[t, c, z] = plane` (indexed as `array` is) and has the result's shape and type (a
        zarr array, a numpy memmap): each plane is written there as it arrives, and `out` is
        returned; the client then holds a few planes, never the stack. Without it the result is
        a new numpy array.

        `metadata` (a Metadata) travels with the pixels and comes back updated for the
        pipeline's geometry: with_metadata=True returns (array, Metadata). `progress`: True
        draws a tqdm bar (tqdm.auto: a widget in a notebook), a callable is called with each
        JobStatus. `wire_compression`: "none", "lz4" or "zstd" (blosc, by numcodecs: the
        pixels compressed both ways; zstd for links of 100 Mbit/s and less), or "auto": lz4 when
        the server is not on this machine, takes it, and numcodecs is there. A connection that
        breaks is resumed by itself while the server keeps the job (its --stream-grace); Ctrl-C
        cancels the job."""
        lead = _lead_axes(len(array.shape), axes)
        sizes = dict(zip(lead, array.shape[:len(lead)]))
        times, channels, depth = sizes.get("t", 1), sizes.get("c", 1), sizes["z"]
        planes = times * channels * depth
        if metadata is not None and metadata.channels and len(metadata.channels) != channels:
            raise ValueError(f"metadata.channels has {len(metadata.channels)} entries for an "
                             f"array of {channels} channels")
        wire = DTYPES[pixel_type(array.dtype)]

        def index(p):  # plane p's index in (t, c, z) arrays of `lead`'s axes
            at = dict(zip("tcz", np.unravel_index(p, (times, channels, depth))))
            return tuple(int(at[a]) for a in lead)

        def slice_bytes(p):  # no copy when the plane is contiguous and little-endian already
            plane = np.asarray(array[index(p)])
            return memoryview(np.ascontiguousarray(plane, dtype=wire)).cast("B")

        header = self._header((planes,) + tuple(array.shape[-2:]), array.dtype, ops, metadata,
                              z_stack=planes == depth)
        header.dimensions.times, header.dimensions.channels = times, channels
        sink = streaming.ArraySink() if out is None else streaming.OutSink(out, index, tuple(array.shape[:len(lead)]))
        result_meta = self._process(header, slice_bytes, sink, progress, wire_compression)
        result = out if out is not None else sink.array.reshape(
            tuple(array.shape[:len(lead)]) + sink.array.shape[1:])
        return (result, result_meta) if with_metadata else result

    def _header(self, shape, dtype, ops, metadata, z_stack=True):
        header = service_pb2.StreamHeader(pixel_type=pixel_type(dtype), ops=op_specs(ops))
        header.shape.depth, header.shape.height, header.shape.width = shape
        (metadata or Metadata()).to_proto(header, shape[0], z_stack)
        return header

    def _process(self, header, slice_bytes, sink, progress, wire_compression="auto"):
        return streaming.process(self, header, slice_bytes, sink, progress, wire_compression)

    def _wire_codec(self, name):
        return streaming.wire_codec(self, name)

    def process_file(self, input_path, output_path, ops, *, compression=None, overwrite=False,
                     progress=False, wire_compression="auto", channels=None):
        """Streams a local TIFF stack through the server into a local TIFF, as `stackproc
        process` does (its metadata carried over): returns the output's path. The output is
        written under a temporary name and renamed when complete; an existing one is replaced
        only with overwrite=True. compression: None/"none" or "deflate[:level=N]" (tifffile
        writes it; the CLI writes every codec). wire_compression: as process's. An RGB(A) file's
        samples are channels (red, green, blue), as for the CLI. channels ([2, 0] or "2+0"):
        only those channels, in that order (of the channels tifffile finds, or the samples).
        Either way the output is an ImageJ hyperstack with the input's calibration and its
        channels' colours and display windows; their names and the rest of the input's
        description stay behind (`stackproc process` keeps them)."""
        from stackproc import tiff_files
        return tiff_files.process_file(self, input_path, output_path, ops, compression,
                                       overwrite, progress, wire_compression,
                                       _channel_list(channels))


def _lead_axes(ndim, axes):
    """The axes before y, x of an array of `ndim` dimensions, in NGFF's order (t, c, z)."""
    if axes is None:
        axes = {3: "zyx", 5: "tczyx"}.get(ndim)
        if axes is None:
            raise ValueError(f"a {ndim}-D array: say which axes it has (axes='czyx' or "
                             "'tzyx' for 4-D); stacks are (z, y, x) or (t, c, z, y, x)")
    axes = axes.lower()
    if len(axes) != ndim or not axes.endswith("zyx") or axes[:-3] not in ("", "c", "t", "tc"):
        raise ValueError(f"axes {axes!r} for a {ndim}-D array: (t, c,) z, y, x in that order")
    return axes[:-2]


def _op_text(spec):
    return spec.name + (":" + ",".join(f"{k}={v}" for k, v in spec.params.items())
                        if spec.params else "")
