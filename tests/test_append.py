"""Append, crash safety, locking and resume (issue 5; design §4)."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images

TESTS = Path(__file__).parent


def conv(out, **kw):
    kw.setdefault("progress", False)
    return i2z.convert(out, **kw)


def read(store: Path) -> np.ndarray:
    return zarr.open_array(store / "images", mode="r")[...]


def shard_files(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted((store / "images" / "c").rglob("*")) if p.is_file()}


def shard_index(blob: bytes, n_chunks: int) -> np.ndarray:
    return np.frombuffer(blob[-(16 * n_chunks + 4):-4], dtype="<u8").reshape(-1, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_append_from_memory_several_times(tmp_path, channels):
    parts = [smooth_images(k, channels, 24, 20, "uint8", seed=k) for k in (5, 3, 8, 1)]
    store = conv(tmp_path / "s.zarr", images=parts[0], chunk_shape=(1, 16, 16), shard_images=4)
    for p in parts[1:]:
        conv(store, images=p, append=True)
    np.testing.assert_array_equal(read(store), np.concatenate(parts))
    attrs = zarr.open_group(store, mode="r").attrs
    assert attrs["total_images"] == 17
    assert attrs["append_history"] == [
        {"appended_count": 3, "start_index": 5, "end_index": 8},
        {"appended_count": 8, "start_index": 8, "end_index": 16},
        {"appended_count": 1, "start_index": 16, "end_index": 17},
    ]
    t = pq.read_table(tmp_path / "s_metadata.parquet")
    assert t.num_rows == 17
    assert t.column("filename").to_pylist() == [f"image_{i}" for i in range(17)]
    assert t.column("max_value").to_pylist()[16] == parts[3].max()


def test_append_from_files_with_csv(tmp_path):
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir(), d2.mkdir()
    imgs = smooth_images(6, 3, 20, 24, "uint8", seed=3)
    for i in range(6):
        Image.fromarray(imgs[i].transpose(1, 2, 0)).save((d1 if i < 4 else d2) / f"im{i}.png")
    Image.fromarray(imgs[0, 0]).save(d2 / "zgray.png")  # gray into an RGB store: replicated
    csv = tmp_path / "cat.csv"
    csv.write_text("filename,label\n" + "".join(f"im{i}.png,{i}\n" for i in range(6)) + "zgray.png,99\n")
    store = conv(tmp_path / "out", folders=d1, metadata=csv)
    conv(tmp_path / "out", folders=d2, metadata=csv, append=True)
    got = read(store)
    assert got.shape == (7, 3, 20, 24)
    np.testing.assert_array_equal(got[:6], imgs)
    np.testing.assert_array_equal(got[6], np.repeat(imgs[0, :1], 3, axis=0))
    t = pq.read_table(tmp_path / "out" / "cat_metadata.parquet")
    assert t.column("filename").to_pylist() == [f"im{i}.png" for i in range(6)] + ["zgray.png"]
    assert t.column("label").to_pylist() == [0, 1, 2, 3, 4, 5, 99]


@pytest.mark.parametrize("old,new", [(3, 1), (4, 4), (2, 10), (5, 12)])
def test_append_shard_boundaries(tmp_path, old, new):
    """Fills exactly one shard (3+1), starts at a boundary (4+4), spans three shards (2+10, 5+12)."""
    a = smooth_images(old, 2, 16, 16, "uint16", seed=1)
    b = smooth_images(new, 2, 16, 16, "uint16", seed=2)
    store = conv(tmp_path / "s.zarr", images=a, chunk_shape=(1, 16, 16), shard_images=4, compressor="zstd")
    conv(store, images=b, append=True)
    np.testing.assert_array_equal(read(store), np.concatenate([a, b]))
    assert len(shard_files(store)) == -(-(old + new) // 4)


def test_partial_inner_chunk_row(tmp_path):
    """n = 3 images per inner chunk: the old partial chunk row is re-encoded with the new images."""
    a = smooth_images(7, 1, 12, 12, "float32", seed=1)
    b = smooth_images(5, 1, 12, 12, "float32", seed=2)
    store = conv(tmp_path / "s.zarr", images=a, chunk_shape=(3, 12, 12), shard_images=6)
    conv(store, images=b, append=True)
    np.testing.assert_array_equal(read(store), np.concatenate([a, b]))


def test_earlier_shards_and_copied_chunks_unchanged(tmp_path):
    a = smooth_images(10, 3, 32, 32, "uint8", seed=1)
    store = conv(tmp_path / "s.zarr", images=a, chunk_shape=(1, 16, 16), shard_images=4)
    before = shard_files(store)
    mtimes = {k: (store / k).stat().st_mtime_ns for k in before}
    time.sleep(0.02)
    conv(store, images=smooth_images(3, 3, 32, 32, "uint8", seed=2), append=True)
    after = shard_files(store)
    for k in ("images/c/0/0/0/0", "images/c/1/0/0/0"):
        assert after[k] == before[k]
        assert (store / k).stat().st_mtime_ns == mtimes[k]
    # Shard 2 held images 8, 9 (2 rows x 4 tiles); its chunks are copied, byte for byte.
    n_chunks = 4 * 4
    old_idx, new_idx = shard_index(before["images/c/2/0/0/0"], n_chunks), shard_index(after["images/c/2/0/0/0"], n_chunks)
    for i in range(8):
        (o1, l1), (o2, l2) = old_idx[i], new_idx[i]
        assert before["images/c/2/0/0/0"][o1:o1 + l1] == after["images/c/2/0/0/0"][o2:o2 + l2]
    assert all(int(o) == 2**64 - 1 for o in old_idx[8:, 0])


def test_dtype_conversion_warns(tmp_path, caplog):
    a = smooth_images(2, 1, 8, 8, "uint8", seed=1)
    b = np.full((2, 1, 8, 8), 300.7, dtype=np.float64)
    store = conv(tmp_path / "s.zarr", images=a)
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        conv(store, images=b, append=True)
    assert "float64" in caplog.text and "uint8" in caplog.text
    got = read(store)
    assert got.dtype == np.uint8 and (got[2:] == 255).all()


def test_append_errors(tmp_path):
    a = smooth_images(2, 3, 8, 8, "uint8")
    with pytest.raises(FileNotFoundError):
        conv(tmp_path / "missing.zarr", images=a, append=True)
    with pytest.raises(ValueError, match="append"):
        conv(tmp_path / "x.zarr", images=a, append=True, overwrite=True)
    store = conv(tmp_path / "s.zarr", images=a)
    with pytest.raises(ValueError, match=r"\(1, 8, 8\).*\(3, 8, 8\)"):
        conv(store, images=a[:, :1], append=True)
    with pytest.raises(ValueError, match=r"\(3, 8, 9\).*\(3, 8, 8\)"):
        conv(store, images=np.zeros((1, 3, 8, 9), np.uint8), append=True)
    assert read(store).shape[0] == 2


def test_second_writer_fails_at_once(tmp_path):
    store = tmp_path / "s.zarr"
    lock = open(str(store) + ".i2z-lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        t0 = time.monotonic()
        with pytest.raises(OSError, match="lock"):
            conv(store, images=smooth_images(1, 1, 8, 8))
        assert time.monotonic() - t0 < 5
    finally:
        lock.close()
    conv(store, images=smooth_images(1, 1, 8, 8))
    # The lock file stays (unlinking it would let two writers lock different inodes); it is free.
    with open(str(store) + ".i2z-lock") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


# ---- crash safety and resume ---------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {tests!r})
    import images_to_zarr as i2z
    from conftest import smooth_images
    mode, store = sys.argv[1], sys.argv[2]
    kw = dict(chunk_shape=(1, 64, 64), shard_images=8, compressor="zstd", clevel=9, progress=False,
              num_parallel_workers=2)
    if mode == "create":
        i2z.convert(store, images=smooth_images(120, 3, 128, 128, "uint16", seed=11), **kw)
    elif mode == "resume-create":
        i2z.convert(store, images=smooth_images(120, 3, 128, 128, "uint16", seed=11), resume=True, **kw)
    elif mode == "append":
        i2z.convert(store, images=smooth_images(100, 3, 128, 128, "uint16", seed=12), append=True, **kw)
    elif mode == "resume-append":
        i2z.convert(store, images=smooth_images(100, 3, 128, 128, "uint16", seed=12), append=True, resume=True, **kw)
""").format(tests=str(TESTS))


