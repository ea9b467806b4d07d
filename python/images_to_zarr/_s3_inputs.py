"""Input images on S3: ``convert(folders=["s3://bucket/images/"])``.

Each ``s3://`` entry is listed (the C++ store paginates), its objects with a supported extension
are downloaded in parallel into a temporary folder that mirrors their key layout, and that folder
is converted like a local one (same order, same ``filename`` keys, same CSV join). The side-car's
``source_path`` names the ``s3://`` objects, and the copies are removed at the end.

The temporary folder's name depends only on the inputs and the store, so ``resume=True`` finds
the same file paths again (the plan fingerprint covers them).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from images_to_zarr import _core
from images_to_zarr import _storage as storage
from images_to_zarr._logging import logger


@dataclass
class LocalInputs:
    """``folders`` to convert (local entries as given, ``s3://`` ones replaced by their copies)."""

    folders: list[str]
    urls: dict[str, str] = field(default_factory=dict)  # normalised local copy -> s3:// URL

    def restore_urls(self, table: pa.Table) -> pa.Table:
        """``source_path`` (and paths quoted in ``error``) name the ``s3://`` objects."""
        if not self.urls or "source_path" not in table.column_names:
            return table
        local = table.column("source_path").to_pylist()
        urls = [self.urls.get(os.path.normpath(p), p) if p else p for p in local]
        table = table.set_column(table.column_names.index("source_path"), "source_path", pa.array(urls, pa.string()))
        if "error" in table.column_names:
            errors = [e.replace(p, u) if e and p and p != u else e
                      for e, p, u in zip(table.column("error").to_pylist(), local, urls)]
            table = table.set_column(table.column_names.index("error"), "error", pa.array(errors, pa.string()))
        return table


def _wanted(key: str, recursive: bool, extensions: tuple[str, ...]) -> bool:
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\0" in key:
        return False  # no safe local path for it (or an S3 "folder" marker)
    return (recursive or len(parts) == 1) and key.lower().endswith(extensions)


def _listing(url: str, recursive: bool, extensions: tuple[str, ...],
             storage_options: dict[str, Any] | None) -> tuple[Any, str, list[str]]:
    """(store, its URL, the keys to fetch) for a folder URL, or for one object's URL."""
    folder = _core.Store.open(url, storage_options or {})
    keys = sorted(k for k in folder.list("") if _wanted(k, recursive, extensions))
    if keys or url.endswith("/"):
        return folder, url.rstrip("/"), keys
    head, name = url.rstrip("/").rsplit("/", 1)
    if head.count("/") >= 2 and _wanted(name, False, extensions):  # s3://bucket/.../a.png
        parent = _core.Store.open(head, storage_options or {})
        if parent.size(name) is not None:
            return parent, head, [name]
    return folder, url.rstrip("/"), []


@contextmanager
def local_inputs(folders: list[str], recursive: bool, storage_options: dict[str, Any] | None,
                 store: storage.StoreLocation, workers: int = 8, progress: bool = False) -> Iterator[LocalInputs]:
    """Downloads the ``s3://`` entries of ``folders``; a no-op when there are none."""
    if not any(storage.is_url(f) for f in folders):
        yield LocalInputs(list(folders))
        return
    extensions = tuple(e.lower() for e in _core.supported_extensions())
    digest = hashlib.sha256(repr((folders, bool(recursive), str(store))).encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"i2z-s3-inputs-{digest}"
    shutil.rmtree(root, ignore_errors=True)
    try:
        out = LocalInputs([])
        jobs: list[tuple[Any, str, Path]] = []
        for i, entry in enumerate(folders):
            if not storage.is_url(entry):
                out.folders.append(entry)
                continue
            src, base, keys = _listing(entry, recursive, extensions, storage_options)
            dest = root / str(i)
            dest.mkdir(parents=True)
            single = keys and base != entry.rstrip("/")
            out.folders.append(str(dest / keys[0]) if single else str(dest))
            for key in keys:
                path = dest.joinpath(*key.split("/"))
                out.urls[os.path.normpath(path)] = f"{base}/{key}"
                jobs.append((src, key, path))
        _download(jobs, max(4, min(32, 2 * workers)), progress)
        yield out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _download(jobs: list[tuple[Any, str, Path]], threads: int, progress: bool) -> None:
    def fetch(job: tuple[Any, str, Path]) -> int:
        src, key, path = job
        data = src.get(key)  # releases the GIL: the downloads overlap
        if data is None:
            raise FileNotFoundError(f"input object vanished while listing: {src.describe()}/{key}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return len(data)

    bar = None
    if progress and jobs:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="downloading", unit="img", dynamic_ncols=True, leave=False)
    total = 0
    with ThreadPoolExecutor(threads) as pool:
        for n in pool.map(fetch, jobs):
            total += n
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    logger.debug(f"downloaded {len(jobs)} input objects ({total:,} bytes) from S3")
