"""The user's catalog (``metadata=`` CSV, or ``image_metadata=`` rows) joined to the images.

A catalog answers ``columns(first_index, keys)``: its columns for images ``first_index, ...``
(``keys`` are their ``filename`` values), in that order, with nulls where it has no row; and
``finish()``, which reports catalog rows that matched no image and images without a row.
The side-car writer asks once per shard, in image order.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from images_to_zarr._logging import logger


class Catalog(Protocol):
    def columns(self, first_index: int, keys: list[str]) -> pa.Table | None: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


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


# Why a hash-partitioned join on disk (and not DuckDB, an external sort, or pyarrow's Acero join):
# the catalog may hold 10^8 rows and the images come in store order (sorted by full path), not in
# catalog order, so one side must be re-ordered on disk. Partitioning both sides by a hash of the
# key makes every partition joinable in memory on its own (a vectorised ``index_in`` + ``take``,
# which works for every Arrow type, lists and structs included), and a second pass puts the
# joined rows into buckets of consecutive image positions, read back one at a time as the
# side-car asks for them in image order. That is two sequential passes over the catalog's bytes,
# memory bounded by one partition / one bucket (``_PART_BYTES``), and only pyarrow, which we
# already need; DuckDB would add a 40 MB dependency for the same two passes. Duplicate keys are
# found per partition (a key lives in one partition only), before any shard is written.
_PART_BYTES = 32 << 20  # catalog bytes per hash partition (its in-memory join)
_MAX_PARTS = 128  # open spill files per side stay below the usual 1,024-descriptor limit
_BUCKETS = 64  # image-position buckets (each read back whole when its first image is written)
_BATCH = 1 << 16
_CSV_BLOCK = 16 << 20  # bytes per CSV block (the first one decides the column types)
_POS, _KEY, _ROW = "__i2z_pos", "__i2z_key", "__i2z_row"
_NEEDS_NORM = r"//|(^|/)\.\.?(/|$)|/$|^$"


def _normalise(keys: pa.Array) -> pa.Array:
    """``os.path.normpath`` of each key, in Python only for the few keys it would change."""
    keys = keys.cast(pa.string())
    flagged = pc.match_substring_regex(keys, _NEEDS_NORM).to_numpy(zero_copy_only=False)
    if not flagged.any():
        return keys
    values = keys.to_pylist()
    for i in np.flatnonzero(flagged):
        values[i] = os.path.normpath(values[i])
    return pa.array(values, pa.string())


def _partition_ids(keys: pa.Array, parts: int) -> np.ndarray:
    if parts == 1:
        return np.zeros(len(keys), np.int64)
    return np.fromiter((hash(k) % parts for k in keys.to_pylist()), np.int64, len(keys))


def _reserved() -> list[str]:
    from images_to_zarr.metadata import RECORD_COLUMNS  # the side-car's own columns

    return RECORD_COLUMNS


def user_column_names(names: list[str], what: str) -> list[str]:
    """The names the side-car gives the user's columns: a repeated name gets ``.1``, ``.2``, ...
    (as pandas does); a name the tool writes itself (``error``, ``shape``, ...) gets the prefix
    ``catalog_``. Warns once when anything is renamed; a repeated ``filename`` is refused."""
    if names.count("filename") > 1:
        raise ValueError(f"{what} has {names.count('filename')} columns named 'filename'; keep one")
    reserved = set(_reserved())
    taken = set(names)
    out: list[str] = []
    renamed: list[str] = []
    for name in names:
        base = f"catalog_{name}" if name in reserved else name
        new, k = base, 0
        while new in out or (new != name and new in taken):
            k += 1
            new = f"{base}.{k}"
        if new != name:
            renamed.append(f"{name!r} -> {new!r}")
        out.append(new)
    if renamed:
        logger.warning(f"{what}: columns renamed so that no value is lost (repeated names, or names of the "
                       f"side-car's own columns): {', '.join(renamed)}")
    return out


def _csv_quote_check(path: str) -> None:
    """An odd number of ``"`` means a quoted value runs to the end of the file (pyarrow would
    silently read the rest of the file into it): name the line where it starts."""
    quotes = 0
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            quotes += block.count(b'"')
    if quotes % 2 == 0:
        return
    line, seen, start = 1, 0, 1
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            for i, c in enumerate(block):
                if c == 34:
                    if seen % 2 == 0:
                        start = line
                    seen += 1
                elif c == 10:
                    line += 1
    raise ValueError(f"metadata CSV {path} has an unterminated quote: the quoted value opened on line {start} "
                     f"runs to the end of the file")


class _Retype(Exception):
    def __init__(self, column: str) -> None:
        self.column = column


class CatalogReader:
    """The user's catalog file (CSV or Parquet), read in record batches with the side-car's
    column names. CSV column types are inferred from the first block (``_CSV_BLOCK``); a column whose
    later values do not fit that type is read again as text."""

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = os.fspath(path)
        self.parquet = self.path.lower().endswith((".parquet", ".pq")) or _is_parquet(self.path)
        self.what = f"metadata {'Parquet' if self.parquet else 'CSV'} {self.path}"
        self._text: set[str] = set()
        try:
            names = self._raw_schema().names
        except UnicodeDecodeError as e:  # in the header
            raise ValueError(f"{self.what} is not valid UTF-8: {e}") from None
        if "filename" not in names:
            raise ValueError(f"{self.what} has no 'filename' column (columns: {', '.join(names)})")
        self.names = user_column_names(names, self.what)

    def _csv(self) -> Any:
        try:
            return pacsv.open_csv(self.path, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
                                  convert_options=pacsv.ConvertOptions(
                                      column_types={c: pa.string() for c in self._text}))
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read {self.what}: {e}") from None

    def _raw_schema(self) -> pa.Schema:
        if self.parquet:
            try:
                return pq.read_schema(self.path)
            except (pa.ArrowInvalid, OSError) as e:
                raise ValueError(f"cannot read {self.what}: {e}") from None
        _csv_quote_check(self.path)
        return self._check_utf8(self._csv().schema)

    def _check_utf8(self, schema: pa.Schema) -> pa.Schema:
        # pyarrow reads a CSV column holding invalid UTF-8 as binary instead of failing.
        binary = [f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
        if binary and not self.parquet:
            raise ValueError(f"{self.what} is not valid UTF-8 (column {', '.join(binary)})")
        return schema

    def retype(self, column: str) -> None:
        """Reads ``column`` as text from now on (after ``batches()`` raised ``_Retype``)."""
        self._text.add(column)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every row, in file order. Raises ``_Retype`` when a CSV column must be read as text."""
        if self.parquet:
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=_BATCH):
                yield pa.RecordBatch.from_arrays(batch.columns, names=self.names)
            return
        reader = self._csv()
        self._check_utf8(reader.schema)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as e:
                m = re.search(r"CSV column #(\d+)", str(e))
                if "UTF8" in str(e) or "UTF-8" in str(e):
                    raise ValueError(f"{self.what} is not valid UTF-8: {e}") from None
                raw = reader.schema.names
                if m and int(m.group(1)) < len(raw) and raw[int(m.group(1))] not in self._text:
                    raise _Retype(raw[int(m.group(1))]) from None
                raise ValueError(f"cannot read {self.what}: {e}") from None
            yield pa.RecordBatch.from_arrays(batch.columns, names=self.names)


