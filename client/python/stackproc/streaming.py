"""Streamed jobs (ProcessStream) for stackproc.Client: the upload beside the download, wire
compression (numcodecs' blosc), resuming a job whose connection broke, and the sinks results
go to."""

import contextlib
import secrets
import threading
import time

import grpc
import numpy as np

from stackproc import errors
from stackproc.convert import DTYPES, JobStatus, Metadata
from stackproc.job import _reporter
from stackproc.v1 import service_pb2

# The metadata that makes a ProcessStream call resume a job (proto/wire.h's kResumeMetadataKey).
_RESUME_KEY = "stackproc-resume-bin"


def wire_codec(client, name):
    """(StreamHeader.wire_compression, its numcodecs Blosc or None) for "auto", "none",
    "lz4" or "zstd", as the C++ client chooses."""
    if name not in ("auto", "none", "lz4", "zstd"):
        raise ValueError(f"wire_compression {name!r}: auto, none, lz4 or zstd")
    none = (service_pb2.WIRE_COMPRESSION_NONE, None)
    if name == "none" or (name == "auto" and _is_local(client.target)):
        return none
    wanted = "lz4" if name == "auto" else name
    if wanted not in client.server_info()["wire_compressions"]:
        if name == "auto":
            return none  # an older server
        raise errors.error_for(grpc.StatusCode.INVALID_ARGUMENT, (
            f"the server (stackprocd {client.server_info()['version']}) takes no {wanted} "
            "wire compression"))
    try:
        from numcodecs import Blosc
    except ImportError:
        if name == "auto":
            return none
        raise ImportError(f"wire_compression={name!r} needs numcodecs (Debian: "
                          "python3-numcodecs)") from None
    codec = Blosc(cname=wanted, clevel=5 if wanted == "lz4" else 1, shuffle=Blosc.SHUFFLE)
    return service_pb2.WireCompression.Value("WIRE_COMPRESSION_" + wanted.upper()), codec

