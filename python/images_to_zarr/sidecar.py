"""The Parquet side-car: its one schema, the part writer and the one reader.

The side-car of ``x.zarr`` is the folder ``x_metadata.parquet/`` beside the store's real location,
a Parquet dataset of parts ``part-<first image index, 12 digits>.parquet``: name order is image
order, so pyarrow, pandas, polars and DuckDB read it as one table with row ``i`` = image ``i``.
A run writes its own parts (an append never touches old rows); the C++ commit layer publishes
them with the store (``pipeline/commit.hpp``). Each part's key-value metadata carries
``i2z.run_id``, ``i2z.first_index`` and ``i2z.rows``; the store's group attributes list the
runs (``runs``), so a side-car that belongs to another store or run is detected and named.
Readers use the parts covering ``[0, N)`` only (N = the store's image count): parts of a killed
append are ignored, and deleted by the next writer. A single-file side-car of earlier versions
is read as the part starting at 0.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from images_to_zarr import _core
from images_to_zarr import _storage as storage
from images_to_zarr._logging import logger
from images_to_zarr._storage import StoreLocation

# The engine's columns, after the user's (CSV / image_metadata) columns, in this order.
RECORD_SCHEMA = pa.schema([
    ("original_filename", pa.string()), ("source_path", pa.string()), ("original_extension", pa.string()),
    ("file_size_bytes", pa.int64()), ("dtype", pa.string()), ("shape", pa.list_(pa.int64())),
    ("fits_extension", pa.string()), ("fits_header", pa.string()), ("min_value", pa.float64()),
    ("max_value", pa.float64()), ("mean_value", pa.float64()), ("error", pa.string()),
])
RECORD_COLUMNS = RECORD_SCHEMA.names

# Rows per row group: memory holds one row group (a few KiB per row with large FITS headers).
ROW_GROUP_ROWS = 1024
# Rows per part: bounds a part's footer (~1,000 row groups), which the writer keeps in memory.
PART_ROWS = 1 << 20

_PART = re.compile(r"part-(\d{12})\.parquet")


def part_name(first_index: int) -> str:
    return f"part-{first_index:012d}.parquet"


def location(store: StoreLocation) -> tuple[StoreLocation, StoreLocation]:
    """The store's real location and its side-car's (one rule, shared with the C++ writer)."""
    real, side = _core.store_paths(os.fspath(store))
    return storage.location(real), storage.location(side)


class _ObjectFile(io.RawIOBase):
    """A write-only file over a store's streamed object writer (visible only once committed)."""

    def __init__(self, writer: Any) -> None:
        self._w = writer

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._w.write(data)
        return len(data)


class PartWriter:
    """Writes the side-car rows of images ``first, first + 1, ...`` as parts into ``staging``
    (a local folder or an ``s3://`` prefix), in row groups of ``ROW_GROUP_ROWS`` and parts of
    ``PART_ROWS`` rows; memory holds one row group. Used by the local run and by Dask workers
    (one writer per contiguous range). ``close()`` returns the names of the parts written."""

    def __init__(self, staging: str, first: int, run_id: str,
                 storage_options: dict[str, Any] | None = None) -> None:
        self._store = _core.Store.open(staging, storage_options or {})
        self._run_id, self._next = run_id, first
        self._schema: pa.Schema | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._object: Any = None
        self._part_first, self._part_rows = first, 0
        self.parts: list[str] = []

    def write(self, table: pa.Table) -> None:
        if self._schema is None:
            self._schema = table.schema
        elif table.schema != self._schema:  # a user column's type is fixed by the first rows
            table = table.cast(self._schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._pending)
        room = PART_ROWS - self._part_rows
        head, rest = table.slice(0, min(rows, room)), table.slice(min(rows, room))
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
        if self._writer is None:
            self._open()
        assert self._writer is not None
        self._writer.write_table(head, row_group_size=max(1, head.num_rows))
        self._part_rows += head.num_rows
        self._next += head.num_rows
        if self._part_rows >= PART_ROWS:
            self._close_part()
        # Arrow's pool (mimalloc) keeps freed buffers mapped; release them once per row group.
        del table, head
        pa.default_memory_pool().release_unused()

    def _open(self) -> None:
        assert self._schema is not None
        self._part_first, self._part_rows = self._next, 0
        self._object = self._store.open_writer(part_name(self._part_first))
        self._writer = pq.ParquetWriter(pa.PythonFile(_ObjectFile(self._object), mode="w"), self._schema)

    def _close_part(self) -> None:
        writer, self._writer = self._writer, None
        assert writer is not None
        writer.add_key_value_metadata({"i2z.run_id": self._run_id, "i2z.first_index": str(self._part_first),
                                       "i2z.rows": str(self._part_rows)})
        writer.close()
        self._object.commit()
        self._object = None
        self.parts.append(part_name(self._part_first))

    def close(self) -> list[str]:
        while self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is not None:
            self._close_part()
        return self.parts

    def abort(self) -> None:
        self._pending, self._pending_rows = [], 0
        if self._object is not None:
            self._object.discard()
            self._object = None
        self._writer = None