def _is_parquet(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


class _Spill:
    """``parts`` Arrow IPC files written batch by batch, read back one at a time."""

    def __init__(self, folder: str, name: str, parts: int) -> None:
        self._paths = [os.path.join(folder, f"{name}-{i}.arrow") for i in range(parts)]
        self._writers: list[Any] = [None] * parts

    def write(self, part: int, batch: pa.RecordBatch | pa.Table) -> None:
        if self._writers[part] is None:
            self._writers[part] = pa.ipc.new_stream(self._paths[part], batch.schema)
        self._writers[part].write(batch)

    def split(self, batch: pa.RecordBatch, ids: np.ndarray) -> None:
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        batch = batch.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(ids)]):
            if hi > lo:
                self.write(int(sorted_ids[lo]), batch.slice(lo, hi - lo))

    def close(self) -> None:
        for w in self._writers:
            if w is not None:
                w.close()
        self._writers = [None] * len(self._writers)

    def remove(self) -> None:
        self.close()
        for path in self._paths:
            if os.path.exists(path):
                os.unlink(path)

    def read(self, part: int, schema: pa.Schema) -> pa.Table:
        path = self._paths[part]
        if not os.path.exists(path):
            return schema.empty_table()
        with pa.OSFile(path) as f:
            table = pa.ipc.open_stream(f).read_all()
        os.unlink(path)
        return table