def process(client, header, slice_bytes, sink, progress, wire_compression="auto"):
    """Streams the stack slice_bytes(z) gives into `sink` (begin(shape, dtype, metadata),
    slice(z): a writable uint8 view of slice z's bytes, done(z)); returns the result's
    Metadata. Raises the job's error unless it succeeded."""
    chunk = client.server_info()["max_chunk_bytes"]
    header.wire_compression, codec = wire_codec(client, wire_compression)
    pixel = np.dtype(f"<u{DTYPES[header.pixel_type].itemsize}")  # blosc shuffles by it

    skip = [0]  # as the C++ ChunkPacker: compressed when a tenth smaller, else 15 not tried

    def chunk_message(z, offset, data):
        if codec is not None and skip[0] == 0:
            packed = codec.encode(np.frombuffer(data, pixel))
            if len(packed) * 10 <= len(data) * 9:
                return service_pb2.SliceChunk(slice=z, offset=offset, data=bytes(packed),
                                              raw_size=len(data))
            skip[0] = 15
        elif skip[0] > 0:
            skip[0] -= 1
        return service_pb2.SliceChunk(slice=z, offset=offset, data=bytes(data))
    unread = []  # a plane that could not be read (grpcio would say only "UNKNOWN")
    depth = header.shape.depth
    # The job's secret for resumes, ours from the start: a call that breaks before the
    # server's first answer resumes as well.
    header.resume_token = secrets.token_hex(16)

    def requests(start, all_in):
        """The header (unless start is a resumed call's Event), then chunks from where
        start says (an Event's `at`, set when the server's StreamAttached came); the end (the
        half-close) once all_in is set: every result has come, the server may let go of them."""
        if not isinstance(start, threading.Event):
            yield service_pb2.ProcessStreamRequest(header=header)
            at = (0, 0)
        else:
            start.wait()
            if start.at is None:
                return
            at = start.at
        for z in range(at[0], depth):
            try:
                data = slice_bytes(z)
            except Exception as e:
                unread.append(e)
                raise
            for offset in range(at[1] if z == at[0] else 0, len(data), chunk):
                yield service_pb2.ProcessStreamRequest(
                    chunk=chunk_message(z, offset, data[offset:offset + chunk]))
        all_in.wait()

    report, close = _reporter(progress)
    got = {"meta": None, "job": None, "attached": None, "z": 0, "filled": 0}

    def take(reply, start):
        kind = reply.WhichOneof("payload")
        if kind == "job":
            got["job"] = JobStatus.from_proto(reply.job)
            report(got["job"])
        elif kind == "attached":
            got["attached"] = reply.attached
            if start is not None:
                start.at = (reply.attached.upload_slice, reply.attached.upload_offset)
                start.set()
        elif kind == "result_header":
            h = reply.result_header
            if h.shape.depth != depth:
                raise errors.error_for(grpc.StatusCode.DATA_LOSS, (
                    f"the result has {h.shape.depth} planes; {depth} were sent"))
            if got["meta"] is None:  # (a resumed call's is the same again)
                got["meta"] = Metadata.from_proto(h)
                sink.begin((h.shape.depth, h.shape.height, h.shape.width),
                           DTYPES[h.pixel_type], got["meta"])
        elif kind == "chunk":
            c = reply.chunk
            n = c.raw_size or len(c.data)
            view = sink.slice(c.slice) if c.slice == got["z"] else None
            if (view is None or c.offset != got["filled"] or n <= 0
                    or c.offset + n > len(view) or (c.raw_size and codec is None)):
                raise errors.error_for(grpc.StatusCode.DATA_LOSS, (
                    f"result chunk at plane {c.slice} offset {c.offset}: not the one "
                    f"expected (plane {got['z']} offset {got['filled']})"))
            if c.raw_size:
                _unpack(codec, c, view[c.offset:c.offset + n])
            else:
                view[c.offset:c.offset + n] = np.frombuffer(c.data, np.uint8)
            got["filled"] += n
            if got["filled"] == len(view):
                sink.done(c.slice)
                got["z"], got["filled"] = got["z"] + 1, 0

    # A call that breaks (UNAVAILABLE: the link) is resumed while the server keeps the job
    # (its StreamAttached's grace from the break), waiting longer each time; one that broke
    # before any answer is resumed once, and started again if the server never had it.
    resumes, resuming, started_again, broke_at, backoff = 0, False, False, None, 0.25
    try:
        while True:
            start = threading.Event() if resuming else None
            if start is not None:
                start.at = None
            metadata = client._metadata
            if resuming:
                resume = service_pb2.StreamResume(
                    resume_token=header.resume_token, result_slice=got["z"],
                    result_offset=got["filled"])
                metadata += ((_RESUME_KEY, resume.SerializeToString()),)
            attached_before = got["attached"]
            all_in = threading.Event()
            try:
                # closing(): an error of the sink's (an `out` of another shape) ends the
                # call at once.
                with contextlib.closing(stream_call(client, requests(start or 0, all_in),
                                                    metadata)) as replies:
                    local = False  # an error of this side's: the job is cancelled before the
                    try:           # call ends, else the server would keep it for a resume
                        for reply in replies:
                            local = True
                            take(reply, start)
                            local = False
                            if got["z"] == depth:
                                all_in.set()
                    except BaseException as e:
                        if local or isinstance(e, KeyboardInterrupt):
                            cancel_job(client, got["job"])
                        raise
                    finally:
                        all_in.set()  # a request stream still waiting ends
                        if start is not None:
                            start.set()
                break
            except (errors.Unavailable, errors.NotFound) as e:
                if unread:
                    raise
                now = time.monotonic()
                if got["attached"] is not attached_before:
                    broke_at, backoff = now, 0.25  # this call came through
                answered = got["attached"] is not None
                if got["z"] == depth and got["job"] is not None:
                    # Every result came, then the call broke (or its resume was refused: the
                    # job had ended): how the job ended is the server's to say.
                    got["job"] = JobStatus.from_proto(client._call(
                        "GetJob", service_pb2.GetJobRequest(job_id=got["job"].id)).job)
                    if got["job"].state == "succeeded":
                        break
                if isinstance(e, errors.NotFound):
                    if resuming and not answered and not started_again:
                        started_again, resuming = True, False  # the server never had it
                        continue
                    raise
                grace = got["attached"].grace_seconds if answered else 0
                if not (answered and now + backoff <= broke_at + grace
                        or not answered and not resuming) or resumes == 30:
                    raise
                try:
                    time.sleep(backoff)
                except KeyboardInterrupt:
                    cancel_job(client, got["job"])
                    raise
                backoff, resuming, resumes = min(backoff * 2, 4), True, resumes + 1
    except errors.StackprocError:
        if unread:  # the array's own error, not the call's end it caused
            cancel_job(client, got["job"])
            raise unread[0] from None
        raise
    finally:
        close()
    job = got["job"]
    if job is not None and job.state == "succeeded" and got["z"] != depth:
        raise errors.error_for(grpc.StatusCode.DATA_LOSS, (
            f"the job succeeded but {got['z']} of {depth} result planes came"), job)
    if job is None or job.state != "succeeded":
        state = job.state if job else "not started"
        raise errors.error_for(job.error_code if job else 2,
                               job.error if job and job.error else f"stream {state}", job)
    return got["meta"]

