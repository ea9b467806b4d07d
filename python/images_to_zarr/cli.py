"""The ``images_to_zarr`` command line (click, as in 0.3.5); also ``python -m images_to_zarr``.

Exit status: 0 done, 1 failed (one-line message; traceback with --debug), 2 usage error.
"""

from __future__ import annotations

import json
import logging
import re
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


# The API's spellings in messages (the engine and convert() speak Python) -> the options of this CLI.
CLI_SPELLINGS = [(re.compile(pattern), text) for pattern, text in [
    (r"\boverwrite=True\b", "--overwrite"),
    (r"\bappend=True\b", "--append"),
    (r"\bresume=True\b", "--resume"),
    (r"\bpad=True\b", "--pad"),
    (r"\bresize=\(H, W\)", "--resize H,W"),
    (r"\bresize\b(?= must)", "--resize"),
    (r"\bmax_failures=", "--max-failures "),
    (r"\bmax_failures\b", "--max-failures"),
    (r"\bstorage_options\b", "--storage-option"),
    (r"\binterpolation_order\b", "--interpolation-order"),
    (r"\bmax_pixels\b", "--max-pixels"),
    (r"\bnum_parallel_workers\b", "--workers"),
    (r"\bchunk_shape(?:\[0\])?", "--chunk-shape"),
    (r"\bshard_images\b", "--shard-images"),
    (r"\bdtype=", "--dtype "),
    (r"\bclevel\b", "--clevel"),
    (r"\bnum_samples\b", "--num-samples"),
    (r"\bpass save_path\b", "pass --save"),
]]


def cli_message(error: BaseException) -> str:
    """The message of an API error in the CLI's terms: option spellings, no exception class name."""
    text = str(error) or type(error).__name__
    if isinstance(error, KeyError):  # str(KeyError) quotes its message
        text = str(error.args[0]) if error.args else text
    for pattern, replacement in CLI_SPELLINGS:
        text = pattern.sub(replacement, text)
    return text


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
        click.echo(f"images_to_zarr: error: {cli_message(e)}", err=True)
        sys.exit(1)


def _size(text: str) -> tuple[int, int]:
    """``--resize H,W``, or ``S`` for a square."""
    values = _ints(text, None, "--resize")
    if len(values) not in (1, 2):
        raise click.BadParameter(f"expected H,W or one size S (a square), got {text!r}", param_hint="--resize")
    return (values[0], values[-1])


def _max_failures(text: str | None, strict: bool) -> int | str | None:
    """``--max-failures N|P%`` (``--strict`` = 0), checked here so a bad value is a usage error."""
    from images_to_zarr._progress import failure_limit

    if strict:
        if text is not None:
            raise click.UsageError("--strict and --max-failures cannot be combined (--strict is --max-failures 0)")
        return 0
    if text is None:
        return None
    value: int | str = int(text) if text.strip().isdigit() else text.strip()
    try:
        failure_limit(value)
    except ValueError:
        raise click.BadParameter(f"expected a count N >= 0 or a percentage P% (0-100), got {text!r}",
                                 param_hint="--max-failures") from None
    return value


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
@click.option("--workers", "-w", type=click.IntRange(min=0), default=8, show_default=True,
              help="Worker threads (0 = one per CPU).")
@click.option("--fits-ext", help="FITS HDU: index, EXTNAME, or a comma list stacked as channels (0,1,ERR).")
@click.option("--chunk-shape", default="1,256,256", show_default=True, help="Inner chunk: images,height,width.")
@click.option("--shard-images", type=click.IntRange(min=1), help="Images per shard (default: ~128 MiB shards).")
@click.option("--compressor", "-c", type=click.Choice(_core.compressor_names(), case_sensitive=False),
              default="lz4", show_default=True)
@click.option("--clevel", type=int, default=1, show_default=True, help="Compression level.")
@click.option("--no-checksum", is_flag=True, help="No crc32c per inner chunk (damage then goes undetected).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=2**31, show_default=True,
              help="Largest image (height x width x channels); larger images are per-image errors.")