def staging_folder(store: Any) -> str:
    """A private folder (``mkdtemp``) for the join's spill files: beside a local store (its file
    system has room for the store), in the temp folder for an ``s3://`` one. Called under the
    writer lock, so folders a killed run left beside the store are removed first."""
    from images_to_zarr import _storage as storage

    if storage.is_url(store):
        return tempfile.mkdtemp(prefix="i2z-catalog-")
    prefix = f".{os.path.basename(os.fspath(store))}.i2z-catalog-"
    parent = os.path.dirname(os.path.abspath(os.fspath(store)))
    for stale in glob.glob(os.path.join(glob.escape(parent), glob.escape(prefix) + "*")):
        shutil.rmtree(stale, ignore_errors=True)
    return tempfile.mkdtemp(prefix=prefix, dir=parent)


class StreamingCatalog:
    """A CSV or Parquet catalog joined on ``filename`` to ``count`` images whose keys come (in
    image order) from ``keys``, through hash-partitioned spill files in ``folder`` (see the note
    above). All checks run in the constructor, before any shard is written; the caller can drop
    its file list then. ``at(start)`` sets the array index of the first image (known from the
    plan: N before an append)."""

    def __init__(self, reader: CatalogReader, keys: Iterable[str], count: int, folder: str) -> None:
        self._reader, self._start, self._count = reader, 0, count
        self._folder = folder
        self._kind = "Parquet" if reader.parquet else "CSV"
        size = os.path.getsize(reader.path)
        parts = min(_MAX_PARTS, max(1, -(-size // _PART_BYTES)))
        self._bucket_rows = max(_BATCH, -(-count // _BUCKETS))
        cat = _Spill(folder, "catalog", parts)
        img = _Spill(folder, "images", parts)
        self._buckets = _Spill(folder, "bucket", -(-max(1, count) // self._bucket_rows))
        self._loaded: tuple[int, pa.Table] | None = None
        try:
            while True:
                try:
                    self._schema = self._spill_catalog(cat, parts)
                    break
                except _Retype as r:  # read the CSV again, with that column as text
                    cat.remove()
                    reader.retype(r.column)
            self._spill_images(img, keys, parts)
            cat.close()
            img.close()
            self._join(cat, img, parts)
        except BaseException:
            self.close()
            raise
        finally:
            cat.close()
            img.close()
            self._buckets.close()

    def _spill_catalog(self, cat: _Spill, parts: int) -> pa.Schema:
        row = 0
        schema: pa.Schema | None = None
        for batch in self._reader.batches():
            names = batch.column(batch.schema.get_field_index("filename"))
            empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(names.cast(pa.string())), ""), True)
            bad = np.flatnonzero(empty.to_numpy(zero_copy_only=False))
            if len(bad):
                rows = ", ".join(str(row + i + 1) for i in bad[:10])
                raise ValueError(f"{self._reader.what} has an empty filename in data row(s) {rows}")
            keys = _normalise(names)
            batch = batch.append_column(_KEY, keys).append_column(_ROW, pa.array(np.arange(row, row + len(keys))))
            schema = batch.schema
            cat.split(batch, _partition_ids(keys, parts))
            row += len(keys)
        if schema is None:  # no data rows: the columns still come from the header
            schema = self._reader_schema()
        return schema

    def _reader_schema(self) -> pa.Schema:
        raw = pq.read_schema(self._reader.path) if self._reader.parquet else self._reader._csv().schema
        return pa.schema([pa.field(n, f.type) for n, f in zip(self._reader.names, raw)] +
                         [pa.field(_KEY, pa.string()), pa.field(_ROW, pa.int64())])

    def _spill_images(self, img: _Spill, keys: Iterable[str], parts: int) -> None:
        pos = 0
        it = iter(keys)
        while chunk := list(itertools.islice(it, _BATCH)):
            k = _normalise(pa.array(chunk, pa.string()))
            batch = pa.record_batch([pa.array(np.arange(pos, pos + len(chunk))), k], names=[_POS, _KEY])
            img.split(batch, _partition_ids(k, parts))
            pos += len(chunk)
        if pos != self._count:
            raise RuntimeError(f"catalog join: {pos} image keys for {self._count} images")

    def _join(self, cat: _Spill, img: _Spill, parts: int) -> None:
        dupes: list[str] = []
        unmatched: list[tuple[int, str]] = []  # (catalog row, filename): the first few
        self._unmatched_count = 0
        no_row: list[tuple[int, str]] = []  # (image position, key)
        self._no_row_count = 0
        img_schema = pa.schema([(_POS, pa.int64()), (_KEY, pa.string())])
        for p in range(parts):
            c = cat.read(p, self._schema)
            ck = c.column(_KEY)
            if len(pc.unique(ck)) != len(ck):
                counts = pc.value_counts(ck)
                dupes += [v.as_py() for v, n in zip(counts.field("values"), counts.field("counts")) if n.as_py() > 1]
                continue
            i = img.read(p, img_schema)
            if dupes:
                continue
            ik = i.column(_KEY)
            found = pc.is_in(ck, value_set=ik)
            lost = c.filter(pc.invert(found))
            self._unmatched_count += lost.num_rows
            unmatched += sorted(zip(lost.column(_ROW).to_pylist()[:5], lost.column("filename").cast(pa.string()).to_pylist()[:5]))
            unmatched = sorted(unmatched)[:5]
            idx = pc.index_in(ik, value_set=ck)
            missing = i.filter(pc.is_null(idx))
            self._no_row_count += missing.num_rows
            no_row = sorted(no_row + list(zip(missing.column(_POS).to_pylist()[:5], missing.column(_KEY).to_pylist()[:5])))[:5]
            joined = c.drop_columns([_KEY, _ROW]).take(idx)
            joined = joined.append_column(_POS, i.column(_POS)).append_column(_KEY, ik)
            for batch in joined.to_batches():
                self._buckets.split(batch, batch.column(_POS).to_numpy() // self._bucket_rows)
            del c, i, joined
        if dupes:
            raise ValueError(f"{self._reader.what} lists these filenames more than once: {', '.join(sorted(dupes)[:10])}")
        self._unmatched = [name for _, name in unmatched]
        self._no_row = [key for _, key in no_row]
        self._out_schema = pa.schema([f for f in self._schema if f.name not in (_KEY, _ROW)] +
                                     [pa.field(_POS, pa.int64()), pa.field(_KEY, pa.string())])

    def at(self, start: int) -> StreamingCatalog:
        self._start = start
        return self

    def _bucket(self, b: int) -> pa.Table:
        if self._loaded is None or self._loaded[0] != b:
            self._loaded = None
            t = self._buckets.read(b, self._out_schema)
            self._loaded = (b, t.take(pc.sort_indices(t.column(_POS))))
        return self._loaded[1]

    def columns(self, first_index: int, keys: list[str]) -> pa.Table | None:
        pos, n = first_index - self._start, len(keys)
        pieces = [self._out_schema.empty_table()]
        while n > 0:
            b = pos // self._bucket_rows
            piece = self._bucket(b).slice(pos - b * self._bucket_rows, n)
            if piece.num_rows == 0:
                break
            pieces.append(piece)
            pos, n = pos + piece.num_rows, n - piece.num_rows
        out = pa.concat_tables(pieces)
        if out.num_rows != len(keys) or out.column(_KEY).to_pylist() != _normalise(pa.array(keys, pa.string())).to_pylist():
            raise RuntimeError(f"catalog join: images {first_index}.. are not the ones the catalog was joined to")
        return out.drop_columns([_POS, _KEY])

    def finish(self) -> None:
        _warn_unmatched(f"{self._kind} rows match no image", self._unmatched_count, self._unmatched)
        _warn_unmatched(f"images have no {self._kind} row", self._no_row_count, self._no_row)
        self.close()

    def close(self) -> None:
        self._loaded = None
        shutil.rmtree(self._folder, ignore_errors=True)

class RowsCatalog:
    """``image_metadata=``: one dict per image of an in-memory array, by position (``start`` is
    the array index of the first image, N before an append)."""

    def __init__(self, rows: list[dict[str, Any]], start: int) -> None:
        table = pa.Table.from_pylist(list(rows))
        self._table = table.rename_columns(user_column_names(table.column_names, "image_metadata"))
        self._start = start

    def columns(self, first_index: int, keys: list[str]) -> pa.Table | None:
        return self._table.slice(first_index - self._start, len(keys))

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass
