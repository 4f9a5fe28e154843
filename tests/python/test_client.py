"""stackproc.Client against a real server: every call, results against direct OpenCV calls."""

import json
import os
import signal
import subprocess

import cv2
import grpc
import numpy as np
import pytest
import tifffile

import stackproc
from conftest import LOCAL, stack, write_tiff
import zarr_read  # noqa: E402 (tests/tools, put on the path by conftest)


def blur(a, k=5):
    return np.stack([cv2.GaussianBlur(s, (k, k), 0) for s in a])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_process_equals_opencv(server, dtype):
    a = stack((5, 70, 90), dtype)
    with stackproc.Client(server.target) as client:
        got = client.process(a, "gaussian:ksize=5")
    assert got.dtype == a.dtype and got.shape == a.shape
    assert np.array_equal(got, blur(a))


def microscopy(shape, seed=0):
    """uint16 planes as microscopes make them: broad bright structures on a background, with
    Poisson noise (numpy's)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape[1:])
    mean = np.stack([100 + 700 * np.exp(-((x - 30 - 5 * z) ** 2 + (y - 40) ** 2) / 800.0)
                     for z in range(shape[0])])
    return rng.poisson(mean).astype(np.uint16)


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_wire_compression_both_ways(server, codec, monkeypatch):
    """Chunks compressed by numcodecs go up, the server's (c-blosc in C++) come down and are
    unpacked here: the result still equals OpenCV's, and compressed chunks did come."""
    a = microscopy((6, 300, 260))
    unpacked = []
    real_unpack = stackproc.streaming._unpack
    monkeypatch.setattr(stackproc.streaming, "_unpack",
                        lambda *args: unpacked.append(1) or real_unpack(*args))
    with stackproc.Client(server.target) as client:
        assert client.server_info()["wire_compressions"] == ["none", "lz4", "zstd"]
        got = client.process(a, "gaussian:ksize=5", wire_compression=codec)
    assert np.array_equal(got, blur(a))
    assert len(unpacked) == len(a)  # one 152 KiB chunk a plane, each compressed


def test_wire_compression_auto_and_bad_names(server, monkeypatch):
    a = microscopy((2, 40, 50))
    with stackproc.Client(server.target) as client:
        assert client._wire_codec("auto")[1] is None  # the server is on this machine
        with pytest.raises(ValueError, match="auto, none, lz4 or zstd"):
            client.process(a, "invert", wire_compression="gzip")
        # Not on this machine, auto is lz4 (here a loopback target taken for a remote one).
        monkeypatch.setattr(stackproc.streaming, "_is_local", lambda target: False)
        assert client._wire_codec("auto")[0] == stackproc.client.service_pb2.WIRE_COMPRESSION_LZ4
        assert np.array_equal(client.process(a, "invert", wire_compression="auto"), 65535 - a)


PROXY = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "net", "delay_proxy.py")


@pytest.mark.parametrize("cut,wire", [("up:3000000", "none"), ("down:3000000", "none"),
                                      ("up:2000000", "lz4")])
def test_a_cut_connection_resumes(start_server, cut, wire):
    """The connection is reset once mid-upload or mid-download (tests/net/delay_proxy.py): the
    client resumes the job by itself and the result still equals OpenCV's."""
    server = start_server("--stream-grace", 10)
    proxy = subprocess.Popen(["/usr/bin/python3", PROXY, "127.0.0.1:0", server.target, "0",
                              "--cut", cut], stdout=subprocess.PIPE, text=True)
    try:
        port = proxy.stdout.readline().rsplit(":", 1)[1].strip()
        a = microscopy((16, 512, 256))  # 4 MiB each way
        with stackproc.Client(f"127.0.0.1:{port}") as client:
            got = client.process(a, "gaussian:ksize=5", wire_compression=wire)
        assert proxy.stdout.readline().startswith("cut ")  # it did cut
        assert np.array_equal(got, blur(a))
    finally:
        proxy.kill()
        proxy.wait()


