"""Issue 17, input side: one bad file never changes or blows up the store (items 1, 2), no
geometry crashes the process (3), no input hangs it and Ctrl-C stops it (4), appends to another
tool's layout are correct or refused (6). Risky cases run convert() in a child interpreter, so a
SIGFPE, std::terminate or hang fails the test instead of killing pytest, and its peak RSS is
measured."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import images_to_zarr as i2z
from images_to_zarr import _core
from images_to_zarr.reader import open_store

from test_hostile import GOOD, fits_from_cards, png_chunk, png_claiming

zarr = pytest.importorskip("zarr")

RSS_LIMIT = 1536 << 20  # the interpreter with numpy and pyarrow (and ASan's shadow) stays below
HANG = 120  # seconds: only a hang takes this long


def run_convert(out: Path, folder: Path, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """convert(out, folder, **kwargs) in a fresh interpreter. Returns its peak RSS and
    {"errors": filename -> error, "shape": ...} or {"exception": type, "message": ...}."""
    code = textwrap.dedent(f"""
        import json, logging, sys
        import images_to_zarr as i2z
        assert i2z._core.__file__ == {_core.__file__!r}, "the child must load the parent's extension"
        import pyarrow.parquet as pq
        from images_to_zarr.reader import open_store
        import os
        from images_to_zarr import _core
        _discover = _core.discover_files
        def discover_then_swap(*a, **k):  # a file replaced by a named pipe after discovery
            files, warnings = _discover(*a, **k)
            for f in files:
                if os.path.basename(f).startswith("fifo_"):
                    os.unlink(f)
                    os.mkfifo(f)
            return files, warnings
        _core.discover_files = discover_then_swap
        warnings = []
        class H(logging.Handler):
            def emit(self, r): warnings.append(r.getMessage())
        logging.getLogger("images_to_zarr").addHandler(H())
        try:
            store = i2z.convert({str(out)!r}, folders={str(folder)!r}, progress=False, **{kwargs!r})
        except BaseException as e:
            json.dump({{"exception": type(e).__name__, "message": str(e), "warnings": warnings}}, sys.stdout)
        else:
            t = pq.read_table(store.parent / (store.stem + "_metadata.parquet"))
            json.dump({{"errors": dict(zip(t.column("filename").to_pylist(), t.column("error").to_pylist())),
                       "shape": list(open_store(store).shape), "warnings": warnings}}, sys.stdout)
    """)
    with tempfile.TemporaryFile() as err:  # a file, so a chatty child cannot block on a full pipe
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err)
        timer = threading.Timer(HANG, proc.kill)  # only a hang takes this long
        timer.start()
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own peak RSS
        hung = not timer.is_alive()
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        assert not hung, f"convert hung for {HANG} s"
        assert proc.returncode == 0, f"child died ({proc.returncode}): " + err.read().decode(errors="replace")[-3000:]
    return usage.ru_maxrss * 1024, json.loads(stdout)


def fits_header_only(naxis: list[int], bitpix: int = -64) -> bytes:
    cards = ["SIMPLE  = T", f"BITPIX  = {bitpix}", f"NAXIS   = {len(naxis)}"]
    cards += [f"NAXIS{i + 1:<3d}= {n}" for i, n in enumerate(naxis)]
    return fits_from_cards(cards, b"\0" * 2880)


def gray_pngs(d: Path, n: int) -> None:
    d.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(((GOOD.astype(np.int64) + i) % 256).astype(np.uint8)).save(d / f"g{i:03d}.png")


def tiff_65535_samples() -> bytes:
    """A ~200-byte TIFF declaring 65,535 8-bit samples per pixel on 64x64 (the hold-out's file)."""
    SHORT, LONG = 3, 4
    entries = [(256, LONG, 64), (257, LONG, 64), (258, SHORT, 8), (259, SHORT, 1), (262, SHORT, 1),
               (273, LONG, 0), (277, SHORT, 65535), (278, LONG, 64), (279, LONG, 16)]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, typ, value in entries:
        value = data_offset if tag == 273 else value
        out += struct.pack("<HHIHH", tag, typ, 1, value, 0) if typ == SHORT else struct.pack("<HHII", tag, typ, 1, value)
    return bytes(out + b"\0\0\0\0" + bytes(16))


# ---- item 3: geometry that used to crash the process ---------------------------------------------


def test_pad_canvas_product_that_wraps_is_a_clear_error(tmp_path: Path) -> None:
    """2^31 x 1 and 1 x 2^31 float64 headers with pad=True: C*H*W*8 wrapped to 0 and plan divided
    by it (SIGFPE on main)."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.fits").write_bytes(fits_header_only([2**31, 1]))
    (d / "b.fits").write_bytes(fits_header_only([1, 2**31]))
    _, r = run_convert(tmp_path / "o.zarr", d, pad=True)
    assert r.get("exception") == "ValueError", r
    assert "padded canvas" in r["message"] and "max_pixels" in r["message"], r["message"]
    assert not (tmp_path / "o.zarr").exists()


def test_resize_beyond_any_size_is_a_clear_error(tmp_path: Path) -> None:
    """resize=(2**32, 2**32): the same wrap (SIGFPE on main)."""
    gray_pngs(tmp_path / "in", 2)
    _, r = run_convert(tmp_path / "o.zarr", tmp_path / "in", resize=(2**32, 2**32))
    assert r.get("exception") == "ValueError", r
    assert "resize target" in r["message"], r["message"]


def test_huge_padded_canvas_allowed_by_max_pixels_is_a_run_error_not_terminate(tmp_path: Path) -> None:
    """A 2^20 x 2^20 canvas (max_pixels raised to allow it): bad_alloc was thrown outside the
    worker's error handling (std::terminate on main); now the memory budget refuses it."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.fits").write_bytes(fits_header_only([2**20, 1], bitpix=8))
    (d / "b.fits").write_bytes(fits_header_only([1, 2**20], bitpix=8))
    rss, r = run_convert(tmp_path / "o.zarr", d, pad=True, max_pixels=2**41)
    assert r.get("exception") == "ValueError", r
    assert "memory budget" in r["message"], r["message"]
    assert rss < RSS_LIMIT


def test_explicit_shard_images_is_capped_like_the_automatic_one(tmp_path: Path) -> None:
    """shard_images=100000 with 64 chunks per image wrote shards of 6.4 M inner chunks, an index
    our own reader refuses; now refused up front naming the limit."""
    images = np.zeros((2, 1, 64, 64), np.uint8)
    with pytest.raises(ValueError, match="inner chunks per shard"):
        i2z.convert(tmp_path / "o.zarr", images=images, chunk_shape=(1, 8, 8), shard_images=100000, progress=False)
    assert not (tmp_path / "o.zarr").exists()
    # The largest allowed value works and reads back.
    store = i2z.convert(tmp_path / "p.zarr", images=images, chunk_shape=(1, 8, 8), shard_images=1024, progress=False)
    np.testing.assert_array_equal(zarr.open_array(store / "images", mode="r")[:], images)


# ---- item 4: non-regular files and Ctrl-C -------------------------------------------------------------


def test_fifo_in_place_of_an_image_is_a_per_image_error_not_a_hang(tmp_path: Path) -> None:
    """A named pipe named like an image blocked a worker in open() forever (with the lock held)."""
    d = tmp_path / "in"
    gray_pngs(d, 2)
    names = ("fifo_p.png", "fifo_p.jpg", "fifo_p.tif", "fifo_p.fits")
    for name in names:
        (d / name).write_bytes(b"replaced by a FIFO after discovery")
    _, r = run_convert(tmp_path / "o.zarr", d)
    assert "errors" in r, r
    for name in names:
        assert r["errors"][name] and "not a regular file" in r["errors"][name], (name, r["errors"][name])
    assert r["errors"]["g000.png"] is None


def test_ctrl_c_stops_a_run_releases_the_lock_and_commits_nothing(tmp_path: Path) -> None:
    """SIGINT while the run is probing or writing (here with a FIFO among the inputs, which hung
    main) ends in KeyboardInterrupt; no store appears and a second run takes the lock at once."""
    d = tmp_path / "in"
    gray_pngs(d, 400)
    (d / "zz_fifo.png").write_bytes(b"replaced by a FIFO after discovery")
    out = tmp_path / "o.zarr"
    code = textwrap.dedent(f"""
        import json, os, signal, sys, threading, time
        import images_to_zarr as i2z
        from images_to_zarr import _core
        _discover = _core.discover_files
        def discover_then_swap(*a, **k):
            files, warnings = _discover(*a, **k)
            os.unlink({str(d / "zz_fifo.png")!r})
            os.mkfifo({str(d / "zz_fifo.png")!r})
            return files, warnings
        _core.discover_files = discover_then_swap
        tmp = {str(out) + ".i2z-tmp"!r}
        def interrupt():
            while not os.path.exists(tmp):  # the run has taken the lock and started
                time.sleep(0.001)
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        try:
            i2z.convert({str(out)!r}, folders={str(d)!r}, progress=False, num_parallel_workers=2)
            result = "finished"
        except KeyboardInterrupt:
            result = "interrupted"
        json.dump({{"result": result}}, sys.stdout)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)["result"]
    # A machine fast enough to convert 400 images before the signal lands finishes instead; the
    # point is that it never hangs. Either way nothing half-done is visible.
    if result == "interrupted":
        assert not out.exists()
    # The lock was released: the same store can be written now.
    os.unlink(d / "zz_fifo.png")
    i2z.convert(out, folders=d, progress=False, overwrite=out.exists())
    assert open_store(out).shape == (400, 1, 12, 10)


# ---- item 1: one header must not set the store's shape -----------------------------------------------


def test_one_header_with_65535_channels_does_not_inflate_the_store(tmp_path: Path) -> None:
    d = tmp_path / "in"
    gray_pngs(d, 50)
    (d / "zz_wide.tif").write_bytes(tiff_65535_samples())
    (d / "zz_cube.fits").write_bytes(fits_header_only([12, 10, 20000], bitpix=8)[:2880 + 100])  # truncated
    rss, r = run_convert(tmp_path / "o.zarr", d)
    assert r["shape"] == [52, 1, 12, 10], r  # main: (52, 65535, 12, 10)
    assert "far beyond the other images" in r["errors"]["zz_wide.tif"]
    assert "far beyond the other images" in r["errors"]["zz_cube.fits"]
    assert r["errors"]["g000.png"] is None
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"
    s = open_store(tmp_path / "o.zarr")
    ref = np.asarray(Image.open(d / "g007.png"))
    np.testing.assert_array_equal(s[7][0], ref)


def test_max_channels_is_explicit_and_one_file_setting_c_is_warned(tmp_path: Path) -> None:
    d = tmp_path / "in"
    gray_pngs(d, 3)
    rgb = np.stack([GOOD, GOOD[::-1], GOOD[:, ::-1]], axis=-1)
    Image.fromarray(rgb).save(d / "rgb.png")
    _, r = run_convert(tmp_path / "o.zarr", d)
    assert r["shape"] == [4, 3, 12, 10]
    assert any("set by one file alone" in w and "rgb.png" in w for w in r["warnings"]), r["warnings"]
    np.testing.assert_array_equal(np.moveaxis(open_store(tmp_path / "o.zarr")[3], 0, -1), rgb)
    _, r = run_convert(tmp_path / "p.zarr", d, max_channels=1)
    assert r["shape"] == [4, 1, 12, 10]
    assert "above max_channels=1" in r["errors"]["rgb.png"]
    with pytest.raises(ValueError, match="max_channels"):
        i2z.convert(tmp_path / "q.zarr", folders=d, max_channels=0, progress=False)


def test_one_huge_header_does_not_set_the_padded_canvas(tmp_path: Path) -> None:
    """A ~100-byte PNG claiming 46000 x 46000 (under max_pixels) with pad=True: 4.1 GB on main."""
    d = tmp_path / "in"
    gray_pngs(d, 3)
    (d / "zz_huge.png").write_bytes(png_claiming(46000, 46000, color_type=0))
    rss, r = run_convert(tmp_path / "o.zarr", d, pad=True)
    assert r["shape"] == [4, 1, 12, 10], r
    assert "far beyond the other images" in r["errors"]["zz_huge.png"]
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"


# ---- item 2: a per-worker memory budget; read only what the decoder needs ----------------------------


def test_lying_header_resized_is_stopped_by_the_memory_budget(tmp_path: Path) -> None:
    """The same 46000 x 46000 header with resize: 2.1 GB per worker on main."""
    d = tmp_path / "in"
    gray_pngs(d, 2)
    (d / "zz_huge.png").write_bytes(png_claiming(46000, 46000, color_type=0))
    rss, r = run_convert(tmp_path / "o.zarr", d, resize=(16, 16), num_parallel_workers=2, max_memory=2 << 30)
    assert r["shape"] == [3, 1, 16, 16], r
    assert "memory budget" in r["errors"]["zz_huge.png"], r["errors"]
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"


def zlib_bomb_png(width: int, height: int) -> bytes:
    """A real RGB PNG of width x height zero pixels (about 1 MB of IDAT per GB of pixels)."""
    row = b"\0" * (1 + 3 * width)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def test_zlib_bomb_resized_is_stopped_by_the_memory_budget(tmp_path: Path) -> None:
    """20000 x 20000 RGB zeros resized to 64 x 64: > 4 min and 6.5 GB on main."""
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(np.stack([GOOD] * 3, -1)).save(d / "a.png")
    (d / "bomb.png").write_bytes(zlib_bomb_png(20000, 20000))
    rss, r = run_convert(tmp_path / "o.zarr", d, resize=(64, 64), num_parallel_workers=2, max_memory=2 << 30)
    assert r["errors"]["a.png"] is None
    assert "memory budget" in r["errors"]["bomb.png"], r["errors"]
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_valid_image_followed_by_a_3_gib_hole_is_not_read_whole(tmp_path: Path, ext: str) -> None:
    """3.16 GB RSS on main for PNG/JPEG (the file was read whole); a sparse file costs no disk."""
    d = tmp_path / "in"
    d.mkdir()
    rgb = np.stack([GOOD, GOOD[::-1], GOOD[:, ::-1]], axis=-1)
    path = d / f"a{ext}"
    Image.fromarray(rgb).save(path, quality=95) if ext == ".jpg" else Image.fromarray(rgb).save(path)
    ref = np.asarray(Image.open(path))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) + (3 << 30))
    rss, r = run_convert(tmp_path / "o.zarr", d)
    assert r["errors"][f"a{ext}"] is None, r
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"
    np.testing.assert_array_equal(np.moveaxis(open_store(tmp_path / "o.zarr")[0], 0, -1), ref)


def test_memory_budget_option_is_validated_and_rows_over_it_are_refused(tmp_path: Path) -> None:
    images = np.zeros((2, 1, 1024, 1024), np.uint8)
    with pytest.raises(ValueError, match="memory budget"):
        i2z.convert(tmp_path / "o.zarr", images=images, max_memory=1 << 20, num_parallel_workers=1, progress=False)
    with pytest.raises(ValueError, match="max_memory"):
        i2z.convert(tmp_path / "o.zarr", images=images, max_memory=0, progress=False)
    assert not (tmp_path / "o.zarr").exists()


# ---- item 6: appending to another tool's layout ------------------------------------------------------


def zarr_python_store(path: Path, data: np.ndarray, chunks: tuple, shards: tuple) -> None:
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    a = g.create_array("images", shape=data.shape, dtype=data.dtype, chunks=chunks, shards=shards,
                       dimension_names=["image", "channel", "y", "x"])
    a[:] = data


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_append_to_zarr_python_store_that_splits_channels_is_refused_before_writing(tmp_path: Path, make_images) -> None:
    """Inner chunks (1,1,32,32) split the channels: main "succeeded" at a shard boundary with
    shards zarr-python rejects, and failed mid-shard with a misleading checksum error."""
    old = make_images(4, 3, 64, 64)
    store = tmp_path / "zp.zarr"
    zarr_python_store(store, old, chunks=(1, 1, 32, 32), shards=(2, 3, 64, 64))
    before = tree_bytes(store)
    for n_new in (2, 1):  # at a shard boundary, and mid-shard
        with pytest.raises(ValueError, match=r"inner chunks \(1, 1, 32, 32\) split the 3 channels"):
            i2z.convert(store, images=make_images(n_new, 3, 64, 64, seed=1), append=True, progress=False)
        assert tree_bytes(store) == before


@pytest.mark.parametrize("n_old", [4, 3])  # the last shard full, or partial (its chunks carried)
def test_append_to_zarr_python_store_of_a_compatible_layout_reads_back_in_zarr_python(tmp_path: Path, make_images,
                                                                                     n_old: int) -> None:
    old = make_images(n_old, 3, 64, 64)
    store = tmp_path / "zp.zarr"
    zarr_python_store(store, old, chunks=(1, 3, 32, 32), shards=(2, 3, 64, 64))
    new = make_images(3, 3, 64, 64, seed=2)
    i2z.convert(store, images=new, append=True, progress=False)
    got = zarr.open_array(str(store / "images"), mode="r")[:]
    np.testing.assert_array_equal(got, np.concatenate([old, new]))
