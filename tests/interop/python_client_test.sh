#!/usr/bin/env bash
# An independent client: Python grpcio with stubs generated now from our .proto files submits a
# job to the real stackprocd, watches it, reads the in-memory result and compares it with
# OpenCV's GaussianBlur computed in Python on the same stack read with tifffile.
# usage: python_client_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
source "$(dirname "$0")/common.sh" "$1" "$2"
"$build/core/stackproc-local" generate "$work/data/in.tif" --shape 6x90x70 --type uint8 >/dev/null
start_server
/usr/bin/python3 - "$port" "$work/data/in.tif" <<'PY'
import sys, grpc, numpy as np, tifffile, cv2
from stackproc.v1 import service_pb2 as pb, service_pb2_grpc as rpc
port, path = sys.argv[1], sys.argv[2]
stub = rpc.StackProcessorStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
spec = pb.JobSpec(input_path="in.tif", output=pb.OutputSpec(in_memory=pb.KeepInMemory()))
spec.ops.add(name="gaussian", params={"ksize": "5"})
job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec)).job
states = [e.job.state for e in stub.WatchJob(pb.WatchJobRequest(job_id=job.id))]
assert states[-1] == pb.JOB_STATE_SUCCEEDED, states
header, chunks = None, []
for m in stub.ReadResult(pb.ReadResultRequest(job_id=job.id)):
    if m.HasField("header"):
        header = m.header
    else:
        chunks.append(m.chunk.data)
got = np.frombuffer(b"".join(chunks), np.uint8).reshape(
    header.shape.depth, header.shape.height, header.shape.width)
src = tifffile.imread(path)
want = np.stack([cv2.GaussianBlur(s, (5, 5), 0) for s in src])
assert np.array_equal(got, want), "result differs from cv2.GaussianBlur"
try:
    stub.GetJob(pb.GetJobRequest(job_id="nope"))
    raise AssertionError("unknown job accepted")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
print("interop: 1 passed, 0 failed")
PY
