"""Input images on S3: ``convert(folders=["s3://bucket/images/"])``.

Each ``s3://`` entry is listed first (the C++ store paginates; nothing local is touched), which
gives the local paths its objects will have in a staging folder that mirrors their key layout,
so the file list (same order, same ``filename`` keys, same CSV join as a local folder) is known
before the writer lock is taken. Only after the engine holds the lock does ``fetch()`` create
that folder and download into it, in ranged reads of ``_CHUNK`` bytes: per-object memory is one
chunk and the bytes in flight are at most ``threads x _CHUNK``. The side-car's ``source_path``
names the ``s3://`` objects, and the folder is removed at the end.

The staging folder is private (created with mode 0700 and ``O_EXCL`` semantics, so a folder
that exists is never adopted): beside a local store it is ``.<store>.i2z-inputs`` -- only the
lock holder ever creates or removes it, and its path is stable, so ``resume=True`` finds the
same file paths again (the plan fingerprint covers them); for an ``s3://`` store (which has no
lock) it is a new random folder in the temp directory.
"""

from __future__ import annotations

import os
import secrets
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

_CHUNK = 8 << 20  # bytes per ranged read


@dataclass
class StagedInputs:
    """The local ``folders`` to discover, and the ``s3://`` objects' future local ``staged``
    paths (in ``root``, created by ``fetch()``). ``key_roots`` are the folders ``filename``
    keys are relative to."""

    folders: list[str]
    root: Path | None = None
    staged: list[str] = field(default_factory=list)
    key_roots: list[str] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # normalised local copy -> s3:// URL
    jobs: list[tuple[Any, str, Path]] = field(default_factory=list)
    created: bool = False  # by this run's fetch(): only then is it ours to remove

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

    def fetch(self, workers: int = 8, progress: bool = False) -> None:
        """Creates the staging folder and downloads the objects. Call with the writer lock held."""
        if self.root is None:
            return
        if self.root.name.startswith(".") and self.root.exists():
            shutil.rmtree(self.root)  # beside a local store: a killed run's, and we hold the lock
        os.mkdir(self.root, 0o700)  # fails if it exists: never adopt a folder we did not create
        self.created = True
        _download(self.jobs, max(4, min(32, 2 * workers)), progress)

    def remove(self) -> None:
        if self.created and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _wanted(key: str, recursive: bool, extensions: tuple[str, ...], include: list[str], exclude: list[str]) -> bool:
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\0" in key:
        return False  # no safe local path for it (or an S3 "folder" marker)
    return (recursive or len(parts) == 1) and key.lower().endswith(extensions) and _core.selected(key, include, exclude)


def _listing(url: str, recursive: bool, extensions: tuple[str, ...], include: list[str], exclude: list[str],
             storage_options: dict[str, Any] | None) -> tuple[Any, str, list[str]]:
    """(store, its URL, the keys to fetch) for a folder URL, or for one object's URL."""
    folder = _core.Store.open(url, storage_options or {})
    keys = sorted(k for k in folder.list("") if _wanted(k, recursive, extensions, include, exclude))
    if keys or url.endswith("/"):
        return folder, url.rstrip("/"), keys
    head, name = url.rstrip("/").rsplit("/", 1)
    if head.count("/") >= 2 and _wanted(name, False, extensions, include, exclude):  # s3://bucket/.../a.png
        parent = _core.Store.open(head, storage_options or {})
        if parent.size(name) is not None:
            return parent, head, [name]
    return folder, url.rstrip("/"), []


def _staging_root(store: storage.StoreLocation) -> Path:
    if storage.is_url(store):
        return Path(tempfile.gettempdir()) / f"i2z-s3-inputs-{secrets.token_hex(8)}"
    p = Path(os.path.abspath(os.fspath(store)))
    return p.with_name(f".{p.name}.i2z-inputs")


@contextmanager
def staged_inputs(folders: list[str], recursive: bool, storage_options: dict[str, Any] | None,
                  store: storage.StoreLocation, include: list[str], exclude: list[str]) -> Iterator[StagedInputs]:
    """Lists the ``s3://`` entries of ``folders`` (a no-op when there are none); removes the
    staging folder at the end."""
    if not any(storage.is_url(f) for f in folders):
        yield StagedInputs(list(folders), key_roots=list(folders))
        return
    extensions = tuple(e.lower() for e in _core.supported_extensions())
    out = StagedInputs([], root=_staging_root(store))
    assert out.root is not None
    for i, entry in enumerate(folders):
        if not storage.is_url(entry):
            out.folders.append(entry)
            out.key_roots.append(entry)
            continue
        src, base, keys = _listing(entry, recursive, extensions, include, exclude, storage_options)
        dest = out.root / str(i)
        single = keys and base != entry.rstrip("/")
        out.key_roots.append(str(dest / keys[0]) if single else str(dest))
        for key in keys:
            path = dest.joinpath(*key.split("/"))
            out.urls[os.path.normpath(path)] = f"{base}/{key}"
            out.staged.append(str(path))
            out.jobs.append((src, key, path))
    try:
        yield out
    finally:
        out.remove()


def _download(jobs: list[tuple[Any, str, Path]], threads: int, progress: bool) -> None:
    def fetch(job: tuple[Any, str, Path]) -> int:
        src, key, path = job
        size = src.size(key)
        if size is None:
            raise FileNotFoundError(f"input object vanished while listing: {src.describe()}/{key}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for offset in range(0, size, _CHUNK):
                data = src.get_range(key, offset, min(_CHUNK, size - offset))  # releases the GIL
                if data is None:
                    raise FileNotFoundError(f"input object vanished while reading: {src.describe()}/{key}")
                f.write(data)
                del data
        return size

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
