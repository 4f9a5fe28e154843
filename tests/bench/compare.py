#!/usr/bin/python3
"""stackproc beside what users run today, file to file, side by side in one run.

For each stack (1 GiB uint8 and uint16, uncompressed and deflate, written by tifffile through
../shared/reference/gen_stack.py when it is there, else by stackproc-local), runs `gaussian:ksize=5`
with every method in turn, alternating, --reps times, and prints medians: wall time, MB/s of
input, peak RSS of the client process and of the server, and ratios to the references.

  methods   cp            cp IN OUT: the physical floor (no processing); on a disk cp+fsync,
                          cp then `sync OUT` (stackproc's outputs are fsynced before rename)
            core          stackproc-local run: the core in-process, no server (streaming)
            core-mem      the same, --mode in-memory: the whole stack read, processed, written
            path-job      stackproc submit --wait: stackprocd reads and writes under its data root
            streamed      stackproc process: the CLI uploads IN and writes OUT, through stackprocd
            streamed-unix the same over a unix socket (stackprocd --listen unix:PATH)
            seed_loop     ../shared/reference/seed_loop.py (serial Python loop)
            seed_mp       ../shared/reference/seed_mp.py (multiprocessing + shared_memory)

Then the pipeline gaussian:ksize=5 -> clahe -> resize:scale=0.5 on the uint16 stack: the path job
against the same per-slice loop in Python (serial) and the core with one thread.

CPU s: the client's user + system time (wait4) plus the server's over the run (/proc/PID/stat):
on a shared 2-core machine wall time varies from run to run, and what a method costs in CPU
shows why one cannot be faster than another there.

Peak RSS: the client's from wait4 (the parent process only: seed_mp's workers map the same
shared memory); the server's VmHWM, reset before each run (/proc/PID/clear_refs). Outputs go
uncompressed (as the references write them) to the work directory, /dev/shm by default: warm
page cache, and stackproc's fsync before rename costs nothing there (--dir elsewhere to see disk).

--baseline OTHER_BUILD adds core, core-mem, path-job and streamed of another build (its own
server), named NAME@base, alternating with the rest: before/after a change in one sitting.
--no-references leaves out the Python references (seed_loop, seed_mp, py-serial).

usage: compare.py [--build build/release] [--baseline DIR] [--no-references] [--dir DIR]
                  [--reps 3] [--mib 1024] [--quick] [--stacks uint8-none,uint16-none,...]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
REFERENCE = os.path.join(os.path.dirname(SOURCE), "shared", "reference")
# Debian's Python, with python3-opencv / -tifffile / -numpy (the references' shebang).
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

PIPELINE_PY = r'''
import sys, cv2, numpy as np, tifffile
img = tifffile.imread(sys.argv[1])
d, h, w = img.shape
out = np.empty((d, round(h * 0.5), round(w * 0.5)), img.dtype)
clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
for z in range(d):
    g = cv2.GaussianBlur(img[z], (5, 5), 0)
    out[z] = cv2.resize(clahe.apply(g), (out.shape[2], out.shape[1]), interpolation=cv2.INTER_AREA)
tifffile.imwrite(sys.argv[2], out, photometric="minisblack")
'''


def cpu_seconds(pid):
    """User + system CPU seconds of process pid so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cmd, server_pid=None, env=None):
    """Runs cmd; returns (seconds, client peak RSS MiB, server peak RSS MiB or None, CPU s)."""
    server_cpu = 0.0
    if server_pid:
        with open(f"/proc/{server_pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        server_cpu = cpu_seconds(server_pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err}")
    server = None
    if server_pid:
        with open(f"/proc/{server_pid}/status") as f:
            server = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) / 1024
        server_cpu = cpu_seconds(server_pid) - server_cpu
    cpu = usage.ru_utime + usage.ru_stime + server_cpu
    return seconds, usage.ru_maxrss / 1024, server, cpu


