"""The side-car's rows: the user's CSV joined on ``filename`` with the engine's per-image records.

The engine hands over each committed shard's records; they become rows of this run's side-car
parts (``sidecar.PartWriter``), which the C++ commit publishes with the store. Memory holds one
row group's rows, never all N.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from images_to_zarr._logging import logger
from images_to_zarr.sidecar import RECORD_COLUMNS, RECORD_SCHEMA, PartWriter, conform


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


def _record_columns(records: dict[str, list[Any]]) -> dict[str, pa.Array]:
    return {f.name: pa.array(records[f.name], f.type) for f in RECORD_SCHEMA
            if f.name not in ("original_filename", "original_extension")}


_EMPTY_RECORDS: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}


class SidecarWriter:
    """Builds the side-car rows of one conversion and streams them to its parts.

    ``start`` is the array index of the run's first image (N before an append). ``file_keys``
    names the files of a file conversion (their paths come with the records); it is ``None`` for
    an in-memory array, whose ``user_rows`` are a list of dicts. ``write(first_index, records)``
    calls must come in image order. The CSV (user data) stays in memory; of the images, only the
    rows being written are. ``finish()`` closes the parts (in ``staging``; the conversion's commit
    publishes them); ``abort()`` drops an unfinished part.
    """

    def __init__(
        self,
        staging: str,
        *,
        run_id: str,
        start: int,
        total: int,
        file_keys: FileKeys | None,
        user_rows: pa.Table | list[dict[str, Any]] | None,
        transform: Callable[[pa.Table], pa.Table] | None = None,
        base_schema: pa.Schema | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.failed = 0
        self._start, self._next, self._total = start, start, total
        self._keys = file_keys
        self._transform = transform
        self._csv: pa.Table | None = None
        self._user: pa.Table | None = None
        if file_keys is None:
            if user_rows is not None:
                self._user = pa.Table.from_pylist(list(user_rows))  # type: ignore[arg-type]
        elif isinstance(user_rows, pa.Table):
            self._csv = user_rows
            self._csv_names = [str(v) for v in user_rows.column("filename").to_pylist()]
            self._index = {os.path.normpath(name): i for i, name in enumerate(self._csv_names)}
            self._matched = bytearray(len(self._csv_names))
            self._no_row: list[str] = []  # the first few images without a CSV row
            self._no_row_count = 0
        self._schema = self._rows(start, _EMPTY_RECORDS).schema
        if base_schema is not None:
            # An append's parts have at least the old columns (nulls where this run has none), so
            # readers that take one part's schema (pandas, polars) see every row.
            try:
                self._schema = pa.unify_schemas([base_schema, self._schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise ValueError(f"the appended rows' columns do not fit the side-car's: {e}") from None
        self._parts = PartWriter(staging, start, run_id, storage_options)

    def _rows(self, first: int, records: dict[str, list[Any]]) -> pa.Table:
        n = len(records["error"])
        lo = first - self._start
        columns: dict[str, Any] = {}
        if self._keys is None:  # in-memory input
            if self._user is not None:
                user = self._user.slice(lo, n)
                columns.update({name: user.column(name) for name in user.column_names})
            if "filename" not in columns:
                columns["filename"] = pa.array([f"image_{first + i}" for i in range(n)], pa.string())
            columns["original_filename"] = pa.nulls(n, pa.string())
            columns["original_extension"] = pa.nulls(n, pa.string())
        else:
            files: list[str] = records["source_path"]
            keys = [self._keys(f) for f in files]
            if self._csv is not None:
                take = [self._index.get(os.path.normpath(k)) for k in keys]
                user = self._csv.take(pa.array(take, pa.int64()))
                columns.update({name: user.column(name) for name in user.column_names})
                for k, t in zip(keys, take):
                    if t is None:
                        self._no_row_count += 1
                        if len(self._no_row) < 5:
                            self._no_row.append(k)
                    else:
                        self._matched[t] = 1
            columns["filename"] = pa.array(keys, pa.string())
            columns["original_filename"] = pa.array([os.path.basename(f) for f in files], pa.string())
            columns["original_extension"] = pa.array([_extension(f) for f in files], pa.string())
        columns.update(_record_columns(records))
        if self._keys is None:
            columns["source_path"] = pa.nulls(n, pa.string())
        ordered = {k: columns[k] for k in columns if k not in RECORD_COLUMNS}
        ordered.update({k: columns[k] for k in RECORD_COLUMNS})
        table = pa.table(ordered)
        return self._transform(table) if self._transform is not None else table

    def write(self, first_index: int, records: dict[str, list[Any]]) -> None:
        """Appends the rows of images ``first_index, first_index + 1, ...``."""
        if first_index != self._next:
            raise RuntimeError(f"side-car rows out of order: got image {first_index}, expected {self._next}")
        table = self._rows(first_index, records)
        if table.schema != self._schema:  # column types are fixed up front: cast to them
            table = conform(table, self._schema)
        self._next += table.num_rows
        self.failed += sum(e is not None for e in records["error"])
        self._parts.write(table)

    def finish(self) -> None:
        """Closes the parts and reports unmatched CSV rows and images."""
        try:
            self._parts.close()
            if self._next != self._total:
                raise RuntimeError(f"side-car has rows up to image {self._next}, the array has {self._total}")
            if self._csv is not None:
                unmatched = [name for name, m in zip(self._csv_names, self._matched) if not m]
                _warn_unmatched("CSV rows match no image", len(unmatched), unmatched)
                _warn_unmatched("images have no CSV row", self._no_row_count, self._no_row)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._parts.abort()