def run_writer(tmp_path: Path, mode: str, store: Path, kill_at_shard: int | None = None) -> int:
    """Runs a writer; with kill_at_shard, SIGKILLs it once that many shard objects exist (in the
    staging folder or the store), i.e. at a random point of the write rather than at a time
    that depends on the machine's speed."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    p = subprocess.Popen([sys.executable, str(script), mode, str(store)])
    if kill_at_shard is None:
        return p.wait(timeout=300)
    dirs = [Path(str(store) + ".i2z-tmp") / "images" / "c", store / "images" / "c"]
    deadline = time.monotonic() + 300
    while p.poll() is None and time.monotonic() < deadline:
        if sum(1 for d in dirs if d.exists() for _ in d.iterdir()) >= kill_at_shard:
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    p.wait()
    return p.returncode


def store_bytes(store: Path) -> dict[str, bytes]:
    files = shard_files(store)
    files["images/zarr.json"] = (store / "images" / "zarr.json").read_bytes()
    return files


@pytest.mark.slow
def test_kill_at_random_moments_then_resume(tmp_path):
    rng = random.Random(1234)
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    assert run_writer(tmp_path, "create", ref_dir / "s.zarr") == 0
    base_ref = read(ref_dir / "s.zarr")
    assert run_writer(tmp_path, "append", ref_dir / "s.zarr") == 0
    full_ref = read(ref_dir / "s.zarr")
    ref_bytes = store_bytes(ref_dir / "s.zarr")
    killed = 0
    for trial in range(4):
        d = tmp_path / f"t{trial}"
        d.mkdir()
        store = d / "s.zarr"
        # A new store: killed -> no store or the complete one; resume completes it.
        rc = run_writer(tmp_path, "create", store, kill_at_shard=rng.randint(0, 14))
        killed += rc == -signal.SIGKILL
        if store.exists():
            np.testing.assert_array_equal(read(store), base_ref)
        else:
            assert rc != 0
            assert run_writer(tmp_path, "resume-create", store) == 0
        np.testing.assert_array_equal(read(store), base_ref)
        # An append: killed -> old or new count, committed pixels intact; resume completes it.
        rc = run_writer(tmp_path, "append", store, kill_at_shard=15 + rng.randint(0, 12))
        killed += rc == -signal.SIGKILL
        got = read(store)
        assert got.shape[0] in (120, 220), got.shape
        np.testing.assert_array_equal(got, full_ref[: got.shape[0]])
        assert pq.read_table(d / "s_metadata.parquet").num_rows >= got.shape[0]
        if got.shape[0] == 120:
            assert run_writer(tmp_path, "resume-append", store) == 0
        assert store_bytes(store) == ref_bytes
        attrs = json.loads((store / "zarr.json").read_text())["attributes"]
        assert attrs["total_images"] == 220 and len(attrs["append_history"]) == 1
        assert pq.read_table(d / "s_metadata.parquet").num_rows == 220
    assert killed >= 6, f"only {killed} of 8 runs were killed mid-write"
