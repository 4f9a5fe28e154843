#!/usr/bin/python3
"""Which destriping: stackproc's filter on column statistics (destripe) against a wavelet and
Fourier filter like pystripe's (written here with pywt and numpy: each level's detail across
the stripes, its Fourier transform along them damped near frequency 0 by 1 - exp(-f^2 / 2s^2),
then the inverse wavelet transform), on the same striped synthetic images.

The images: smooth structures (blurred noise) on a sloping background with Poisson noise, 16-bit,
--side x --side; then thin full-height stripes (1-2 pixels, amplitude 1500-6000 of 65535, at
24 random columns per 256) added. Printed for each method: the PSNR against the stripe-free
image before and after, the RMS change of a stripe-free image (% of its range), and the time
per plane (stackproc: the run's wall time over --planes planes, one thread; the wavelet filter:
its own time in Python, one plane at a time).

usage: destripe.py [--build build/release] [--side 1024] [--planes 8] [--dir /dev/shm]
"""
import argparse
import os
import subprocess
import tempfile
import time

import numpy as np
import pywt
import scipy.ndimage as nd
import tifffile


def scene(planes, side, seed):
    rng = np.random.default_rng(seed)
    blobs = nd.gaussian_filter(rng.random((planes, side, side)), (0, side / 85, side / 85))
    blobs = (blobs - blobs.min()) / (blobs.max() - blobs.min())
    y, x = np.mgrid[0:side, 0:side]
    slope = 0.3 * (x / side + 0.5 * y / side)
    return np.clip(rng.poisson((0.5 * blobs + slope + 0.05) * 24000), 0, 65535).astype(np.float64)


def stripes(side, seed):
    rng = np.random.default_rng(seed)
    s = np.zeros(side)
    for column in rng.choice(np.arange(4, side - 4), 24 * side // 256, replace=False):
        s[column:column + rng.integers(1, 3)] = rng.choice([-1, 1]) * rng.uniform(1500, 6000)
    return s


def wavelet_fft(img, sigma=2.0, level=6, wavelet="db3"):
    """pystripe's filter for vertical stripes: the detail across them (cV: high-pass along x),
    damped near frequency 0 along y (where a full-height stripe is)."""
    coeffs = pywt.wavedec2(img, wavelet, level=level, mode="symmetric")
    out = [coeffs[0]]
    for ch, cv, cd in coeffs[1:]:
        f = np.fft.rfft(cv, axis=0)
        k = np.arange(f.shape[0])[:, None]
        damp = 1 - np.exp(-(k ** 2) / (2 * sigma ** 2))
        out.append((ch, np.fft.irfft(f * damp, n=cv.shape[0], axis=0), cd))
    rec = pywt.waverec2(out, wavelet, mode="symmetric")
    return rec[:img.shape[0], :img.shape[1]]


def psnr(a, clean):
    return 10 * np.log10(65535.0 ** 2 / np.mean((a - clean) ** 2))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default="build/release")
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--planes", type=int, default=8)
    p.add_argument("--dir", default="/dev/shm")
    a = p.parse_args()
    local = os.path.join(a.build, "core", "stackproc-local")
    clean = scene(a.planes, a.side, 1)
    striped = np.clip(clean + stripes(a.side, 2)[None, None, :], 0, 65535)
    clean16, striped16 = np.round(clean).astype(np.uint16), np.round(striped).astype(np.uint16)
    print(f"{a.planes} planes of {a.side}x{a.side} uint16; PSNR of the striped planes "
          f"{psnr(striped16.astype(float), clean16):.1f} dB\n")
    print(f"{'method':34s} {'PSNR after':>11s} {'gain':>8s} {'clean changed':>14s} {'s/plane':>9s}")
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        for width in (15, 31):
            results = []
            for data in (striped16, clean16):
                tifffile.imwrite(f"{d}/in.tif", data)
                start = time.perf_counter()
                subprocess.run([local, "run", "--input", f"{d}/in.tif", "--output", f"{d}/out.tif",
                                "--overwrite", "--threads", "1", "--op", f"destripe:width={width}"],
                               check=True, capture_output=True)
                seconds = (time.perf_counter() - start) / a.planes
                results.append((tifffile.imread(f"{d}/out.tif").astype(float), seconds))
            (fixed, seconds), (untouched, _) = results
            change = np.sqrt(np.mean((untouched - clean16) ** 2)) / np.ptp(clean16)
            gain = psnr(fixed, clean16) - psnr(striped16.astype(float), clean16)
            print(f"{'destripe:width=' + str(width):34s} {psnr(fixed, clean16):9.1f}dB "
                  f"{gain:6.1f}dB {100 * change:13.2f}% {seconds:9.3f}", flush=True)
    for sigma in (1.0, 2.0, 4.0):
        start = time.perf_counter()
        fixed = np.stack([wavelet_fft(p.astype(float), sigma) for p in striped16])
        seconds = (time.perf_counter() - start) / a.planes
        untouched = np.stack([wavelet_fft(p.astype(float), sigma) for p in clean16])
        fixed, untouched = np.clip(np.round(fixed), 0, 65535), np.clip(np.round(untouched), 0, 65535)
        change = np.sqrt(np.mean((untouched - clean16) ** 2)) / np.ptp(clean16)
        gain = psnr(fixed, clean16) - psnr(striped16.astype(float), clean16)
        print(f"{'wavelet+FFT db3 level 6 sigma=' + str(sigma):34s} {psnr(fixed, clean16):9.1f}dB "
              f"{gain:6.1f}dB {100 * change:13.2f}% {seconds:9.3f}", flush=True)


if __name__ == "__main__":
    main()
