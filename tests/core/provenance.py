#!/usr/bin/python3
"""What made an output, recorded in it and read back by tools no one here wrote.

Every output kind (an ImageJ TIFF, an OME-TIFF, a TIFF with tifffile's JSON description, an
OME-Zarr store, a plane folder) must carry the record where its readers keep it: tifffile's
imagej_metadata, the OME-XML's MapAnnotation (parsed with xml.etree), the JSON description,
zarr-python's attributes, the folder's stackproc.json. The record's fields are worked out by hand
(the pipeline with its defaults from `stackproc-local ops`), its time falls within the run, and the
readers still read the stack as before (no tifffile warning). `info` prints it; `rerun` writes the
same bytes (tests/tools/same_output.py, the time aside); a moved or changed input and an output
with no record are refused, nothing written.

usage: provenance.py BUILD_DIR"""
import datetime
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import numpy as np
import tifffile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "tools"))
import zarr_read  # noqa: E402

BUILD = os.path.abspath(sys.argv[1])
LOCAL = os.path.join(BUILD, "core", "stackproc-local")
SAME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "same_output.py")
TMP = tempfile.mkdtemp(prefix="stackproc-provenance-")
os.chdir(TMP)  # inputs named relative to here, as a user names them
log = io.StringIO()
logging.getLogger("tifffile").addHandler(logging.StreamHandler(log))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(*args, env=None, ok=True):
    p = subprocess.run([LOCAL, *args], capture_output=True, text=True,
                       env=None if env is None else {**os.environ, **env})
    if ok and p.returncode != 0:
        raise SystemExit(f"stackproc-local {' '.join(args)} failed: {p.stderr}")
    return p


def now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


rng = np.random.default_rng(3)
data = rng.integers(0, 4000, (2, 6, 40, 56), dtype=np.uint16)  # C, Z, Y, X
tifffile.imwrite("two.ome.tif", data, ome=True, photometric="minisblack",
                 metadata={"axes": "CZYX"})
tifffile.imwrite("plain.tif", data[0], imagej=True, metadata={"axes": "ZYX"})
tifffile.imwrite("shaped.tif", data[1])  # tifffile's JSON description: {"shape": [6, 40, 56]}

OPS = ["gaussian:sigma=1.5", "clahe:channels=1"]
# By hand, from `stackproc-local ops`: gaussian's ksize follows a given sigma (not stated),
# clahe's clip, tiles and bins are its defaults; the channel key comes last, as given.
RESOLVED = ["gaussian:sigma=1.5", "clahe:clip=2,tiles=8,bins=256,channels=1"]
TWO = {"name": "two.ome.tif", "shape": {"t": 1, "c": 2, "z": 6, "y": 40, "x": 56},
       "type": "uint16", "bytes": 2 * 6 * 40 * 56 * 2}


def ome_record(path):
    with tifffile.TiffFile(path) as tif:
        root = ET.fromstring(tif.pages[0].description)
    ns = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}
    fields = {}
    for annotation in root.iterfind(".//ome:StructuredAnnotations/ome:MapAnnotation", ns):
        if annotation.get("Namespace") == "stackproc":
            for m in annotation.iterfind("ome:Value/ome:M", ns):
                value = m.text or ""
                fields[m.get("K")] = (json.loads(value) if m.get("K") in
                                      ("pipeline", "input", "pyramid") else value)
    return fields


def imagej_record(path):
    with tifffile.TiffFile(path) as tif:
        return json.loads(tif.imagej_metadata["stackproc"])


def json_record(path):
    with tifffile.TiffFile(path) as tif:
        return json.loads(tif.pages[0].description)["stackproc"]


def zarr_record(path):
    """The group attribute, read by zarr-python (NGFF 0.4) or zarrita (0.5)."""
    return dict(zarr_read.read(path, "0")[1]["group"]["stackproc"])


def folder_record(path):
    with open(os.path.join(path, "stackproc.json")) as f:
        return json.load(f)


def recorded(name, args, read, want_pipeline, want_input, extra=None, env=None):
    start = now()
    run("run", *args, env=env)
    end = now()
    record = read(name)
    time = datetime.datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    want = {"pipeline": want_pipeline, "input": want_input, **(extra or {})}
    got = {key: record.get(key) for key in want}
    check(got == want and start <= time <= end and record["version"],
          f"{name}: records {got} at {record['time']} (run {start:%H:%M:%S}-{end:%H:%M:%S})")
    return record


def op_args(ops):
    return [a for op in ops for a in ("--op", op)]


r = recorded("out.ome.tif", ["--input", "two.ome.tif", "--output", "out.ome.tif", *op_args(OPS)],
             ome_record, RESOLVED, TWO, {"executor": "local", "compression": "default"})
log.truncate(0)
with tifffile.TiffFile("out.ome.tif") as tif:
    shape, axes = tif.series[0].shape, tif.series[0].axes
check((axes, shape) == ("CZYX", data.shape) and log.getvalue() == "",
      f"the OME-TIFF with its annotation still reads as {axes} {shape}, no warning")
