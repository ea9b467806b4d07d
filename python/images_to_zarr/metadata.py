"""The Parquet side-car: the user's CSV joined on ``filename`` with the engine's per-image records.

The side-car is streamed: the engine hands over each committed shard's records, which become one
row group of a temporary Parquet file; ``finish()`` moves that file into place (or merges it
behind the old rows for an append). Memory holds one shard's rows, never all N.
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from images_to_zarr import _core
from images_to_zarr import _storage as storage
from images_to_zarr._logging import logger
from images_to_zarr._storage import StoreLocation
from images_to_zarr.catalog import Catalog, FileKeys

RECORD_COLUMNS = [
    "original_filename", "source_path", "original_extension", "file_size_bytes", "dtype", "shape",
    "fits_extension", "fits_header", "min_value", "max_value", "mean_value", "error",
]


def _extension(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".fits.gz"):
        return path[-8:]
    return os.path.splitext(path)[1]


def _record_columns(records: dict[str, list[Any]]) -> dict[str, pa.Array]:
    out: dict[str, pa.Array] = {}
    for name in RECORD_COLUMNS:
        if name in ("original_filename", "original_extension"):
            continue
        values = records[name]
        if name == "shape":
            out[name] = pa.array(values, pa.list_(pa.int64()))
        elif name == "file_size_bytes":
            out[name] = pa.array(values, pa.int64())
        elif name in ("min_value", "max_value", "mean_value"):
            out[name] = pa.array(values, pa.float64())
        else:
            out[name] = pa.array(values, pa.string())
    return out


_EMPTY_RECORDS: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}


class SidecarWriter:
    """Streams the side-car rows of one conversion, in row groups of at least ``_ROW_GROUP_ROWS``
    rows (small shards are batched, so the footer stays small for millions of images).

    ``start`` is the array index of the run's first image (N before an append). ``file_keys``
    names the files of a file conversion (their paths come with the records); it is ``None`` for
    an in-memory array. ``catalog`` supplies the user's columns (``catalog.py``).
    ``write(first_index, records)`` calls must come in image order; of the images, only the rows
    being written are in memory. ``finish()`` publishes the side-car atomically; ``abort()`` drops the
    temporary files.
    """

    def __init__(
        self,
        location: StoreLocation,
        *,
        start: int,
        total: int,
        file_keys: FileKeys | None,
        catalog: Catalog | None,
        append: bool = False,
        transform: Callable[[pa.Table], pa.Table] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.location = location
        self.failed = 0
        self._start, self._next, self._total = start, start, total
        self._keys = file_keys
        self._append = append
        self._transform = transform
        self._storage_options = storage_options
        self._catalog = catalog
        self._schema = self._rows(start, _EMPTY_RECORDS).schema
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        _remove_stale_temps(location)
        self._tmp = _temp_path(location, ".i2z-new" if append else ".i2z-part")
        self._writer: pq.ParquetWriter | None = None
        try:
            self._writer = pq.ParquetWriter(self._tmp, self._schema)
        except OSError as e:
            self._tmp.unlink(missing_ok=True)
            raise _write_error(location, e) from e

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
        if self._writer is None:
            raise RuntimeError("side-car writer is closed")
        if first_index != self._next:
            raise RuntimeError(f"side-car rows out of order: got image {first_index}, expected {self._next}")
        table = self._rows(first_index, records)
        if table.schema != self._schema:  # a user column's type is fixed up front: cast to it
            table = table.cast(self._schema)
        self._next += table.num_rows
        self._pending.append(table)
        self._pending_rows += table.num_rows
        del table
        self.failed += sum(e is not None for e in records["error"])
        if self._pending_rows >= _ROW_GROUP_ROWS:
            self._flush()
        # This shard's temporary Arrow buffers are free now, but Arrow's default pool (mimalloc)
        # would keep them mapped (about 10 MiB per 2,048 rows). Once per shard, this is cheap.
        pa.default_memory_pool().release_unused()

    def _flush(self) -> None:
        if not self._pending or self._writer is None:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        try:
            self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        except OSError as e:
            raise _write_error(self.location, e) from e
        del table

    def _close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except OSError as e:
                raise _write_error(self.location, e) from e

    def finish(self) -> None:
        """Reports unmatched CSV rows and images, then puts the side-car in place (atomically)."""
        try:
            self._flush()
            self._close()
            if self._next != self._total:
                raise RuntimeError(f"side-car has rows up to image {self._next}, the array has {self._total}")
            if self._catalog is not None:
                self._catalog.finish()
            if self._append:
                finish_append(self.location, self._start, self._tmp, self.location, self._storage_options)
            else:
                _publish(self._tmp, self.location, self._storage_options)
        except BaseException:
            self.abort()
            raise
        self._tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        self._pending, self._pending_rows = [], 0
        if self._catalog is not None:
            self._catalog.close()
        try:
            self._close()
        except OSError:
            pass
        finally:
            self._tmp.unlink(missing_ok=True)


def _remove_stale_temps(location: StoreLocation) -> None:
    """Deletes temporary side-car files a killed writer left beside a local side-car
    (``<side-car>.i2z-*``: ours and the C++ store's ``.i2z-part-<pid>-<n>``). Runs while the
    store's writer lock is held, so no live writer owns them."""
    if storage.is_url(location):
        return
    p = Path(location)
    for stale in p.parent.glob(glob.escape(p.name) + ".i2z-*"):
        stale.unlink(missing_ok=True)


def _temp_path(location: StoreLocation, suffix: str) -> Path:
    """A local temporary file: beside a local side-car (same file system, for the rename), in
    the temp folder for an ``s3://`` one."""
    if storage.is_url(location):
        fd, name = tempfile.mkstemp(prefix="i2z-sidecar-", suffix=suffix)
        os.close(fd)
        return Path(name)
    p = Path(location)
    return p.with_name(p.name + suffix)


def _write_error(location: StoreLocation, e: OSError) -> OSError:
    # pyarrow's messages name no file (and a full disk fails inside write()).
    return OSError(e.errno, f"cannot write {location}: {e.strerror or e}")


def _publish(local: Path, location: StoreLocation, storage_options: dict[str, Any] | None = None) -> None:
    """Moves a finished local Parquet file to ``location``: a rename locally; on S3 a streamed
    upload (multipart when large) that becomes visible only when complete."""
    if storage.is_url(location):
        head, name = str(location).rsplit("/", 1)
        writer = _core.Store.open(head, storage_options or {}).open_writer(name)
        try:
            with open(local, "rb") as f:
                while chunk := f.read(8 << 20):
                    writer.write(chunk)
            writer.commit()
        except BaseException:
            writer.discard()
            raise
        local.unlink(missing_ok=True)
        return
    try:
        os.replace(local, location)
    except OSError as e:
        local.unlink(missing_ok=True)
        raise OSError(e.errno, f"cannot write {location}: {e.strerror}") from e


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


def _open_parquet(location: StoreLocation, storage_options: dict[str, Any] | None) -> pq.ParquetFile | None:
    """The side-car at ``location`` for streamed reading, or None when it does not exist."""
    if storage.is_url(location):
        head, name = str(location).rsplit("/", 1)
        store = _core.Store.open(head, storage_options or {})
        size = store.size(name)
        if size is None:
            return None
        return pq.ParquetFile(io.BufferedReader(_StoreFile(store, name, size), 1 << 20))
    p = Path(location)
    return pq.ParquetFile(p) if p.is_file() else None


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns: missing ones null, the others cast."""
    n = table.num_rows
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)




# Rows per side-car row group (also the batch of a streamed rewrite): memory stays bounded even
# with large fits_header values (writing a row group costs a few KiB of transient memory per row),
# and a million images make only ~1,000 row groups (a footer of ~1.5 MB).
_ROW_GROUP_ROWS = 1024
# An append copies the old row groups as bytes unless the side-car has this many row groups and
# they are small on average (many small appends): then it rewrites, compacting them.
_MAX_ROW_GROUPS = 256


def _append_in_place(old: pq.ParquetFile, old_location: StoreLocation, keep: int, new_rows_file: Path,
                     out_location: StoreLocation, storage_options: dict[str, Any] | None) -> bool:
    """The cheap path: ``_core.parquet_append`` copies the old row groups as bytes and merges the
    footers, so the cost does not grow with the side-car. False when that is not possible (schemas
    differ, ``keep`` inside a row group, too many row groups, ...): the caller rewrites."""
    head, name = storage.parent(old_location), storage.name(old_location)
    if storage.parent(out_location) != head:
        return False
    row_groups = old.metadata.num_row_groups
    if row_groups >= _MAX_ROW_GROUPS and keep < row_groups * (_ROW_GROUP_ROWS // 2):
        return False
    store = _core.Store.open(os.fspath(head), storage_options or {})
    return bool(_core.parquet_append(store, name, keep, os.fspath(new_rows_file), storage.name(out_location)))


def finish_append(old_location: StoreLocation, keep: int, new_rows_file: Path, out_location: StoreLocation,
                  storage_options: dict[str, Any] | None = None) -> None:
    """Writes the old side-car's first ``keep`` rows (later rows are leftovers of an interrupted
    append) followed by the rows of ``new_rows_file`` (a local Parquet file) to ``out_location``,
    atomically. Columns are unified as ``pa.concat_tables(..., promote_options="permissive")``
    does. Streams record batches, so memory does not grow with the side-car. Row i must describe
    image i: a missing or short old side-car is padded with null rows (with a warning)."""
    old = _open_parquet(old_location, storage_options)
    if old is not None and _append_in_place(old, old_location, keep, new_rows_file, out_location, storage_options):
        old.close()
        new_rows_file.unlink(missing_ok=True)
        return
    new = pq.ParquetFile(new_rows_file)
    schema = new.schema_arrow if old is None else pa.unify_schemas([old.schema_arrow, new.schema_arrow],
                                                                   promote_options="permissive")
    have = 0 if old is None else min(keep, old.metadata.num_rows)
    if have < keep:
        what = "is missing" if old is None else f"has {old.metadata.num_rows} rows"
        logger.warning(f"side-car {old_location} {what}, the store had {keep} images: "
                       f"their rows are written as nulls, the appended rows follow")
    tmp = _temp_path(out_location, ".i2z-part")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            left = have
            for batch in old.iter_batches(batch_size=_ROW_GROUP_ROWS) if old is not None and have > 0 else ():
                part = pa.Table.from_batches([batch]).slice(0, left)
                writer.write_table(_conform(part, schema))
                left -= part.num_rows
                del batch, part
                pa.default_memory_pool().release_unused()  # as in SidecarWriter.write
                if left == 0:
                    break
            for lo in range(have, keep, _ROW_GROUP_ROWS):
                writer.write_table(_nulls(schema, min(_ROW_GROUP_ROWS, keep - lo)))
            for i in range(new.num_row_groups):
                writer.write_table(_conform(new.read_row_group(i), schema))
                pa.default_memory_pool().release_unused()
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _write_error(out_location, e) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        new.close()
        if old is not None:
            old.close()
    _publish(tmp, out_location, storage_options)


def _nulls(schema: pa.Schema, n: int) -> pa.Table:
    return pa.table([pa.nulls(n, f.type) for f in schema], schema=schema)
