"""The side-car's rows: the user's catalog columns (``catalog.py``) joined with the engine's
per-image records.

The engine hands over each committed shard's records; they become rows of this run's side-car
parts (``sidecar.PartWriter``), which the C++ commit publishes with the store. Memory holds one
row group's rows, never all N.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from images_to_zarr.catalog import Catalog, FileKeys
from images_to_zarr.sidecar import RECORD_COLUMNS, RECORD_SCHEMA, PartWriter, conform


def _extension(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".fits.gz"):
        return path[-8:]
    return os.path.splitext(path)[1]


def _record_columns(records: dict[str, list[Any]]) -> dict[str, pa.Array]:
    return {f.name: pa.array(records[f.name], f.type) for f in RECORD_SCHEMA
            if f.name not in ("original_filename", "original_extension")}


_EMPTY_RECORDS: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}


class SidecarWriter:
    """Builds the side-car rows of one conversion and streams them to its parts.

    ``start`` is the array index of the run's first image (N before an append). ``file_keys``
    names the files of a file conversion (their paths come with the records); it is ``None`` for
    an in-memory array. ``catalog`` supplies the user's columns (``catalog.py``).
    ``write(first_index, records)`` calls must come in image order; of the images, only the rows
    being written are in memory. ``finish()`` closes the parts (in ``staging``; the conversion's
    commit publishes them); ``abort()`` drops an unfinished part. ``base_schema`` (an append: the
    last part's columns) is kept first, so each part has at least its predecessors' columns.
    """

    def __init__(
        self,
        staging: str,
        *,
        run_id: str,
        start: int,
        total: int,
        file_keys: FileKeys | None,
        catalog: Catalog | None,
        transform: Callable[[pa.Table], pa.Table] | None = None,
        base_schema: pa.Schema | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.failed = 0
        self._start, self._next, self._total = start, start, total
        self._keys = file_keys
        self._transform = transform
        self._catalog = catalog
        self._schema = self._rows(start, _EMPTY_RECORDS).schema
        if base_schema is not None:
            # Nulls where this run has no value for an old column, so readers that take one
            # part's schema (pandas, polars) see every row.
            try:
                self._schema = pa.unify_schemas([base_schema, self._schema], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                raise ValueError(f"the appended rows' columns do not fit the side-car's: {e}") from None
        self._parts = PartWriter(staging, start, run_id, storage_options)

    def _rows(self, first: int, records: dict[str, list[Any]]) -> pa.Table:
        n = len(records["error"])
        columns: dict[str, Any] = {}
        if self._keys is None:  # in-memory input
            user = self._catalog.columns(first, [""] * n) if self._catalog is not None else None
            if user is not None:
                columns.update({name: user.column(name) for name in user.column_names})
            if "filename" not in columns:
                columns["filename"] = pa.array([f"image_{first + i}" for i in range(n)], pa.string())
            columns["original_filename"] = pa.nulls(n, pa.string())
            columns["original_extension"] = pa.nulls(n, pa.string())
        else:
            files: list[str] = records["source_path"]
            keys = [self._keys(f) for f in files]
            user = self._catalog.columns(first, keys) if self._catalog is not None else None
            if user is not None:
                columns.update({name: user.column(name) for name in user.column_names})
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
        """Closes the parts and reports unmatched catalog rows and images."""
        try:
            self._parts.close()
            if self._next != self._total:
                raise RuntimeError(f"side-car has rows up to image {self._next}, the array has {self._total}")
            if self._catalog is not None:
                self._catalog.finish()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._parts.abort()
        if self._catalog is not None:
            self._catalog.close()
