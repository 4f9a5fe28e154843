"""Errors: one class per gRPC status code a caller can act on, each with the server's message."""

import grpc


class StackprocError(Exception):
    """A call or a job that failed: `code` is the grpc.StatusCode, `message` the server's words.

    `job` is the job's last state (a `stackproc.JobStatus`) when a job ended this way.
    """

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message, code=None, job=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.job = job

    def __str__(self):
        return f"{self.code.name}: {self.message}"


class InvalidArgument(StackprocError):
    """A bad pipeline, parameter, path or stack (fix the request)."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(StackprocError):
    """No such job, input file or output directory."""
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(StackprocError):
    """The output exists (pass overwrite=True) or a request_id was reused for another job."""
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(StackprocError):
    """A path outside the server's data root, or a file the server may not read or write."""
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(StackprocError):
    """No token, or one the server does not know."""
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(StackprocError):
    """The stack exceeds a server limit or can never fit its memory budget."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(StackprocError):
    """The job is not in a state for this (e.g. a result of a job still running)."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class Cancelled(StackprocError):
    """The job or the call was cancelled."""
    code = grpc.StatusCode.CANCELLED


class Aborted(StackprocError):
    """The job was interrupted by the server's shutdown (Job.resume may run it again)."""
    code = grpc.StatusCode.ABORTED


class Unavailable(StackprocError):
    """The server cannot be reached, or is shutting down."""
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(StackprocError):
    """A wait ran out of time (the job goes on)."""
    code = grpc.StatusCode.DEADLINE_EXCEEDED


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, NotFound, AlreadyExists, PermissionDenied, Unauthenticated,
    ResourceExhausted, FailedPrecondition, Cancelled, Aborted, Unavailable, DeadlineExceeded)}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def error_for(code, message, job=None):
    """The StackprocError subclass for `code` (a grpc.StatusCode or its number)."""
    if isinstance(code, int):
        code = _BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(code, StackprocError)(message, code=code, job=job)


def from_rpc(error):
    """The StackprocError for a grpc.RpcError."""
    return error_for(error.code(), error.details() or error.code().name)
