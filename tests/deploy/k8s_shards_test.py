#!/usr/bin/env python3
"""deploy/k8s/shards/ does what it says, without a Kubernetes cluster.

Parses the Indexed Job and the assembly Job (Debian's python3-yaml), checks that they agree
with each other and with the server's manifests (the shard count in completions, in --shards
and in the assembly's list of pieces; the image; the data claim; the mount), then runs their
scripts as the pods would, with /bin/sh: every index of the Indexed Job with its
JOB_COMPLETION_INDEX, then the assembly, over a small stack in a temporary folder standing for
/data. The assembled file must be byte-equal to the same pipeline run whole by stackproc-local.

usage: k8s_shards_test.py BUILD_DIR SOURCE_DIR
"""
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

build, src = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
tool = build / "core/stackproc-local"
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def load(name):
    return yaml.safe_load((src / "deploy/k8s/shards" / name).read_text())


shards_job, assemble_job = load("shards-job.yaml"), load("assemble-job.yaml")
deployment = yaml.safe_load((src / "deploy/k8s/deployment.yaml").read_text())
claims = {d["metadata"]["name"] for d in yaml.safe_load_all((src / "deploy/k8s/pvc.yaml").read_text())}

for job in (shards_job, assemble_job):
    name = job["metadata"]["name"]
    check(job["apiVersion"] == "batch/v1" and job["kind"] == "Job", f"{name}: not a batch/v1 Job")
    pod = job["spec"]["template"]["spec"]
    check(pod["restartPolicy"] == "Never", f"{name}: restartPolicy")
    check(pod["securityContext"].get("runAsNonRoot") is True, f"{name}: may run as root")
    container = pod["containers"][0]
    check(container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"],
          f"{name}: another image than the server's")
    claim = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}["data"]
    check(claim in claims, f"{name}: no PersistentVolumeClaim {claim}")
    check({m["name"]: m["mountPath"] for m in container["volumeMounts"]}["data"] == "/data",
          f"{name}: data not at /data")

spec = shards_job["spec"]
check(spec["completionMode"] == "Indexed", "the shards Job is not Indexed")
shard_script = shards_job["spec"]["template"]["spec"]["containers"][0]["args"][0]
assemble_script = assemble_job["spec"]["template"]["spec"]["containers"][0]["args"][0]
n = int(re.search(r"--shards (\d+)", shard_script).group(1))
check(spec["completions"] == n, f"completions {spec['completions']} != --shards {n}")
pieces = re.search(r"for i in ([\d ]+);", assemble_script).group(1).split()
check(pieces == [str(i) for i in range(n)], f"the assembly takes pieces {pieces}, not 0..{n - 1}")
check("$(" not in shard_script + assemble_script,
      "a script uses $(...), which Kubernetes expands itself in args")

with tempfile.TemporaryDirectory() as tmp:
    data = Path(tmp) / "data"
    data.mkdir()
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, text=True)
    run(tool, "generate", data / "stack.tif", "--shape", "21x96x80", "--type", "uint16")
    env = dict(os.environ, PATH=f"{tool.parent}:{os.environ['PATH']}")
    as_pod = lambda script: script.replace("/data", str(data))
    for index in range(n):
        subprocess.run(["/bin/sh", "-c", as_pod(shard_script)], check=True, capture_output=True,
                       env=dict(env, JOB_COMPLETION_INDEX=str(index)))
    subprocess.run(["/bin/sh", "-c", as_pod(assemble_script)], check=True, capture_output=True,
                   env=env)
    # The same pipeline, run whole: the script's flags but the shard ones.
    flags = re.search(r"--input \S+ (.*?) --shards", shard_script, re.DOTALL).group(1)
    flags = flags.replace("\\\n", " ").split()
    run(tool, "run", "--input", data / "stack.tif", *flags, "--output", Path(tmp) / "whole.tif")
    # The same bytes but what each run records of itself (tests/tools/same_output.py).
    same = subprocess.run([sys.executable, Path(__file__).resolve().parent.parent / "tools" /
                           "same_output.py", data / "out.tif", Path(tmp) / "whole.tif"],
                          capture_output=True, text=True)
    check(same.returncode == 0, f"the assembled pieces differ from the whole run {same.stderr}")
    check(sorted(p.name for p in data.iterdir()) == ["out.tif", "stack.tif"],
          f"left in /data: {sorted(p.name for p in data.iterdir())}")

for f in failures:
    print("FAIL:", f)
print(f"k8s shards: {n} pods and the assembly, "
      f"{'byte-equal to the whole run' if not failures else 'FAILED'}")
sys.exit(1 if failures else 0)