def cancel_job(client, job):
    """Cancels a streamed job this client gives up on (Ctrl-C, its own error), so that the
    server does not keep it waiting for a resume."""
    if job is not None and not job.ended:
        try:
            client._call("CancelJob", service_pb2.CancelJobRequest(job_id=job.id), timeout=5)
        except errors.StackprocError:
            pass

def stream_call(client, requests, metadata):
    call = client._stub.ProcessStream(requests, metadata=metadata)
    try:
        yield from call
    except grpc.RpcError as e:
        raise errors.from_rpc(e) from None
    finally:
        call.cancel()  # nothing once the call has ended; else it ends it


def wire_name(value):
    """"lz4" for WIRE_COMPRESSION_LZ4; "unknown(9)" for one a newer server knows."""
    try:
        return service_pb2.WireCompression.Name(value)[len("WIRE_COMPRESSION_"):].lower()
    except ValueError:
        return f"unknown({value})"


def _is_local(target):
    """Whether a gRPC target is this machine: localhost, a loopback address, a unix socket."""
    host = target
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        host = host[len(scheme):] if host.startswith(scheme) else host
    if host.startswith(("unix:", "unix-abstract:")):
        return True
    if host.startswith("["):
        host = host[:host.find("]") + 1]
    elif host.count(":") == 1:
        host = host[:host.find(":")]
    return (host in ("localhost", "[::1]", "::1")
            or (host.startswith("127.") and host.replace(".", "").isdigit()))


def _unpack(codec, chunk, into):
    """A compressed SliceChunk's pixels into `into` (a uint8 view of exactly raw_size bytes)."""
    from numcodecs import blosc
    try:
        # numcodecs trusts the frame's header: it must say the sizes there are, both of them.
        if len(chunk.data) < 16 or blosc.cbuffer_sizes(chunk.data)[:2] != (len(into),
                                                                          len(chunk.data)):
            raise ValueError(f"not one blosc frame of {len(into)} bytes")
        codec.decode(chunk.data, out=into)
    except Exception as e:  # numcodecs says "error during blosc decompression: -1" and the like
        raise errors.error_for(grpc.StatusCode.DATA_LOSS, (
            f"result chunk at plane {chunk.slice} offset {chunk.offset}: {e}")) from None


class ArraySink:
    """A streamed result into one array, each chunk copied once into its place."""

    array = None

    def begin(self, shape, dtype, metadata):
        self.array = np.empty(shape, dtype)

    def slice(self, z):
        return self.array[z].reshape(-1).view(np.uint8)

    def done(self, z):
        pass


class OutSink:
    """A streamed result into the caller's array-like, a plane at a time: each plane gathered
    from its chunks into a buffer, then stored with `out[index] = plane`."""

    def __init__(self, out, index, lead_shape):
        self.out, self.index, self.lead_shape = out, index, lead_shape
        self.planes = {}

    def begin(self, shape, dtype, metadata):
        want = self.lead_shape + tuple(shape[1:])
        if tuple(self.out.shape) != want or np.dtype(self.out.dtype) != np.dtype(dtype):
            raise ValueError(f"out is {tuple(self.out.shape)} {np.dtype(self.out.dtype)}; the "
                             f"result is {want} {np.dtype(dtype)}")
        self.plane_shape, self.dtype = tuple(shape[1:]), dtype

    def slice(self, z):
        plane = self.planes.get(z)
        if plane is None:
            plane = self.planes[z] = np.empty(self.plane_shape, self.dtype)
        return plane.reshape(-1).view(np.uint8)

    def done(self, z):
        self.out[self.index(z)] = self.planes.pop(z)
