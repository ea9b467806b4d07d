"""``inspect()``: a summary of a store from its ``zarr.json`` files and its Parquet side-car.

It never reads pixel data, and it aggregates the side-car batch by batch with pyarrow compute
kernels, reading only the columns it reports: memory does not grow with the number of images.
A store may be a local folder or an ``s3://bucket/prefix/x.zarr`` URL (read through the C++ store, ``_core.Store``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from images_to_zarr import _core
from images_to_zarr import _storage as storage
from images_to_zarr._storage import StoreLocation
from images_to_zarr.sidecar import Sidecar, open_sidecar

RULE = "=" * 80
MAX_LISTED = 10  # longest distribution printed; the rest is summed up in one line

FORMAT_NAMES = {
    ".fits": "FITS", ".fit": "FITS", ".fts": "FITS", ".fz": "FITS", ".fits.gz": "FITS",
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
}
SIDECAR_COLUMNS = [
    "original_extension", "format", "dtype", "shape", "file_size_bytes",
    "min_value", "max_value", "mean_value", "error",
]


@dataclass
class StoreSummary:
    """What :func:`inspect` reports; ``str(summary)`` is the printed text."""

    path: StoreLocation  # a Path, or an s3:// URL
    total_images: int
    storage_bytes: int
    image_shape: tuple[int, ...]
    dtype: str
    compressor: str
    compression_level: int | None
    chunk_shape: tuple[int, ...]
    shard_shape: tuple[int, ...] | None
    num_shards: int
    metadata_path: StoreLocation | None = None
    metadata_problem: str | None = None  # the side-car does not match the store (named, not summarised)
    format_counts: dict[str, int] = field(default_factory=dict)
    original_dtype_counts: dict[str, int] = field(default_factory=dict)
    shape_counts: dict[tuple[int, ...], int] = field(default_factory=dict)
    file_size_stats: dict[str, float] | None = None  # min, max, mean, total (bytes)
    dynamic_range: dict[str, float] | None = None  # min, max, mean (of the per-image means)
    failed_images: int | None = None
    append_history: list[dict[str, Any]] = field(default_factory=list)
    source_files: int | None = None  # side-car rows that came from a file (not from memory)

    def __str__(self) -> str:
        return "\n".join(_report_lines(self))

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON types (what ``inspect --json`` prints): paths as strings,
        shapes as lists, ``shape_counts`` as a list of ``{"shape": [...], "count": n}``."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["metadata_path"] = None if self.metadata_path is None else str(self.metadata_path)
        for key in ("image_shape", "chunk_shape", "shard_shape"):
            d[key] = None if d[key] is None else list(d[key])
        d["shape_counts"] = [{"shape": list(k), "count": v} for k, v in self.shape_counts.items()]
        return d


def inspect(store: str | os.PathLike, storage_options: dict[str, Any] | None = None,
            print_summary: bool = True) -> StoreSummary:
    """Print a summary of ``store`` (a path or an ``s3://`` URL) and return it
    (``print_summary=False``: only return it).

    Raises ``FileNotFoundError`` for a missing store and ``ValueError`` for one that is not
    a Zarr v3 store with an ``images`` array.
    """
    summary = summarize(store, storage_options)
    if print_summary:
        print(summary)
    return summary


class StoreFiles:
    """The files of a store: a local folder, or the objects under an ``s3://`` prefix."""

    def __init__(self, root: StoreLocation, storage_options: dict[str, Any] | None = None) -> None:
        self.root = root
        self.s3 = _core.Store.open(root, storage_options or {}) if storage.is_url(root) else None

    def get(self, key: str) -> bytes | None:
        if self.s3 is not None:
            return self.s3.get(key)
        path = Path(self.root) / key
        return path.read_bytes() if path.is_file() else None

    def count(self, prefix: str) -> int:
        if self.s3 is not None:
            return len(self.s3.list(prefix))
        return _count_files(Path(self.root) / prefix)

    def total_size(self) -> int:
        if self.s3 is None:
            return _tree_size(Path(self.root))
        keys = self.s3.list("")
        with ThreadPoolExecutor(16) as pool:  # one HEAD per object; the store releases the GIL
            return sum(v or 0 for v in pool.map(self.s3.size, keys))


def summarize(store: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> StoreSummary:
    """The summary of ``store`` without printing it."""
    root = storage.location(store)
    files = StoreFiles(root, storage_options)
    attrs, array_dir, array_meta = open_metadata(root, storage_options, files)
    shape = tuple(int(v) for v in array_meta["shape"])
    chunk, shard = _chunking(array_meta)
    compressor, level = _compression(attrs, array_meta)
    n = shape[0]
    summary = StoreSummary(
        path=root,
        total_images=n,
        storage_bytes=files.total_size(),
        image_shape=shape[1:],
        dtype=str(array_meta["data_type"]),
        compressor=compressor,
        compression_level=level,
        chunk_shape=chunk,
        shard_shape=shard,
        num_shards=files.count(f"{array_dir}c"),
        append_history=list(attrs.get("append_history") or []),
    )
    sidecar = open_sidecar(root, n, attrs, storage_options)
    if sidecar is not None:
        summary.metadata_path = sidecar.path
        summary.metadata_problem = sidecar.problem
        if sidecar.problem is None:
            _summarize_sidecar(summary, sidecar)
    return summary


def open_metadata(
    root: StoreLocation, storage_options: dict[str, Any] | None = None, files: StoreFiles | None = None
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Group attributes, the ``images`` array's key prefix (``"images/"``, or ``""`` for a store
    whose root is the array itself) and its ``zarr.json`` of the store at ``root``."""
    root = storage.location(root)
    files = files or StoreFiles(root, storage_options)
    if files.s3 is None:
        if not Path(root).exists():
            raise FileNotFoundError(f"store not found: {root}")
        if not Path(root).is_dir():
            raise ValueError(f"not a Zarr store (not a folder): {root}")
    elif files.s3.size("zarr.json") is None and not files.s3.list(""):
        raise FileNotFoundError(f"store not found: {root}")
    root_meta = _read_json(files, "zarr.json")
    array_dir = "" if root_meta.get("node_type") == "array" else "images/"
    array_meta = _read_json(files, f"{array_dir}zarr.json") if array_dir else root_meta
    where = storage.join(root, array_dir.rstrip("/")) if array_dir else root
    if array_meta.get("node_type") != "array":
        raise ValueError(f"not an images_to_zarr store: {where} is not a Zarr array")
    shape = array_meta.get("shape")
    if not isinstance(shape, list) or len(shape) != 4:
        raise ValueError(f"not an images_to_zarr store: {where} has shape {shape}, expected (N, C, H, W)")
    return dict(root_meta.get("attributes") or {}), array_dir, array_meta


def _read_json(files: StoreFiles, key: str) -> dict[str, Any]:
    path = storage.join(files.root, key)
    try:
        blob = files.get(key)
    except OSError as e:
        if files.s3 is not None:
            raise  # access denied, unreachable endpoint: the store's own message says it
        raise ValueError(f"not a Zarr v3 store: cannot read {path}: {e}") from None
    if blob is None:
        v2 = " (Zarr v2 stores are not supported)" if files.get(".zgroup") is not None or files.get(".zarray") is not None else ""
        raise ValueError(f"not a Zarr v3 store: {path} is missing{v2}")
    try:
        meta = json.loads(blob)
    except ValueError as e:
        raise ValueError(f"not a Zarr v3 store: cannot read {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        raise ValueError(f"not a Zarr v3 store: {path} has no \"zarr_format\": 3")
    return meta


def _chunking(meta: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(inner chunk shape, shard shape); shard is ``None`` for an unsharded array."""
    grid = tuple(int(v) for v in meta["chunk_grid"]["configuration"]["chunk_shape"])
    for codec in meta.get("codecs", []):
        if codec.get("name") == "sharding_indexed":
            inner = tuple(int(v) for v in codec["configuration"]["chunk_shape"])
            return inner, grid
    return grid, None


def _compression(attrs: dict[str, Any], meta: dict[str, Any]) -> tuple[str, int | None]:
    """The store's own names (group attributes) when present, else read from the codec chain."""
    if "compressor" in attrs:
        level = attrs.get("compression_level")
        return str(attrs["compressor"]), None if level is None else int(level)
    codecs = meta.get("codecs", [])
    for codec in codecs:
        if codec.get("name") == "sharding_indexed":
            codecs = codec["configuration"].get("codecs", [])
    for codec in codecs:
        name, config = codec.get("name"), codec.get("configuration") or {}
        if name == "blosc":
            return f"blosc-{config.get('cname', 'lz4')}", config.get("clevel")
        if name in ("zstd", "gzip"):
            return str(name), config.get("level")
    return "none", None


def _tree_size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:  # removed while we walk (a concurrent writer); not part of the store then
                pass
    return total


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


class _Aggregate:
    """Running value counts, sums and extrema over the side-car's batches."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[Any, int]] = {"format": {}, "dtype": {}, "shape": {}}
        self.failed = 0
        self.source_files = 0
        self.size: list[float] = []  # min, max, sum, count
        self.pixels: list[float] = []  # min, max, sum of means, count

    def add_counts(self, key: str, counts: dict[Any, int]) -> None:
        into = self.counts[key]
        for k, v in counts.items():
            into[k] = into.get(k, 0) + v

    @staticmethod
    def merge(acc: list[float], lo: Any, hi: Any, total: Any, count: int) -> list[float]:
        if not count or lo is None:
            return acc
        if not acc:
            return [lo, hi, total, count]
        return [min(acc[0], lo), max(acc[1], hi), acc[2] + total, acc[3] + count]


def _summarize_sidecar(s: StoreSummary, sidecar: Sidecar) -> None:
    agg, names, seen = _Aggregate(), set(sidecar.schema().names), 0
    for batch in sidecar.batches(SIDECAR_COLUMNS, batch_size=16384):
        table = pa.Table.from_batches([batch])
        seen += table.num_rows
        from_file = None
        if "original_extension" in names:
            agg.add_counts("format", _value_counts(_format_names(table.column("original_extension"))))
            from_file = pc.is_valid(table.column("original_extension"))
            agg.source_files += pc.sum(from_file.cast(pa.int64())).as_py() or 0
        elif "format" in names:
            agg.add_counts("format", _value_counts(table.column("format")))
        if "dtype" in names:
            agg.add_counts("dtype", _value_counts(table.column("dtype")))
        if "shape" in names:
            agg.add_counts("shape", _shape_counts(table.column("shape")))
        if "error" in names:
            agg.failed += table.num_rows - table.column("error").null_count
        if "file_size_bytes" in names:
            sizes = table.column("file_size_bytes")
            sizes = sizes if from_file is None else sizes.filter(from_file)  # in-memory rows have no file
            if sizes.null_count < len(sizes):
                mm = pc.min_max(sizes).as_py()
                agg.size = agg.merge(agg.size, mm["min"], mm["max"], pc.sum(sizes).as_py(), len(sizes) - sizes.null_count)
        if {"min_value", "max_value", "mean_value"} <= names:
            ok = table if "error" not in names else table.filter(pc.is_null(table.column("error")))
            lo, hi, mean = (_finite(ok.column(c)) for c in ("min_value", "max_value", "mean_value"))
            if len(lo) and len(hi) and len(mean):
                agg.pixels = agg.merge(agg.pixels, pc.min(lo).as_py(), pc.max(hi).as_py(), pc.sum(mean).as_py(), len(mean))
        del table, batch
        pa.default_memory_pool().release_unused()  # the pool (mimalloc) would keep every batch mapped
    ordered = {k: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for k, v in agg.counts.items()}
    s.format_counts, s.original_dtype_counts, s.shape_counts = ordered["format"], ordered["dtype"], ordered["shape"]
    if "error" in names:
        s.failed_images = agg.failed
    if "original_extension" in names:
        s.source_files = agg.source_files
    if agg.size:
        s.file_size_stats = {"min": agg.size[0], "max": agg.size[1], "mean": agg.size[2] / agg.size[3], "total": agg.size[2]}
    if agg.pixels:
        s.dynamic_range = {"min": agg.pixels[0], "max": agg.pixels[1], "mean": agg.pixels[2] / agg.pixels[3]}


def _format_names(ext: pa.ChunkedArray) -> pa.ChunkedArray:
    """``.FITS.gz`` -> ``FITS``; unknown extensions as themselves; no extension (in-memory) -> ``array``."""
    lower = pc.utf8_lower(ext)
    keys = pa.array(list(FORMAT_NAMES))
    mapped = pc.take(pa.array(list(FORMAT_NAMES.values())), pc.index_in(lower, value_set=keys))
    return pc.coalesce(mapped, pc.utf8_upper(pc.utf8_ltrim(ext, characters=".")), pa.scalar("array"))


def _value_counts(values: pa.ChunkedArray) -> dict[str, int]:
    """Counts, largest first; nulls counted as ``"unknown"``."""
    counts = pc.value_counts(pc.fill_null(values.cast(pa.string()), "unknown"))
    pairs = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())
    return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))


def _shape_counts(shapes: pa.ChunkedArray) -> dict[tuple[int, ...], int]:
    """Counts of each shape (lists of ints), grouped per rank by pyarrow: no per-row Python."""
    shapes = shapes.combine_chunks() if shapes.num_chunks else pa.array([], shapes.type)
    valid = shapes.filter(pc.is_valid(shapes))
    ranks = pc.list_value_length(valid)
    counts: dict[tuple[int, ...], int] = {}
    for rank in pc.unique(ranks).to_pylist():
        rows = valid.filter(pc.equal(ranks, rank))
        if rank == 0:
            counts[()] = counts.get((), 0) + len(rows)
            continue
        flat = pc.list_flatten(rows).to_numpy(zero_copy_only=False).reshape(len(rows), rank)
        dims = [f"d{k}" for k in range(rank)]
        groups = pa.table({d: flat[:, k] for k, d in enumerate(dims)}).group_by(dims).aggregate([([], "count_all")])
        keys = zip(*(groups.column(d).to_pylist() for d in dims))
        counts.update(zip(keys, groups.column("count_all").to_pylist()))
    if len(valid) < len(shapes):
        counts[()] = counts.get((), 0) + len(shapes) - len(valid)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _finite(values: pa.ChunkedArray) -> pa.ChunkedArray:
    values = values.drop_null()
    return values.filter(pc.is_finite(values)) if pa.types.is_floating(values.type) else values


def _report_lines(s: StoreSummary) -> list[str]:
    mb = s.storage_bytes / 2**20
    level = "" if s.compression_level is None else f" (level {s.compression_level})"
    lines = [
        RULE, "SUMMARY STATISTICS", RULE,
        f"Store: {s.path}",
        f"Total images across all files: {s.total_images:,}",
        f"Total storage size: {mb:,.2f} MB ({s.storage_bytes:,} bytes)",
        f"Image dimensions: {_shape(s.image_shape)}",
        f"Data type: {s.dtype}",
        f"Compression: {s.compressor}{level}",
        f"Chunk shape: {_shape(s.chunk_shape)}",
        f"Shard shape: {_shape(s.shard_shape) if s.shard_shape else 'not sharded'}",
        f"Number of {'shards' if s.shard_shape else 'chunk files'}: {s.num_shards:,}",
        f"Metadata: {_basename(s.metadata_path) if s.metadata_path else 'no Parquet side-car found'}",
    ]
    if s.metadata_problem:
        lines.append(f"Metadata problem: {s.metadata_problem}")
    if s.format_counts:
        lines += ["", "Format distribution:", *_distribution(s.format_counts, s.total_images)]
    if s.original_dtype_counts:
        lines += ["", "Original data type distribution:", *_distribution(s.original_dtype_counts, s.total_images)]
    if s.shape_counts:
        shapes = {_shape(k) if k else "unknown": v for k, v in s.shape_counts.items()}
        lines += ["", "Original shape distribution:", *_distribution(shapes, s.total_images)]
    if s.source_files == 0:
        lines += ["", "Original file size statistics: none (no source files: the images came from memory)"]
    elif s.file_size_stats:
        f = s.file_size_stats
        lines += ["", "Original file size statistics:",
                  f"  min: {_bytes(f['min'])}  max: {_bytes(f['max'])}  mean: {_bytes(f['mean'])}  "
                  f"total: {_bytes(f['total'])}"]
    if s.dynamic_range:
        d = s.dynamic_range
        lines += ["", "Dynamic range (stored pixels):",
                  f"  min: {d['min']:.6g}  max: {d['max']:.6g}  mean of image means: {d['mean']:.6g}"]
    if s.failed_images is not None:
        lines += ["", f"Failed images: {s.failed_images:,}"]
    lines += ["", "Append history:" if s.append_history else "Append history: none"]
    for entry in s.append_history:  # end_index is exclusive: print the inclusive range
        count, start = int(entry.get("appended_count", 0)), int(entry.get("start_index", 0))
        where = f"indices {start:,} to {start + count - 1:,}" if count else f"at index {start:,}"
        lines.append(f"  +{count:,} images ({where})")
    lines.append(RULE)
    return lines


def _distribution(counts: dict[str, int], total: int) -> list[str]:
    total = max(total, 1)
    items = list(counts.items())
    lines = [f"  {k}: {v:,} ({100.0 * v / total:.1f}%)" for k, v in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        rest = sum(v for _, v in items[MAX_LISTED:])
        lines.append(f"  ... {len(items) - MAX_LISTED:,} more: {rest:,} ({100.0 * rest / total:.1f}%)")
    return lines


def _basename(loc: StoreLocation) -> str:
    return str(loc).rsplit("/", 1)[-1] if storage.is_url(loc) else Path(loc).name


def _shape(shape: tuple[int, ...] | None) -> str:
    return "(" + ", ".join(str(v) for v in shape or ()) + ")"


def _bytes(n: float) -> str:
    if abs(n) < 1024:
        return f"{n:,.0f} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if abs(n) < 1024 or unit == "TB":
            break
    return f"{n:,.2f} {unit}"