def test_process_any_byte_order_and_layout(server):
    a = stack((4, 60, 50), "uint16")
    big_endian = a.astype(">u2")
    transposed = np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1)  # Fortran-like
    strided = np.ascontiguousarray(np.repeat(a, 2, axis=2))[:, :, ::2]          # every other x
    assert not transposed[0].flags.c_contiguous and not strided.flags.c_contiguous
    ops = [{"name": "gaussian", "ksize": 5}, "resize:scale=0.5"]  # dicts and text alike
    want = np.stack([cv2.resize(s, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                     for s in blur(a)])
    with stackproc.Client(server.target) as client:
        for array in (big_endian, transposed, strided):
            assert np.array_equal(client.process(array, ops), want)


class PlanesOnly:
    """The least an array-like has: shape, dtype and indexing by (t, c, z); it counts reads."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, index):
        self.reads.append(index)
        return self.array[index]


def test_process_any_array_like_into_out(server, tmp_path):
    """Array-likes in (a zarr array, a memmap, an object with only shape, dtype and indexing),
    read a plane at a time, each once; results written into `out` (a zarr array, a memmap)."""
    import zarr
    a = stack((6, 48, 64), "uint16")
    want = blur(a)
    z_in = zarr.open(str(tmp_path / "in.zarr"), mode="w", shape=a.shape, chunks=(1, 48, 64),
                     dtype=a.dtype)
    z_in[:] = a
    m_in = np.lib.format.open_memmap(tmp_path / "in.npy", mode="w+", dtype=a.dtype, shape=a.shape)
    m_in[:] = a
    planes = PlanesOnly(a)
    with stackproc.Client(server.target) as client:
        for source in (z_in, m_in, planes):
            z_out = zarr.open(str(tmp_path / "out.zarr"), mode="w", shape=a.shape,
                              chunks=(1, 48, 64), dtype=a.dtype)
            assert client.process(source, "gaussian:ksize=5", out=z_out) is z_out
            assert np.array_equal(z_out[:], want), type(source)
        assert sorted(planes.reads) == [(z,) for z in range(6)]  # each plane read once
        m_out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=a.dtype,
                                          shape=a.shape)
        client.process(z_in, "gaussian:ksize=5", out=m_out)
        assert np.array_equal(np.load(tmp_path / "out.npy"), want)
        # (t, c, z) arrays index `out` the same way.
        tc = a.reshape(1, 2, 3, 48, 64)
        out5 = np.zeros_like(tc)
        client.process(PlanesOnly(tc), "gaussian:ksize=5", out=out5)
        assert np.array_equal(out5, want.reshape(tc.shape))


def test_process_refuses_an_out_of_another_shape(server):
    a = stack((3, 40, 40), "uint8")
    with stackproc.Client(server.target) as client:
        with pytest.raises(ValueError, match=r"out is \(3, 40, 40\) uint8; the result is "
                                             r"\(3, 20, 20\) uint8"):
            client.process(a, "resize:scale=0.5", out=np.zeros_like(a))
        with pytest.raises(TypeError, match="int32 is not supported"):
            client.process(PlanesOnly(a.astype(np.int32)), "invert")

        class Unreadable(PlanesOnly):  # a chunk of a store gone missing
            def __getitem__(self, index):
                if index == (2,):
                    raise OSError("chunk 2 is missing")
                return super().__getitem__(index)

        with pytest.raises(OSError, match="chunk 2 is missing"):  # its own error, not UNKNOWN
            client.process(Unreadable(a), "invert")
        assert np.array_equal(client.process(a, "invert"), 255 - a)  # and it keeps serving


def test_process_channels_and_time_points(server):
    """(t, c, z, y, x) in, the same axes out; per-channel parameters and statistics; a 4-D array
    says which axes it has, and is refused when it does not."""
    a = stack((24, 40, 56), "uint16").reshape(2, 3, 4, 40, 56)  # t, c, z
    a[:, 1] = a[:, 1] // 8 + 5000          # a dim channel beside bright ones
    with stackproc.Client(server.target) as client:
        got = client.process(a, "gaussian:sigma=1,c1.sigma=3")
        assert got.shape == a.shape
        for t in range(2):
            for c in range(3):
                sigma = 3 if c == 1 else 1
                want = np.stack([cv2.GaussianBlur(p, (0, 0), sigma) for p in a[t, c]])
                assert np.array_equal(got[t, c], want), (t, c)
        norm = client.process(a, "normalize:low=0,high=100,scope=stack")
        for c in range(3):  # each channel over every time point: its own min and max
            lo, hi = a[:, c].min(), a[:, c].max()
            want = np.clip(np.rint((a[:, c] - float(lo)) * 65535.0 / (hi - lo)), 0, 65535)
            assert np.abs(norm[:, c].astype(float) - want).max() <= 1, c
        czyx = client.process(a[0], "invert", axes="czyx")
        assert czyx.shape == a[0].shape and np.array_equal(czyx, 65535 - a[0])
        only = client.process(a[0], "invert:channels=2", axes="czyx")
        assert np.array_equal(only[:2], a[0, :2]) and np.array_equal(only[2], 65535 - a[0, 2])
        with pytest.raises(ValueError, match="axes"):
            client.process(a[0], "invert")
        with pytest.raises(stackproc.InvalidArgument, match="channel 3"):
            client.process(a, "invert:channels=3")


def test_cli_channels_streamed_and_by_path(server, tmp_path):
    """`stackproc process --channels` sends only those channels (the description restated);
    an ImageJ hyperstack streamed into an OME-Zarr store comes in t, c, z order; `stackproc
    submit --channels` does the same on the server."""
    cli = os.path.join(os.path.dirname(os.path.dirname(LOCAL)), "client", "stackproc")
    env = dict(os.environ, STACKPROC_SERVER=server.target)
    a = stack((24, 40, 56), "uint16").reshape(3, 4, 2, 40, 56)  # t, z, c: ImageJ's TZCYX
    tifffile.imwrite(tmp_path / "hyper.tif", a, imagej=True, metadata={"axes": "TZCYX"})
    subprocess.run([cli, "process", tmp_path / "hyper.tif", "-o", tmp_path / "one.tif",
                    "--channels", "1", "--op", "invert"], env=env, check=True, capture_output=True)
    with tifffile.TiffFile(tmp_path / "one.tif") as tif:
        assert tif.series[0].axes == "TZYX"
        assert np.array_equal(tif.series[0].asarray(), 65535 - a[:, :, 1])
    subprocess.run([cli, "process", tmp_path / "hyper.tif", "-o", tmp_path / "h.ome.zarr"],
                   env=env, check=True, capture_output=True)
    assert np.array_equal(zarr_read.read(str(tmp_path / "h.ome.zarr"))[0],  # zarrita: NGFF 0.5
                          a.transpose(0, 2, 1, 3, 4))
    tifffile.imwrite(server.root / "hyper.tif", a, imagej=True, metadata={"axes": "TZCYX"})
    subprocess.run([cli, "submit", "--input", "hyper.tif", "--channels", "0", "--op", "invert",
                    "--output", "zero.tif", "--wait"], env=env, check=True, capture_output=True)
    assert np.array_equal(tifffile.imread(server.root / "zero.tif"), 65535 - a[:, :, 0])
    with stackproc.Client(server.target) as client:  # Python's submit, a result in memory
        kept = client.submit("hyper.tif", "invert", in_memory=True, channels=[1, 0])
        kept.wait()
        got = kept.result()
        assert got.shape == (3, 2, 4, 40, 56)  # t, c, z: ImageJ's t, z, c planes arranged
        assert np.array_equal(got, 65535 - a.transpose(0, 2, 1, 3, 4)[:, [1, 0]])


def test_resize_scale_sizes_as_cv2(server):
    a = stack((2, 301, 401), "uint8")
    with stackproc.Client(server.target) as client:
        got = client.process(a, "resize:scale=0.5")
    want = np.stack([cv2.resize(s, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for s in a])
    assert got.shape == (2, 150, 200)
    assert np.array_equal(got, want)


def test_metadata_both_ways(server):
    a = stack((3, 40, 40), "uint8")
    meta = stackproc.Metadata(pixel_size=(0.25, 0.25), spacing=2.0, unit="micron")
    with stackproc.Client(server.target) as client:
        got, out = client.process(a, "resize:scale=0.5", metadata=meta, with_metadata=True)
    assert got.shape == (3, 20, 20)
    assert out.pixel_size == pytest.approx((0.5, 0.5))  # twice the size: half the pixels
    assert out.spacing == 2.0 and out.unit == "micron"


def test_progress_callback_and_bar(server, capsys):
    a = stack((6, 50, 50), "uint8")
    seen = []
    with stackproc.Client(server.target) as client:
        client.process(a, "gaussian:ksize=3", progress=seen.append)
        client.process(a, "gaussian:ksize=3", progress=True)
    assert seen[-1].state == "succeeded" and seen[-1].slices_done == 6
    assert [s.slices_done for s in seen] == sorted(s.slices_done for s in seen)
    assert "6/6" in capsys.readouterr().err  # tqdm's bar, on stderr


def test_process_file_equals_the_cli_job(server, tmp_path):
    a = stack((5, 64, 48), "uint16")
    src = write_tiff(tmp_path / "in.tif", a, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "micron", "axes": "ZYX"})
    out = tmp_path / "out.tif"
    with stackproc.Client(server.target) as client:
        client.process_file(src, out, ["gaussian:ksize=5", "resize:scale=0.5"],
                            compression="deflate")
        with pytest.raises(stackproc.AlreadyExists):
            client.process_file(src, out, "gaussian:ksize=5")
        with pytest.raises(stackproc.InvalidArgument, match="ksize"):
            client.process_file(src, out, "gaussian:ksize=4", overwrite=True)
    subprocess.run([LOCAL, "run", "--input", src, "--op", "gaussian:ksize=5", "--op",
                    "resize:scale=0.5", "--output", tmp_path / "ref.tif"], check=True,
                   capture_output=True)
    ref = tifffile.TiffFile(tmp_path / "ref.tif")
    with tifffile.TiffFile(out) as got:
        assert np.array_equal(got.asarray(), ref.asarray())
        assert got.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert got.imagej_metadata["spacing"] == 3.0 and got.imagej_metadata["unit"] == "micron"
        assert got.pages[0].tags["XResolution"].value == ref.pages[0].tags["XResolution"].value
        # What made it, as the server recorded the job and the Python client wrote it: the same
        # record as the CLI's run but for the executor and the time.
        made = json.loads(got.imagej_metadata["stackproc"])
        ref_made = json.loads(ref.imagej_metadata["stackproc"])
    ref.close()
    assert made["executor"].startswith("stackprocd job ") and ref_made["executor"] == "local"
    assert made["input"]["name"] == str(src)
    assert made["pipeline"] == ["gaussian:ksize=5", "resize:scale=0.5,interp=area"]
    assert made["compression"] == "deflate"  # the codec the client wrote with
    for key in ("version", "pipeline", "input"):
        assert made[key] == ref_made[key], key
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]  # none left behind


def local_run(tmp_path, src, name, *args):
    """stackproc-local's output of `src` (tifffile reads it), to compare process_file with."""
    subprocess.run([LOCAL, "run", "--input", src, "--output", tmp_path / name, *args],
                   check=True, capture_output=True)
    with tifffile.TiffFile(tmp_path / name) as tif:
        return tif.series[0].axes, tif.series[0].asarray()


def test_process_file_takes_rgb_and_chosen_channels(server, tmp_path):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (4, 30, 40, 3)).astype(np.uint8)  # z, y, x, samples
    tifffile.imwrite(tmp_path / "chunky.tif", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", rgb.transpose(0, 3, 1, 2), photometric="rgb",
                     planarconfig="separate")
    two = rng.integers(0, 4000, (2, 5, 30, 40)).astype(np.uint16)  # c, z, y, x
    tifffile.imwrite(tmp_path / "two.ome.tif", two, ome=True, metadata={
        "axes": "CZYX", "PhysicalSizeZ": 2.5, "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2,
        "Channel": {"Name": ["DAPI", "GFP"], "Color": [65535, 16711935]}})  # blue, green
    with stackproc.Client(server.target) as client:
        for name in ("chunky.tif", "planar.tif"):
            out = client.process_file(tmp_path / name, tmp_path / f"out-{name}", "invert")
            with tifffile.TiffFile(out) as tif:
                axes, got = tif.series[0].axes, tif.series[0].asarray()
                luts = tif.imagej_metadata["LUTs"]
            # the samples as channels, each inverted; as stackproc-local reads the file
            assert axes == "ZCYX" and np.array_equal(got, 255 - rgb.transpose(0, 3, 1, 2)), name
            ref_axes, ref = local_run(tmp_path, tmp_path / name, f"ref-{name}", "--op", "invert")
            assert axes == ref_axes and np.array_equal(got, ref), name
            assert [tuple(lut[:, -1]) for lut in luts] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
        # chosen channels, in the order asked: RGB's samples, an OME-TIFF's channels
        out = client.process_file(tmp_path / "chunky.tif", tmp_path / "bg.tif", "invert",
                                  channels="2+1")
        assert np.array_equal(tifffile.imread(out), 255 - rgb[..., [2, 1]].transpose(0, 3, 1, 2))
        out = client.process_file(tmp_path / "two.ome.tif", tmp_path / "gfp.tif", "invert",
                                  channels=[1])
        with tifffile.TiffFile(out) as tif:
            got, ij = tif.asarray(), tif.imagej_metadata
            x_resolution = tif.pages[0].tags["XResolution"].value
        # the z step, the pixel size (5 a micron) and GFP's colour, kept
        assert np.array_equal(got, 65535 - two[1]) and ij["spacing"] == 2.5
        assert ij["unit"] == "micron" and x_resolution[0] / x_resolution[1] == pytest.approx(5)
        assert np.reshape(ij["LUTs"], (3, 256))[:, -1].tolist() == [0, 255, 0]
        # what made it: the file's two channels and the one chosen, as stackproc-local's record;
        # rerun makes the same pixels from the file
        made = json.loads(ij["stackproc"])
        assert made["channels"] == "1" and made["input"]["shape"]["c"] == 2
        assert made["input"]["bytes"] == two.nbytes
        subprocess.run([LOCAL, "rerun", out, "--output", tmp_path / "again-gfp.tif"], check=True,
                       capture_output=True)
        assert np.array_equal(tifffile.imread(tmp_path / "again-gfp.tif"), got)
        assert np.array_equal(got, local_run(tmp_path, tmp_path / "two.ome.tif", "ref-gfp.tif",
                                             "--op", "invert", "--channels", "1")[1])
        # an ImageJ hyperstack (its planes c fastest, then z, then t): one channel of it
        hyper = rng.integers(0, 4000, (2, 3, 2, 30, 40)).astype(np.uint16)  # t, z, c, y, x
        tifffile.imwrite(tmp_path / "hyper.tif", hyper, imagej=True, metadata={"axes": "TZCYX"})
        out = client.process_file(tmp_path / "hyper.tif", tmp_path / "c0.tif", "invert",
                                  channels="0")
        with tifffile.TiffFile(out) as tif:
            axes, got = tif.series[0].axes, tif.series[0].asarray()
        assert axes == "TZYX" and np.array_equal(got, 65535 - hyper[:, :, 0])
        # an ImageJ hyperstack's colours and windows (its LUTs and Ranges) go through, all
        # channels or one
        ramp = np.arange(256, dtype=np.uint8)
        luts = [np.stack([ramp * 0, ramp, ramp * 0]), np.stack([ramp, ramp * 0, ramp])]
        tifffile.imwrite(tmp_path / "luts.tif", hyper, imagej=True, metadata={
            "axes": "TZCYX", "LUTs": luts, "Ranges": (10.0, 900.0, 20.0, 1800.0)})
        for channels, want in ((None, [0, 1]), ("1", [1])):
            out = client.process_file(tmp_path / "luts.tif", tmp_path / f"luts-{channels}.tif",
                                      "invert", channels=channels, overwrite=True)
            with tifffile.TiffFile(out) as tif:
                ij = tif.imagej_metadata
            got_luts = np.reshape(ij["LUTs"], (-1, 3, 256))  # one channel's: one table
            assert got_luts.tolist() == [luts[c].tolist() for c in want]
        # a file of one channel with a colour (as that output) goes through again, colour kept
        out = client.process_file(tmp_path / "luts-1.tif", tmp_path / "again.tif", "invert")
        with tifffile.TiffFile(out) as tif:
            assert np.reshape(tif.imagej_metadata["LUTs"], (3, 256)).tolist() == luts[1].tolist()
            assert list(ij["Ranges"]) == [v for c in want for v in ((10.0, 900.0), (20.0, 1800.0))[c]]
        ref_axes, ref = local_run(tmp_path, tmp_path / "hyper.tif", "ref-c0.tif", "--op", "invert",
                                  "--channels", "0")
        assert axes == ref_axes and np.array_equal(got, ref)
        with pytest.raises(stackproc.InvalidArgument, match="no channel 2"):
            client.process_file(tmp_path / "two.ome.tif", tmp_path / "no.tif", "invert",
                                channels=[2])
    assert not os.path.exists(tmp_path / "no.tif")


def test_process_file_takes_channels_in_the_order_tiffdata_gives(server, tmp_path):
    # An OME-TIFF whose IFDs hold (z, c) = (i // 2, i % 2) while its DimensionOrder says z
    # varies fastest: its TiffData elements map each IFD. Channel 1 is IFDs 1 and 3.
    rng = np.random.default_rng(6)
    ifds = rng.integers(0, 4000, (4, 20, 30)).astype(np.uint16)
    tiffdata = "".join(f'<TiffData IFD="{i}" FirstZ="{i // 2}" FirstC="{i % 2}" FirstT="0" '
                       'PlaneCount="1"/>' for i in range(4))
    xml = ('<?xml version="1.0" encoding="UTF-8"?>'
           '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="30" SizeY="20" '
           'SizeZ="2" SizeC="2" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
           '<Channel ID="Channel:0:1" SamplesPerPixel="1"/>' + tiffdata +
           '</Pixels></Image></OME>')
    with tifffile.TiffWriter(tmp_path / "reorder.ome.tif") as tif:
        for i in range(4):
            tif.write(ifds[i], description=xml if i == 0 else None, metadata=None,
                      contiguous=False)
    with stackproc.Client(server.target) as client:
        out = client.process_file(tmp_path / "reorder.ome.tif", tmp_path / "c1.tif", "invert",
                                  channels=[1])
    assert np.array_equal(tifffile.imread(out), 65535 - ifds[[1, 3]])


def test_submit_to_a_file_and_in_memory(server):
    a = stack((4, 80, 60), "uint8")
    write_tiff(server.root / "in.tif", a)
    with stackproc.Client(server.target) as client:
        job = client.submit("in.tif", "gaussian:ksize=5", output="out.tif",
                            compression="deflate:level=3", request_id="r-1")
        assert client.submit("in.tif", "gaussian:ksize=5", output="out.tif",
                             compression="deflate:level=3", request_id="r-1").id == job.id
        done = job.wait()
        assert done.state == "succeeded" and done.slices_done == 4 and done.output == "out.tif"
        with tifffile.TiffFile(server.root / "out.tif") as t:
            assert np.array_equal(t.asarray(), blur(a))
            assert t.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        with pytest.raises(stackproc.AlreadyExists):
            client.submit("in.tif", "gaussian", output="out.tif").wait()
        client.submit("in.tif", "gaussian", output="out.tif", overwrite=True).wait()

        kept = client.submit("in.tif", ["gaussian:ksize=3"], in_memory=True)
        states = [s.state for s in kept.watch()]
        assert states[-1] == "succeeded"
        assert np.array_equal(kept.result(), blur(a, 3))
        assert kept.id in [j.id for j in client.jobs()]
        assert client.job(kept.id).last.state == "succeeded"
        kept.delete()
        with pytest.raises(stackproc.NotFound):
            kept.status()


