"""Previews through the server: the raw slices against OpenCV on the slices tifffile reads, the
montage PNG decoded by cv2 (its size, and its "after" tiles equal to the pipeline's output), the
CLI's PNG the same bytes as stackproc-local's."""

import subprocess

import cv2
import numpy as np
import pytest
import tifffile

import stackproc
from conftest import BUILD, LOCAL, stack, write_tiff

LABEL, GAP = 18, 4  # core/process/montage.cc's layout: a label strip above each tile, gaps


def test_raw_preview_equals_opencv_on_those_slices(server):
    a = stack((30, 64, 80), "uint16")
    write_tiff(server.root / "in.tif", a)
    with stackproc.Client(server.target) as client:
        p = client.preview("in.tif", ["gaussian:ksize=3,5", "resize:scale=0.5"],
                           slices=[29, 0, 7])
    assert p.z == [29, 0, 7] and p.labels == ["ksize=3", "ksize=5"]
    assert np.array_equal(p.before, a[[29, 0, 7]])
    assert isinstance(p.after, np.ndarray) and p.after.shape == (2, 3, 32, 40)  # as documented
    for k, after in zip((3, 5), p.after):
        want = [cv2.resize(cv2.GaussianBlur(a[z], (k, k), 0), None, fx=0.5, fy=0.5,
                           interpolation=cv2.INTER_AREA) for z in (29, 0, 7)]
        assert np.array_equal(after, np.stack(want))


def test_montage_tiles_are_the_pipelines_output(server, tmp_path):
    a = stack((12, 100, 150), "uint8")
    write_tiff(server.root / "in.tif", a)
    with stackproc.Client(server.target) as client:
        png = client.preview_png("in.tif", ["gaussian:ksize=5", "clahe:clip=1,4"], count=2)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    # 2 slices (z = 12/4 and 3*12/4) x (before + 2 variants) of 150 x 100 tiles, one title line.
    cell_w, cell_h, top = 150, 100, LABEL + GAP
    assert image.shape == (top + 2 * (LABEL + cell_h + GAP), GAP + 3 * (cell_w + GAP))
    subprocess.run([LOCAL, "run", "--input", server.root / "in.tif", "--op", "gaussian:ksize=5",
                    "--op", "clahe:clip=4", "--output", tmp_path / "ref.tif"], check=True,
                   capture_output=True)
    ref = tifffile.imread(tmp_path / "ref.tif")
    for row, z in enumerate((3, 9)):
        y = top + row * (LABEL + cell_h + GAP) + LABEL
        before = image[y:y + cell_h, GAP:GAP + cell_w]
        after = image[y:y + cell_h, GAP + 2 * (cell_w + GAP):][:, :cell_w]
        assert np.array_equal(before, a[z]) and np.array_equal(after, ref[z])


def test_large_slices_are_shrunk_and_16_bit_stretched(server):
    write_tiff(server.root / "big.tif", stack((3, 1000, 1200), "uint16"))
    with stackproc.Client(server.target) as client:
        png = client.preview_png("big.tif", "gaussian", count=1, max_tile_side=300)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    # Tiles of 300 x 250; a second title line says the slices are stretched.
    assert image.shape == (2 * LABEL + GAP + LABEL + 250 + GAP, GAP + 2 * (300 + GAP))
    assert image.dtype == np.uint8


def test_preview_refusals(server):
    write_tiff(server.root / "in.tif", stack((5, 20, 20), "uint8"))
    with stackproc.Client(server.target) as client:
        with pytest.raises(stackproc.InvalidArgument, match="slices 0 to 4"):
            client.preview("in.tif", "gaussian", slices=[5])
        with pytest.raises(stackproc.InvalidArgument, match="outside the 20x20"):
            client.preview("in.tif", "gaussian", roi=(10, 10, 20, 5))
        with pytest.raises(stackproc.PermissionDenied):
            client.preview("../in.tif", "gaussian")
        with pytest.raises(stackproc.InvalidArgument, match="at most 8 variants"):
            client.preview("in.tif", "gaussian:ksize=1,3,5,7,9,11,13,15,17")


def test_cli_preview_is_stackproc_locals(server, tmp_path):
    write_tiff(server.root / "in.tif", stack((20, 90, 70), "uint16"))
    args = ["--op", "gaussian:ksize=5", "--op", "clahe:clip=1,2", "-z", "3,15", "--roi",
            "10,10,50,60"]
    subprocess.run([f"{BUILD}/client/stackproc", "--server", server.target, "preview", "in.tif",
                    "-o", tmp_path / "remote.png", *args], check=True, capture_output=True)
    subprocess.run([LOCAL, "preview", server.root / "in.tif", "-o", tmp_path / "local.png",
                    *args], check=True, capture_output=True)
    remote, local = (tmp_path / "remote.png").read_bytes(), (tmp_path / "local.png").read_bytes()
    assert remote[:4] == b"\x89PNG" and len(remote) > 1000
    # The same montage but for the title, which names the input as each was given it.
    decode = lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decode(remote)[LABEL:], decode(local)[LABEL:])


def test_a_preview_of_chosen_channels(server, tmp_path):
    a = stack((12, 40, 56), "uint16").reshape(2, 6, 40, 56)  # C, Z
    tifffile.imwrite(server.root / "two.ome.tif", a, ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX"})
    with stackproc.Client(server.target) as client:
        p = client.preview("two.ome.tif", "invert", count=2, channels="1")
        assert p.z == [1, 4] and np.array_equal(p.before, a[1, [1, 4]])
        assert np.array_equal(p.after[0], 65535 - a[1, [1, 4]])
        # each slice's place in the input: the chosen channel by its own number
        assert p.places == [(0, 1, 1), (0, 1, 4)]
        # every channel: each z-slice of both, channel by channel
        p = client.preview("two.ome.tif", "invert", count=2)
        assert p.places == [(0, 0, 1), (0, 1, 1), (0, 0, 4), (0, 1, 4)]
        assert np.array_equal(p.before, a[[0, 1, 0, 1], [1, 1, 4, 4]])
        with pytest.raises(stackproc.InvalidArgument, match="channel 2"):
            client.preview("two.ome.tif", "invert", channels=[2])
    # The CLI's --channels reaches the server: the same montage as stackproc-local's.
    args = ["--op", "invert", "--channels", "1", "--slices", "2"]
    said = subprocess.run([f"{BUILD}/client/stackproc", "--server", server.target, "preview",
                           "two.ome.tif", "-o", tmp_path / "remote.png", *args], check=True,
                          capture_output=True, text=True).stdout
    assert "slices c=1 z=1, c=1 z=4;" in said, said
    subprocess.run([LOCAL, "preview", server.root / "two.ome.tif", "-o", tmp_path / "local.png",
                    *args], check=True, capture_output=True)
    decode = lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
    remote, local = (tmp_path / "remote.png").read_bytes(), (tmp_path / "local.png").read_bytes()
    assert np.array_equal(decode(remote)[LABEL:], decode(local)[LABEL:])
