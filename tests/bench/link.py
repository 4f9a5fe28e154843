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
  scp            what a lab does without stackproc: scp the stack up, the path job, scp the
                 result down (OpenSSH's sshd in the namespace, key login, its default cipher);
                 "scp up" is the upload alone. Needs openssh-server (else not measured)

against the floor: max(bytes up, bytes down) / rate (full duplex: both directions at once).
Stacks: stackproc-local generate (smooth structures under Poisson-like noise), 134 MB each,
uint16 (64 x 1024 x 1024) and uint8 (128 x 1024 x 1024). Needs root.

usage: link.py [--build build/release] [--reps 3] [--links 1gbit:0,100mbit:20,1gbit:20]
               [--wire none,lz4,zstd]"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.realpath(__file__))
LINK = os.path.join(HERE, "..", "net", "link.sh")
PROXY = os.path.join(HERE, "..", "net", "delay_proxy.py")

SSHD = "/usr/sbin/sshd"
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]

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
          + f" {'TCP copy':>14} {'path job':>9} {'scp up':>8} {'scp+job+scp':>17}"
          f"   (medians of {args.reps}; x: of the floor, gain: pixels/s against none)")
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
            ssh_to = (addr, 2222) if os.path.exists(SSHD) else None
            if ssh_to:
                procs.append(sshd(d, work, addr))
            if float(rtt) > 0:  # the client's connections through the delaying proxy
                proxy, line = started(["/usr/bin/python3", PROXY, "127.0.0.1:0", target, rtt])
                procs.append(proxy)
                target = "127.0.0.1:" + line.rsplit(":", 1)[1].strip()
                copy_proxy, line = started(["/usr/bin/python3", PROXY, "127.0.0.1:0",
                                            f"{addr}:5001", rtt])
                procs.append(copy_proxy)
                copy_to = ("127.0.0.1", int(line.rsplit(":", 1)[1]))
                if ssh_to:
                    ssh_proxy, line = started(["/usr/bin/python3", PROXY, "127.0.0.1:0",
                                               f"{addr}:2222", rtt])
                    procs.append(ssh_proxy)
                    ssh_to = ("127.0.0.1", int(line.rsplit(":", 1)[1]))
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

                def scp(up):
                    key = os.path.join(work, "ssh", "key")
                    name = "scp-up.tif" if up else "path-out.tif"
                    there = f"root@{ssh_to[0]}:" + os.path.join(data, name)
                    here = os.path.join(work, "scp-down.tif")
                    subprocess.run(["scp", "-q", "-i", key, "-P", str(ssh_to[1])] + SSH_OPTIONS
                                   + ([src, there] if up else [there, here]),
                                   check=True, capture_output=True)

                fns = [(w, streamer(w)) for w in args.wire] + [("copy", copy), ("path", path_job)]
                if ssh_to:
                    fns += [("scp up", lambda: scp(True)), ("scp down", lambda: scp(False))]
                runs = {name: [] for name, _ in fns}
                for _ in range(args.reps):  # interleaved: each kind sees the same machine
                    for name, fn in fns:
                        runs[name].append(timed(fn))
                t = {name: statistics.median(times) for name, times in runs.items()}
                none = t["none"]
                cells = [f"{none:6.2f}s x{none / floor:4.2f}  "] + [
                    f"{t[w]:6.2f}s gain {none / t[w]:4.2f}" for w in args.wire[1:]]
                scp_cells = "       -                 -"
                if ssh_to:
                    workflow = t["scp up"] + t["path"] + t["scp down"]
                    scp_cells = (f" {t['scp up']:6.2f}s {workflow:6.2f}s x{workflow / floor:4.2f}"
                                 f" ({workflow / none:3.1f}x)")
                print(f"{rate + ' ' + rtt + ' ms':>18} {dtype:>7} {floor:6.2f}s "
                      + "".join(f"{c:>16}" for c in cells)
                      + f" {t['copy']:6.2f}s x{t['copy'] / floor:4.2f} {t['path']:8.2f}s"
                      + scp_cells, flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
            subprocess.run([LINK, "down", d], capture_output=True)


def sshd(d, work, addr):
    """OpenSSH's server in the link's namespace on ADDR:2222, letting in a key made here."""
    ssh = os.path.join(work, "ssh")
    if not os.path.exists(ssh):
        os.makedirs(ssh)
        for name in ("host", "key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            os.path.join(ssh, name)], check=True)
        shutil.copy(os.path.join(ssh, "key.pub"), os.path.join(ssh, "authorized_keys"))
        with open(os.path.join(ssh, "sshd_config"), "w") as f:
            f.write(f"HostKey {ssh}/host\nAuthorizedKeysFile {ssh}/authorized_keys\n"
                    "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
                    "StrictModes no\nPidFile none\n"
                    "Subsystem sftp /usr/lib/openssh/sftp-server\n")  # scp's protocol
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege separation folder
    server, line = started([LINK, "exec", d, SSHD, "-D", "-e", "-p", "2222", "-o",
                            f"ListenAddress={addr}", "-f", os.path.join(ssh, "sshd_config")])
    assert "listening" in line, f"sshd did not start: {line}"
    return server


if __name__ == "__main__":
    sys.exit(main())
