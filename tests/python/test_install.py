"""`pip install ./client/python` into a fresh venv (--system-site-packages: Debian's grpcio,
numpy and tifffile), with no package index at all (PIP_NO_INDEX: nothing may come from the
network), then the README's first Python example run by that venv's Python against a real
server: its result equals OpenCV's. (Release only: nothing here is a sanitizer's.)"""

import os
import re
import subprocess
import sys

import cv2
import numpy as np
import tifffile

from conftest import stack

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.join(HERE, "..", "..")


def readme_example():
    """The README's first ```python block (From Python)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.search(r"```python\n(.*?)```", f.read(), re.S).group(1)


def test_pip_install_into_a_venv_then_the_readme_example(server, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not the build's package
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", os.path.join(ROOT, "client",
                                                                             "python")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert "Successfully installed stackproc" in pip.stdout

    a = stack((4, 64, 80), "uint8")
    tifffile.imwrite(tmp_path / "stack.tif", a, photometric="minisblack")
    example = readme_example() + "\nimport stackproc as s; print('FROM', s.__file__)\n"
    run = subprocess.run([str(venv / "bin" / "python"), "-c", example], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120,
                         env=dict(env, STACKPROC_SERVER=server.target))
    assert run.returncode == 0, run.stderr
    assert f"FROM {venv}/lib/" in run.stdout  # the installed package, not the build's
    got = tifffile.imread(tmp_path / "blurred.tif")
    want = np.stack([cv2.GaussianBlur(p, (5, 5), 0) for p in a])
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    want = np.stack([clahe.apply(p) for p in want])
    assert np.array_equal(got, want)
