"""The ``images_to_zarr`` command line (click, as in 0.3.5)."""

from __future__ import annotations

import sys

import click

from images_to_zarr import _core


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_core.version(), prog_name="images_to_zarr")
def cli() -> None:
    """Convert FITS, PNG, JPEG and TIFF collections into sharded Zarr v3 stores."""


def main() -> None:
    cli(prog_name="images_to_zarr")


if __name__ == "__main__":
    sys.exit(main())
