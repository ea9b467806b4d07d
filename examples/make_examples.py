"""Writes the bundled example images to ``examples/data/`` (seeded: rerunning gives the same pixels).

Every image is 64x64 so the demo converts them without ``--resize``: gray/RGB/16-bit PNG, RGB
and gray JPEG, uint16 and RGB TIFF, and FITS skies (float32, int16 with BZERO, a
multi-extension SCI/ERR file, a gzip-compressed file), plus ``metadata.csv``.

    python examples/make_examples.py [OUT_DIR]
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from pathlib import Path

import numpy as np
import tifffile
from astropy.io import fits
from PIL import Image

SIZE = 64
rng = np.random.default_rng(20240607)
yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)


def scene(phase: float) -> np.ndarray:
    """A smooth pattern in [0, 1]: a gradient, waves and a soft disc, plus a little noise."""
    waves = 0.25 * np.sin(xx / 6.0 + phase) * np.cos(yy / 9.0 - phase)
    disc = 0.35 * np.exp(-((xx - 40) ** 2 + (yy - 24) ** 2) / (2 * 9.0**2))
    base = 0.2 + 0.4 * (xx + yy) / (2 * SIZE) + waves + disc
    return np.clip(base + rng.normal(0, 0.02, base.shape), 0, 1)


def rgb_scene() -> np.ndarray:
    return np.stack([scene(0.0), scene(1.7), scene(3.4)], axis=-1)


def to_uint(values: np.ndarray, dtype: type) -> np.ndarray:
    return np.round(values * np.iinfo(dtype).max).astype(dtype)


def sky(stars: int = 6, background: float = 100.0, noise: float = 5.0) -> np.ndarray:
    """A noisy sky with Gaussian stars of very different brightness, and one small galaxy."""
    image = rng.normal(background, noise, (SIZE, SIZE))
    for _ in range(stars):
        x0, y0 = rng.uniform(6, SIZE - 6, 2)
        flux, sigma = 10 ** rng.uniform(2.3, 4.3), rng.uniform(0.9, 1.8)
        image += flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    u, v = (xx - 20) * 0.8 + (yy - 44) * 0.6, -(xx - 20) * 0.6 + (yy - 44) * 0.8
    image += 300 * np.exp(-(u**2 / (2 * 6.0**2) + v**2 / (2 * 2.5**2)))
    return image


def sky_header(obj: str) -> fits.Header:
    header = fits.Header()
    header["OBJECT"] = obj
    header["EXPTIME"] = (120.0, "exposure time [s]")
    header["FILTER"] = "r"
    header["CRPIX1"], header["CRPIX2"] = SIZE / 2, SIZE / 2
    header["CRVAL1"], header["CRVAL2"] = 150.1, 2.2
    header["CDELT1"], header["CDELT2"] = -0.0002, 0.0002
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    return header


def fits_bytes(hdus: fits.HDUList) -> bytes:
    buf = io.BytesIO()
    hdus.writeto(buf)
    return buf.getvalue()


def write_all(out: Path) -> list[dict[str, str]]:
    astro = out / "astro"
    astro.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []

    def add(path: Path, label: str, source: str) -> None:
        rows.append({"filename": path.name, "label": label, "source": source})

    p = out / "gray_8bit.png"
    Image.fromarray(to_uint(scene(0.5), np.uint8)).save(p)
    add(p, "gradient", "camera")
    p = out / "rgb_8bit.png"
    Image.fromarray(to_uint(rgb_scene(), np.uint8)).save(p)
    add(p, "waves", "camera")
    p = out / "gray_16bit.png"
    Image.fromarray(to_uint(scene(2.0), np.uint16)).save(p)  # Pillow writes mode I;16 as 16-bit gray
    add(p, "gradient", "scanner")
    p = out / "rgb.jpg"
    Image.fromarray(to_uint(rgb_scene(), np.uint8)).save(p, quality=90)
    add(p, "waves", "phone")
    p = out / "gray.jpg"
    Image.fromarray(to_uint(scene(4.0), np.uint8)).save(p, quality=90)
    add(p, "gradient", "phone")
    p = out / "gray_uint16.tif"
    tifffile.imwrite(p, to_uint(scene(5.0), np.uint16), metadata=None)
    add(p, "disc", "microscope")
    p = out / "rgb.tif"
    tifffile.imwrite(p, to_uint(rgb_scene(), np.uint8), photometric="rgb", metadata=None)
    add(p, "waves", "microscope")

    p = astro / "sky_float32.fits"
    fits.PrimaryHDU(sky().astype(np.float32), header=sky_header("field-1")).writeto(p, overwrite=True)
    add(p, "star_field", "telescope")
    p = astro / "sky_int16_bzero.fits"
    counts = np.clip(np.round(sky(background=1000.0, noise=30.0)), 0, 65535).astype(np.uint16)
    fits.PrimaryHDU(counts, header=sky_header("field-2")).writeto(p, overwrite=True)  # int16 + BZERO 32768
    add(p, "star_field", "telescope")
    p = astro / "multi_ext.fits"
    science = sky().astype(np.float32)
    error = np.sqrt(np.abs(science)).astype(np.float32)
    hdus = fits.HDUList([fits.PrimaryHDU(header=sky_header("field-3")),
                         fits.ImageHDU(science, name="SCI"), fits.ImageHDU(error, name="ERR")])
    hdus.writeto(p, overwrite=True)
    add(p, "star_field", "telescope")
    p = astro / "sky.fits.gz"
    raw = fits_bytes(fits.HDUList([fits.PrimaryHDU(sky(stars=9).astype(np.float32), header=sky_header("field-4"))]))
    with open(p, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw)  # mtime=0 and no name: the same bytes on every run
    add(p, "star_field", "survey")

    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["filename", "label", "source"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data"
    written = write_all(target)
    print(f"wrote {len(written)} images and metadata.csv to {target}")
