"""``open_store()``: fast random access to the images of a store (the C++ ``_core.Reader``).

``ImageStore`` is picklable (only the location and its options travel) and reopens itself lazily
in a new process, so it can be handed to a PyTorch ``DataLoader`` with worker processes. The
store may be a local path or an ``s3://bucket/prefix/x.zarr`` URL (ranged GETs on S3).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from images_to_zarr import _core
from images_to_zarr import _storage as storage
from images_to_zarr._storage import StoreLocation

PathLike = str | os.PathLike


class ImageStore:
    """Read-only view of the ``images`` array of a store: ``len(s)``, ``s[i]`` -> ``(C, H, W)``,
    ``s[a:b]``, ``s[a:b:step]`` and ``s[[i, j, ...]]`` -> ``(k, C, H, W)``.

    A context manager: ``with open_store(p) as s: ...`` closes it at the end (``close()``
    releases the reader's threads and open files; using a closed store raises ``ValueError``)."""

    def __init__(self, store: PathLike, threads: int = 0, storage_options: dict[str, Any] | None = None) -> None:
        self._path = os.fspath(store)
        self._threads = int(threads)
        self._storage_options = dict(storage_options) if storage_options else None
        self._reader: Any = None
        self._pid = -1
        self._metadata: Any = None
        self._metadata_loaded = False
        self._closed = False
        self._r()  # fail now (FileNotFoundError / ValueError), not at the first read

    def close(self) -> None:
        """Releases the reader (its threads and open files); idempotent."""
        self._reader = None
        self._metadata, self._metadata_loaded = None, False
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ImageStore:
        self._r()  # a closed store cannot be re-entered
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _r(self) -> Any:
        if self._closed:
            raise ValueError(f"ImageStore {self._path!r} is closed")
        # A reader opened in another process (fork) has no worker threads there: reopen.
        if self._reader is None or self._pid != os.getpid():
            self._reader = _core.Reader(self._path, self._threads, self._storage_options)
            self._pid = os.getpid()
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self._path, "threads": self._threads, "storage_options": self._storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["path"]
        self._threads = state.get("threads", 0)
        self._storage_options = state.get("storage_options")
        self._reader = None
        self._pid = -1
        self._metadata = None
        self._metadata_loaded = False
        self._closed = False

    @property
    def path(self) -> StoreLocation:
        """A ``Path``, or the ``s3://`` URL as a string."""
        return storage.location(self._path)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._r().shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._r().dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return int(self._r().shape[0])

    @property
    def attrs(self) -> dict[str, Any]:
        """The store's group attributes (``{}`` for a bare array)."""
        return json.loads(self._r().attrs_json)

    @property
    def metadata(self) -> Any:
        """The Parquet side-car as a ``pyarrow.Table`` of ``len(self)`` rows (row i = image i), or
        None when there is none. ``ValueError`` names a side-car that does not match the store."""
        if not self._metadata_loaded:
            from images_to_zarr.sidecar import open_sidecar

            sidecar = open_sidecar(self.path, len(self), self.attrs, self._storage_options)
            if sidecar is not None:
                if sidecar.problem:
                    raise ValueError(sidecar.problem)
                self._metadata = sidecar.read()
            self._metadata_loaded = True
        return self._metadata

    def _index(self, i: int) -> int:
        n = len(self)
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f"index {i} is out of range for {n} images")
        return j

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            if not key:
                return self[:]
            head = self[key[0]]
            rest = key[1:]
            return head[rest] if isinstance(key[0], (int, np.integer)) else head[(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            return self._r().read_indices([self._index(int(key))])[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._r().read_range(start, max(start, stop))
            return self._r().read_indices(np.arange(start, stop, step, dtype=np.int64))
        idx = np.asarray(key)
        if idx.ndim == 0 and idx.dtype.kind in "iu":
            return self[int(idx)]
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise IndexError(f"boolean index of shape {idx.shape} does not match {len(self)} images")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise IndexError(f"unsupported index {key!r}: use an int, a slice or a 1-D list of ints")
        idx = idx.astype(np.int64, copy=True)
        n = len(self)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {int(idx[bad][0])} is out of range for {n} images")
        idx[idx < 0] += n
        return self._r().read_indices(idx)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        if self._closed:
            return f"ImageStore({self._path!r}, closed)"
        return f"ImageStore({self._path!r}, shape={self.shape}, dtype={self.dtype})"


def open_store(store: PathLike, threads: int = 0, storage_options: dict[str, Any] | None = None) -> ImageStore:
    """Open a store (the ``.zarr`` directory or an ``s3://`` URL) for random access; see
    :class:`ImageStore`.

    ``threads``: decoding threads per read, the caller's included (0 = up to 8). Use 1 in
    DataLoader worker processes to avoid oversubscribing the cores. ``storage_options``: S3
    endpoint, credentials and tuning (README, "Object storage"); they travel when pickled.
    """
    return ImageStore(store, threads, storage_options)
