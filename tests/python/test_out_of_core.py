"""A stack larger than the client should hold, from Python: a 2 GiB uint16 zarr array through
client.process(array, ops, out=zarr_array), read and written a plane at a time. The client runs
in a process of its own, whose peak RSS (VmHWM) must stay under 300 MiB; the result equals OpenCV
per plane. (Release only: 4 GiB through loopback and zarr is not a sanitizer's test.)"""

import json
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import zarr

DEPTH, SIDE = 256, 2048  # uint16: 8 MiB planes, 2 GiB in all


def plane(z):
    """Plane z of the input: smooth structure under a pattern that changes with z."""
    y, x = np.indices((SIDE, SIDE), dtype=np.uint32)
    return ((x * 7 + y * 3 + z * 101) % 4096 + ((x ^ y) & 255) * 40).astype(np.uint16)


CLIENT = textwrap.dedent("""
    import json, sys, time
    import zarr
    import stackproc
    src, dst, target = sys.argv[1:4]
    start = time.monotonic()
    with stackproc.Client(target) as client:
        client.process(zarr.open(src, mode="r"), "gaussian:ksize=5", out=zarr.open(dst, mode="r+"))
    seconds = time.monotonic() - start
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    print(json.dumps({"peak_kib": peak, "seconds": seconds}))
""")


def test_a_zarr_array_larger_than_the_client_holds(server, tmp_path):
    src = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=(DEPTH, SIDE, SIDE),
                    chunks=(1, SIDE, SIDE), dtype=np.uint16)
    for z in range(DEPTH):
        src[z] = plane(z)
    zarr.open(str(tmp_path / "out.zarr"), mode="w", shape=src.shape, chunks=src.chunks,
              dtype=np.uint16)
    p = subprocess.run([sys.executable, "-c", CLIENT, str(tmp_path / "in.zarr"),
                        str(tmp_path / "out.zarr"), server.target],
                       capture_output=True, text=True, env=dict(os.environ), timeout=500)
    assert p.returncode == 0, p.stderr
    figures = json.loads(p.stdout)
    mib = figures["peak_kib"] / 1024
    print(f"2 GiB zarr -> process(out=zarr): client peak RSS {mib:.0f} MiB, "
          f"{2048 / figures['seconds']:.0f} MB/s up (and as much down)")
    assert mib < 300, f"the client's peak RSS was {mib:.0f} MiB"
    out = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    for z in range(DEPTH):
        assert np.array_equal(out[z], cv2.GaussianBlur(plane(z), (5, 5), 0)), z
