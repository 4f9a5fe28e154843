"""The README's Python examples, run as written: the quick start, and the Snakemake workflow on
two stacks through a real server (the `snakemake` Debian packages)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import tifffile

from conftest import LOCAL, stack, write_tiff

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "client" / "python" / "examples"
README = (EXAMPLES.parents[2] / "README.md").read_text()


def reference(src, out, *ops):
    cmd = [LOCAL, "run", "--input", src, "--output", out]
    for op in ops:
        cmd += ["--op", op]
    subprocess.run(cmd, check=True, capture_output=True)
    return tifffile.imread(out)


def env_for(server):
    return dict(os.environ, STACKPROC_SERVER=server.target,
                PYTHONPATH=os.pathsep.join(sys.path))


def test_quickstart_runs_as_the_readme_shows(server, tmp_path):
    code = (EXAMPLES / "quickstart.py").read_text()
    assert code.strip() in README, "the README does not show examples/quickstart.py as it is"
    write_tiff(tmp_path / "stack.tif", stack((4, 64, 80), "uint16"))
    subprocess.run([sys.executable, EXAMPLES / "quickstart.py"], cwd=tmp_path, check=True,
                   env=env_for(server), capture_output=True)
    want = reference(tmp_path / "stack.tif", tmp_path / "ref.tif", "gaussian:ksize=5",
                     "clahe:clip=2")
    assert np.array_equal(tifffile.imread(tmp_path / "blurred.tif"), want)


def test_snakemake_workflow_on_two_stacks(server, tmp_path):
    snakefile = (EXAMPLES / "Snakefile").read_text()
    assert snakefile.strip() in README, "the README does not show examples/Snakefile as it is"
    (tmp_path / "stacks").mkdir()
    for i, name in enumerate(["run1", "run2"]):
        write_tiff(tmp_path / "stacks" / f"{name}.tif", stack((3 + i, 50, 60), "uint8", seed=i),
                   imagej=True, resolution=(4.0, 4.0),
                   metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    run = subprocess.run(["snakemake", "--cores", "2", "--snakefile", EXAMPLES / "Snakefile",
                          "--directory", tmp_path], env=env_for(server), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    for name in ["run1", "run2"]:
        out = tmp_path / "processed" / f"{name}.tif"
        want = reference(tmp_path / "stacks" / f"{name}.tif", tmp_path / f"ref-{name}.tif",
                         "gaussian:ksize=5", "clahe:clip=2")
        with tifffile.TiffFile(out) as got:
            assert np.array_equal(got.asarray(), want)
            assert got.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert got.imagej_metadata["spacing"] == 2.0
