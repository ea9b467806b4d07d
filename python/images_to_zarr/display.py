"""``display_sample_images()``: a matplotlib grid of random (or chosen) images from a store.

Each image is normalised on its own so that any dtype is visible: a robust percentile stretch,
and an asinh stretch for high-dynamic-range float data (FITS-like skies with bright stars).
Only colour images (3 or 4 channels not read from FITS) are drawn in colour; FITS cubes and
stacked FITS extensions are unrelated planes, so their first channel is drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from images_to_zarr import _storage as storage
from images_to_zarr._logging import logger
from images_to_zarr._storage import StoreLocation
from images_to_zarr.inspect import FORMAT_NAMES, open_metadata
from images_to_zarr.sidecar import open_sidecar

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOW_PCT, HIGH_PCT = 0.5, 99.5  # robust stretch limits
HDR_RATIO = 20.0  # brightest pixel this many robust spreads above the median -> asinh stretch
TITLE_CHARS = 28
NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def display_sample_images(
    store: str | os.PathLike,
    num_samples: int = 4,
    figsize: tuple[float, float] = (12, 8),
    save_path: str | os.PathLike | None = None,
    *,
    seed: int | None = None,
    indices: Sequence[int] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Figure:
    """Draw ``num_samples`` random images of ``store`` (or the images ``indices``, in that order)
    in a grid, titled ``index: filename``.

    Colour images (C == 3 RGB, C == 4 RGBA, not read from FITS) are drawn in colour with one
    stretch for all channels; one channel in gray; anything else (FITS cubes, stacked FITS
    extensions, other channel counts) as its first channel, stretched on its own, with a colour
    map, titled ``[ch 0 of C]``. With ``save_path`` the grid is written to that PNG (no display
    needed, the global matplotlib backend is left alone); without it, ``plt.show()`` is called.
    ``store`` may be an ``s3://`` URL (``storage_options`` as for :func:`convert`). Needs
    matplotlib (the ``plot`` extra). Returns the Figure.
    """
    _require_matplotlib()
    if indices is None and num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    root = storage.location(store)
    attrs, _, meta = open_metadata(root, storage_options)  # FileNotFoundError / ValueError for a bad path
    n = int(meta["shape"][0])
    if n == 0:
        raise ValueError(f"store {root} holds no images")
    if indices is None:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(n, size=min(num_samples, n), replace=False))
    else:
        chosen = _checked_indices(indices, n)
    from images_to_zarr.reader import open_store  # only drawing needs the C++ reader

    images = open_store(root, storage_options=storage_options)[chosen]
    rows = _rows(root, attrs, n, chosen, storage_options)
    indices = chosen

    fig = _new_figure(figsize, interactive=save_path is None)
    ncols = math.ceil(math.sqrt(len(indices)))
    nrows = math.ceil(len(indices) / ncols)
    for k, (index, image) in enumerate(zip(indices, images)):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        name, colour, channels = rows[k]
        rgb, cmap = to_display(image, colour)
        ax.imshow(rgb, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        title = f"{index}: {name}" if name else str(index)
        if cmap is not None and channels > 1:
            title += f" [ch 0 of {channels}]"
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()

    if save_path is not None:
        fig.savefig(save_path, format="png")
        logger.info(f"saved {len(indices)} sample images to {save_path}")
    else:
        import matplotlib
        import matplotlib.pyplot as plt

        if matplotlib.get_backend().lower() in NON_INTERACTIVE:
            logger.warning("no interactive matplotlib backend (no display?); pass save_path to write a PNG")
        else:
            plt.show()
    return fig


def to_display(image: np.ndarray, colour: bool = True) -> tuple[np.ndarray, str | None]:
    """A ``(C, H, W)`` image as what ``imshow`` draws: ``(H, W, 3|4)`` or ``(H, W)`` floats in
    [0, 1], and the colour map for 2-D output (``gray``, or ``viridis`` for a first-of-many channel).
    ``colour=False`` (channels that are not colours, e.g. FITS extensions) draws the first channel."""
    channels = image.shape[0]
    if colour and channels in (3, 4):
        rgb = np.moveaxis(stretch(image[:3]), 0, -1)
        if channels == 3:
            return rgb, None
        return np.concatenate([rgb, _alpha(image[3])[..., None]], axis=-1), None
    return stretch(image[0]), "gray" if channels == 1 else "viridis"


def stretch(pixels: np.ndarray) -> np.ndarray:
    """Float values in [0, 1], one set of limits for all channels (colours keep their balance).

    Linear between the 0.5 and 99.5 percentiles; for float data whose brightest pixels lie far
    above the bulk, an asinh stretch up to the 99.9th percentile instead. NaN and inf become 0.
    """
    values = pixels.astype(np.float64)
    finite = np.isfinite(values)
    out = np.zeros_like(values)
    if not finite.any():
        return out
    good = values[finite]
    lo, q1, median, q3, hi, top = np.percentile(good, [LOW_PCT, 25, 50, 75, HIGH_PCT, 99.9])
    spread = max(q3 - q1, 1e-12 * max(abs(median), 1.0))
    if pixels.dtype.kind == "f" and good.max() - median > HDR_RATIO * spread and top > lo:
        soft = max((median - lo) / (top - lo), 1e-4)  # the sky level sits at the knee of the curve
        x = np.clip((good - lo) / (top - lo), 0.0, 1.0)
        out[finite] = np.arcsinh(x / soft) / np.arcsinh(1.0 / soft)
        return out
    if hi <= lo:  # (nearly) constant: use the full range, or mid-gray when there is none
        lo, hi = good.min(), good.max()
    out[finite] = np.clip((good - lo) / (hi - lo), 0.0, 1.0) if hi > lo else 0.5
    return out


def _alpha(channel: np.ndarray) -> np.ndarray:
    if channel.dtype.kind in "ui":
        return np.clip(channel.astype(np.float64) / np.iinfo(channel.dtype).max, 0.0, 1.0)
    return np.clip(np.nan_to_num(channel.astype(np.float64), nan=1.0), 0.0, 1.0)


def _rows(root: StoreLocation, attrs: dict, n: int, indices: np.ndarray,
          storage_options: dict[str, Any] | None = None) -> list[tuple[str, bool, int]]:
    """(title name, whether it is a colour image, its own channel count) of the sampled rows
    from the side-car: the ``filename`` ('' where there is none), marked when the image failed to
    decode (its slot is zero-filled); colour unless it was read from FITS; channels as decoded."""
    sidecar = open_sidecar(root, n, attrs, storage_options)
    columns = ["filename", "error", "original_extension", "shape"]
    table = sidecar.read(columns) if sidecar is not None and not sidecar.problem else None
    unknown = ("", True, 0)
    if table is None:
        return [unknown] * len(indices)
    rows = table.take(pa.array([int(i) for i in indices if i < table.num_rows], pa.int64())).to_pylist()
    out = [(_shorten(str(r.get("filename") or "")) + (" (failed)" if r.get("error") else ""),
            FORMAT_NAMES.get(str(r.get("original_extension") or "").lower()) != "FITS",
            int(r["shape"][0]) if len(r.get("shape") or []) == 3 else 1) for r in rows]
    return out + [unknown] * (len(indices) - len(out))  # a side-car shorter than the store


def _checked_indices(indices: Sequence[int], n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be a non-empty list of image indices, got {indices!r}")
    bad = (idx < -n) | (idx >= n)
    if bad.any():
        raise IndexError(f"index {int(idx[bad][0])} is out of range for {n} images")
    return np.where(idx < 0, idx + n, idx).astype(np.int64)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("display_sample_images needs matplotlib: pip install 'images_to_zarr[plot]'") from None


def _shorten(name: str) -> str:
    return name if len(name) <= TITLE_CHARS else "…" + name[-(TITLE_CHARS - 1):]


def _new_figure(figsize: tuple[float, float], interactive: bool) -> Figure:
    """A pyplot figure when it is to be shown; else a bare Figure (renders with Agg, no display,
    the user's backend choice untouched)."""
    if interactive:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)
