#!/usr/bin/env python3
"""The deployment files agree with the server they deploy.

Parses deploy/docker-compose.yml and deploy/k8s/*.yaml (Debian's python3-yaml) and checks: the
right kinds and API versions; every STACKPROC_* variable names a real stackprocd flag (from
`stackprocd --help`); the gRPC port is the same in the listen address, the container port,
the probes, the Service and the Dockerfile's EXPOSE; the data volume is mounted at the data
root; the termination grace outlasts the server's shutdown grace; the memory budget fits the
memory limit; the probes use the gRPC health service; beyond loopback a token file is mounted where
STACKPROC_AUTH_TOKEN_FILE says (the server refuses to start otherwise).

usage: manifests_test.py BUILD_DIR SOURCE_DIR
"""
import re
import subprocess
import sys
from pathlib import Path

import yaml

build, src = Path(sys.argv[1]), Path(sys.argv[2])
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def size_bytes(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", str(text), re.IGNORECASE)
    assert m, text
    unit = (m.group(2) or "").upper().rstrip("I")
    return float(m.group(1)) * 1024 ** " KMGT".index(unit or " ")


help_text = subprocess.run([build / "server/stackprocd", "--help"], check=True,
                           capture_output=True, text=True).stdout
flags = set(re.findall(r"^\s+--([a-z-]+)", help_text, re.MULTILINE))
check({"listen", "data-root", "memory-budget", "shutdown-grace"} <= flags, f"flags: {flags}")
env_of_flag = {"STACKPROC_" + f.upper().replace("-", "_") for f in flags}


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


# --- Dockerfile ---
dockerfile = (src / "deploy/Dockerfile").read_text()
expose = int(re.search(r"^EXPOSE (\d+)", dockerfile, re.MULTILINE).group(1))
user = re.search(r"^USER (\S+)", dockerfile, re.MULTILINE).group(1)
check(user.split(":")[0] not in ("0", "root"), f"Dockerfile USER {user} is root")
check(re.search(r"^FROM debian:bookworm-slim AS build", dockerfile, re.MULTILINE),
      "build stage is not FROM debian:bookworm-slim")
check(dockerfile.count("FROM debian:bookworm-slim") == 2, "runtime stage base")
env_block = re.search(r"^ENV ((?:.*\\\n)*.*)$", dockerfile, re.MULTILINE).group(1)
docker_env = dict(re.findall(r"(STACKPROC_[A-Z_]+)=(\S+)", env_block))
for name in docker_env:
    check(name in env_of_flag or name == "STACKPROC_SERVER", f"Dockerfile env {name} is no flag")
check(port_of(docker_env["STACKPROC_LISTEN"]) == expose, "Dockerfile listen port != EXPOSE")
check(docker_env["STACKPROC_DATA_ROOT"] == "/data", "Dockerfile data root")
volumes = re.search(r"^VOLUME \[(.*)\]$", dockerfile, re.MULTILINE).group(1)
check(f'"{docker_env.get("STACKPROC_STATE_DIR")}"' in volumes, "Dockerfile state dir is no volume")

# --- docker-compose.yml ---
compose = yaml.safe_load((src / "deploy/docker-compose.yml").read_text())
svc = compose["services"]["stackprocd"]
env = svc["environment"]
for name in env:
    check(name in env_of_flag, f"compose env {name} is no stackprocd flag")
listen_port = port_of(env["STACKPROC_LISTEN"])
check(listen_port == expose, "compose listen port != image EXPOSE")
check(any(str(p).endswith(f":{listen_port}") for p in svc["ports"]), "compose port not published")
check(any(str(v).endswith(":" + env["STACKPROC_DATA_ROOT"]) for v in svc["volumes"]),
      "compose volume not at the data root")
check(any(str(v).endswith(":" + env["STACKPROC_STATE_DIR"]) for v in svc["volumes"]),
      "compose volume not at the state dir")
check("health" in svc["healthcheck"]["test"] and "stackproc" in svc["healthcheck"]["test"],
      "compose healthcheck does not use `stackproc health`")
check(size_bytes(env["STACKPROC_MEMORY_BUDGET"]) <= 0.8 * size_bytes(svc["mem_limit"]),
      "compose memory budget does not leave room under mem_limit")
grace = int(env["STACKPROC_SHUTDOWN_GRACE"])
check(int(str(svc["stop_grace_period"]).rstrip("s")) > grace,
      "compose stop_grace_period does not outlast the shutdown grace")
check(svc.get("restart") in ("unless-stopped", "always", "on-failure"), "compose restart")
# Beyond loopback the server refuses to start without tokens or client certificates.
check(env.get("STACKPROC_AUTH_TOKEN_FILE") and any(
    str(v).endswith(f":{env['STACKPROC_AUTH_TOKEN_FILE']}:ro") for v in svc["volumes"]),
    "compose: no token file mounted read-only where STACKPROC_AUTH_TOKEN_FILE says")

# --- Kubernetes ---
docs = []
for path in sorted((src / "deploy/k8s").glob("*.yaml")):
    docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
by_kind = {d["kind"]: d for d in docs}
check({"Deployment", "Service", "PersistentVolumeClaim"} <= set(by_kind), f"kinds {set(by_kind)}")
check(by_kind["Deployment"]["apiVersion"] == "apps/v1", "Deployment apiVersion")
check(by_kind["Service"]["apiVersion"] == "v1", "Service apiVersion")
check(by_kind["PersistentVolumeClaim"]["apiVersion"] == "v1", "PVC apiVersion")
pod = by_kind["Deployment"]["spec"]["template"]["spec"]
container = pod["containers"][0]
kenv = {e["name"]: e.get("value") for e in container["env"]}
for name in kenv:
    check(name in env_of_flag, f"k8s env {name} is no stackprocd flag")
kport = port_of(kenv["STACKPROC_LISTEN"])
ports = {p["name"]: p["containerPort"] for p in container["ports"]}
check(ports.get("grpc") == kport, "containerPort != listen port")
for probe in ("readinessProbe", "livenessProbe"):
    check(container[probe].get("grpc", {}).get("port") == kport, f"{probe} is not gRPC on {kport}")
check(pod["terminationGracePeriodSeconds"] > int(kenv["STACKPROC_SHUTDOWN_GRACE"]),
      "terminationGracePeriodSeconds does not outlast the shutdown grace")
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
check(mounts.get("data") == kenv["STACKPROC_DATA_ROOT"], "data volume not at the data root")
check(mounts.get("state") == kenv.get("STACKPROC_STATE_DIR"), "state volume not at the state dir")
check(not (kenv["STACKPROC_STATE_DIR"] + "/").startswith(kenv["STACKPROC_DATA_ROOT"] + "/"),
      "the state dir is inside the data root")
token_file = kenv.get("STACKPROC_AUTH_TOKEN_FILE") or ""
check(mounts.get("tokens") == token_file.rsplit("/", 1)[0],
      "k8s: the token file's folder is not the tokens volume")
claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
pod_volumes = {v["name"]: v for v in pod["volumes"]}
for volume in ("data", "state"):
    claim = pod_volumes[volume]["persistentVolumeClaim"]["claimName"]
    check(claim in claims, f"{volume}: no PersistentVolumeClaim {claim}")
check([i["path"] for i in pod_volumes["tokens"]["secret"]["items"]] == [token_file.rsplit("/", 1)[1]],
      "k8s: the tokens Secret does not hold the file STACKPROC_AUTH_TOKEN_FILE names")
limits = container["resources"]["limits"]
check("memory" in limits, "no memory limit")
if "STACKPROC_MEMORY_BUDGET" in kenv:
    check(size_bytes(kenv["STACKPROC_MEMORY_BUDGET"]) <= 0.8 * size_bytes(limits["memory"]),
          "k8s memory budget does not fit the limit")
check(pod["securityContext"].get("runAsNonRoot") is True, "pod may run as root")
service_port = by_kind["Service"]["spec"]["ports"][0]
check(service_port["targetPort"] in ("grpc", kport), "Service targetPort")
check(by_kind["Service"]["spec"]["selector"].items()
      <= by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"].items(),
      "Service selector does not select the pods")

for f in failures:
    print("FAIL:", f)
print(f"manifests: {0 if failures else 1} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
