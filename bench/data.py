"""Deterministic benchmark inputs: smooth content (a few low-frequency waves and a blob) plus
Gaussian noise, seeded per image, so codecs see realistic (not pure-noise) data.

Each data set is written once into its own folder with a ``.complete`` marker holding the
parameters; a later run with the same parameters reuses it.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def smooth_noise(rng: np.random.Generator, h: int, w: int, c: int, noise: float = 0.01) -> np.ndarray:
    """float64 (h, w, c) in [0, 1]: per channel, 3 random plane waves + a Gaussian blob + noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy /= max(h, 1)
    xx /= max(w, 1)
    out = np.empty((h, w, c), np.float64)
    for ch in range(c):
        img = np.zeros((h, w))
        for _ in range(3):
            fy, fx = rng.uniform(-6, 6, 2)
            img += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
        cy, cx = rng.uniform(0.2, 0.8, 2)
        s = rng.uniform(0.05, 0.25)
        img += 2.0 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        img = (img - img.min()) / max(img.max() - img.min(), 1e-9)
        out[..., ch] = img
    out += rng.normal(0.0, noise, out.shape)
    return np.clip(out, 0.0, 1.0)


def _u8(a: np.ndarray) -> np.ndarray:
    return np.round(a * 255).astype(np.uint8)


def _write_one(kind: str, path: str, seed: int, h: int, w: int) -> None:
    rng = np.random.default_rng(seed)
    if kind in ("png", "jpeg"):
        from PIL import Image

        img = Image.fromarray(_u8(smooth_noise(rng, h, w, 3)), "RGB")
        if kind == "png":
            img.save(path, compress_level=6)
        else:
            img.save(path, quality=90)
    elif kind == "fits_f32":
        from astropy.io import fits

        data = (smooth_noise(rng, h, w, 1)[..., 0] * 1000.0 - 100.0).astype(np.float32)
        fits.PrimaryHDU(data).writeto(path, overwrite=True)
    elif kind == "fits_i16_bzero":
        from astropy.io import fits

        # Unsigned 16-bit pixels stored the FITS way: int16 with BZERO = 32768.
        data = np.round(smooth_noise(rng, h, w, 1)[..., 0] * 65535).astype(np.uint16)
        fits.PrimaryHDU(data, uint=True).writeto(path, overwrite=True)
    elif kind == "tiff_u16":
        import tifffile

        data = np.round(smooth_noise(rng, h, w, 1)[..., 0] * 65535).astype(np.uint16)
        tifffile.imwrite(path, data, compression="zlib")
    else:
        raise ValueError(kind)


def _write_batch(jobs: list[tuple[str, str, int, int, int]]) -> None:
    for j in jobs:
        _write_one(*j)


def _ext(kind: str) -> str:
    return {"png": ".png", "jpeg": ".jpg", "fits_f32": ".fits", "fits_i16_bzero": ".fits", "tiff_u16": ".tif"}[kind]


def ensure_files(folder: Path, spec: list[tuple[str, int, int]], seed: int, workers: int) -> list[str]:
    """Writes one file per spec entry (kind, h, w) as folder/img_000000.<ext>; returns the paths.

    Idempotent: a folder whose marker matches (spec, seed) is reused as is.
    """
    marker = folder / ".complete"
    key = json.dumps({"spec": spec, "seed": seed, "v": 2}, sort_keys=True)
    names = [f"img_{i:06d}{_ext(k)}" for i, (k, _, _) in enumerate(spec)]
    paths = [str(folder / n) for n in names]
    if marker.exists() and marker.read_text() == key:
        return paths
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    jobs = [(k, p, seed * 1_000_003 + i, h, w) for i, ((k, h, w), p) in enumerate(zip(spec, paths))]
    step = max(1, len(jobs) // (workers * 8))
    batches = [jobs[i : i + step] for i in range(0, len(jobs), step)]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        list(ex.map(_write_batch, batches))
    marker.write_text(key)
    return paths


def _fill_array(path: str, start: int, stop: int, seed: int) -> None:
    arr = np.load(path, mmap_mode="r+")
    _, c, h, w = arr.shape
    for i in range(start, stop):
        img = smooth_noise(np.random.default_rng(seed * 1_000_003 + i), h, w, c).transpose(2, 0, 1)
        arr[i] = _u8(img) if arr.dtype == np.uint8 else (img * 1000.0 - 100.0).astype(arr.dtype)
    arr.flush()


def ensure_array(path: Path, shape: tuple[int, int, int, int], dtype: str, seed: int, workers: int = 2) -> Path:
    """An (N, C, H, W) array saved as .npy (smooth + noise per image), reused when present."""
    marker = path.with_suffix(".complete")
    key = json.dumps({"shape": list(shape), "dtype": dtype, "seed": seed, "v": 2})
    if path.exists() and marker.exists() and marker.read_text() == key:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    n = shape[0]
    del_arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
    del del_arr
    step = max(1, -(-n // (workers * 4)))
    with ProcessPoolExecutor(max_workers=workers) as ex:
        futs = [ex.submit(_fill_array, str(path), i, min(n, i + step), seed) for i in range(0, n, step)]
        for f in futs:
            f.result()
    marker.write_text(key)
    return path


def cpu_workers() -> int:
    return max(1, os.cpu_count() or 1)
