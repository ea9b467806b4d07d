"""``convert()``: argument checks, store naming, CSV join and the Parquet side-car.

Everything that touches pixels runs in the C++ engine (``_core``) with the GIL released. The
engine hands over each committed shard's records, which the side-car writer streams to disk.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from images_to_zarr import _core
from images_to_zarr import _storage as storage
from images_to_zarr._logging import logger
from images_to_zarr._progress import Monitor, StageLog, failure_limit
from images_to_zarr._s3_inputs import staged_inputs
from images_to_zarr._storage import StoreLocation
from images_to_zarr.catalog import Catalog, CatalogReader, FileKeys, RowsCatalog, StreamingCatalog, staging_folder
from images_to_zarr.metadata import SidecarWriter
from images_to_zarr.sidecar import open_sidecar

PathLike = str | os.PathLike


def resolve_store_path(output_dir: PathLike, metadata: PathLike | None) -> StoreLocation:
    """``OUT`` ending in ``.zarr`` is the store; else ``OUT/<csv-stem>.zarr`` or ``OUT/images.zarr``.

    ``OUT`` may be an ``s3://bucket/prefix`` URL (returned as a string)."""
    out = storage.location(output_dir)
    if str(out).endswith(".zarr"):
        return out
    name = Path(metadata).stem if metadata is not None else "images"
    return storage.join(out, f"{name}.zarr")


def parquet_path(store: StoreLocation) -> StoreLocation:
    return storage.join(storage.parent(store), f"{storage.stem(store)}_metadata.parquet")


def _as_list(folders: PathLike | Sequence[PathLike]) -> list[str]:
    if isinstance(folders, (str, os.PathLike)):
        return [os.fspath(folders)]
    return [os.fspath(f) for f in folders]


def _globs(patterns: str | Sequence[str] | None, what: str) -> list[str]:
    if patterns is None:
        return []
    out = [patterns] if isinstance(patterns, str) else [str(p) for p in patterns]
    if any(not p for p in out):
        raise ValueError(f"{what} patterns must not be empty")
    return out


def _fits_selectors(fits_extension: int | str | Sequence[int | str] | None) -> list[int | str] | None:
    if fits_extension is None:
        return None
    if isinstance(fits_extension, (int, str)):
        return [fits_extension]
    return list(fits_extension)


def _compressor(name: str) -> str:
    """Compressor names are case-insensitive (``"ZSTD"`` as in 0.3.5); stored lower-case."""
    valid = _core.compressor_names()
    if not isinstance(name, str) or name.lower() not in valid:
        raise ValueError(f"unknown compressor {name!r}; valid: {', '.join(valid)}")
    return name.lower()


