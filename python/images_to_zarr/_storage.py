"""Where stores and side-cars live: local paths or ``s3://`` URLs (through the C++ S3 store)."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

from images_to_zarr import _core

StoreLocation = Path | str  # a local Path, or an "s3://bucket/prefix/name.zarr" string


def is_url(location: Any) -> bool:
    return isinstance(location, str) and location.startswith("s3://")


def location(path: str | os.PathLike) -> StoreLocation:
    text = os.fspath(path)
    return text.rstrip("/") if is_url(text) else Path(text)


def parent(loc: StoreLocation) -> StoreLocation:
    return posixpath.dirname(loc) if is_url(loc) else loc.parent  # type: ignore[union-attr]


def name(loc: StoreLocation) -> str:
    return posixpath.basename(loc) if is_url(loc) else loc.name  # type: ignore[union-attr,arg-type]


def join(loc: StoreLocation, name: str) -> StoreLocation:
    return f"{loc}/{name}" if is_url(loc) else loc / name  # type: ignore[operator]


def stem(loc: StoreLocation) -> str:
    name = posixpath.basename(loc) if is_url(loc) else loc.name  # type: ignore[union-attr]
    return name[: -len(".zarr")] if name.endswith(".zarr") else os.path.splitext(name)[0]


def _split(url: str) -> tuple[str, str]:
    head, name = url.rsplit("/", 1)
    return head, name


def read_bytes(loc: StoreLocation, storage_options: dict[str, Any] | None = None) -> bytes | None:
    if is_url(loc):
        head, name = _split(loc)  # type: ignore[arg-type]
        return _core.Store.open(head, storage_options or {}).get(name)
    p = Path(loc)
    return p.read_bytes() if p.is_file() else None


def write_bytes(loc: StoreLocation, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Atomic: a temporary file renamed into place locally; one PUT on S3."""
    if is_url(loc):
        head, name = _split(loc)  # type: ignore[arg-type]
        _core.Store.open(head, storage_options or {}).set(name, data)
        return
    p = Path(loc)
    tmp = p.with_name(p.name + ".i2z-part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except OSError as e:
        # A full disk fails inside write(), whose error names no file; leave no partial file behind.
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, f"cannot write {p}: {e.strerror}") from e


def exists(loc: StoreLocation, storage_options: dict[str, Any] | None = None) -> bool:
    if is_url(loc):
        return _core.Store.open(loc, storage_options or {}).size("zarr.json") is not None
    return Path(loc).exists()
