"""The Python client's tests run against the real stackprocd of the build under test.

STACKPROC_BUILD names the build directory (tests/CMakeLists.txt sets it, and PYTHONPATH to
its python/ folder, where the package and its generated stubs are)."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tifffile

# tests/tools' helpers (zarr_read: the independent Zarr readers).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools"))

BUILD = os.environ.get("STACKPROC_BUILD", "build/release")
STACKPROCD = os.path.join(BUILD, "server", "stackprocd")
LOCAL = os.path.join(BUILD, "core", "stackproc-local")


class Server:
    """A stackprocd on a free port with its own data root, stopped at the end of the test."""

    def __init__(self, root, flags):
        self.root = root
        self.log = root.parent / f"stackprocd-{os.getpid()}-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [STACKPROCD, "--listen", "127.0.0.1:0", "--data-root", str(root), *flags],
            stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True)
        match = line = None
        for line in self.proc.stdout:  # the line saying where it listens comes first
            match = re.search(r"listening on \S+:(\d+)", line)
            if match:
                break
        if not match:
            self.proc.wait(10)
            raise RuntimeError(f"stackprocd did not start: {line} {self.log.read_text()}")
        self.target = f"127.0.0.1:{match.group(1)}"
        self.lines = [line]  # what it prints next (the web page's address), read as it comes
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def printed(self, pattern, timeout=10):
        """The first match of `pattern` in what the server printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            time.sleep(0.05)
        raise AssertionError(f"stackprocd printed no {pattern!r}: {self.lines}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


@pytest.fixture
def start_server(tmp_path):
    """start_server(*flags) -> Server; the data root is tmp_path/"data" (kept across restarts)."""
    servers = []

    def start(*flags):
        root = tmp_path / "data"
        root.mkdir(exist_ok=True)
        servers.append(Server(root, [str(f) for f in flags]))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server):
    return start_server()


def stack(shape, dtype, seed=1):
    """A reproducible test stack with structure (a gradient under noise)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    z, y, x = np.indices(shape, dtype=np.float32)
    base = (x / shape[2] + y / shape[1] + z / max(shape[0], 1)) / 3
    noisy = base + rng.normal(0, 0.1, shape).astype(np.float32)
    if dtype.kind == "f":
        return noisy.astype(dtype)
    top = np.iinfo(dtype).max
    return (np.clip(noisy, 0, 1) * top).astype(dtype)


def write_tiff(path, array, **kwargs):
    tifffile.imwrite(path, array, photometric="minisblack", **kwargs)
    return path