def test_submit_to_ome_zarr_of_either_version(server):
    """NGFF 0.5 with the shards asked for (zarrita reads it), and 0.4 (zarr-python), with a
    pyramid level."""
    a = stack((6, 80, 60), "uint16")
    write_tiff(server.root / "in.tif", a)
    with stackproc.Client(server.target) as client:
        client.submit("in.tif", "gaussian:ksize=5", output="v3.ome.zarr", chunks=(1, 32, 32),
                      zarr_shards=(2, 64, 64), pyramid=1).wait()
        client.submit("in.tif", "gaussian:ksize=5", output="v2.ome.zarr", zarr_format=2,
                      pyramid=1).wait()
    v3, info = zarr_read.read(str(server.root / "v3.ome.zarr"))
    assert np.array_equal(v3, blur(a)) and info["chunks"] == [1, 32, 32]
    with open(server.root / "v3.ome.zarr" / "0" / "zarr.json") as f:
        assert json.load(f)["chunk_grid"]["configuration"]["chunk_shape"] == [2, 64, 64]
    v2, _ = zarr_read.read(str(server.root / "v2.ome.zarr"))
    assert np.array_equal(v2, blur(a)) and (server.root / "v2.ome.zarr" / "0" / ".zarray").exists()
    assert np.array_equal(zarr_read.read(str(server.root / "v3.ome.zarr"), "1")[0],
                          zarr_read.read(str(server.root / "v2.ome.zarr"), "1")[0])


