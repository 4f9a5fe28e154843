"""A job on the server: its state, its progress, its result."""

import time

import grpc
import numpy as np

from stackproc import errors
from stackproc.convert import DTYPES, JobStatus
from stackproc.v1 import service_pb2

# A download cut by these is resumed where it stopped (a dropped connection, a restart of a
# proxy); others (the job deleted, its result expired) are final.
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


class Job:
    """A job the server knows. `last` is its state as last seen (a JobStatus)."""

    def __init__(self, client, status):
        self._client = client
        self.id = status.id
        self.last = status

    def __repr__(self):
        return f"Job({self.id!r}, {self.last.state}, {self.last.slices_done}/{self.last.slices_total})"

    def status(self):
        """The job's state now (a JobStatus)."""
        reply = self._client._call("GetJob", service_pb2.GetJobRequest(job_id=self.id))
        self.last = JobStatus.from_proto(reply.job)
        return self.last

    def watch(self, timeout=None):
        """Yields the job's state at once, then as it progresses, until it has ended.

        Ending the iteration early leaves the job running. `timeout` (seconds) bounds the whole
        watch: DeadlineExceeded after it."""
        request = service_pb2.WatchJobRequest(job_id=self.id)
        for reply in self._client._stream("WatchJob", request, timeout=timeout):
            self.last = JobStatus.from_proto(reply.job)
            yield self.last

    def wait(self, timeout=None, progress=False):
        """Waits for the job to end and returns its final JobStatus; raises the StackprocError
        of its error (Cancelled, Aborted for interrupted, InvalidArgument, ...) unless it
        succeeded, and DeadlineExceeded after `timeout` seconds (the job goes on).
        `progress`: True draws a tqdm bar, a callable is called with each JobStatus."""
        report, close = _reporter(progress)
        try:
            for status in self.watch(timeout=timeout):
                report(status)
        finally:
            close()
        return self._ended()

    def _ended(self):
        status = self.last
        if status.state != "succeeded":
            code = status.error_code or grpc.StatusCode.UNKNOWN
            raise errors.error_for(code, status.error or f"job {self.id} {status.state}", status)
        return status

    def cancel(self):
        """Asks the job to stop and waits until it has: returns its final JobStatus
        (cancelled, or succeeded/failed when it ended first)."""
        reply = self._client._call("CancelJob", service_pb2.CancelJobRequest(job_id=self.id))
        self.last = JobStatus.from_proto(reply.job)
        for _ in self.watch():
            pass
        return self.last

    def resume(self):
        """Queues an interrupted job again, under the same id."""
        reply = self._client._call("ResumeJob", service_pb2.ResumeJobRequest(job_id=self.id))
        self.last = JobStatus.from_proto(reply.job)
        return self

    def delete(self):
        """Forgets the ended job and frees its in-memory result."""
        self._client._call("DeleteJob", service_pb2.DeleteJobRequest(job_id=self.id))

    def result(self, retries=3):
        """The in-memory result as a (z, y, x) numpy array, or (t, c, z, y, x) for a stack of
        time points or channels (an ImageJ hyperstack's planes too). A download cut short is resumed
        from the byte where it stopped, up to `retries` times."""
        array, flat, slice_bytes, dims = None, None, 0, None
        position = (0, 0)  # the next slice and byte within it
        for attempt in range(retries + 1):
            request = service_pb2.ReadResultRequest(
                job_id=self.id, start_slice=position[0], start_offset=position[1])
            try:
                for reply in self._client._stub.ReadResult(
                        request, metadata=self._client._metadata):
                    if reply.HasField("header"):
                        if array is None:
                            h = reply.header
                            dims = h.dimensions
                            shape = (h.shape.depth, h.shape.height, h.shape.width)
                            array = np.empty(shape, DTYPES[h.pixel_type])
                            flat = array.reshape(-1).view(np.uint8)
                            slice_bytes = h.shape.height * h.shape.width * array.itemsize
                        continue
                    c = reply.chunk
                    start = c.slice * slice_bytes + c.offset
                    flat[start:start + len(c.data)] = np.frombuffer(c.data, np.uint8)
                    end = start + len(c.data)
                    position = divmod(end, slice_bytes)
                return _with_axes(array, dims)
            except grpc.RpcError as e:
                if e.code() not in _RESUMABLE or attempt == retries:
                    raise errors.from_rpc(e) from None
                time.sleep(min(0.2 * 2 ** attempt, 2))
        return array


def _with_axes(planes, dims):
    """A result's planes as (z, y, x), or (t, c, z, y, x) when it has time points or channels
    (the planes come in the order `dims` states, fastest first: "ZCT", ImageJ's "CZT")."""
    times, channels = max(dims.times, 1), max(dims.channels, 1)
    if times == 1 and channels == 1:
        return planes
    order = dims.order or "ZCT"
    sizes = {"T": times, "C": channels, "Z": planes.shape[0] // (times * channels)}
    slowest_first = order[::-1]
    arranged = planes.reshape([sizes[a] for a in slowest_first] + list(planes.shape[1:]))
    return arranged.transpose([slowest_first.index(a) for a in "TCZ"] + [3, 4])


def _reporter(progress):
    """(report(JobStatus), close()) for a `progress` argument: False, True (tqdm) or a callable."""
    if callable(progress):
        return progress, lambda: None
    if not progress:
        return (lambda status: None), lambda: None
    from tqdm.auto import tqdm  # only when asked for; a widget in a notebook

    bar = tqdm(unit="slice", dynamic_ncols=True)

    def report(status):
        bar.total = status.slices_total
        bar.set_description(status.stage[:30])
        bar.update(status.slices_done - bar.n)

    return report, bar.close