def _resize(resize: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``(H, W)``, or one int ``S`` for a square ``(S, S)``."""
    if resize is None:
        return None
    size = [resize, resize] if isinstance(resize, (int, np.integer)) else resize
    try:
        ok = len(size) == 2 and all(not isinstance(v, bool) and int(v) == v and v > 0 for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"resize must be (height, width) or one size for a square, with positive integers, "
                         f"got {resize!r}")
    return int(size[0]), int(size[1])


def _workers(num_parallel_workers: int) -> int:
    """Worker threads; ``0`` = one per CPU (as many as ``os.cpu_count()``)."""
    if isinstance(num_parallel_workers, bool) or int(num_parallel_workers) != num_parallel_workers \
            or num_parallel_workers < 0:
        raise ValueError(f"num_parallel_workers must be an integer >= 0 (0 = one per CPU), got {num_parallel_workers!r}")
    return int(num_parallel_workers) or (os.cpu_count() or 1)


def _execute(conversion: Any, store: StoreLocation, *, append: bool, progress: bool, desc: str,
             file_keys: FileKeys | None, catalog: Callable[[int], Catalog | None], transform: Any = None,
             scheduler: Any = None, files: list[str] | None = None, options: dict[str, Any] | None = None,
             storage_options: dict[str, Any] | None = None, max_failures: int | str | None = None) -> dict[str, Any]:
    """Plans, writes the shards while streaming the side-car parts, then commits both (the C++
    commit layer publishes store and side-car as one unit). Anything failing aborts both.
    ``catalog(start_index)`` gives the user's columns once the plan knows the first index."""
    sidecar: SidecarWriter | None = None
    monitor = Monitor(progress, desc, max_failures, storage.name(parquet_path(store)))
    stages = StageLog()
    user: Catalog | None = None
    try:
        if scheduler is not None:
            from images_to_zarr import _distributed

            client = _distributed.connect(scheduler)
            plan = _distributed.plan(conversion, files or [], client, options or {})
        else:
            plan = conversion.plan()
        if plan["committed"]:
            monitor.close()
            conversion.commit()  # leftovers of the committed run are cleared; nothing is written
            return {"committed": True, **plan}
        stages.planned(plan)
        user = catalog(plan["start_index"])
        old = open_sidecar(store, plan["start_index"], {}, storage_options) if append else None
        sidecar = SidecarWriter(plan["sidecar_staging"], run_id=plan["run_id"], start=plan["start_index"],
                                total=plan["total_images"], file_keys=file_keys, catalog=user,
                                transform=transform, base_schema=old.last_schema() if old else None,
                                storage_options=storage_options)
        try:
            if scheduler is not None:
                result = _distributed.write(conversion, plan, files or [], client, progress, sidecar,
                                            warn=monitor.warn)
            else:
                result = conversion.run(monitor.callback, sidecar.write)
        finally:
            monitor.close()
        for w in result["warnings"]:
            logger.warning(w)
        monitor.check(result["failed"], plan["total_images"] - plan["start_index"])
        stages.written(result)
        sidecar.finish()
        conversion.commit()
        stages.committed(store)
    except BaseException:
        if sidecar is not None:
            sidecar.abort()
        if user is not None:
            user.close()
        conversion.abort()
        raise
    return result


def convert(
    output_dir: PathLike,
    folders: PathLike | Sequence[PathLike] | None = None,
    metadata: PathLike | None = None,
    recursive: bool = False,
    num_parallel_workers: int = 8,
    fits_extension: int | str | Sequence[int | str] | None = None,
    resize: int | tuple[int, int] | None = None,
    interpolation_order: int = 1,
    *,
    images: np.ndarray | None = None,
    image_metadata: list[dict[str, Any]] | None = None,
    chunk_shape: Sequence[int] = (1, 256, 256),
    compressor: str = "lz4",
    clevel: int = 1,
    checksum: bool = True,
    max_pixels: int = 2**31,
    max_channels: int | None = None,
    max_memory: int | None = None,
    overwrite: bool = False,
    append: bool = False,
    shard_images: int | None = None,
    dtype: str | np.dtype | None = None,
    pad: bool = False,
    resume: bool = False,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
    scheduler: Any = None,
    max_failures: int | str | None = None,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
) -> StoreLocation:
    """Convert image files (``folders``) or a 4-D array (``images``) into a sharded Zarr v3 store.

    Returns the store path. See the README for every option and the store layout.
    """
    if append and overwrite:
        raise ValueError("append and overwrite cannot both be True")
    if not 0 <= int(interpolation_order) <= 5:
        raise ValueError(f"interpolation_order must be between 0 and 5, got {interpolation_order}")
    if folders is None and images is None:
        raise ValueError("give either folders (image files) or images (a 4-D array)")
    if folders is not None and images is not None:
        raise ValueError("give folders or images, not both")
    if metadata is not None and not Path(metadata).is_file():
        raise FileNotFoundError(f"metadata file not found: {metadata}")
    compressor = _compressor(compressor)
    resize = _resize(resize)
    workers = _workers(num_parallel_workers)
    failure_limit(max_failures)  # a bad value fails before any work
    for name, value in (("max_channels", max_channels), ("max_memory", max_memory)):
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if resize is not None and images is not None:  # the engine stores arrays as given
        raise ValueError("resize applies to image files; an images= array is stored as given (resize it first)")
    if scheduler is not None and images is not None:
        raise ValueError("scheduler distributes file conversion; in-memory arrays are converted locally (omit scheduler)")

    include, exclude = _globs(include, "include"), _globs(exclude, "exclude")
    if images is not None and (include or exclude):
        raise ValueError("include/exclude select files; they do not apply to images=")
    store = resolve_store_path(output_dir, metadata)
    mode = "append" if append else "overwrite" if overwrite else "create"
    if append and not storage.exists(store, storage_options):
        raise FileNotFoundError(f"cannot append: store {store} does not exist")

    options: dict[str, Any] = {
        "chunk_shape": [int(v) for v in chunk_shape],
        "shard_images": int(shard_images) if shard_images else None,
        "compressor": compressor,
        "clevel": int(clevel),
        "checksum": bool(checksum),
        "max_pixels": int(max_pixels),
        "max_channels": int(max_channels) if max_channels is not None else None,
        "max_memory": int(max_memory) if max_memory is not None else None,
        "dtype": np.dtype(dtype).name if dtype is not None else None,
        "fits_extension": _fits_selectors(fits_extension),
        "resize": resize,
        "interpolation_order": int(interpolation_order),
        "pad": bool(pad),
        "num_workers": workers,
        "resume": bool(resume),
        "storage_options": storage_options,
    }
    if not storage.is_url(store):
        store.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    meta_name = f"{storage.stem(store)}_metadata.parquet"
    creation_info = {
        "fits_extension": fits_extension if fits_extension is None or isinstance(fits_extension, (int, str)) else list(fits_extension),
        "recursive_scan": bool(recursive),
        "source_folders": [] if folders is None else _as_list(folders),
        "direct_memory_conversion": images is not None,
        "resize": list(resize) if resize else None,
        "interpolation_order": int(interpolation_order),
        "include": include,
        "exclude": exclude,
    }
    options["extra_attributes_json"] = json.dumps(
        {
            "metadata_file": meta_name,
            "supported_extensions": sorted(_core.supported_extensions()),
            "creation_info": creation_info,
        }
    )

    if images is not None:
        arr = np.asarray(images)
        if arr.ndim != 4:
            raise ValueError(f"images must be a 4-D array (N, C, H, W), got shape {arr.shape}")
        if arr.dtype.byteorder == ">" or arr.dtype.kind not in "uif" or arr.dtype.itemsize > 8:
            if arr.dtype.kind not in "uif":
                raise ValueError(f"images must have a numeric dtype, got {arr.dtype}")
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if image_metadata is not None and len(image_metadata) != arr.shape[0]:
            raise ValueError(f"image_metadata has {len(image_metadata)} rows but images has {arr.shape[0]}")
        conversion = _core.convert_array(os.fspath(store), np.ascontiguousarray(arr), options, mode)
        result = _execute(conversion, store, append=append, progress=progress, desc="images", file_keys=None,
                          catalog=lambda start: None if image_metadata is None else RowsCatalog(image_metadata, start),
                          storage_options=storage_options, max_failures=max_failures)
    else:
        folder_list = _as_list(folders)
        if not storage.is_url(store) and any(storage.is_url(f) for f in folder_list):
            options["storage_options"] = None  # they were for the s3:// inputs
        with staged_inputs(folder_list, recursive, storage_options, store, include, exclude) as inputs:
            started = time.perf_counter()
            files, warnings = _core.discover_files(inputs.folders, bool(recursive), include, exclude)
            StageLog.discovered(len(files), inputs.folders, time.perf_counter() - started)
            for w in warnings:
                logger.warning(w)
            if inputs.staged:  # the s3:// objects' future local copies, in the same path order
                files = sorted(set(files).union(inputs.staged))
            if not files:
                raise ValueError(f"no supported image files found in {', '.join(folder_list)}")
            reader = CatalogReader(metadata) if metadata is not None else None
            keys = FileKeys(files, inputs.key_roots)

            conversion = _core.convert_files(os.fspath(store), files, options, mode)  # takes the lock
            try:
                inputs.fetch(options["num_workers"], progress)  # only now: the lock is held
                # The image keys go to the join's spill files now, so that the file list is
                # not held during the run (the engine has its own copy).
                joined = (StreamingCatalog(reader, map(keys, files), len(files), staging_folder(store))
                          if reader is not None else None)
            except BaseException:
                conversion.abort()
                raise

            def catalog(start: int) -> Catalog | None:
                return joined.at(start) if joined is not None else None

            # The engine has a copy and the side-car takes the paths from the records: only Dask
            # (which hands each task its files) keeps the list.
            task_files = files if scheduler is not None else None
            del files
            try:
                result = _execute(conversion, store, append=append, progress=progress, desc="converting",
                                  file_keys=keys, catalog=catalog, transform=inputs.restore_urls,
                                  scheduler=scheduler, files=task_files, options=options,
                                  storage_options=options["storage_options"], max_failures=max_failures)
            finally:
                if joined is not None:
                    joined.close()  # its spill folder, whatever happened
    if result.get("committed"):
        logger.info(f"nothing to resume: run {result['run_id']} already wrote images {result['start_index']}.."
                    f"{result['total_images'] - 1} of {store} with these inputs and options")
        return store
    n, failed = result["shape"][0] - result["start_index"], result["failed"]
    verb = "appended" if append else "converted"
    msg = f"{verb} {n - failed} of {n} images into {store} (shape {tuple(result['shape'])}, {result['dtype']})"
    if failed:
        logger.warning(f"{msg}; {failed} failed (see the 'error' column of {meta_name})")
    else:
        logger.info(msg)
    return store