@click.option("--resize", metavar="H,W", help="Resize every image to H,W (one number S: S,S).")
@click.option("--interpolation-order", type=click.IntRange(0, 5), default=1, show_default=True)
@click.option("--dtype", help="Store dtype (default: promotion of the inputs).")
@click.option("--pad", is_flag=True, help="Place images top-left on a canvas of the largest size instead of resizing.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@click.option("--append", is_flag=True, help="Append to an existing store.")
@click.option("--resume", is_flag=True, help="Continue an interrupted conversion.")
@click.option("--max-failures", metavar="N|P%",
              help="Abort (nothing written, exit 1) when more than N images, or P% of them, fail to read.")
@click.option("--strict", is_flag=True, help="Abort when any image fails to read (--max-failures 0).")
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
            append: bool, resume: bool, max_failures: str | None, strict: bool, scheduler: str | None,
            storage_option: tuple[str, ...], no_progress: bool, quiet: bool, debug: bool) -> None:
    """Convert image FOLDERS (and/or files, local or s3://) into a sharded Zarr v3 store (OUT may be s3://)."""
    if overwrite and append:
        raise click.UsageError("--overwrite and --append cannot be combined")
    chunks = _ints(chunk_shape, 3, "--chunk-shape")
    size = _size(resize) if resize else None
    failure_limit = _max_failures(max_failures, strict)
    storage_options = _storage_options(storage_option)
    from images_to_zarr import configure_logging
    from images_to_zarr import convert as do_convert

    configure_logging(True, "DEBUG" if debug else "WARNING" if quiet else "INFO")
    store = _run(debug, lambda: do_convert(
        out, folders=list(folders), metadata=metadata, recursive=recursive, num_parallel_workers=workers,
        include=list(include) or None, exclude=list(exclude) or None,
        fits_extension=_fits_ext(fits_ext), resize=size, max_failures=failure_limit,
        interpolation_order=interpolation_order, chunk_shape=tuple(chunks), compressor=compressor, clevel=clevel,
        checksum=not no_checksum, max_pixels=max_pixels, overwrite=overwrite, append=append,
        shard_images=shard_images, dtype=dtype, pad=pad, resume=resume,
        progress=not no_progress and sys.stderr.isatty(), scheduler=scheduler, storage_options=storage_options))
    if not quiet:
        click.echo(str(store))


@cli.command()
@click.argument("store")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (StoreSummary.to_dict()).")
@STORAGE_OPTION
@click.option("--debug", is_flag=True, help="Tracebacks on failure.")
def inspect(store: str, as_json: bool, storage_option: tuple[str, ...], debug: bool) -> None:
    """Print a summary of STORE (a path or an s3:// URL)."""
    from images_to_zarr import inspect as do_inspect

    storage_options = _storage_options(storage_option)
    logging.getLogger("images_to_zarr").setLevel(logging.WARNING)
    summary = _run(debug, lambda: do_inspect(store, storage_options, print_summary=not as_json))
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, allow_nan=False))


@cli.command()
@click.argument("store")
@click.option("--num-samples", "-n", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--save", "save_path", type=click.Path(dir_okay=False), help="Write the grid to this PNG.")
@click.option("--seed", type=int, help="Random seed for the sample choice.")
@click.option("--indices", metavar="I,J,...", help="Draw these images instead of a random sample.")
@STORAGE_OPTION
@click.option("--debug", is_flag=True, help="Tracebacks on failure.")
def display(store: str, num_samples: int, save_path: str | None, seed: int | None, indices: str | None,
            storage_option: tuple[str, ...], debug: bool) -> None:
    """Show (or save) a grid of random images from STORE (a path or an s3:// URL)."""
    from images_to_zarr import display_sample_images

    chosen = _ints(indices, None, "--indices", minimum=0) if indices else None
    storage_options = _storage_options(storage_option)
    _run(debug, lambda: display_sample_images(store, num_samples=num_samples, save_path=save_path, seed=seed,
                                              indices=chosen, storage_options=storage_options))


def main() -> None:
    cli(prog_name="images_to_zarr")


if __name__ == "__main__":
    main()
