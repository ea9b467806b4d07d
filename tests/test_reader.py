"""open_store(): equality with zarr-python on stores written by zarr-python and by convert(),
fancy indexing, errors, damaged stores, pickling / worker processes and threads."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

zarr = pytest.importorskip("zarr")
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec  # noqa: E402

import images_to_zarr  # noqa: E402
from images_to_zarr.reader import ImageStore, open_store  # noqa: E402

DTYPES = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32", "float64"]
COMPRESSORS = {
    "blosc": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
    "zstd": ZstdCodec(level=3),
    "gzip": GzipCodec(level=5),
    "none": None,
}
LAYOUTS = ["shard-end", "shard-start", "unsharded"]


def smooth_noise(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    """Smooth content plus noise spanning most of the dtype's range (byte order bugs show)."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin((x + 3 * i) / 5.0) * np.cos((y + i + k) / 7.0) for i in range(n) for k in range(c)])
    v = (0.45 * base + 0.03 * rng.standard_normal(base.shape)).reshape(shape)  # about -0.5..0.5
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (v * 1e3).astype(dt)
    info = np.iinfo(dt)
    lo, hi = float(info.min), float(info.max)
    out = ((v + 0.5) * (hi - lo) * 0.9 + lo + 0.05 * (hi - lo)).clip(lo, hi)
    if dt.itemsize == 8:  # float64 cannot hold the full range; stay well inside it
        out = (v + 0.5) * 2.0**50 + (0 if info.min == 0 else -(2.0**49))
    out = out.astype(dt)
    out[1] = 0  # an all-fill image: zarr-python skips those chunks
    return out


def write_zarr(path: Path, data: np.ndarray, layout: str, compressor: str, *, group: bool = False, fill=0,
               write: bool = True):
    shards: object
    chunks = (2, data.shape[1], 4, 5)
    if layout == "unsharded":
        shards = None
    else:
        shard_shape = (4, data.shape[1], 8, 10)
        shards = shard_shape if layout == "shard-end" else {"shape": shard_shape, "index_location": "start"}
    kwargs = dict(shape=data.shape, chunks=chunks, shards=shards, dtype=data.dtype, fill_value=fill,
                  compressors=COMPRESSORS[compressor])
    if group:
        g = zarr.open_group(str(path), mode="w", attributes={"total_images": data.shape[0]})
        arr = g.create_array("images", **kwargs)
    else:
        arr = zarr.create_array(str(path), **kwargs)
    if write:
        arr[:] = data
    return arr


