"""What the core's Python suites (tests/core/*.py) share: checks that fail the script at its
end, runs of stackproc-local, outputs compared by same_output.py, and a stackprocd of the
suite's own on a free port of 127.0.0.1, stopped by its PID."""
import contextlib
import os
import subprocess
import sys

SAME_OUTPUT = os.path.join(os.path.dirname(os.path.realpath(__file__)), "same_output.py")
_failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        _failures.append(what)


def finish():
    """Exits 1 when a check failed."""
    if _failures:
        print(f"{len(_failures)} failed")
        sys.exit(1)
    print("all passed")


def run(build, inp, out, ops, *extra, ok=True):
    """stackproc-local run INP -> OUT with each of `ops`; a failure ends the script unless
    ok=False (then the caller looks at the CompletedProcess)."""
    args = [os.path.join(build, "core", "stackproc-local"), "run", "--input", inp, "--output",
            out, "--overwrite"]
    for op in ops:
        args += ["--op", op]
    p = subprocess.run(args + list(extra), capture_output=True, text=True)
    if ok and p.returncode != 0:
        raise SystemExit(f"stackproc-local {' '.join(args[2:])} failed: {p.stderr}")
    return p


def same(a, b, differ="time,executor,input.name"):
    """Whether two outputs are the same bytes apart from their records' `differ` fields."""
    return subprocess.run(["/usr/bin/python3", SAME_OUTPUT, a, b, "--differ", differ],
                          capture_output=True, text=True).returncode == 0


@contextlib.contextmanager
def server(build, data):
    """A stackprocd with data root `data`; yields (its target, cli(*args) -> CompletedProcess of
    the stackproc CLI pointed at it)."""
    proc = subprocess.Popen([os.path.join(build, "server", "stackprocd"), "--listen",
                             "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=dict(os.environ, STACKPROC_DATA_ROOT=data))
    try:
        line = proc.stdout.readline()
        if "listening" not in line:
            raise SystemExit(f"stackprocd did not start: {line}")
        target = "127.0.0.1:" + line.rsplit(":", 1)[1].split()[0]
        env = dict(os.environ, STACKPROC_SERVER=target)

        def cli(*args):
            return subprocess.run([os.path.join(build, "client", "stackproc")] + list(args),
                                  capture_output=True, text=True, env=env)

        yield target, cli
    finally:
        proc.terminate()
        proc.wait(timeout=30)