def test_result_download_resumes_after_a_cut(server):
    a = stack((6, 700, 600), "uint16")  # 840 000 bytes a slice: a chunk, then the rest
    write_tiff(server.root / "in.tif", a)
    with stackproc.Client(server.target) as client:
        job = client.submit("in.tif", "gaussian:ksize=5", in_memory=True)
        job.wait()
        real, requests = client._stub.ReadResult, []

        class Cut(grpc.RpcError):
            def code(self):
                return grpc.StatusCode.UNAVAILABLE

            def details(self):
                return "connection reset (the test's cut)"

        def cut_after_three(request, **kwargs):  # the first call breaks after three chunks
            requests.append((request.start_slice, request.start_offset))
            for i, reply in enumerate(real(request, **kwargs)):
                if len(requests) == 1 and i == 4:
                    raise Cut()
                yield reply

        client._stub.ReadResult = cut_after_three
        got = job.result()
    assert requests[0] == (0, 0) and requests[1] != (0, 0) and len(requests) == 2
    assert np.array_equal(got, blur(a))


def test_cancel(server):
    a = stack((60, 512, 512), "uint8")
    write_tiff(server.root / "big.tif", a)
    with stackproc.Client(server.target) as client:
        job = client.submit("big.tif", ["bilateral:d=9"] * 4, in_memory=True)
        next(s for s in job.watch() if s.state == "running")
        assert job.cancel().state == "cancelled"
        with pytest.raises(stackproc.Cancelled):
            job.wait()