def check_indexing(s: ImageStore, ref: np.ndarray) -> None:
    n = ref.shape[0]
    assert len(s) == n and s.shape == ref.shape and s.dtype == ref.dtype
    np.testing.assert_array_equal(s[:], ref)
    for i in (0, 1, n - 1, -1, -n, n // 2):
        got = s[i]
        assert got.shape == ref.shape[1:] and got.dtype == ref.dtype
        np.testing.assert_array_equal(got, ref[i])
    for sl in (slice(2, 5), slice(None, None, 2), slice(1, None, 3), slice(None, None, -1), slice(5, 2), slice(-3, None)):
        np.testing.assert_array_equal(s[sl], ref[sl])
    for idx in ([n - 1, 0, 0, 3, n - 1], [2], [], np.array([4, -1, 4], dtype=np.int32), (np.arange(n) % 2 == 0)):
        got = s[idx]
        want = ref[np.asarray(idx, dtype=bool if isinstance(idx, np.ndarray) and idx.dtype == bool else np.int64)]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(s[3, 0], ref[3, 0])
    np.testing.assert_array_equal(s[1:4, :, 2], ref[1:4, :, 2])


# ---- stores written by zarr-python ------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("compressor", list(COMPRESSORS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_equals_zarr_python(tmp_path: Path, dtype: str, compressor: str, layout: str) -> None:
    data = smooth_noise((7, 2, 9, 11), dtype, seed=DTYPES.index(dtype))  # 9x11: not multiples of 4x5 / 8x10
    arr = write_zarr(tmp_path / "z.zarr", data, layout, compressor)
    ref = arr[:]
    np.testing.assert_array_equal(ref, data)
    check_indexing(open_store(tmp_path / "z.zarr"), ref)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_group_store_with_fill_value_and_partial_writes(tmp_path: Path, layout: str) -> None:
    data = smooth_noise((10, 3, 9, 11), "int16")
    arr = write_zarr(tmp_path / "g.zarr", data, layout, "zstd", group=True, fill=-7, write=False)
    arr[2:5] = data[2:5]  # shards 0 and 2 partly or wholly missing -> fill value
    ref = arr[:]
    assert (ref[0] == -7).all() and (ref[9] == -7).all()
    s = open_store(tmp_path / "g.zarr")
    check_indexing(s, ref)
    assert s.attrs == {"total_images": 10}
    assert s.metadata is None


def test_zarr_python_shard_bytes_match_format_note(tmp_path: Path) -> None:
    """The format note §8.1 shard, as zarr-python writes it, decoded by our reader (issue 2)."""
    morton = "000104050809 0c0d 0203 0607 0a0b 0e0f".replace(" ", "")
    le = lambda *v: b"".join(int(x).to_bytes(8, "little") for x in v).hex()  # noqa: E731
    want = {
        "end": morton + le(0, 4, 8, 4, 4, 4, 12, 4) + "adf3c793",
        "start": le(0x44, 4, 0x4C, 4, 0x48, 4, 0x50, 4) + "2b867805" + morton,
    }
    for loc, hexbytes in want.items():
        path = tmp_path / f"{loc}.zarr"
        z = zarr.create_array(str(path), shape=(4, 4), chunks=(2, 2), shards={"shape": (4, 4), "index_location": loc},
                              dtype="uint8", compressors=None)
        z[:] = np.arange(16, dtype=np.uint8).reshape(4, 4)
        assert (path / "c" / "0" / "0").read_bytes().hex() == hexbytes
        s = open_store(path)
        np.testing.assert_array_equal(s[:], np.arange(16, dtype=np.uint8).reshape(4, 4))
        np.testing.assert_array_equal(s[[3, 0, 3]], np.arange(16, dtype=np.uint8).reshape(4, 4)[[3, 0, 3]])


# ---- stores written by convert() ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_equals_source_for_our_stores(tmp_path: Path, dtype: str) -> None:
    data = smooth_noise((13, 3, 20, 18), dtype)
    meta = [{"label": i} for i in range(13)]
    out = images_to_zarr.convert(tmp_path / "ours.zarr", images=data, image_metadata=meta, chunk_shape=(1, 8, 8),
                                 shard_images=4, compressor=["lz4", "zstd", "gzip", "none"][DTYPES.index(dtype) % 4],
                                 progress=False)
    s = open_store(out)
    check_indexing(s, data)
    np.testing.assert_array_equal(zarr.open_group(str(out))["images"][:], s[:])
    assert s.attrs["total_images"] == 13
    assert s.metadata.num_rows == 13 and s.metadata.column("label").to_pylist() == list(range(13))


def test_metadata_is_trimmed_to_the_image_count(tmp_path: Path) -> None:
    data = smooth_noise((5, 1, 8, 8), "uint8")
    out = images_to_zarr.convert(tmp_path / "t.zarr", images=data, progress=False)
    side = tmp_path / "t_metadata.parquet" / "part-000000000000.parquet"
    assert side.is_file()
    table = pq.read_table(side)
    pq.write_table(pa.concat_tables([table, table]), side)  # rows beyond the store's count
    s = open_store(out)
    assert s.metadata.num_rows == 5
    assert s.metadata.to_pylist() == table.to_pylist()


def test_index_errors(tmp_path: Path) -> None:
    data = smooth_noise((6, 1, 8, 8), "uint16")
    s = open_store(images_to_zarr.convert(tmp_path / "e.zarr", images=data, progress=False))
    for bad in (6, -7, 10**12):
        with pytest.raises(IndexError):
            s[bad]
    for bad in ([0, 6], [-7], np.array([1, 2**40])):
        with pytest.raises(IndexError):
            s[bad]
    with pytest.raises(IndexError):
        s[np.ones(5, dtype=bool)]
    with pytest.raises(IndexError):
        s[[[0, 1]]]
    with pytest.raises(IndexError):
        s._r().read_indices([-1])
    with pytest.raises(IndexError):
        s._r().read_range(2, 7)
    assert s[6:100].shape == (0, 1, 8, 8)


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "missing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ValueError, match="not a Zarr"):
        open_store(tmp_path / "empty.zarr")
    (tmp_path / "v2.zarr").mkdir()
    (tmp_path / "v2.zarr" / "zarr.json").write_text(json.dumps({"zarr_format": 2}))
    with pytest.raises(ValueError):
        open_store(tmp_path / "v2.zarr")


# ---- damaged stores -------------------------------------------------------------------------------


@pytest.fixture()
def small_store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = smooth_noise((12, 2, 16, 16), "uint16")
    out = images_to_zarr.convert(tmp_path / "d.zarr", images=data, chunk_shape=(1, 16, 16), shard_images=4,
                                 compressor="zstd", progress=False)
    return Path(out), data


def test_flipped_index_byte_names_the_shard(small_store) -> None:
    out, data = small_store
    shard = out / "images" / "c" / "1" / "0" / "0" / "0"
    b = bytearray(shard.read_bytes())
    b[-12] ^= 0x40  # inside the index (16 * 4 + 4 bytes at the end)
    shard.write_bytes(bytes(b))
    s = open_store(out)
    np.testing.assert_array_equal(s[0:4], data[0:4])  # other shards stay readable
    with pytest.raises(ValueError, match=r"images/c/1/0/0/0: shard index checksum mismatch"):
        s[5]
    with pytest.raises(ValueError, match=r"c/1/0/0/0"):
        s[:]


def test_truncated_shard(small_store) -> None:
    out, _ = small_store
    shard = out / "images" / "c" / "2" / "0" / "0" / "0"
    b = shard.read_bytes()
    shard.write_bytes(b[: len(b) // 2])
    with pytest.raises(ValueError, match=r"images/c/2/0/0/0"):
        open_store(out)[9]
    shard.write_bytes(b[:20])
    with pytest.raises(ValueError, match=r"images/c/2/0/0/0"):
        open_store(out)[[8, 9]]


def test_damaged_chunk_payload(small_store) -> None:
    out, _ = small_store
    shard = out / "images" / "c" / "0" / "0" / "0" / "0"
    b = bytearray(shard.read_bytes())
    for i in range(0, 40):
        b[i] ^= 0xA5  # the first inner chunk's zstd frame
    shard.write_bytes(bytes(b))
    with pytest.raises(ValueError, match=r"images/c/0/0/0/0 \(inner chunk"):
        open_store(out)[0]


# ---- pickling, processes, threads ----------------------------------------------------------------


def _sum_item(args: tuple[ImageStore, int]) -> float:
    s, i = args
    return float(s[i].astype(np.float64).sum())


def _batch(args: tuple[ImageStore, list[int]]) -> np.ndarray:
    s, idx = args
    return s[idx]


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_worker_processes(small_store, method: str) -> None:
    out, data = small_store
    s = open_store(out)
    s[:]  # used (worker threads started) before the pool starts: forked children must reopen
    s2 = pickle.loads(pickle.dumps(open_store(out, threads=1)))
    assert s2.shape == s.shape and s2._threads == 1 and len(pickle.dumps(s)) < 300
    np.testing.assert_array_equal(s2[np.int64(3)], data[3])
    np.testing.assert_array_equal(s2[np.array(4)], data[4])
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        sums = pool.map(_sum_item, [(s, i) for i in range(len(s))])
        batches = pool.map(_batch, [(s, [i, 11 - i, i]) for i in range(12)])
    assert sums == [float(data[i].astype(np.float64).sum()) for i in range(12)]
    for i, b in enumerate(batches):
        np.testing.assert_array_equal(b, data[[i, 11 - i, i]])


def test_torch_dataloader(small_store) -> None:
    torch = pytest.importorskip("torch")
    out, data = small_store
    loader = torch.utils.data.DataLoader(open_store(out), batch_size=5, num_workers=2,
                                         multiprocessing_context="spawn")
    got = np.concatenate([b.numpy() for b in loader])
    np.testing.assert_array_equal(got, data)


def test_concurrent_reads_from_threads(tmp_path: Path) -> None:
    data = smooth_noise((40, 3, 24, 24), "float32")
    out = images_to_zarr.convert(tmp_path / "c.zarr", images=data, chunk_shape=(1, 12, 12), shard_images=8,
                                 compressor="lz4", progress=False)
    s = open_store(out)

    def work(seed: int) -> bool:
        rng = np.random.default_rng(seed)
        for _ in range(30):
            idx = rng.integers(0, 40, size=rng.integers(1, 16))
            if not np.array_equal(s[idx], data[idx]):
                return False
            a = int(rng.integers(0, 40))
            b = int(rng.integers(a, 41))
            if not np.array_equal(s[a:b], data[a:b]):
                return False
        return True

    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(16)))


def test_partial_reads_fetch_only_what_is_needed(small_store) -> None:
    out, data = small_store
    s = open_store(out)
    r = s._r()
    np.testing.assert_array_equal(s[6], data[6])
    assert r.stats() == (1, 1)  # one shard index, one inner chunk
    np.testing.assert_array_equal(s[[7, 4]], data[[7, 4]])
    assert r.stats() == (1, 3)  # index cached