plain = {"name": "plain.tif", "shape": {"t": 1, "c": 1, "z": 6, "y": 40, "x": 56},
         "type": "uint16", "bytes": 6 * 40 * 56 * 2}
recorded("out.tif", ["--input", "plain.tif", "--output", "out.tif", "--op", "invert",
                     "--compression", "deflate:level=3"],
         imagej_record, ["invert"], plain, {"compression": "deflate:level=3"})
shaped = dict(plain, name="shaped.tif")
recorded("shaped_out.tif", ["--input", "shaped.tif", "--output", "shaped_out.tif", "--op",
                            "resize:width=28"],
         json_record, ["resize:width=28,interp=area"], shaped)
log.truncate(0)
with tifffile.TiffFile("shaped_out.tif") as tif:
    shape = tif.series[0].shape
check(shape == (6, 20, 28) and log.getvalue() == "",
      f"tifffile's JSON description keeps its shape beside the record: {shape}")
recorded("out.zarr", ["--input", "two.ome.tif", "--output", "out.zarr", "--channels", "1",
                      "--pyramid", "1", "--chunks", "2x40x56", "--zarr-shards", "4x40x56",
                      "--op", "invert"],
         zarr_record, ["invert"], TWO,  # the input as it is: both channels
         {"channels": "1", "pyramid": 1, "chunks": "2x40x56", "shards": "4x40x56",
          "zarr_format": 3})
# A shard of a run on chosen channels records the input whole too (its assembly, the whole run's).
recorded("shard.ome.tif", ["--input", "two.ome.tif", "--output", "shard.ome.tif", "--channels",
                           "1", "--z-range", "0:2", "--op", "invert"],
         ome_record, ["invert"], TWO, {"channels": "1", "z_range": "0:2"})
recorded("out2.zarr", ["--input", "plain.tif", "--output", "out2.zarr", "--zarr-format", "2",
                       "--op", "invert"],
         zarr_record, ["invert"], dict(plain, name="plain.tif"), {"zarr_format": 2})
recorded("planes", ["--input", "plain.tif", "--output", "planes/", "--op", "invert"],
         folder_record, ["invert"], plain, {"executor": "slurm array 4242"},
         env={"SLURM_ARRAY_JOB_ID": "4242"})

# info: the record, readable and as JSON.
p = run("info", "out.ome.tif")
check("gaussian:sigma=1.5" in p.stdout and "clahe:clip=2,tiles=8,bins=256,channels=1" in p.stdout
      and "two.ome.tif" in p.stdout and "2 channels x 6 z" in p.stdout,
      f"info prints the record ({p.stdout.splitlines()[:2]})")
check(json.loads(run("info", "out.ome.tif", "--json").stdout) == r,
      "info --json is the record the file holds")
p = run("info", "plain.tif")
check(p.returncode == 0 and "no record" in p.stdout, "info of a file stackproc did not write")

# rerun: the same bytes but the time (and where it ran: planes/ ran in a SLURM array), into a
# folder of its own (a store's name is its own).
os.mkdir("again")
for out, name, differ in (("out.ome.tif", "out.ome.tif", "time"), ("out.tif", "out.tif", "time"),
                          ("shaped_out.tif", "shaped_out.tif", "time"),
                          ("shard.ome.tif", "shard.ome.tif", "time"),
                          ("out.zarr", "out.zarr", "time"), ("out2.zarr", "out2.zarr", "time"),
                          ("planes", "planes/", "time,executor")):
    run("rerun", out, "--output", f"again/{name}")
    same = subprocess.run(["/usr/bin/python3", SAME, out, f"again/{name.rstrip('/')}",
                           "--differ", differ], capture_output=True, text=True)
    check(same.returncode == 0, f"rerun {out}: the same bytes but the {differ} "
          f"{same.stderr.strip()}")

# Refused: another input, an input gone, a file with no record; nothing written.
p = run("rerun", "out.tif", "--output", "refused.tif", "--input", "two.ome.tif", ok=False)
check(p.returncode != 0 and "is not the input" in p.stderr and "c=2" in p.stderr and
      not os.path.exists("refused.tif"), f"rerun on another input: refused ({p.stderr.strip()!r})")
os.rename("plain.tif", "moved.tif")
p = run("rerun", "out.tif", "--output", "refused.tif", ok=False)
check(p.returncode != 0 and "plain.tif" in p.stderr and not os.path.exists("refused.tif"),
      f"rerun whose input moved: refused naming it ({p.stderr.strip()!r})")
run("rerun", "out.tif", "--output", "moved_out.tif", "--input", "moved.tif")
check(np.array_equal(tifffile.imread("moved_out.tif"), 65535 - data[0]),
      "rerun --input moved.tif: the recorded pipeline on the input where it is now")
p = run("rerun", "two.ome.tif", "--output", "refused.tif", ok=False)
check(p.returncode != 0 and "no record" in p.stderr and not os.path.exists("refused.tif"),
      f"rerun of a file with no record: refused ({p.stderr.strip()!r})")

if failures:
    print(f"{len(failures)} failed")
    sys.exit(1)
print("all passed")
