#!/usr/bin/python3
"""The cost of handing a job to SLURM: the same path job through stackprocd --executor local
and through stackprocd --executor slurm on a one-node SLURM cluster (tests/slurm/cluster.sh),
side by side in one run, alternating, --reps times, medians. Submit to succeeded, as
`stackproc submit --wait` sees it.

  local        stackprocd --executor local --threads C (C: this node's cores)
  slurm        stackprocd --executor slurm --slurm-cpus-per-shard C/N, N shards at once on
               this node: sbatch, the tasks starting, their runs, the polls (--slurm-poll 1;
               10 by default), the assembly

One node, so the shards share its cores with nothing gained: the ratio is the overhead of
going through the cluster, not the speed-up of N nodes. Needs root (the cluster's daemons).

usage: slurm_executor.py [--build build/release] [--dir /dev/shm] [--reps 3] [--shards 2]
                         [--shape 64x2048x2048]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))


def start_server(build, data, state, log, *flags):
    out = open(log, "w")
    server = subprocess.Popen([f"{build}/server/stackprocd", "--listen", "127.0.0.1:0",
                               "--data-root", data, "--state-dir", state, *flags],
                              stdout=out, stderr=subprocess.STDOUT)
    for _ in range(100):
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", open(log).read())
        if m:
            return server, m.group(1)
        time.sleep(0.1)
    raise SystemExit(f"the server did not start: {open(log).read()}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(SOURCE, "build/release"))
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--shape", default="64x2048x2048")
    args = parser.parse_args()
    build = os.path.abspath(args.build)
    cores = os.cpu_count()
    work = tempfile.mkdtemp(dir=args.dir)
    cluster = os.path.join(work, "cluster")
    servers = []
    try:
        subprocess.run([f"{SOURCE}/tests/slurm/cluster.sh", "start", cluster], check=True)
        os.environ["SLURM_CONF"] = f"{cluster}/slurm.conf"
        data = os.path.join(work, "data")
        os.mkdir(data)
        subprocess.run([f"{build}/core/stackproc-local", "generate", f"{data}/in.tif", "--shape",
                        args.shape, "--type", "uint16"], check=True, capture_output=True)
        size = os.path.getsize(f"{data}/in.tif")
        ports = {}
        for name, flags in (
                ("local", ["--executor", "local", "--threads", str(cores)]),
                ("slurm", ["--executor", "slurm", "--slurm-poll", "1",
                           "--slurm-cpus-per-shard", str(max(1, cores // args.shards)),
                           "--slurm-worker", f"{build}/core/stackproc-local"])):
            server, port = start_server(build, data, os.path.join(work, f"state-{name}"),
                                        os.path.join(work, f"{name}.log"), *flags)
            servers.append(server)
            ports[name] = port
        rows = []
        for op in ("gaussian:ksize=5", "bilateral:d=5"):
            times = {"local": [], "slurm": []}
            for rep in range(args.reps):
                for name in ("local", "slurm") if rep % 2 == 0 else ("slurm", "local"):
                    shards = ["--shards", str(args.shards)] if name == "slurm" else []
                    start = time.perf_counter()
                    subprocess.run([f"{build}/client/stackproc", "--server",
                                    f"127.0.0.1:{ports[name]}", "submit", "--input", "in.tif",
                                    "--op", op, "--output", f"out-{name}.tif", "--overwrite",
                                    *shards, "--wait"], check=True, capture_output=True)
                    times[name].append(time.perf_counter() - start)
            # The same bytes but what each run records of itself (its time and executor).
            same = subprocess.run(
                ["/usr/bin/python3", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "tools", "same_output.py"),
                 f"{data}/out-local.tif", f"{data}/out-slurm.tif"]).returncode == 0
            local, slurm = statistics.median(times["local"]), statistics.median(times["slurm"])
            rows.append((op, local, slurm, slurm / local, same))
        print(f"{args.shape} uint16 ({size / 1e6:.0f} MB), {args.shards} shards on one node of "
              f"{cores} cores, {args.dir}, medians of {args.reps}, submit to succeeded")
        print(f"{'pipeline':18} {'local s':>8} {'slurm s':>8} {'x local':>8}  same bytes")
        for op, local, slurm, ratio, same in rows:
            print(f"{op:18} {local:8.2f} {slurm:8.2f} {ratio:8.2f}  {same}")
    finally:
        for server in servers:
            server.kill()
        subprocess.run([f"{SOURCE}/tests/slurm/cluster.sh", "stop", cluster],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