@dataclass
class Part:
    first: int
    rows: int  # rows of this part that describe images (trimmed to the next part and to N)
    source: Any  # a local path, an S3 key, or None for the single file of an earlier version on S3
    run_id: str | None


class _StoreFile(io.RawIOBase):
    """A read-only, seekable file over one object of a store (ranged GETs), for pyarrow."""

    def __init__(self, store: Any, key: str, size: int) -> None:
        self._store, self._key, self._size, self._pos = store, key, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._store.get_range(self._key, self._pos, n) or b""
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class Sidecar:
    """The side-car of a store with ``n`` images: the parts covering ``[0, n)``. Listing it reads
    no part; ``problem`` (which reads every part's footer) names a side-car that does not match
    the store (written by another run); rows no part covers read as nulls, with a warning."""

    def __init__(self, path: StoreLocation, n: int, attrs: dict[str, Any],
                 storage_options: dict[str, Any] | None = None) -> None:
        self.path, self.n, self._attrs = path, n, attrs
        self._s3: Any = None
        found: list[tuple[int, Any]] = []
        if storage.is_url(path):
            self._s3 = _core.Store.open(str(path), storage_options or {})
            found = [(int(m.group(1)), k) for k in self._s3.list("") if (m := _PART.fullmatch(k))]
            self._legacy_store = _core.Store.open(str(storage.parent(path)), storage_options or {})
            if not any(f == 0 for f, _ in found) and self._legacy_store.size(storage.name(path)) is not None:
                found.append((0, None))  # the single file of an earlier version: same name, no folder
        elif Path(path).is_dir():
            found = [(int(m.group(1)), Path(path) / e) for e in os.listdir(path) if (m := _PART.fullmatch(e))]
        elif Path(path).is_file():
            found = [(0, Path(path))]
        # Parts at or beyond n are a killed append's: not committed.
        self._found = sorted((fs for fs in found if fs[0] < n), key=lambda fs: fs[0])
        self._parts: list[Part] | None = None
        self._problem: str | None = None

    def __bool__(self) -> bool:
        return bool(self._found)

    @property
    def parts(self) -> list[Part]:
        if self._parts is None:
            self._parts, covered, gaps = [], 0, []
            for i, (first, source) in enumerate(self._found):
                meta = self._open(source).metadata
                kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
                nxt = self._found[i + 1][0] if i + 1 < len(self._found) else self.n
                end = min(first + meta.num_rows, nxt)
                if first > covered:
                    gaps.append((covered, first))
                self._parts.append(Part(first, end - first, source, kv.get("i2z.run_id")))
                covered = end
            if self._found and covered < self.n:
                gaps.append((covered, self.n))
            if gaps:
                rows = ", ".join(f"{a}..{b - 1}" for a, b in gaps[:5])
                logger.warning(f"side-car {self.path} has no rows for images {rows} of the store's {self.n}: "
                               f"they read as nulls")
            self._problem = self._check_runs(self._attrs.get("runs"))
        return self._parts

    @property
    def problem(self) -> str | None:
        _ = self.parts
        return self._problem

    def _check_runs(self, runs: Any) -> str | None:
        """Each part must come from the run that wrote its images (stores of earlier versions and
        their parts have no run ids: nothing to check)."""
        if not isinstance(runs, list):
            return None
        for part in self.parts:
            run = next((r for r in runs if isinstance(r, dict) and r.get("start_index", 0) <= part.first
                        < r.get("end_index", 0)), None)
            if run is not None and part.run_id is not None and run.get("run_id") != part.run_id:
                return (f"side-car {self.path} does not match its store: {part_name(part.first)} was written by "
                        f"run {part.run_id}, the store's images {run.get('start_index')}..{run.get('end_index', 1) - 1} "
                        f"by run {run.get('run_id')} (an interrupted overwrite, which the next write to the store "
                        f"completes, or the side-car of another store)")
        return None

    def _open(self, source: Any) -> pq.ParquetFile:
        if self._s3 is None:
            return pq.ParquetFile(source)
        store, key = (self._legacy_store, storage.name(self.path)) if source is None else (self._s3, source)
        size = store.size(key)
        return pq.ParquetFile(io.BufferedReader(_StoreFile(store, key, size or 0), 1 << 20))

    def last_schema(self) -> pa.Schema | None:
        """The columns of the last part (each part has at least its predecessors' columns)."""
        return self._open(self._found[-1][1]).schema_arrow if self._found else None

    def schema(self) -> pa.Schema:
        """All parts' columns, unified (a column missing from a part reads as nulls)."""
        schemas = [self._open(p.source).schema_arrow for p in self.parts]
        return pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])

    def batches(self, columns: list[str] | None = None, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Rows ``[0, n)`` in order, as batches with the unified schema (restricted to ``columns``
        that exist). Memory holds one batch."""
        schema = self.schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
        covered = 0
        for part in self.parts:
            for lo in range(covered, part.first, batch_size):  # rows no part has
                yield _nulls(schema, min(batch_size, part.first - lo))
            file = self._open(part.source)
            present = [c for c in schema.names if c in file.schema_arrow.names]
            left = part.rows
            for batch in file.iter_batches(batch_size=batch_size, columns=present):
                if left <= 0:
                    break
                batch = batch.slice(0, left)
                left -= batch.num_rows
                yield conform(batch, schema)
            covered = part.first + part.rows
        for lo in range(covered if self.parts else self.n, self.n, batch_size):
            yield _nulls(schema, min(batch_size, self.n - lo))

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The side-car as one table of ``n`` rows."""
        tables = [pa.Table.from_batches([b]) for b in self.batches(columns)]
        if not tables:
            return self.schema().empty_table()
        return pa.concat_tables(tables)


def _nulls(schema: pa.Schema, n: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.nulls(n, f.type) for f in schema], schema=schema)


def conform(data: Any, schema: pa.Schema) -> Any:
    """``data`` (a Table or RecordBatch) with ``schema``'s columns: missing ones null, the others cast."""
    n, names = data.num_rows, data.schema.names
    columns = [data.column(names.index(f.name)).cast(f.type) if f.name in names else pa.nulls(n, f.type)
               for f in schema]
    return type(data).from_arrays(columns, schema=schema)


def open_sidecar(store: StoreLocation, n: int, attrs: dict[str, Any],
                 storage_options: dict[str, Any] | None = None) -> Sidecar | None:
    """The side-car of ``store`` (beside its real location; else the ``metadata_file`` named at
    creation), or None when there is none. The one way every reader finds and reads it."""
    if storage.is_url(store):
        real, side = storage.location(store), location(store)[1]
    else:
        real, side = location(store)
    candidates = [side]
    if attrs.get("metadata_file"):
        candidates.append(storage.join(storage.parent(real), str(attrs["metadata_file"])))
    for path in candidates:
        sidecar = Sidecar(path, n, attrs, storage_options)
        if sidecar:
            return sidecar
    return None
