"""Hostile input (issue 10, design section 5): decompression bombs, absurd headers, huge page
counts, symlink loops, odd file names, hostile CSVs, damaged stores, disk full and read-only
output. Every case must end in a per-image error or a clear exception, never a crash, a huge
allocation, a hang, or a partially committed store."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image

import images_to_zarr as i2z
from images_to_zarr import _core
from images_to_zarr.reader import open_store

from conftest import crc32c

zarr = pytest.importorskip("zarr")

GOOD = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)


def errors_by_name(parquet: Path) -> dict[str, str | None]:
    t = pq.read_table(parquet)
    return dict(zip(t.column("filename").to_pylist(), t.column("error").to_pylist()))


# ---- byte-level builders --------------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming(width: int, height: int, color_type: int = 2, bit_depth: int = 8) -> bytes:
    """A structurally valid PNG whose header claims width x height, with a few bytes of IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def tiff_claiming(width: int, height: int, *, next_ifd_self: bool = False) -> bytes:
    """A little-endian classic TIFF with one uncompressed 8-bit strip of 16 bytes whose IFD
    claims width x height; optionally its next-IFD pointer loops back to itself."""
    SHORT, LONG = 3, 4
    entries = [(256, LONG, width), (257, LONG, height), (258, SHORT, 8), (259, SHORT, 1), (262, SHORT, 1),
               (273, LONG, 0), (277, SHORT, 1), (278, LONG, height), (279, LONG, 16)]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        if tag == 273:
            value = data_offset
        fmt = "<HHIHH" if typ == SHORT else "<HHII"
        out += struct.pack(fmt, tag, typ, 1, value, 0) if typ == SHORT else struct.pack(fmt, tag, typ, 1, value)
    out += struct.pack("<I", ifd_offset if next_ifd_self else 0)
    out += bytes(range(16))
    return bytes(out)


def fits_from_cards(cards: list[str], data: bytes = b"") -> bytes:
    header = "".join(c.ljust(80)[:80] for c in cards + ["END"])
    header += " " * (-len(header) % 2880)
    return header.encode("ascii") + data + b"\0" * (-len(data) % 2880)


def peak_rss_of_convert(out: Path, folder: Path) -> tuple[int, dict[str, str | None]]:
    """Runs convert() in a fresh interpreter; returns its peak RSS in bytes and the error column."""
    code = textwrap.dedent(f"""
        import json, sys
        import images_to_zarr as i2z
        assert i2z._core.__file__ == {_core.__file__!r}, "the child must load the parent's extension"
        import pyarrow.parquet as pq
        store = i2z.convert({str(out)!r}, folders={str(folder)!r}, progress=False)
        t = pq.read_table(store.parent / (store.stem + "_metadata.parquet"))
        json.dump(dict(zip(t.column("filename").to_pylist(), t.column("error").to_pylist())), sys.stdout)
    """)
    with tempfile.TemporaryFile() as err:  # a file, so a chatty child cannot block on a full pipe
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # wait4: this child's own peak RSS
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        assert proc.returncode == 0, err.read().decode(errors="replace")
    return usage.ru_maxrss * 1024, json.loads(stdout)


# An allocation of the claimed size would be tens of GB; the interpreter with numpy and pyarrow
# (plus ASan's shadow memory under `make test-asan`) stays well below this.
RSS_LIMIT = 1536 << 20


# ---- decompression bombs and absurd headers ---------------------------------------------------------


