#!/usr/bin/python3
"""Streamed jobs over a real, shaped link (issue 32): stackprocd in a network namespace behind a
veth pair whose directions tc's tbf shapes (tests/net/link.sh), round trip added by
tests/net/delay_proxy.py. For each link, side by side in one sitting (medians of --reps):

  streamed job   stackproc process IN -o OUT --op gaussian:sigma=1 (the stack up, the result down),
                 once per wire compression of --wire (none, lz4, zstd: the pixels compressed
                 both ways; the gain is the uncompressed run's time over this one's, i.e. how
                 many more pixels per second move)
  TCP copy       the same bytes one way through a plain socket (what the link carries; the
                 floor's practical form, as scp would be without its cipher)
  path job       stackproc submit --wait on the server's own copy (no link in the data path)

against the floor: max(bytes up, bytes down) / rate (full duplex: both directions at once).
Stacks: stackproc-local generate (smooth structures under Poisson-like noise), 134 MB each,
uint16 (64 x 1024 x 1024) and uint8 (128 x 1024 x 1024). Needs root.

usage: link.py [--build build/release] [--reps 3] [--links 1gbit:0,100mbit:20,1gbit:20]
               [--wire none,lz4,zstd]"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.realpath(__file__))
LINK = os.path.join(HERE, "..", "net", "link.sh")
PROXY = os.path.join(HERE, "..", "net", "delay_proxy.py")

RECEIVER = """
import socket, sys
s = socket.create_server((sys.argv[1], 5001))
print("ready", flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while data := c.recv(1 << 20):
        n += len(data)
    c.sendall(str(n).encode())
    c.close()
"""


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def started(args, log=None):
    """A process whose first line of output says it is ready; (Popen, that line). With `log`,
    what it prints goes there (a server's log is not read, and must not fill a pipe)."""
    if log is None:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return p, p.stdout.readline()
    p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(100):
        with open(log) as f:
            if line := f.readline():
                return p, line
        time.sleep(0.1)
    return p, ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--links", default="1gbit:0,100mbit:20,1gbit:20")
    ap.add_argument("--wire", default="none,lz4,zstd")
    args = ap.parse_args()
    args.wire = args.wire.split(",")
    assert args.wire[0] == "none", "--wire starts with none: the others' gains are against it"
    build = os.path.realpath(args.build)
    cli = os.path.join(build, "client", "stackproc")
    work = tempfile.mkdtemp(prefix="stackproc-link-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    stacks = {"uint16": "64x1024x1024", "uint8": "128x1024x1024"}
    print(f"{'link':>18} {'stack':>7} {'floor':>7} "
          + "".join(f"{'streamed ' + w:>16}" for w in args.wire)
          + f" {'TCP copy':>14} {'path job':>9}   (medians of {args.reps}; x: of the floor, "
          "gain: pixels/s against none)")
    try:
        measure(args, build, cli, work, data, stacks)
    finally:
        subprocess.run(["rm", "-rf", work])


def measure(args, build, cli, work, data, stacks):
    for dtype, shape in stacks.items():
        subprocess.run([os.path.join(build, "core", "stackproc-local"), "generate",
                        os.path.join(data, f"{dtype}.tif"), "--shape", shape, "--type", dtype],
                       check=True, capture_output=True)
    for link in args.links.split(","):
        rate, rtt = link.split(":")
        mbit = float(rate[:-4]) * (1000 if rate.endswith("gbit") else 1)
        d = os.path.join(work, "link")
        procs = []
        try:
            subprocess.run([LINK, "up", d, rate], check=True)
            addr = subprocess.run([LINK, "addr", d], capture_output=True,
                                  text=True).stdout.strip()
            server, line = started([LINK, "exec", d, os.path.join(build, "server", "stackprocd"),
                                    "--listen", f"{addr}:50051", "--data-root", data,
                                    "--allow-unauthenticated"], log=os.path.join(work, "srv.log"))
            procs.append(server)
            receiver, _ = started([LINK, "exec", d, "/usr/bin/python3", "-c", RECEIVER, addr])
            procs.append(receiver)
            target, copy_to = f"{addr}:50051", (addr, 5001)
            if float(rtt) > 0:  # the client's connections through the delaying proxy
                proxy, line = started(["/usr/bin/python3", PROXY, "127.0.0.1:0", target, rtt])
                procs.append(proxy)
                target = "127.0.0.1:" + line.rsplit(":", 1)[1].strip()
                copy_proxy, line = started(["/usr/bin/python3", PROXY, "127.0.0.1:0",
                                            f"{addr}:5001", rtt])
                procs.append(copy_proxy)
                copy_to = ("127.0.0.1", int(line.rsplit(":", 1)[1]))
            env = dict(os.environ, STACKPROC_SERVER=target)
            for dtype in stacks:
                src = os.path.join(data, f"{dtype}.tif")
                size = os.path.getsize(src)
                floor = size * 8 / (mbit * 1e6)

                def streamer(wire):
                    return lambda: subprocess.run(
                        [cli, "process", src, "-o", os.path.join(work, "out.tif"), "--op",
                         "gaussian:sigma=1", "--overwrite", "--wire-compression", wire],
                        check=True, capture_output=True, env=env)

                def copy():
                    with socket.create_connection(copy_to) as s, open(src, "rb") as f:
                        s.sendfile(f)
                        s.shutdown(socket.SHUT_WR)
                        assert int(s.recv(64)) == size

                def path_job():
                    subprocess.run([cli, "submit", "--input", f"{dtype}.tif", "--output",
                                    "path-out.tif", "--op", "gaussian:sigma=1", "--overwrite",
                                    "--wait"], check=True, capture_output=True, env=env)

                fns = [(w, streamer(w)) for w in args.wire] + [("copy", copy), ("path", path_job)]
                runs = {name: [] for name, _ in fns}
                for _ in range(args.reps):  # interleaved: each kind sees the same machine
                    for name, fn in fns:
                        runs[name].append(timed(fn))
                t = {name: statistics.median(times) for name, times in runs.items()}
                none = t["none"]
                cells = [f"{none:6.2f}s x{none / floor:4.2f}  "] + [
                    f"{t[w]:6.2f}s gain {none / t[w]:4.2f}" for w in args.wire[1:]]
                print(f"{rate + ' ' + rtt + ' ms':>18} {dtype:>7} {floor:6.2f}s "
                      + "".join(f"{c:>16}" for c in cells)
                      + f" {t['copy']:6.2f}s x{t['copy'] / floor:4.2f} {t['path']:8.2f}s",
                      flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
            subprocess.run([LINK, "down", d], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
