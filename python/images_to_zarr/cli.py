"""The ``images_to_zarr`` command line (click, as in 0.3.5).

Exit status: 0 done, 1 failed (one-line message; traceback with --debug), 2 usage error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from images_to_zarr import _core


def _ints(text: str, count: int | None, name: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=name) from None
    if count is not None and len(values) != count:
        raise click.BadParameter(f"expected {count} comma-separated integers, got {text!r}", param_hint=name)
    if any(v < minimum for v in values):
        raise click.BadParameter(f"values must be >= {minimum}, got {text!r}", param_hint=name)
    return values


def _fits_ext(text: str | None) -> int | str | list[int | str] | None:
    if text is None:
        return None
    parts: list[int | str] = [int(p) if p.strip().lstrip("-").isdigit() else p.strip() for p in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


def _storage_options(pairs: tuple[str, ...]) -> dict[str, str] | None:
    """``--storage-option KEY=VALUE`` (repeatable) -> the ``storage_options`` dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--storage-option")
        out[key.strip()] = value
    return out or None


STORAGE_OPTION = click.option(
    "--storage-option", "storage_option", multiple=True, metavar="KEY=VALUE",
    help="S3 setting (repeatable): endpoint_url, region, key, secret, token, anon, ... (AWS_* variables also work).")


def _run(debug: bool, fn: Callable[[], Any]) -> Any:
    """Runs the command; turns any failure into a one-line message and exit status 1."""
    try:
        return fn()
    except KeyboardInterrupt:
        click.echo("images_to_zarr: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the CLI's contract is one line per failure
        if debug:
            raise
        click.echo(f"images_to_zarr: error: {type(e).__name__}: {e}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_core.version(), prog_name="images_to_zarr")
def cli() -> None:
    """Convert FITS, PNG, JPEG and TIFF collections into sharded Zarr v3 stores."""


@cli.command()
@click.argument("folders", nargs=-1, required=True)
@click.option("--out", "-o", "out", required=True, help="Output folder, or the store path if it ends in .zarr.")
@click.option("--metadata", "-m", type=click.Path(dir_okay=False),
              help="Catalog (CSV or Parquet) with a 'filename' column.")
@click.option("--recursive", "-r", is_flag=True, help="Search sub-folders too.")
@click.option("--include", multiple=True, metavar="GLOB",
              help="Only files matching this glob (file name, or relative path if it has a '/'); repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching this glob; repeatable.")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=8, show_default=True, help="Worker threads.")
@click.option("--fits-ext", help="FITS HDU: index, EXTNAME, or a comma list stacked as channels (0,1,ERR).")
@click.option("--chunk-shape", default="1,256,256", show_default=True, help="Inner chunk: images,height,width.")
@click.option("--shard-images", type=click.IntRange(min=1), help="Images per shard (default: ~128 MiB shards).")
@click.option("--compressor", "-c", type=click.Choice(["lz4", "blosc", "zstd", "gzip", "zlib", "none"]), default="lz4",
              show_default=True)
@click.option("--clevel", type=int, default=1, show_default=True, help="Compression level.")
@click.option("--no-checksum", is_flag=True, help="No crc32c per inner chunk (damage then goes undetected).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=2**31, show_default=True,
              help="Largest image (height x width x channels); larger images are per-image errors.")
@click.option("--resize", help="Resize every image to H,W.")
@click.option("--interpolation-order", type=click.IntRange(0, 5), default=1, show_default=True)
@click.option("--dtype", help="Store dtype (default: promotion of the inputs).")
@click.option("--pad", is_flag=True, help="Place images top-left on a canvas of the largest size instead of resizing.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@click.option("--append", is_flag=True, help="Append to an existing store.")
@click.option("--resume", is_flag=True, help="Continue an interrupted conversion.")
@click.option("--scheduler", help="Dask scheduler address (tcp://host:port).")
@STORAGE_OPTION
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors.")
@click.option("--debug", is_flag=True, help="Debug logging and tracebacks.")
def convert(folders: tuple[str, ...], out: str, metadata: str | None, recursive: bool, include: tuple[str, ...],
            exclude: tuple[str, ...], workers: int,
            fits_ext: str | None, chunk_shape: str, shard_images: int | None, compressor: str, clevel: int,
            no_checksum: bool, max_pixels: int, resize: str | None, interpolation_order: int, dtype: str | None,
            pad: bool, overwrite: bool,
            append: bool, resume: bool, scheduler: str | None, storage_option: tuple[str, ...], no_progress: bool,
            quiet: bool, debug: bool) -> None:
    """Convert image FOLDERS (and/or files, local or s3://) into a sharded Zarr v3 store (OUT may be s3://)."""
    if overwrite and append:
        raise click.UsageError("--overwrite and --append cannot be combined")
    chunks = _ints(chunk_shape, 3, "--chunk-shape")
    size = _ints(resize, 2, "--resize") if resize else None
    storage_options = _storage_options(storage_option)
    from images_to_zarr import configure_logging
    from images_to_zarr import convert as do_convert

    configure_logging(True, "DEBUG" if debug else "WARNING" if quiet else "INFO")
    store = _run(debug, lambda: do_convert(
        out, folders=list(folders), metadata=metadata, recursive=recursive, num_parallel_workers=workers,
        include=list(include) or None, exclude=list(exclude) or None,
        fits_extension=_fits_ext(fits_ext), resize=tuple(size) if size else None,
        interpolation_order=interpolation_order, chunk_shape=tuple(chunks), compressor=compressor, clevel=clevel,
        checksum=not no_checksum, max_pixels=max_pixels, overwrite=overwrite, append=append,
        shard_images=shard_images, dtype=dtype, pad=pad, resume=resume,
        progress=not no_progress and sys.stderr.isatty(), scheduler=scheduler, storage_options=storage_options))
    if not quiet:
        click.echo(str(store))


@cli.command()
@click.argument("store")
@STORAGE_OPTION
@click.option("--debug", is_flag=True, help="Tracebacks on failure.")
def inspect(store: str, storage_option: tuple[str, ...], debug: bool) -> None:
    """Print a summary of STORE (a path or an s3:// URL)."""
    from images_to_zarr import inspect as do_inspect

    storage_options = _storage_options(storage_option)
    logging.getLogger("images_to_zarr").setLevel(logging.WARNING)
    _run(debug, lambda: do_inspect(store, storage_options))


@cli.command()
@click.argument("store")
@click.option("--num-samples", "-n", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--save", "save_path", type=click.Path(dir_okay=False), help="Write the grid to this PNG.")
@click.option("--seed", type=int, help="Random seed for the sample choice.")
@STORAGE_OPTION
@click.option("--debug", is_flag=True, help="Tracebacks on failure.")
def display(store: str, num_samples: int, save_path: str | None, seed: int | None, storage_option: tuple[str, ...],
            debug: bool) -> None:
    """Show (or save) a grid of random images from STORE (a path or an s3:// URL)."""
    from images_to_zarr import display_sample_images

    storage_options = _storage_options(storage_option)
    _run(debug, lambda: display_sample_images(store, num_samples=num_samples, save_path=save_path, seed=seed,
                                              storage_options=storage_options))


def main() -> None:
    cli(prog_name="images_to_zarr")


if __name__ == "__main__":
    main()