def test_errors_carry_the_code_and_message(server):
    write_tiff(server.root / "in.tif", stack((2, 20, 20), "uint8"))
    with stackproc.Client(server.target) as client:
        with pytest.raises(stackproc.InvalidArgument, match="ksize"):
            client.submit("in.tif", "gaussian:ksize=4", output="o.tif")
        with pytest.raises(stackproc.PermissionDenied, match="outside the data root"):
            client.submit("../in.tif", "gaussian", output="o.tif")
        with pytest.raises(stackproc.NotFound):
            client.job("nope")
        with pytest.raises(stackproc.InvalidArgument, match="unknown operation|no operation"):
            client.process(stack((1, 8, 8), "uint8"), "blurr")
        with pytest.raises(TypeError, match="not supported"):
            client.process(np.zeros((1, 4, 4), np.int32), "gaussian")
        with pytest.raises(stackproc.InvalidArgument, match="compression"):
            client.submit("in.tif", "gaussian", output="o.tif", compression="gzip")
        error = pytest.raises(stackproc.StackprocError, client.job, "nope").value
        assert error.code == grpc.StatusCode.NOT_FOUND and "nope" in error.message


def test_tokens(start_server, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alice alice-token-0123456789\nbob bob-token-0123456789abc\n")
    server = start_server("--auth-token-file", tokens)
    write_tiff(server.root / "in.tif", stack((2, 20, 20), "uint8"))
    with stackproc.Client(server.target) as anonymous:
        with pytest.raises(stackproc.Unauthenticated):
            anonymous.jobs()
        assert anonymous.health()  # the health service needs no token
    with stackproc.Client(server.target, token="alice-token-0123456789") as alice:
        job = alice.submit("in.tif", "gaussian", in_memory=True)
        job.wait()
        assert alice.server_info()["tokens_required"]
    os.environ["STACKPROC_TOKEN"] = "bob-token-0123456789abc"  # the CLI's variable
    try:
        with stackproc.Client(server.target) as bob:
            assert bob.jobs() == []
            with pytest.raises(stackproc.NotFound):
                bob.job(job.id)
    finally:
        del os.environ["STACKPROC_TOKEN"]


def test_resume_after_a_restart(start_server, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    server = start_server("--state-dir", state, "--shutdown-grace", "0")
    write_tiff(server.root / "big.tif", stack((60, 512, 512), "uint8"))
    with stackproc.Client(server.target) as client:
        job = client.submit("big.tif", ["bilateral:d=9"] * 3, output="out.tif")
        next(s for s in job.watch() if s.state == "running")
    server.stop(signal.SIGTERM)
    server = start_server("--state-dir", state)
    with stackproc.Client(server.target) as client:
        assert client.job(job.id).last.state == "interrupted"
        with pytest.raises(stackproc.Aborted):
            client.job(job.id).wait()
        resumed = client.resume(job.id)
        assert resumed.id == job.id and resumed.wait().state == "succeeded"
    assert tifffile.imread(server.root / "out.tif").shape == (60, 512, 512)


def test_server_info_and_operations(start_server):
    server = start_server("--max-slices", 5000, "--max-side", 8192, "--memory-budget", "512M")
    with stackproc.Client(server.target) as client:
        info = client.server_info()
        ops = {op["name"]: op for op in client.operations()}
    assert info["max_slices"] == 5000 and info["max_side"] == 8192
    assert info["memory_budget_bytes"] == 512 << 20
    assert info["max_chunk_bytes"] == 1 << 20 and info["max_message_bytes"] >= 4 << 20
    assert info["version"] and not info["tokens_required"]
    assert {f["name"] for f in info["formats"]} >= {"TIFF", "OME-Zarr"}
    ksize = next(p for p in ops["gaussian"]["params"] if p["name"] == "ksize")
    assert ksize["type"] == "int" and "uint16" in ops["gaussian"]["pixel_types"]


def test_mutual_tls(start_server, tmp_path):
    """The client's TLS arguments and variables: a CA, the client's own certificate."""
    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    def certificate(name, ext=None):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", tmp_path / f"{name}.key", "-out", tmp_path / f"{name}.csr")
        extra = ["-extfile", ext] if ext else []
        openssl("x509", "-req", "-in", tmp_path / f"{name}.csr", "-CA", tmp_path / "ca.pem",
                "-CAkey", tmp_path / "ca.key", "-CAcreateserial", "-days", "2",
                "-out", tmp_path / f"{name}.pem", *extra)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca",
            "-keyout", tmp_path / "ca.key", "-out", tmp_path / "ca.pem")
    (tmp_path / "san").write_text("subjectAltName=IP:127.0.0.1\n")
    certificate("server", tmp_path / "san")
    certificate("carol")
    server = start_server("--tls-cert", tmp_path / "server.pem", "--tls-key",
                          tmp_path / "server.key", "--tls-client-ca", tmp_path / "ca.pem")
    a = stack((2, 30, 30), "uint8")
    with stackproc.Client(server.target, tls_ca=tmp_path / "ca.pem",
                          tls_cert=tmp_path / "carol.pem", tls_key=tmp_path / "carol.key") as c:
        assert np.array_equal(c.process(a, "gaussian:ksize=5"), blur(a))
        assert c.jobs()[0].last.proto.owner == "carol"  # the certificate's common name
    with stackproc.Client(server.target, tls_ca=tmp_path / "ca.pem") as anonymous:
        with pytest.raises(stackproc.Unavailable):  # no client certificate: no handshake
            anonymous.jobs()
