"""In-memory conversion (issue 2): stores read back by zarr-python (and tensorstore) equal the input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

import images_to_zarr as i2z
from conftest import smooth_images

DTYPES = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64"]


def convert_mem(tmp_path: Path, arr: np.ndarray, **kw) -> Path:
    return i2z.convert(tmp_path / "out.zarr", images=arr, progress=False, **kw)


def read_back(store: Path) -> np.ndarray:
    return zarr.open_array(store / "images", mode="r")[...]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips(tmp_path, dtype):
    arr = smooth_images(5, 3, 40, 33, dtype, seed=1)
    store = convert_mem(tmp_path, arr, chunk_shape=(2, 16, 16), shard_images=4)
    got = read_back(store)
    assert got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("compressor", ["lz4", "blosc", "zstd", "gzip", "none"])
@pytest.mark.parametrize("clevel", [1, 5])
def test_every_compressor(tmp_path, compressor, clevel):
    arr = smooth_images(4, 1, 32, 32, "uint16", seed=2)
    store = convert_mem(tmp_path, arr, compressor=compressor, clevel=clevel)
    np.testing.assert_array_equal(read_back(store), arr)
    meta = json.loads((store / "images" / "zarr.json").read_text())
    inner = [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]]
    expected = {"lz4": ["bytes", "blosc"], "blosc": ["bytes", "blosc"], "zstd": ["bytes", "zstd"],
                "gzip": ["bytes", "gzip"], "none": ["bytes"]}[compressor]
    assert inner == expected + ["crc32c"]  # checksum=True by default


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64"])
@pytest.mark.parametrize("compressor", ["lz4", "blosc"])
def test_lz4_is_byte_shuffle_for_every_dtype(tmp_path, dtype, compressor):
    # design.md: lz4 = blosc(cname lz4, shuffle), also for 1-byte types (no bitshuffle).
    arr = smooth_images(3, 3, 40, 40, dtype, seed=9)
    store = convert_mem(tmp_path, arr, compressor=compressor, chunk_shape=(1, 40, 40), shard_images=4)
    meta = json.loads((store / "images" / "zarr.json").read_text())
    cfg = meta["codecs"][0]["configuration"]["codecs"][1]["configuration"]
    assert cfg["shuffle"] == "shuffle" and cfg["cname"] == "lz4" and cfg["typesize"] == arr.dtype.itemsize
    # The first chunk's c-blosc frame header (index at the end, so it starts at offset 0):
    # bit 2 of the flags byte is BLOSC_DOBITSHUFFLE, byte 3 the typesize.
    head = (store / "images" / "c" / "0" / "0" / "0" / "0").read_bytes()[:16]
    assert head[2] & 0x4 == 0 and head[3] == arr.dtype.itemsize
    np.testing.assert_array_equal(read_back(store), arr)


@pytest.mark.parametrize("channels,n", [(1, 1), (1, 2), (3, 1)])
def test_full_width_chunks_with_a_partial_last_band(tmp_path, channels, n):
    # chunk (1, 16, W) of 1-channel images: bands of whole rows, encoded in place (the last, partial
    # band padded); other shapes are gathered. zarr-python must read the same pixels either way.
    arr = smooth_images(5, channels, 50, 40, "uint16", seed=11)
    store = convert_mem(tmp_path, arr, chunk_shape=(n, 16, 40), shard_images=4)
    a = zarr.open_array(store / "images", mode="r")
    assert a.chunks == (n, channels, 16, 40)
    np.testing.assert_array_equal(a[...], arr)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_edges_not_multiple_of_chunk_or_shard(tmp_path, channels):
    arr = smooth_images(7, channels, 300, 300, "uint8", seed=3)
    store = convert_mem(tmp_path, arr, chunk_shape=(2, 128, 128), shard_images=4)
    a = zarr.open_array(store / "images", mode="r")
    assert a.shape == (7, channels, 300, 300)
    assert a.shards == (4, channels, 384, 384)  # spatial dims rounded up to whole inner chunks
    assert a.chunks == (2, channels, 128, 128)
    np.testing.assert_array_equal(a[...], arr)
    shards = sorted(p.relative_to(store / "images").as_posix() for p in (store / "images" / "c").rglob("*") if p.is_file())
    assert shards == ["c/0/0/0/0", "c/1/0/0/0"]
    assert len(shards) == math.ceil(7 / 4)


def test_metadata_declares_sharding_and_attributes(tmp_path):
    arr = smooth_images(3, 3, 20, 24, "uint8", seed=4)
    store = convert_mem(tmp_path, arr)
    meta = json.loads((store / "images" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["node_type"] == "array"
    assert meta["dimension_names"] == ["image", "channel", "y", "x"]
    assert meta["fill_value"] == 0
    (codec,) = meta["codecs"]
    assert codec["name"] == "sharding_indexed"
    cfg = codec["configuration"]
    assert cfg["index_location"] == "end"
    assert cfg["index_codecs"] == [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
    blosc = cfg["codecs"][1]
    assert blosc["name"] == "blosc" and blosc["configuration"]["cname"] == "lz4"
    group = zarr.open_group(store, mode="r")
    attrs = dict(group.attrs)
    assert attrs["total_images"] == 3
    assert attrs["image_shape"] == [3, 20, 24]
    assert attrs["compressor"] == "lz4" and attrs["compression_level"] == 1
    assert attrs["metadata_file"] == "out_metadata.parquet"
    assert attrs["creation_info"]["direct_memory_conversion"] is True
    assert attrs["software"]["name"] == "images_to_zarr"
    assert attrs["append_history"] == []
    assert attrs["shard_shape"][1:] == [3, 20, 24]


def test_sidecar_rows_and_stats(tmp_path):
    arr = smooth_images(3, 1, 16, 16, "int16", seed=5)
    rows = [{"filename": f"f{i}.png", "label": i * 10} for i in range(3)]
    store = convert_mem(tmp_path, arr, image_metadata=rows)
    t = pq.read_table(tmp_path / "out_metadata.parquet").to_pandas() if False else pq.read_table(tmp_path / "out_metadata.parquet")
    assert t.num_rows == 3
    assert t.column("label").to_pylist() == [0, 10, 20]
    assert t.column("filename").to_pylist() == ["f0.png", "f1.png", "f2.png"]
    for i in range(3):
        assert t.column("min_value")[i].as_py() == arr[i].min()
        assert t.column("max_value")[i].as_py() == arr[i].max()
        assert t.column("mean_value")[i].as_py() == pytest.approx(arr[i].mean(), rel=1e-12)
    assert t.column("error").null_count == 3
    assert store == tmp_path / "out.zarr"


def test_non_contiguous_and_dtype_cast(tmp_path):
    base = smooth_images(4, 3, 30, 20, "float64", seed=6)
    view = base[:, :, ::-1, :]  # not C-contiguous: copied
    store = convert_mem(tmp_path, view, dtype="uint8")
    got = read_back(store)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.clip(np.rint(view), 0, 255).astype(np.uint8))


def test_store_naming(tmp_path):
    arr = smooth_images(1, 1, 8, 8, "uint8")
    store = i2z.convert(tmp_path / "dir", images=arr, progress=False)
    assert store == tmp_path / "dir" / "images.zarr"
    assert (tmp_path / "dir" / "images_metadata.parquet" / "part-000000000000.parquet").is_file()


def test_errors(tmp_path):
    arr = smooth_images(2, 1, 8, 8, "uint8")
    with pytest.raises(ValueError, match="append"):
        i2z.convert(tmp_path / "a.zarr", images=arr, append=True, overwrite=True)
    with pytest.raises(ValueError, match="4-D"):
        i2z.convert(tmp_path / "a.zarr", images=arr[0], progress=False)
    with pytest.raises(ValueError, match="lz4, blosc, zstd, gzip, zlib, none"):
        i2z.convert(tmp_path / "a.zarr", images=arr, compressor="snappy", progress=False)
    with pytest.raises(ValueError, match="interpolation_order"):
        i2z.convert(tmp_path / "a.zarr", images=arr, interpolation_order=6)
    with pytest.raises(ValueError, match="folders"):
        i2z.convert(tmp_path / "a.zarr")
    with pytest.raises(FileNotFoundError):
        i2z.convert(tmp_path / "a.zarr", images=arr, append=True)
    with pytest.raises(ValueError, match="clevel|level"):
        i2z.convert(tmp_path / "a.zarr", images=arr, compressor="gzip", clevel=42, progress=False)
    with pytest.raises(ValueError, match="multiple"):
        i2z.convert(tmp_path / "a.zarr", images=arr, chunk_shape=(2, 8, 8), shard_images=3, progress=False)
    store = i2z.convert(tmp_path / "a.zarr", images=arr, progress=False)
    with pytest.raises(FileExistsError):
        i2z.convert(store, images=arr, progress=False)
    # overwrite replaces a Zarr store ...
    i2z.convert(store, images=arr[:1], overwrite=True, progress=False)
    assert read_back(store).shape[0] == 1
    # ... but never a directory that is not one.
    plain = tmp_path / "not_a_store.zarr"
    plain.mkdir()
    (plain / "precious.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a Zarr store"):
        i2z.convert(plain, images=arr, overwrite=True, progress=False)
    assert (plain / "precious.txt").read_text() == "keep me"


def test_deterministic_across_thread_counts(tmp_path):
    arr = smooth_images(9, 3, 64, 48, "uint16", seed=7)
    a = i2z.convert(tmp_path / "a.zarr", images=arr, chunk_shape=(1, 32, 32), shard_images=4, num_parallel_workers=1, progress=False)
    b = i2z.convert(tmp_path / "b.zarr", images=arr, chunk_shape=(1, 32, 32), shard_images=4, num_parallel_workers=4, progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for f in files_a:
        if f == Path("zarr.json"):  # names its own side-car file, otherwise equal
            ga, gb = (json.loads((s / f).read_text()) for s in (a, b))
            assert ga["attributes"].pop("metadata_file") != gb["attributes"].pop("metadata_file")
            for g in (ga, gb):  # each run has its own id
                g["attributes"].pop("run_id")
                assert [r.pop("run_id") for r in g["attributes"]["runs"]]
            assert ga == gb
            continue
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_zarr_python_codec_pipeline_decodes_our_shard(tmp_path):
    """Byte-level: a 4x4 uint8 shard we write equals what zarr-python writes, after its own decode."""
    arr = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    store = convert_mem(tmp_path, arr, chunk_shape=(1, 2, 2), compressor="none", checksum=False)
    ours = (store / "images" / "c" / "0" / "0" / "0" / "0").read_bytes()
    shards_n = json.loads((store / "images" / "zarr.json").read_text())["chunk_grid"]["configuration"]["chunk_shape"][0]
    ref = zarr.create_array(zarr.storage.MemoryStore(), shape=(1, 1, 4, 4), chunks=(1, 1, 2, 2),
                            shards=(shards_n, 1, 4, 4), dtype="uint8", compressors=None, fill_value=0)
    ref[...] = arr
    assert ref[...].tobytes() == zarr.open_array(store / "images", mode="r")[...].tobytes()
    # Same payloads (inner chunk bytes), index entries may be ordered differently (C vs Morton).
    n_inner = shards_n * 4
    idx = np.frombuffer(ours[-(16 * n_inner + 4):-4], dtype="<u8").reshape(-1, 2)
    payloads = [ours[o:o + n] for o, n in idx[:4]]
    assert payloads == [bytes([0, 1, 4, 5]), bytes([2, 3, 6, 7]), bytes([8, 9, 12, 13]), bytes([10, 11, 14, 15])]
    assert all(int(o) == 2**64 - 1 for o in idx[4:, 0])


def test_tensorstore_reads_store(tmp_path):
    import tensorstore as ts
    arr = smooth_images(7, 3, 300, 300, "uint16", seed=8)
    store = convert_mem(tmp_path, arr, chunk_shape=(2, 128, 128), shard_images=4, compressor="zstd", clevel=3)
    t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(store / "images")}}).result()
    np.testing.assert_array_equal(t.read().result(), arr)