def test_png_and_tiff_bombs_are_per_image_errors_without_allocating(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(GOOD).save(d / "a_good.png")
    (d / "b_bomb_rgb.png").write_bytes(png_claiming(100000, 100000))
    (d / "c_bomb_gray16.png").write_bytes(png_claiming(100000, 100000, color_type=0, bit_depth=16))
    (d / "d_bomb_max.png").write_bytes(png_claiming(2**31 - 1, 2**31 - 1))
    (d / "e_bomb.tif").write_bytes(tiff_claiming(100000, 100000))
    (d / "f_bomb_max.tif").write_bytes(tiff_claiming(2**32 - 1, 2**32 - 1))
    t0 = time.monotonic()
    rss, errors = peak_rss_of_convert(tmp_path / "o.zarr", d)
    assert time.monotonic() - t0 < 60
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"
    assert errors["a_good.png"] is None
    for name in ("b_bomb_rgb.png", "c_bomb_gray16.png", "d_bomb_max.png", "e_bomb.tif"):
        # The pixel bound itself, not an allocation failure caught afterwards.
        assert errors[name] and "max_pixels" in errors[name], (name, errors[name])
    # libtiff refuses a 2^32-1 square strip itself (its strip size overflows) at open.
    assert errors["f_bomb_max.tif"] and re.search("max_pixels|overflow", errors["f_bomb_max.tif"])
    s = open_store(tmp_path / "o.zarr")
    assert s.shape == (6, 1, 12, 10)
    np.testing.assert_array_equal(s[0][0], GOOD)
    assert not s[1:].any()


@pytest.mark.parametrize(
    "name, cards",
    [
        ("huge_axes", ["SIMPLE  = T", "BITPIX  = -64", "NAXIS   = 2", "NAXIS1  = 100000", "NAXIS2  = 100000"]),
        ("overflowing_product", ["SIMPLE  = T", "BITPIX  = 16", "NAXIS   = 3", "NAXIS1  = 2147483647",
                                 "NAXIS2  = 2147483647", "NAXIS3  = 2147483647"]),
        ("naxis_1000", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 1000"]),
        ("naxis_negative", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = -3"]),
        ("axis_negative", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 2", "NAXIS1  = -5", "NAXIS2  = 4"]),
        ("axis_beyond_int64", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 2", "NAXIS1  = 99999999999999999999999",
                               "NAXIS2  = 4"]),
        # cfitsio 4.2 keeps 99 axes (FITSfile::imgnaxis[99]): more overflowed its heap struct,
        # and from 104 on crashed the process (found by fuzz_fits).
        ("naxis_100", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 100"] + [f"NAXIS{i:<3d}= 1" for i in range(1, 101)]),
        ("naxis_104", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 104"] + [f"NAXIS{i:<3d}= 1" for i in range(1, 105)]),
        ("naxis_999", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 999"] + [f"NAXIS{i:<3d}= 2" for i in range(1, 1000)]),
        ("ext_naxis_999", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 0", "EXTEND  = T", "END"] + [""] * 31
         + ["XTENSION= 'IMAGE   '", "BITPIX  = 8", "NAXIS   = 999"]
         + [f"NAXIS{i:<3d}= 1" for i in range(1, 1000)] + ["PCOUNT  = 0", "GCOUNT  = 1"]),
        ("bitpix_absurd", ["SIMPLE  = T", "BITPIX  = 12345", "NAXIS   = 2", "NAXIS1  = 4", "NAXIS2  = 4"]),
        # cfitsio's ffgtbp strcpy()d a bare-text TTYPEn filling the value field into 70 bytes.
        ("table_ttype_bare_text", ["SIMPLE  = T", "BITPIX  = 8", "NAXIS   = 0", "EXTEND  = T", "END"] + [""] * 31
         + ["XTENSION= 'BINTABLE'", "BITPIX  = 8", "NAXIS   = 2", "NAXIS1  = 4", "NAXIS2  = 1", "PCOUNT  = 0",
            "GCOUNT  = 1", "TFIELDS = 1", "TTYPE1  = " + "x" * 70, "TFORM1  = 'J'"]),
        # cfitsio's ffc2j overflowed its message buffer on a long unconvertible value (abort).
        ("blank_long_string", ["SIMPLE  = T", "BITPIX  = 16", "NAXIS   = 2", "NAXIS1  = 4", "NAXIS2  = 4",
                               "BLANK   = '" + "a" * 40 + "'"]),
    ],
)
def test_fits_with_absurd_naxis_is_a_per_image_error(tmp_path: Path, name: str, cards: list[str]) -> None:
    from astropy.io import fits

    d = tmp_path / "in"
    d.mkdir()
    fits.PrimaryHDU(GOOD.astype(np.int16)).writeto(d / "a_good.fits")
    (d / f"b_{name}.fits").write_bytes(fits_from_cards(cards, b"\0" * 64))
    rss, errors = peak_rss_of_convert(tmp_path / "o.zarr", d)
    assert rss < RSS_LIMIT, f"peak RSS {rss >> 20} MiB"
    assert errors["a_good.fits"] is None
    assert errors[f"b_{name}.fits"], f"b_{name}.fits should have failed"
    if name in ("huge_axes", "overflowing_product"):
        assert "max_pixels" in errors[f"b_{name}.fits"]


@pytest.mark.parametrize("old, new", [(b"ZTILE2  =", "ZTILE2  =                    0"),
                                      (b"ZNAME1  = 'BLOCKSIZE'", "ZTILE1  = 'BLOCKSIZE'"),
                                      (b"ZVAL1   =", "ZVAL1   =                    0"),
                                      (b"ZNAXIS1 =", "ZNAXIS1 = " + "x" * 40),
                                      # cfitsio reads "(" through the first ")", here the comment's
                                      (b"ZVAL2   =", "ZVAL2   =           (        2 / bytes per pixel (1, 2, 4, or 8)")],
                         ids=["ztile_zero", "duplicate_ztile_string", "rice_blocksize_zero", "znaxis1_junk",
                              "complex_zval2_closed_in_comment"])
def test_fits_tile_compressed_with_bad_tile_size_is_a_per_image_error(tmp_path: Path, old: bytes, new: str) -> None:
    """cfitsio 4.2 divides by the tile and RICE block sizes (0, or a ZTILEn it cannot read, was
    SIGFPE) and overflows a message buffer on long invalid integer values (abort); found by
    fuzz_fits."""
    error = convert_tile_compressed_with_cards(tmp_path, [(old, new)])
    assert error and re.search(r"tile-compressed|invalid Z", error), error


def convert_tile_compressed_with_cards(tmp_path: Path, cards: list[tuple[bytes, str]]) -> str | None:
    """Converts a good FITS and a RICE tile-compressed one whose header card starting with each
    `old` is replaced by `new`; returns the latter's error (the good one must convert)."""
    from astropy.io import fits

    d = tmp_path / "in"
    d.mkdir()
    fits.PrimaryHDU(GOOD.astype(np.int16)).writeto(d / "a_good.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(GOOD.astype(np.int16), compression_type="RICE_1")]).writeto(
        d / "b_tiles.fits")
    blob = bytearray((d / "b_tiles.fits").read_bytes())
    for old, new in cards:
        at = blob.index(old)
        blob[at:at + 80] = new.ljust(80).encode("latin-1")
    (d / "b_tiles.fits").write_bytes(bytes(blob))
    _, errors = peak_rss_of_convert(tmp_path / "o.zarr", d)
    assert errors["a_good.fits"] is None
    return errors["b_tiles.fits"]


def test_fits_tile_compressed_with_a_later_garbage_zimage_card_is_still_guarded(tmp_path: Path) -> None:
    """A second, unreadable ZIMAGE card after ZIMAGE = T must not hide the tile-compressed HDU from
    the header guard: cfitsio still treats it as compressed and divided by ZTILE2 = 0 (SIGFPE;
    fuzz_fits finding 13)."""
    error = convert_tile_compressed_with_cards(
        tmp_path, [(b"ZTILE2  =", "ZTILE2  =                    0"), (b"EXTNAME =", "ZIMAGE  =  \xe0 T")])
    assert error and "tile-compressed" in error, error


def test_tiff_with_thousands_of_pages_reads_only_page_zero(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    pages = np.random.default_rng(0).integers(0, 255, (5000, 6, 5), dtype=np.uint8)
    tifffile.imwrite(d / "many.tif", pages, photometric="minisblack", metadata=None)
    with tifffile.TiffFile(d / "many.tif") as tf:
        assert len(tf.pages) == 5000
    (d / "loop.tif").write_bytes(tiff_claiming(4, 4, next_ifd_self=True))
    t0 = time.monotonic()
    store = i2z.convert(tmp_path / "o.zarr", folders=d, progress=False, pad=True)
    assert time.monotonic() - t0 < 20
    errors = errors_by_name(tmp_path / "o_metadata.parquet")
    assert errors == {"loop.tif": None, "many.tif": None}
    s = open_store(store)
    np.testing.assert_array_equal(s[1][0, :6, :5], pages[0])
    np.testing.assert_array_equal(s[0][0, :4, :4], np.arange(16, dtype=np.uint8).reshape(4, 4))


# ---- discovery and file names ---------------------------------------------------------------------------


def test_symlink_loops_in_recursive_discovery(tmp_path: Path) -> None:
    d = tmp_path / "in"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "other").mkdir()
    Image.fromarray(GOOD).save(d / "a.png")
    Image.fromarray(GOOD + 1).save(d / "sub" / "deeper" / "b.png")
    (d / "sub" / "deeper" / "up").symlink_to(d, target_is_directory=True)  # loop to the root
    (d / "other" / "to_sub").symlink_to(d / "sub", target_is_directory=True)  # mutual aliases
    (d / "sub" / "to_other").symlink_to(d / "other", target_is_directory=True)
    (d / "self").symlink_to(d / "self")  # ELOOP on stat
    (d / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    t0 = time.monotonic()
    files, _ = _core.discover_files([str(d)], True)
    assert time.monotonic() - t0 < 5
    assert sorted(Path(f).name for f in files) == ["a.png", "b.png"]
    store = i2z.convert(tmp_path / "o.zarr", folders=d, recursive=True, progress=False)
    assert open_store(store).shape[0] == 2


ODD_NAMES = ["with space.png", "ünïcødé_日本語.png", "new\nline.png", "tab\there.png", "quote'\"s.png",
             "-leading-dash.png", "%s%n%d.png", "semi;colon,comma.png", " leading space.png"]


def test_file_names_with_spaces_unicode_and_newlines(tmp_path: Path) -> None:
    d = tmp_path / "in"
    d.mkdir()
    for i, name in enumerate(ODD_NAMES):
        Image.fromarray(GOOD + i).save(d / name)
    csv = tmp_path / "m.csv"
    rows = ["filename,label"] + ['"' + n.replace('"', '""') + f'",{i}' for i, n in enumerate(ODD_NAMES)]
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    store = i2z.convert(tmp_path / "o.zarr", folders=d, metadata=csv, progress=False)
    t = pq.read_table(tmp_path / "o_metadata.parquet")
    names = t.column("filename").to_pylist()
    assert sorted(names) == sorted(ODD_NAMES)
    assert all(e is None for e in t.column("error").to_pylist())
    s = open_store(store)
    for row, (name, label) in enumerate(zip(names, t.column("label").to_pylist())):
        assert label == ODD_NAMES.index(name)
        np.testing.assert_array_equal(s[row][0], GOOD + label)


def test_non_utf8_file_name_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(GOOD).save(d / "ok.png")
    Image.fromarray(GOOD).save(os.fsencode(d) + b"/bad\xff\xfe.png")
    files, warnings = _core.discover_files([str(d)], False)
    assert [Path(f).name for f in files] == ["ok.png"]
    assert any("not valid UTF-8" in w and "bad\\xff\\xfe.png" in w for w in warnings), warnings
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "o.zarr", folders=d, progress=False)
    assert "not valid UTF-8" in caplog.text
    assert open_store(store).shape[0] == 1


# ---- hostile CSVs ------------------------------------------------------------------------------------------


@pytest.fixture()
def two_images(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(GOOD).save(d / "a.png")
    Image.fromarray(GOOD + 1).save(d / "b.png")
    return d


def test_csv_duplicate_filenames_name_them(tmp_path: Path, two_images: Path) -> None:
    csv = tmp_path / "dup.csv"
    csv.write_text("filename,v\na.png,1\nb.png,2\na.png,3\nb.png,4\nc.png,5\n")
    with pytest.raises(ValueError, match=r"more than once: a\.png, b\.png"):
        i2z.convert(tmp_path / "o.zarr", folders=two_images, metadata=csv, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_csv_missing_values_quoted_commas_and_bom(tmp_path: Path, two_images: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_bytes('\ufefffilename,v,note\na.png,,"x, y, ""z"""\nb.png,2,\n'.encode("utf-8"))
    i2z.convert(tmp_path / "o.zarr", folders=two_images, metadata=csv, progress=False)
    t = pq.read_table(tmp_path / "o_metadata.parquet")
    assert t.column("filename").to_pylist() == ["a.png", "b.png"]
    assert t.column("v").to_pylist() == [None, 2]
    assert t.column("note").to_pylist()[0] == 'x, y, "z"'


def test_csv_row_without_filename_is_a_clear_error(tmp_path: Path, two_images: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("filename,v\na.png,1\n,2\n")
    with pytest.raises(ValueError, match=r"m\.csv has an empty filename in data row\(s\) 2"):
        i2z.convert(tmp_path / "o.zarr", folders=two_images, metadata=csv, progress=False)
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("blob", [b"filename,v\na.png,\xff\xfe\n", b"filename,v\n\xe9t\xe9.png,1\n",
                                  b"\xff\xfefilename,v\na.png,1\n", b"filename,v\na.png,1\nb.png,2,3,4\n"])
def test_csv_undecodable_or_ragged_is_a_clear_error(tmp_path: Path, two_images: Path, blob: bytes) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(blob)
    with pytest.raises(ValueError, match=r"bad\.csv"):
        i2z.convert(tmp_path / "o.zarr", folders=two_images, metadata=csv, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_csv_filename_outside_the_input_folders_is_not_followed(tmp_path: Path, two_images: Path,
                                                                monkeypatch, caplog) -> None:
    Image.fromarray(GOOD + 7).save(tmp_path / "secret.png")
    secret_abs = tmp_path / "secret.png"
    csv = tmp_path / "m.csv"
    csv.write_text(f"filename,v\na.png,1\n../secret.png,2\n{secret_abs},3\n../../../../etc/passwd,4\n")
    seen: list[list[str]] = []
    real = _core.convert_files

    def spy(store, files, options, mode):
        seen.append(list(files))
        return real(store, files, options, mode)

    monkeypatch.setattr(_core, "convert_files", spy)
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "o.zarr", folders=two_images, metadata=csv, progress=False)
    # The engine was handed exactly the discovered files, all inside the input folder.
    assert len(seen) == 1
    assert sorted(Path(f).name for f in seen[0]) == ["a.png", "b.png"]
    assert all(Path(f).resolve().is_relative_to(two_images.resolve()) for f in seen[0])
    t = pq.read_table(tmp_path / "o_metadata.parquet")
    assert t.column("filename").to_pylist() == ["a.png", "b.png"]
    assert all(two_images.name in p for p in t.column("source_path").to_pylist())
    assert "secret.png" in caplog.text  # reported as a CSV row that matches no image
    s = open_store(store)
    assert s.shape[0] == 2
    assert not np.array_equal(s[0][0], GOOD + 7) and not np.array_equal(s[1][0], GOOD + 7)


# ---- damaged stores -------------------------------------------------------------------------------------


@pytest.fixture()
def zarr_python_store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 2-shard store by zarr-python with a crc32c codec inside each shard (index at the end)."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec

    data = np.random.default_rng(1).integers(0, 60000, (8, 1, 6, 5), dtype=np.uint16)
    path = tmp_path / "zp.zarr"
    arr = zarr.create(shape=data.shape, chunks=(4, 1, 6, 5), dtype="uint16", fill_value=0, zarr_format=3,
                      store=zarr.storage.LocalStore(path),
                      codecs=[ShardingCodec(chunk_shape=(1, 1, 6, 5),
                                            codecs=[BytesCodec(), ZstdCodec(level=1), Crc32cCodec()])])
    arr[...] = data
    return path, data


def shard_path(store: Path, i: int) -> Path:
    return store / "c" / str(i) / "0" / "0" / "0"


def rewrite_index(shard: Path, n: int, edit) -> None:
    b = bytearray(shard.read_bytes())
    idx = b[-(16 * n + 4):]
    entries = [list(struct.unpack_from("<QQ", idx, 16 * k)) for k in range(n)]
    edit(entries)
    body = b"".join(struct.pack("<QQ", o, s) for o, s in entries)
    b[-(16 * n + 4):] = body + struct.pack("<I", crc32c(body))
    shard.write_bytes(bytes(b))


def test_intact_zarr_python_store_reads(zarr_python_store) -> None:
    path, data = zarr_python_store
    np.testing.assert_array_equal(open_store(path)[:], data)


def test_bad_crc32c_in_a_chunk_names_the_shard(zarr_python_store) -> None:
    path, data = zarr_python_store
    shard = shard_path(path, 1)
    b = bytearray(shard.read_bytes())
    b[3] ^= 0x01  # inside the first inner chunk of shard 1 (its zstd frame, covered by crc32c)
    shard.write_bytes(bytes(b))
    s = open_store(path)
    np.testing.assert_array_equal(s[0:4], data[0:4])
    with pytest.raises(ValueError, match=r"c/1/0/0/0 \(inner chunk.*crc32c"):
        s[4]


@pytest.mark.parametrize("compressor", ["lz4", "zstd", "none"])
def test_every_flipped_payload_byte_of_our_store_names_the_shard(tmp_path: Path, compressor: str) -> None:
    """Our stores end the inner chain with crc32c (checksum=True, the default): flipping any byte of
    a chunk payload is an error naming the shard and the chunk. Without it most flips decode to
    wrong pixels silently (FUZZING.md), which this also checks so the test can fail."""
    data = np.random.default_rng(4).integers(0, 40, (2, 1, 16, 16), dtype=np.uint8)
    store = i2z.convert(tmp_path / "ours.zarr", images=data, compressor=compressor, progress=False)
    plain = i2z.convert(tmp_path / "plain.zarr", images=data, compressor=compressor, checksum=False, progress=False)

    def flips(path: Path) -> tuple[int, int, int]:
        shard = path / "images" / "c" / "0" / "0" / "0" / "0"
        original = shard.read_bytes()
        off0, n0 = struct.unpack_from("<QQ", original, len(original) - 36)  # index of 2 chunks + crc
        raised = silent = 0
        for i in range(off0, off0 + n0):
            b = bytearray(original)
            b[i] ^= 0x10
            shard.write_bytes(bytes(b))
            try:
                got = open_store(path)[0]
            except ValueError as e:
                assert re.search(r"c/0/0/0/0 \(inner chunk \[0, 0, 0, 0\]\)", str(e)), str(e)
                raised += 1
                continue
            silent += not np.array_equal(got, data[0])
        shard.write_bytes(original)
        return raised, silent, n0

    raised, silent, total = flips(store)
    assert raised == total > 4 and silent == 0
    _, silent_plain, _ = flips(plain)
    assert silent_plain > 0


def test_bad_index_crc32c_names_the_shard(zarr_python_store) -> None:
    path, _ = zarr_python_store
    shard = shard_path(path, 0)
    b = bytearray(shard.read_bytes())
    b[-1] ^= 0xFF
    shard.write_bytes(bytes(b))
    with pytest.raises(ValueError, match=r"c/0/0/0/0: shard index checksum mismatch"):
        open_store(path)[0]


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda e: e.__setitem__(0, [10**6, 10]), r"beyond|truncated"),
        (lambda e: e.__setitem__(1, [2**64 - 1, 5]), r"half empty"),
        (lambda e: e.__setitem__(2, [2**63, 2**63]), r"beyond|truncated"),
        (lambda e: e.__setitem__(3, [0, 0]), r"zstd|empty|crc32c|decod"),
        (lambda e: e.__setitem__(0, [e[0][0] + 1, e[0][1] - 1]), r"crc32c|zstd|decod"),
    ],
)
def test_corrupt_index_with_valid_checksum_names_the_shard(zarr_python_store, edit, needle) -> None:
    path, _ = zarr_python_store
    rewrite_index(shard_path(path, 1), 4, edit)
    with pytest.raises(ValueError, match=r"c/1/0/0/0") as e:
        open_store(path)[4:8]
    assert re.search(needle, str(e.value)), str(e.value)


@pytest.mark.parametrize("keep", [0, 3, 19, 40, -68, -1])
def test_truncated_shard_names_the_shard(zarr_python_store, keep: int) -> None:
    path, _ = zarr_python_store
    shard = shard_path(path, 1)
    b = shard.read_bytes()
    shard.write_bytes(b[:keep] if keep >= 0 else b[:len(b) + keep])
    with pytest.raises(ValueError, match=r"c/1/0/0/0"):
        open_store(path)[4:8]


def test_truncated_shard_with_index_at_start_names_the_shard(tmp_path: Path) -> None:
    from zarr.codecs import BytesCodec, ShardingCodec

    data = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 1, 3, 3)
    path = tmp_path / "s.zarr"
    arr = zarr.create(shape=data.shape, chunks=data.shape, dtype="float32", zarr_format=3, fill_value=0,
                      store=zarr.storage.LocalStore(path),
                      codecs=[ShardingCodec(chunk_shape=(1, 1, 3, 3), codecs=[BytesCodec()], index_location="start")])
    arr[...] = data
    np.testing.assert_array_equal(open_store(path)[:], data)
    shard = shard_path(path, 0)
    b = shard.read_bytes()
    shard.write_bytes(b[: len(b) - 10])
    with pytest.raises(ValueError, match=r"c/0/0/0/0.*truncated"):
        open_store(path)[:]


def test_shard_replaced_by_a_directory_or_empty_file(zarr_python_store) -> None:
    path, _ = zarr_python_store
    shard = shard_path(path, 1)
    shard.write_bytes(b"")
    with pytest.raises(ValueError, match=r"c/1/0/0/0"):
        open_store(path)[5]


@pytest.mark.parametrize(
    "change",
    [
        {"shape": "8"},
        {"shape": [-8, 1, 6, 5]},
        {"shape": [8.5, 1, 6, 5]},
        {"shape": [8, 1, 6]},
        {"data_type": 7},
        {"data_type": "complex128"},
        {"chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [0, 1, 6, 5]}}},
        {"chunk_grid": {"name": "regular", "configuration": {"chunk_shape": "4"}}},
        {"chunk_grid": "regular"},
        {"codecs": {"name": "bytes"}},
        {"codecs": []},
        {"codecs": [{"name": "zstd"}]},
        {"codecs": [{"name": "sharding_indexed", "configuration": {"chunk_shape": [3, 1, 6, 5]}}]},
        {"fill_value": [1, 2]},
        {"fill_value": "not a number"},
        {"zarr_format": "3"},
        {"node_type": 5},
        {"chunk_key_encoding": {"name": "v2"}},
        {"storage_transformers": [{"name": "x"}]},
    ],
    ids=lambda c: json.dumps(c)[:60],
)
def test_zarr_json_with_wrong_types_is_a_clear_error(zarr_python_store, change) -> None:
    path, _ = zarr_python_store
    doc = json.loads((path / "zarr.json").read_text())
    doc.update(change)
    (path / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"zarr\.json"):
        open_store(path)[0]


@pytest.mark.parametrize("text", [b"", b"{", b"\xff\xfe\x00garbage", b"[]", b"null", b'{"zarr_format": 3}'])
def test_unparsable_zarr_json_is_a_clear_error(zarr_python_store, text: bytes) -> None:
    path, _ = zarr_python_store
    (path / "zarr.json").write_bytes(text)
    with pytest.raises(ValueError, match=r"zarr\.json"):
        open_store(path)[0]


# ---- disk full and read-only output -------------------------------------------------------------------


def mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {r.stderr.strip() or r.returncode}")


@pytest.fixture()
def tiny_fs(tmp_path: Path):
    mnt = tmp_path / "tiny"
    mount_tmpfs(mnt, "size=1m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def incompressible(n: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (n, 1, 128, 128), dtype=np.uint8)


def assert_no_store(store: Path) -> None:
    assert not store.exists(), f"{store} was committed"
    with pytest.raises(FileNotFoundError):
        open_store(store)


def test_disk_full_is_a_clear_error_and_commits_nothing(tiny_fs: Path) -> None:
    store = tiny_fs / "full.zarr"
    with pytest.raises(OSError, match=r"No space left on device"):
        i2z.convert(store, images=incompressible(100), compressor="none", chunk_shape=(1, 128, 128),
                    shard_images=4, progress=False)
    assert_no_store(store)
    assert not (tiny_fs / "full_metadata.parquet").exists()
    with open(tiny_fs / "full.zarr.i2z-lock") as lock:  # released (the file stays: see WriterLock)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


@pytest.mark.parametrize("leave_free", [2_000, 12_000, 20_000, 30_000, 34_500, 60_000])
def test_disk_full_at_any_step_commits_all_or_nothing(tiny_fs: Path, leave_free: int) -> None:
    """Fill the disk up to `leave_free` bytes, then write a small store: it fails at some step
    (shard, metadata, side-car, rename) with OSError and no store, or it succeeds and reads back."""
    filler = tiny_fs / "filler"
    st = os.statvfs(tiny_fs)
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_free))
    data = incompressible(2)[:, :, :64, :64]
    store = tiny_fs / "s.zarr"
    try:
        i2z.convert(store, images=data, compressor="none", chunk_shape=(1, 64, 64), progress=False)
    except OSError as e:
        assert "No space left on device" in str(e) and str(tiny_fs) in str(e), repr(e)
        assert_no_store(store)
        assert not list(tiny_fs.glob("s_metadata.parquet*")), "partial side-car left behind"
    else:
        np.testing.assert_array_equal(open_store(store)[:], data)


def test_read_only_output_is_a_clear_error(tmp_path: Path, two_images: Path) -> None:
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "size=1m")
    try:
        existing = i2z.convert(ro / "old.zarr", folders=two_images, progress=False)
        before = {p.relative_to(ro): p.read_bytes() for p in ro.rglob("*") if p.is_file()}
        r = subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with pytest.raises(OSError, match=r"[Rr]ead-only file system"):
            i2z.convert(ro / "new.zarr", folders=two_images, progress=False)
        assert_no_store(ro / "new.zarr")
        with pytest.raises(OSError, match=r"[Rr]ead-only file system"):
            i2z.convert(existing, folders=two_images, overwrite=True, progress=False)
        with pytest.raises(OSError, match=r"[Rr]ead-only file system"):
            i2z.convert(existing, folders=two_images, append=True, progress=False)
        after = {p.relative_to(ro): p.read_bytes() for p in ro.rglob("*") if p.is_file()}
        assert after == before  # the old store and its side-car are untouched
        assert open_store(existing).shape[0] == 2
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)