class Server:
    def __init__(self, build, data, log="stackprocd.log", listen="127.0.0.1:0"):
        self.log = open(os.path.join(data, "..", log), "w")
        self.proc = subprocess.Popen(
            [f"{build}/server/stackprocd", "--listen", listen, "--data-root", data],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        address = re.search(r"listening on (\S+)", line)
        if not address:
            sys.exit(f"stackprocd did not start: {line}")
        self.address = address.group(1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


def make_stack(build, path, shape, dtype, compression):
    d, h, w = shape
    gen = os.path.join(REFERENCE, "gen_stack.py")
    if os.path.exists(gen):
        subprocess.run([PYTHON, gen, path, str(d), str(h), str(w), dtype, compression],
                       check=True)
        return "gen_stack.py (tifffile)"
    subprocess.run([f"{build}/core/stackproc-local", "generate", path, "--shape", f"{d}x{h}x{w}",
                    "--type", dtype, "--compression", compression], check=True,
                   stdout=subprocess.DEVNULL)
    return "stackproc-local"


def table(title, rows, mb, refs):
    print(f"\n{title}")
    head = (f"  {'method':<13} {'wall s':>7} {'MB/s':>7} {'CPU s':>6} {'client MiB':>10} "
            f"{'server MiB':>10}")
    for ref in refs:
        head += f" {'x ' + ref:>12}"
    print(head)
    med = {name: statistics.median(t for t, _, _, _ in r) for name, r in rows.items()}
    for name, r in rows.items():
        client = statistics.median(c for _, c, _, _ in r)
        cpu = statistics.median(c for _, _, _, c in r)
        servers = [s for _, _, s, _ in r if s is not None]
        line = (f"  {name:<13} {med[name]:7.2f} {mb / med[name]:7.0f} {cpu:6.2f} {client:10.0f} "
                f"{(f'{statistics.median(servers):.0f}' if servers else '-'):>10}")
        for ref in refs:
            line += f" {med[ref] / med[name]:12.2f}" if ref in med else f" {'-':>12}"
        print(line)
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build", "release"))
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--mib", type=int, default=1024, help="stack size")
    ap.add_argument("--quick", action="store_true", help="64 MiB stacks, 1 repetition")
    ap.add_argument("--baseline", help="another build to run beside this one (NAME@base)")
    ap.add_argument("--no-references", action="store_true", help="no Python references")
    ap.add_argument("--stacks", default="uint8-none,uint8-deflate,uint16-none,uint16-deflate",
                    help="which of the four stacks, comma-separated")
    args = ap.parse_args()
    if args.quick:
        args.mib, args.reps = 64, 1
    build = os.path.abspath(args.build)
    cli = f"{build}/client/stackproc"
    work = tempfile.mkdtemp(prefix="stackproc-bench-", dir=args.dir)
    data = os.path.join(work, "data")
    os.mkdir(data)
    base = os.path.abspath(args.baseline) if args.baseline else None
    servers = {"tcp": Server(build, data),
               "unix": Server(build, data, "stackprocd-unix.log", f"unix:{work}/stackprocd.sock")}
    if base:
        servers["base"] = Server(base, data, "stackprocd-base.log")

    def run_method(method, cmd):
        """Runs a method's command against the server it talks to, if any."""
        name, _, at = method.partition("@")
        srv = None
        if name in ("path-job", "streamed", "streamed-unix"):
            srv = servers["base" if at else "unix" if name == "streamed-unix" else "tcp"]
        env = dict(os.environ, STACKPROC_SERVER=srv.address) if srv else None
        return run(cmd, srv.proc.pid if srv else None, env)

    try:
        fs = subprocess.run(["stat", "-f", "-c", "%T", work], capture_output=True,
                            text=True).stdout.strip()
        print(f"work dir {work} ({fs}), {os.cpu_count()} cores, {args.reps} repetitions, medians")
        cp = "cp" if fs == "tmpfs" else "cp+fsync"
        side = 2048
        for dtype, bpp in (("uint8", 1), ("uint16", 2)):
            depth = max(1, args.mib * 2**20 // (side * side * bpp))
            for compression in ("none", "deflate"):
                if f"{dtype}-{compression}" not in args.stacks.split(","):
                    continue
                name = f"{dtype}-{compression}.tif"
                src = os.path.join(data, name)
                made_by = make_stack(build, src, (depth, side, side), dtype, compression)
                mb = depth * side * side * bpp / 1e6
                out = os.path.join(data, "out.tif")
                methods = {
                    cp: ["sh", "-c", 'cp "$1" "$2"' + ("" if cp == "cp" else ' && sync "$2"'),
                         "cp", src, out],
                    "core": [f"{build}/core/stackproc-local", "run", "--input", src,
                             "--output", out, "--op", "gaussian:ksize=5"],
                    "core-mem": [f"{build}/core/stackproc-local", "run", "--input", src,
                                 "--output", out, "--op", "gaussian:ksize=5", "--mode",
                                 "in-memory"],
                    "path-job": [cli, "submit", "--input", name, "--op", "gaussian:ksize=5",
                                 "--output", "out.tif", "--overwrite", "--wait"],
                    "streamed": [cli, "process", src, "-o", out, "--op", "gaussian:ksize=5",
                                 "--overwrite"],
                    "seed_loop": [PYTHON, os.path.join(REFERENCE, "seed_loop.py"), src, out],
                    "seed_mp": [PYTHON, os.path.join(REFERENCE, "seed_mp.py"), src, out],
                }
                methods["streamed-unix"] = methods["streamed"]  # the server it talks to differs
                if args.no_references or not os.path.exists(os.path.join(REFERENCE, "seed_mp.py")):
                    del methods["seed_loop"], methods["seed_mp"]
                if base:
                    for m in ("core", "core-mem", "path-job", "streamed"):
                        methods[f"{m}@base"] = [a.replace(build, base) for a in methods[m]]
                rows = {m: [] for m in methods}
                for _ in range(args.reps):
                    for m, cmd in methods.items():
                        if os.path.exists(out):
                            os.remove(out)
                        rows[m].append(run_method(m, cmd))
                table(f"gaussian:ksize=5, {depth}x{side}x{side} {dtype} ({mb:.0f} MB), input "
                      f"{compression} by {made_by}, output uncompressed", rows, mb,
                      ["seed_mp", "seed_loop", cp, "path-job"] +
                      (["path-job@base"] if base else []))
                if not (dtype == "uint16" and compression == "none"):
                    os.remove(src)
                    continue
                ops = ["gaussian:ksize=5", "clahe", "resize:scale=0.5"]
                op_args = [a for op in ops for a in ("--op", op)]
                methods = {
                    "path-job": [cli, "submit", "--input", name, *op_args, "--output", "out.tif",
                                 "--overwrite", "--wait"],
                    "core": [f"{build}/core/stackproc-local", "run", "--input", src,
                             "--output", out, *op_args],
                    "core-1thr": [f"{build}/core/stackproc-local", "run", "--input", src,
                                  "--output", out, "--threads", "1", *op_args],
                    "py-serial": [PYTHON, "-c", PIPELINE_PY, src, out],
                }
                if args.no_references:
                    del methods["py-serial"]
                if base:
                    for m in ("path-job", "core"):
                        methods[f"{m}@base"] = [a.replace(build, base) for a in methods[m]]
                rows = {m: [] for m in methods}
                for _ in range(args.reps):
                    for m, cmd in methods.items():
                        if os.path.exists(out):
                            os.remove(out)
                        rows[m].append(run_method(m, cmd))
                table(f"{' -> '.join(ops)}, {depth}x{side}x{side} {dtype} ({mb:.0f} MB)", rows, mb,
                      ["py-serial", "core-1thr"] + (["path-job@base"] if base else []))
                os.remove(src)
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
