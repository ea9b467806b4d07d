"""images_to_zarr: bulk-convert FITS, PNG, JPEG and TIFF collections into sharded Zarr v3 stores.

The data path is a C++ engine (``images_to_zarr._core``); this package marshals arguments,
joins the metadata CSV, writes the Parquet side-car and reports progress.
"""

from __future__ import annotations

from images_to_zarr import _core
from images_to_zarr._logging import configure_logging, logger
from images_to_zarr._progress import TooManyFailuresError
from images_to_zarr.convert import convert
from images_to_zarr.display import display_sample_images
from images_to_zarr.inspect import StoreSummary, inspect
from images_to_zarr.reader import ImageStore, open_store

__version__: str = _core.version()
I2Z_SUPPORTED_EXTS: set[str] = set(_core.supported_extensions())

__all__ = [
    "convert", "inspect", "display_sample_images", "open_store", "ImageStore", "StoreSummary",
    "configure_logging", "logger", "TooManyFailuresError",
    "I2Z_SUPPORTED_EXTS", "__version__",
]
