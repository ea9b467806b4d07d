"""Shared test helpers: seeded, realistic (smooth + noise) images."""

from __future__ import annotations

import numpy as np
import pytest


def smooth_images(n: int, c: int, h: int, w: int, dtype: str = "uint8", seed: int = 0) -> np.ndarray:
    """(n, c, h, w) images: gradients and sinusoids plus a little noise, scaled to the dtype's range."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((n, c, h, w), dtype=np.float64)
    for i in range(n):
        for k in range(c):
            fx, fy, ph = rng.uniform(0.01, 0.08), rng.uniform(0.01, 0.08), rng.uniform(0, 6.28)
            base = 0.5 + 0.35 * np.sin(fx * x + ph) * np.cos(fy * y) + 0.1 * (x / max(w, 1) - y / max(h, 1))
            out[i, k] = base + rng.normal(0, 0.03, (h, w))
    out = np.clip(out, 0, 1)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (out * 1000.0 - 200.0).astype(dt)
    info = np.iinfo(dt)
    lo, hi = (info.min, info.max) if dt.itemsize < 8 else (-(2**40), 2**40)
    if dt.kind == "u":
        lo = 0
    return np.round(lo + out * (float(hi) - float(lo))).astype(dt)


@pytest.fixture
def make_images():
    return smooth_images


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bit by bit: an independent reference for the engine's SSE4.2 one."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
