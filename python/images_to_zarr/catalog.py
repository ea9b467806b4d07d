"""The user's catalog (``metadata=`` CSV, or ``image_metadata=`` rows) joined to the images.

A catalog answers ``columns(first_index, keys)``: its columns for images ``first_index, ...``
(``keys`` are their ``filename`` values), in that order, with nulls where it has no row; and
``finish()``, which reports catalog rows that matched no image and images without a row.
The side-car writer asks once per shard, in image order.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pacsv

from images_to_zarr._logging import logger


class Catalog(Protocol):
    def columns(self, first_index: int, keys: list[str]) -> pa.Table | None: ...

    def finish(self) -> None: ...


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


class FileKeys:
    """``filename`` of each file: its basename, or its path relative to its input folder when
    basenames repeat. Only the repeated basenames are kept, not one key per file."""

    def __init__(self, files: list[str], folders: list[str]) -> None:
        # Two passes, so that memory never holds a name per file: one byte per hash bucket, then
        # exact counts only for the names whose bucket was hit more than once (~1 in 10).
        mask = (1 << max(12, (8 * len(files)).bit_length())) - 1
        hits = bytearray(mask + 1)
        for f in files:
            h = hash(os.path.basename(f)) & mask
            hits[h] = min(2, hits[h] + 1)
        counts = Counter(b for b in map(os.path.basename, files) if hits[hash(b) & mask] > 1)
        self._repeated = {b for b, c in counts.items() if c > 1}
        self._roots = [os.path.abspath(d) for d in folders]

    def __call__(self, f: str) -> str:
        b = os.path.basename(f)
        if b not in self._repeated:
            return b
        af = os.path.abspath(f)
        root = next((r for r in self._roots if af.startswith(r.rstrip(os.sep) + os.sep)), os.path.dirname(af))
        return os.path.relpath(af, root)


def _warn_unmatched(what: str, count: int, names: list[str]) -> None:
    if count:
        shown = ", ".join(names[:5]) + (", ..." if count > 5 else "")
        logger.warning(f"{count} {what}: {shown}")


class CsvCatalog:
    """A CSV catalog joined on ``filename`` (normalised paths) in memory."""

    def __init__(self, path: os.PathLike | str) -> None:
        self._table = read_csv(path)
        self._names = [str(v) for v in self._table.column("filename").to_pylist()]
        self._index = {os.path.normpath(name): i for i, name in enumerate(self._names)}
        self._matched = bytearray(len(self._names))
        self._no_row: list[str] = []  # the first few images without a row
        self._no_row_count = 0

    def columns(self, first_index: int, keys: list[str]) -> pa.Table | None:
        take = [self._index.get(os.path.normpath(k)) for k in keys]
        for k, t in zip(keys, take):
            if t is None:
                self._no_row_count += 1
                if len(self._no_row) < 5:
                    self._no_row.append(k)
            else:
                self._matched[t] = 1
        return self._table.take(pa.array(take, pa.int64()))

    def finish(self) -> None:
        unmatched = [name for name, m in zip(self._names, self._matched) if not m]
        _warn_unmatched("CSV rows match no image", len(unmatched), unmatched)
        _warn_unmatched("images have no CSV row", self._no_row_count, self._no_row)


class RowsCatalog:
    """``image_metadata=``: one dict per image of an in-memory array, by position (``start`` is
    the array index of the first image, N before an append)."""

    def __init__(self, rows: list[dict[str, Any]], start: int) -> None:
        self._table = pa.Table.from_pylist(list(rows))
        self._start = start

    def columns(self, first_index: int, keys: list[str]) -> pa.Table | None:
        return self._table.slice(first_index - self._start, len(keys))

    def finish(self) -> None:
        pass
