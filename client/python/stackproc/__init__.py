"""stackproc: process 3-D image stacks slice by slice on a stackprocd server.

    import stackproc, tifffile
    with stackproc.Client("127.0.0.1:50051") as client:
        stack = tifffile.imread("stack.tif")                       # (z, y, x)
        blurred = client.process(stack, ["gaussian:ksize=5", "clahe:clip=2"], progress=True)
        job = client.submit("run42/stack.tif", "gaussian:ksize=5", output="run42/out.tif")
        job.wait()
"""

from stackproc.client import Client
from stackproc.convert import JobStatus, Metadata, Preview
from stackproc.errors import (Aborted, AlreadyExists, Cancelled, DeadlineExceeded,
                              FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                              ResourceExhausted, StackprocError, Unauthenticated, Unavailable)
from stackproc.job import Job

__all__ = ["Client", "Job", "JobStatus", "Metadata", "Preview", "StackprocError", "Aborted",
           "AlreadyExists", "Cancelled", "DeadlineExceeded", "FailedPrecondition",
           "InvalidArgument", "NotFound", "PermissionDenied", "ResourceExhausted",
           "Unauthenticated", "Unavailable"]
