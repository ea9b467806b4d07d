"""The Parquet side-car: the user's CSV joined on ``filename`` with the engine's per-image records."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from images_to_zarr import _storage as storage
from images_to_zarr._logging import logger
from images_to_zarr._storage import StoreLocation

RECORD_COLUMNS = [
    "original_filename", "source_path", "original_extension", "file_size_bytes", "dtype", "shape",
    "fits_extension", "fits_header", "min_value", "max_value", "mean_value", "error",
]


def read_csv(path: os.PathLike | str) -> pa.Table:
    """Reads the metadata CSV (UTF-8, BOM allowed) and checks its ``filename`` column."""
    try:
        table = pacsv.read_csv(os.fspath(path))
        columns = table.column_names  # decoding a non-UTF-8 header happens here
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read metadata CSV {path}: {e}") from None
    # pyarrow reads a column holding invalid UTF-8 as binary instead of failing.
    binary = [f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    if binary:
        raise ValueError(f"metadata CSV {path} is not valid UTF-8 (column {', '.join(binary)})")
    if "filename" not in columns:
        raise ValueError(f"metadata CSV {path} has no 'filename' column (columns: {', '.join(columns)})")
    values = table.column("filename").to_pylist()
    empty = [i + 1 for i, v in enumerate(values) if v is None or not str(v).strip()]
    if empty:
        rows = ", ".join(str(i) for i in empty[:10])
        raise ValueError(f"metadata CSV {path} has an empty filename in data row(s) {rows}")
    names = [str(v) for v in values]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise ValueError(f"metadata CSV {path} lists these filenames more than once: {', '.join(dupes[:10])}")
    return table


def _extension(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".fits.gz"):
        return path[-8:]
    return os.path.splitext(path)[1]


def _file_keys(files: list[str], folders: list[str]) -> list[str]:
    """Basename, or the path relative to its input folder when basenames repeat."""
    base = [os.path.basename(f) for f in files]
    counts = Counter(base)
    roots = [os.path.abspath(d) for d in folders]
    keys = []
    for f, b in zip(files, base):
        if counts[b] == 1:
            keys.append(b)
            continue
        af = os.path.abspath(f)
        root = next((r for r in roots if af.startswith(r.rstrip(os.sep) + os.sep)), os.path.dirname(af))
        keys.append(os.path.relpath(af, root))
    return keys


def _warn_unmatched(what: str, names: list[str]) -> None:
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        logger.warning(f"{len(names)} {what}: {shown}")


def build_table(
    records: dict[str, list[Any]],
    user_rows: pa.Table | list[dict[str, Any]] | None,
    files: list[str] | None,
    folders: list[str],
    first_index: int = 0,
) -> pa.Table:
    n = len(records["error"])
    columns: dict[str, Any] = {}
    if files is None:  # in-memory input
        if user_rows is not None:
            user = pa.Table.from_pylist(list(user_rows))
            columns.update({name: user.column(name) for name in user.column_names})
        if "filename" not in columns:
            columns["filename"] = pa.array([f"image_{first_index + i}" for i in range(n)])
        columns["original_filename"] = pa.array([None] * n, pa.string())
        columns["original_extension"] = pa.array([None] * n, pa.string())
    else:
        keys = _file_keys(files, folders)
        if isinstance(user_rows, pa.Table):
            csv_names = [str(v) for v in user_rows.column("filename").to_pylist()]
            index = {os.path.normpath(name): i for i, name in enumerate(csv_names)}
            take = [index.get(os.path.normpath(k)) for k in keys]
            user = user_rows.take(pa.array(take, pa.int64()))
            columns.update({name: user.column(name) for name in user.column_names})
            columns["filename"] = pa.array(keys)
            matched = {t for t in take if t is not None}
            _warn_unmatched("CSV rows match no image", [csv_names[i] for i in range(len(csv_names)) if i not in matched])
            _warn_unmatched("images have no CSV row", [k for k, t in zip(keys, take) if t is None])
        else:
            columns["filename"] = pa.array(keys)
        columns["original_filename"] = pa.array([os.path.basename(f) for f in files])
        columns["original_extension"] = pa.array([_extension(f) for f in files])
    for name in RECORD_COLUMNS:
        if name in ("original_filename", "original_extension"):
            continue
        values = records[name]
        if name == "shape":
            columns[name] = pa.array(values, pa.list_(pa.int64()))
        elif name == "file_size_bytes":
            columns[name] = pa.array(values, pa.int64())
        elif name in ("min_value", "max_value", "mean_value"):
            columns[name] = pa.array(values, pa.float64())
        else:
            columns[name] = pa.array(values, pa.string())
    if files is None:
        columns["source_path"] = pa.array([None] * n, pa.string())
    ordered = {k: columns[k] for k in columns if k not in RECORD_COLUMNS}
    ordered.update({k: columns[k] for k in RECORD_COLUMNS})
    return pa.table(ordered)


def append_rows(path: StoreLocation, keep: int, new: pa.Table, storage_options: dict[str, Any] | None = None) -> pa.Table:
    """The side-car's first ``keep`` rows (rows past the committed count are leftovers) + ``new``."""
    blob = storage.read_bytes(path, storage_options)
    if blob is None:
        logger.warning(f"side-car {path} is missing; writing only the appended rows' metadata")
        return new
    old = pq.read_table(io.BytesIO(blob)).slice(0, keep)
    return pa.concat_tables([old, new], promote_options="permissive")


def write_parquet(table: pa.Table, path: StoreLocation, storage_options: dict[str, Any] | None = None) -> None:
    """Atomic: readers never see half a file (temp + rename locally, one PUT on S3)."""
    sink = io.BytesIO()
    pq.write_table(table, sink)
    storage.write_bytes(path, sink.getvalue(), storage_options)
