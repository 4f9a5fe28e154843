#!/usr/bin/env bash
# Back-pressure through the real stackprocd: an independent Python grpcio client streams a
# 256 MiB uint16 stack with ProcessStream and reads the results slowly. The server's window is
# 16 MiB, so its peak resident memory must stay under its idle RSS + the window + 100 MiB (a
# server that buffered the upload or the results would hold hundreds of MiB). Every result
# slice is checked against cv2.GaussianBlur on the same slice.
# In a sanitizer build (third argument "sanitized") the RSS is reported, not checked: ASan's
# quarantine keeps freed memory resident by design.
# usage: slow_reader_test.sh BUILD_DIR SOURCE_DIR [plain|sanitized]
set -euo pipefail
mode=${3:-plain}
source "$(dirname "$0")/common.sh" "$1" "$2"
start_server --threads 2 --stream-window 16M
/usr/bin/python3 - "$port" "$server_pid" "$mode" <<'PY'
import sys, time, grpc, numpy as np, cv2
from stackproc.v1 import service_pb2 as pb, service_pb2_grpc as rpc, operation_pb2 as op

port, pid, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def status_kib(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1])

D, H, W = 64, 2048, 1024          # 4 MiB slices, 256 MiB in all
WINDOW_MIB, MARGIN_MIB = 16, 100
CHUNK = 1 << 20

def slice_of(z):
    rng = np.random.default_rng(z)
    return rng.integers(0, 65535, size=(H, W), dtype=np.uint16)

sent = []
def requests():
    header = pb.StreamHeader(shape=pb.StackShape(depth=D, height=H, width=W),
                             pixel_type=op.PIXEL_TYPE_UINT16)
    header.ops.add(name="gaussian", params={"ksize": "5"})
    yield pb.ProcessStreamRequest(header=header)
    for z in range(D):
        data = slice_of(z).tobytes()
        for off in range(0, len(data), CHUNK):
            sent.append(z)
            yield pb.ProcessStreamRequest(
                chunk=pb.SliceChunk(slice=z, offset=off, data=data[off:off + CHUNK]))

idle_kib = status_kib("VmRSS")
stub = rpc.StackProcessorStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
buf, z, checked, final, ahead = bytearray(), 0, 0, None, 0
for m in stub.ProcessStream(requests()):
    if m.HasField("job"):
        final = m.job
    elif m.HasField("chunk"):
        assert m.chunk.slice == z, (m.chunk.slice, z)
        buf += m.chunk.data
        if len(buf) == H * W * 2:
            got = np.frombuffer(bytes(buf), np.uint16).reshape(H, W)
            if z % 8 == 0:  # cv2 on every slice would dominate the run time
                assert np.array_equal(got, cv2.GaussianBlur(slice_of(z), (5, 5), 0)), z
                checked += 1
            # How far the upload ran ahead of what we have read: bounded by the window.
            ahead = max(ahead, sent[-1] - z if sent else 0)
            buf, z = bytearray(), z + 1
        time.sleep(0.02)  # a slow reader: ~50 MiB/s
assert final is not None and final.state == pb.JOB_STATE_SUCCEEDED, final
assert z == D, z
hwm_kib = status_kib("VmHWM")
limit_kib = idle_kib + (WINDOW_MIB + MARGIN_MIB) * 1024
print(f"slow reader: server idle RSS {idle_kib / 1024:.0f} MiB, peak {hwm_kib / 1024:.0f} MiB "
      f"(limit {limit_kib / 1024:.0f} MiB) for a {D * H * W * 2 >> 20} MiB stack; upload ran "
      f"at most {ahead} slices ahead of the reader; {checked} slices checked against cv2")
if mode == "plain":
    assert hwm_kib <= limit_kib, "server memory grew with the stack"
# Without back-pressure the whole upload would be gone in about a second; this reader needs ~5 s.
assert ahead < 3 * D // 4, "the upload was not held back by the slow reader"
jobs = stub.ListJobs(pb.ListJobsRequest()).jobs
assert [j.spec.streamed for j in jobs] == [True], jobs
print("slow reader: 1 passed, 0 failed")
PY
