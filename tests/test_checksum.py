"""Checksummed inner chunks and the max_pixels option (issue 10).

The default inner chain ends with the Zarr v3 ``crc32c`` codec: zarr-python and tensorstore read
such stores like any other, ``checksum=False`` / ``--no-checksum`` leave it out, and an append
keeps the chain the store already has. ``max_pixels`` / ``--max-pixels`` bound the pixel count
of one image (height x width x channels); a larger image is a per-image error.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from PIL import Image

import images_to_zarr as i2z
from conftest import crc32c, smooth_images
from images_to_zarr.reader import open_store


def inner_codecs(store: Path) -> list[str]:
    meta = json.loads((store / "images" / "zarr.json").read_text())
    (sharding,) = meta["codecs"]
    return [c["name"] for c in sharding["configuration"]["codecs"]]


def shard_chunks(shard: Path, n_chunks: int) -> list[bytes]:
    """The encoded inner chunks of a shard (index at the end), in index order; b"" when empty."""
    b = shard.read_bytes()
    idx = b[-(16 * n_chunks + 4):-4]
    out = []
    for k in range(n_chunks):
        off, size = struct.unpack_from("<QQ", idx, 16 * k)
        out.append(b"" if off == 2**64 - 1 else b[off:off + size])
    return out


@pytest.mark.parametrize("compressor, chain", [("lz4", ["bytes", "blosc", "crc32c"]),
                                               ("zstd", ["bytes", "zstd", "crc32c"]),
                                               ("gzip", ["bytes", "gzip", "crc32c"]),
                                               ("none", ["bytes", "crc32c"])])
def test_default_chain_ends_with_crc32c_and_other_readers_agree(tmp_path: Path, compressor: str, chain) -> None:
    import tensorstore as ts

    arr = smooth_images(7, 2, 40, 36, "uint16", seed=5)
    store = i2z.convert(tmp_path / "c.zarr", images=arr, chunk_shape=(2, 16, 16), shard_images=4,
                        compressor=compressor, progress=False)
    assert inner_codecs(store) == chain
    np.testing.assert_array_equal(zarr.open_array(store / "images", mode="r")[...], arr)
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(store / "images")}}).result()
    np.testing.assert_array_equal(t.read().result(), arr)
    np.testing.assert_array_equal(open_store(store)[:], arr)


def test_checksum_false_leaves_it_out(tmp_path: Path) -> None:
    arr = smooth_images(3, 1, 20, 20, "uint8", seed=1)
    on = i2z.convert(tmp_path / "on.zarr", images=arr, progress=False)
    off = i2z.convert(tmp_path / "off.zarr", images=arr, checksum=False, progress=False)
    assert inner_codecs(off) == ["bytes", "blosc"]
    np.testing.assert_array_equal(zarr.open_array(off / "images", mode="r")[...], arr)
    # Same payloads, each followed by the CRC-32C of itself (little endian) when on.
    shard = Path("images/c/0/0/0/0")
    for a, b in zip(shard_chunks(on / shard, 3), shard_chunks(off / shard, 3)):
        assert a[:-4] == b and a[-4:] == struct.pack("<I", crc32c(b))


@pytest.mark.parametrize("first, then", [(False, True), (True, False)])
def test_append_keeps_the_stores_chain_and_its_chunks(tmp_path: Path, first: bool, then: bool) -> None:
    a = smooth_images(6, 1, 24, 24, "uint8", seed=2)
    b = smooth_images(5, 1, 24, 24, "uint8", seed=3)
    store = i2z.convert(tmp_path / "a.zarr", images=a, shard_images=4, checksum=first, progress=False)
    chain = inner_codecs(store)
    assert ("crc32c" in chain) == first
    shards = store / "images" / "c"
    full_before = (shards / "0/0/0/0").read_bytes()
    partial_before = shard_chunks(shards / "1/0/0/0", 4)
    i2z.convert(store, images=b, append=True, checksum=then, progress=False)
    assert inner_codecs(store) == chain
    assert (shards / "0/0/0/0").read_bytes() == full_before
    # The half-filled shard is rewritten with the new images; the old chunks in it are the same bytes.
    assert shard_chunks(shards / "1/0/0/0", 4)[:2] == partial_before[:2]
    both = np.concatenate([a, b])
    np.testing.assert_array_equal(zarr.open_array(store / "images", mode="r")[...], both)
    np.testing.assert_array_equal(open_store(store)[:], both)


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "images_to_zarr.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def two_pngs(folder: Path) -> None:
    """big.png: 12 x 10 RGB (360 pixels with channels), small.png: 4 x 5 gray (20)."""
    folder.mkdir()
    Image.fromarray(np.full((12, 10, 3), 7, np.uint8)).save(folder / "big.png")
    Image.fromarray(np.full((4, 5), 9, np.uint8)).save(folder / "small.png")


def errors(store: Path) -> dict[str, str | None]:
    t = pq.read_table(store.parent / f"{store.stem}_metadata.parquet")
    return {Path(p).name: e for p, e in zip(t.column("source_path").to_pylist(), t.column("error").to_pylist())}


@pytest.mark.parametrize("limit, big_fails", [(359, True), (360, False)])
def test_max_pixels_makes_a_larger_image_a_per_image_error(tmp_path: Path, limit: int, big_fails: bool) -> None:
    two_pngs(tmp_path / "in")
    store = i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in", max_pixels=limit, pad=True, progress=False)
    errs = errors(store)
    assert errs["small.png"] is None
    if big_fails:
        assert "max_pixels" in errs["big.png"] and "359" in errs["big.png"]
    else:
        assert errs["big.png"] is None


def test_max_pixels_must_be_positive(tmp_path: Path) -> None:
    two_pngs(tmp_path / "in")
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_pixels"):
            i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in", max_pixels=bad, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_cli_no_checksum_and_max_pixels(tmp_path: Path) -> None:
    two_pngs(tmp_path / "in")
    r = cli("convert", tmp_path / "in", "--out", tmp_path / "a.zarr", "--no-checksum", "--max-pixels", "100",
            "--pad", "--no-progress")
    assert r.returncode == 0, r.stderr
    store = tmp_path / "a.zarr"
    assert inner_codecs(store) == ["bytes", "blosc"]
    errs = errors(store)
    assert "max_pixels" in errs["big.png"] and errs["small.png"] is None
    r = cli("convert", tmp_path / "in", "--out", tmp_path / "b.zarr", "--pad", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert inner_codecs(tmp_path / "b.zarr") == ["bytes", "blosc", "crc32c"]
    assert all(e is None for e in errors(tmp_path / "b.zarr").values())
    r = cli("convert", tmp_path / "in", "--out", tmp_path / "c.zarr", "--max-pixels", "0")
    assert r.returncode == 2 and "max-pixels" in r.stderr
