"""TIFF decoding compared with tifffile's own decode of the same file.

Reference: ``tifffile.TiffFile(p).pages[0].asarray()`` -- the first page only, so a multi-page
file compares with its first page (``tifffile.imread`` would stack the pages). Raw sample values:
MINISWHITE is not inverted, palette images give their indices, extra samples stay channels;
planar (PLANARCONFIG_SEPARATE) images are (C, H, W). tifffile returns bool for 1-bit images;
we return uint8 0/1, compared with the bool array cast to uint8.

Images are written here by tifffile (and a few by Pillow). tifffile needs ``imagecodecs`` to
write LZW, PackBits, ZSTD, JPEG, WebP, LERC and the predictors: those cases are skipped, loudly,
without it. A small hand-written TIFF encoder below makes the hostile headers.
"""

from __future__ import annotations

import concurrent.futures
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
core = pytest.importorskip("images_to_zarr._core", reason="the C++ extension is not built")

try:
    import imagecodecs  # noqa: F401

    HAVE_IMAGECODECS = True
except ImportError:
    HAVE_IMAGECODECS = False

BAD_INPUT = (ValueError, OSError)
requires_imagecodecs = pytest.mark.skipif(not HAVE_IMAGECODECS, reason="tifffile needs imagecodecs for this file")
H, W = 37, 53  # odd sizes: 16x16 tiles overhang both edges


# ----------------------------------------------------------------------------- test images


def smooth(shape: tuple[int, ...], dtype, seed: int = 0) -> np.ndarray:
    """Gradients and sinusoids plus a little noise, spread over most of the dtype's range.

    `shape` is (H, W) or (H, W, C); each channel gets its own phase.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for k in range(c):
        phase = rng.uniform(0, 2 * np.pi)
        base = 0.5 + 0.25 * np.sin(x / (3.0 + k) + phase) * np.cos(y / (5.0 + 2 * k))
        base += 0.2 * (x / max(w - 1, 1) - y / max(h - 1, 1)) * (1 if k % 2 else -1)
        base += rng.normal(0, 0.02, size=(h, w))
        planes.append(np.clip(base, 0, 1))
    unit = np.stack(planes, axis=-1)
    if len(shape) == 2:
        unit = unit[..., 0]
    if dtype == np.bool_:
        return unit > 0.5
    if dtype.kind == "f":
        return ((unit - 0.3) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    # 64-bit ranges lose precision in float64: stay well inside them.
    lo, hi = (info.min, info.max) if dtype.itemsize < 8 else (info.min // 4, info.max // 4)
    return np.clip(np.round(lo + unit * (float(hi) - float(lo))), lo, hi).astype(dtype)


def needs_imagecodecs(compression, predictor=False) -> None:
    if not HAVE_IMAGECODECS and (compression not in (None, "zlib") or predictor):
        pytest.skip(f"tifffile needs imagecodecs to write compression={compression} predictor={predictor}")


def write(path: Path, data: np.ndarray, **kwargs) -> Path:
    needs_imagecodecs(kwargs.get("compression"), kwargs.get("predictor", False))
    tifffile.imwrite(path, data, **kwargs)
    return path


def reference(path: Path) -> np.ndarray:
    ref = tifffile.TiffFile(path).pages[0].asarray()
    return ref.astype(np.uint8) if ref.dtype == np.bool_ else ref


def check_matches_tifffile(path: Path, layout: str | None = None) -> tuple[np.ndarray, dict]:
    ref = reference(path)
    got, meta = core.read_image(str(path))
    assert meta["format"] == "tiff"
    assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert meta["dtype"] == str(ref.dtype)
    assert tuple(meta["shape"]) == ref.shape
    assert np.array_equal(got, ref)
    if layout is not None:
        assert meta["layout"] == layout
    return got, meta


# ----------------------------------------------------------------------------- pixel matrix

DTYPES = ["uint8", "uint16", "int16", "float32", "uint32", "int32", "float64", "int8"]
COMPRESSIONS = [None, "lzw", "zlib", "packbits", "zstd"]
# (channels, planarconfig): gray, RGB contiguous / separate, RGBA, gray + extra sample
SAMPLES = [(None, "contig"), (3, "contig"), (3, "separate"), (4, "contig"), (2, "separate")]


def _write_case(tmp_path, dtype, channels, planar, compression, tile, predictor) -> Path:
    shape = (H, W) if channels is None else (H, W, channels)
    data = smooth(shape, dtype, seed=zlib.crc32(f"{dtype}{channels}{compression}".encode()))
    kwargs: dict = {"compression": compression, "photometric": "minisblack"}
    if channels is not None:
        kwargs["planarconfig"] = planar
        if channels in (3, 4):
            kwargs["photometric"] = "rgb"
        if channels == 4:
            kwargs["extrasamples"] = ["unassalpha"]
        if planar == "separate":
            data = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    if tile:
        kwargs["tile"] = (16, 16)
    if predictor:
        kwargs["predictor"] = True
    return write(tmp_path / "img.tif", data, **kwargs)


@pytest.mark.parametrize("channels,planar", SAMPLES, ids=lambda v: str(v))
@pytest.mark.parametrize("compression", COMPRESSIONS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tile", [False, True], ids=["strips", "tiles"])
def test_matrix_matches_tifffile(tmp_path, dtype, channels, planar, compression, tile):
    path = _write_case(tmp_path, dtype, channels, planar, compression, tile, predictor=False)
    separate = planar == "separate" and channels is not None
    check_matches_tifffile(path, layout="CHW" if separate else "HWC")


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32", "float64", "int32"])
@pytest.mark.parametrize("channels,planar", [(None, "contig"), (3, "contig"), (3, "separate")], ids=str)
@pytest.mark.parametrize("tile", [False, True], ids=["strips", "tiles"])
def test_predictors_match_tifffile(tmp_path, dtype, channels, planar, compression, tile):
    # tifffile picks predictor 2 (horizontal) for integers and 3 (floating point) for floats.
    path = _write_case(tmp_path, dtype, channels, planar, compression, tile, predictor=True)
    page = tifffile.TiffFile(path).pages[0]
    assert page.predictor == (3 if np.dtype(dtype).kind == "f" else 2)
    check_matches_tifffile(path)


@pytest.mark.parametrize("dtype", ["uint64", "int64"])
def test_64bit_integers(tmp_path, dtype):
    check_matches_tifffile(write(tmp_path / "a.tif", smooth((H, W, 3), dtype), photometric="rgb", compression="zlib"))


def test_metadata_dict_contig_and_planar(tmp_path):
    data = smooth((H, W, 3), np.uint16)
    _, meta = check_matches_tifffile(write(tmp_path / "c.tif", data, photometric="rgb"))
    assert (meta["height"], meta["width"], meta["channels"], meta["layout"]) == (H, W, 3, "HWC")
    assert meta["shape"] == [H, W, 3]
    planar = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    got, meta = check_matches_tifffile(write(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate"))
    assert (meta["height"], meta["width"], meta["channels"], meta["layout"]) == (H, W, 3, "CHW")
    assert meta["shape"] == [3, H, W]
    assert np.array_equal(got, planar)


@pytest.mark.parametrize("rowsperstrip", [1, 5, 16, 36, 37, 1000])
def test_rows_per_strip(tmp_path, rowsperstrip):
    data = smooth((H, W, 3), np.uint8)
    path = write(tmp_path / "a.tif", data, photometric="rgb", rowsperstrip=rowsperstrip, compression="zlib")
    got, _ = check_matches_tifffile(path)
    assert np.array_equal(got, data)


@pytest.mark.parametrize("tile", [(16, 16), (32, 64), (64, 16), (48, 48)])
def test_tile_shapes(tmp_path, tile):
    data = smooth((H, 3 * W, 2), np.float32)
    path = write(tmp_path / "a.tif", data, photometric="minisblack", planarconfig="contig", tile=tile, compression="zlib")
    got, _ = check_matches_tifffile(path)
    assert np.array_equal(got, data)


@pytest.mark.parametrize("size", [(1, 1), (1, 53), (37, 1), (17, 16)])
def test_tiny_images(tmp_path, size):
    check_matches_tifffile(write(tmp_path / "a.tif", smooth(size, np.uint16)))
    check_matches_tifffile(write(tmp_path / "t.tif", smooth(size, np.uint8), tile=(16, 16), compression="zlib"))


def test_big_endian_and_bigtiff(tmp_path):
    data = smooth((H, W), np.uint16)
    got, _ = check_matches_tifffile(write(tmp_path / "be.tif", data.astype(">u2"), byteorder=">"))
    assert got.dtype == np.dtype("uint16") and np.array_equal(got, data)  # native byte order
    floats = smooth((H, W, 3), np.float32).astype(">f4")
    check_matches_tifffile(write(tmp_path / "bef.tif", floats, byteorder=">", photometric="rgb", compression="zlib"))
    check_matches_tifffile(write(tmp_path / "big.tif", smooth((H, W), np.int16), bigtiff=True, compression="zlib"))


def test_multipage_reads_first_page_only(tmp_path):
    stack = np.stack([smooth((H, W), np.uint8, seed=s) for s in range(5)])
    path = write(tmp_path / "a.tif", stack)
    assert len(tifffile.TiffFile(path).pages) == 5
    got, meta = check_matches_tifffile(path)
    assert meta["shape"] == [H, W]
    assert np.array_equal(got, stack[0])


# ----------------------------------------------------------------------------- photometric and bit depths


def test_miniswhite_is_not_inverted(tmp_path):
    data = smooth((H, W), np.uint8)
    got, _ = check_matches_tifffile(write(tmp_path / "a.tif", data, photometric="miniswhite"))
    assert np.array_equal(got, data)


def test_palette_gives_indices(tmp_path):
    data = smooth((H, W), np.uint8)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[0] = np.arange(256) * 257
    cmap[2] = 65535 - cmap[0]
    got, meta = check_matches_tifffile(write(tmp_path / "a.tif", data, photometric="palette", colormap=cmap))
    assert meta["shape"] == [H, W] and np.array_equal(got, data)


@pytest.mark.parametrize("tile", [None, (16, 16)], ids=["strips", "tiles"])
def test_bilevel_is_uint8_zero_one(tmp_path, tile):
    data = smooth((H, W), np.bool_)
    path = write(tmp_path / "a.tif", data, tile=tile)
    assert tifffile.TiffFile(path).pages[0].bitspersample == 1
    got, meta = check_matches_tifffile(path)
    assert got.dtype == np.uint8 and meta["dtype"] == "uint8"
    assert np.array_equal(got, data.astype(np.uint8))


def test_bilevel_planar(tmp_path):
    data = np.stack([smooth((H, W), np.bool_, seed=s) for s in range(3)])
    check_matches_tifffile(write(tmp_path / "a.tif", data, photometric="rgb", planarconfig="separate"), layout="CHW")


@requires_imagecodecs  # tifffile packs and unpacks 2/4-bit samples with imagecodecs
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("tile", [None, (16, 16)], ids=["strips", "tiles"])
def test_sub_byte_depths(tmp_path, bits, tile):
    data = (smooth((H, W), np.uint8) >> (8 - bits)).astype(np.uint8)
    path = write(tmp_path / "a.tif", data, bitspersample=bits, photometric="minisblack", tile=tile)
    assert tifffile.TiffFile(path).pages[0].bitspersample == bits
    got, _ = check_matches_tifffile(path)
    assert np.array_equal(got, data)


@requires_imagecodecs  # tifffile decodes CCITT and PackBits with imagecodecs
def test_pillow_bilevel_ccitt(tmp_path):
    from PIL import Image

    img = Image.fromarray(smooth((H, W), np.uint8)).convert("1")
    for compression in [None, "group3", "group4", "packbits"]:
        path = tmp_path / f"{compression}.tif"
        img.save(path, compression=compression)
        got, _ = check_matches_tifffile(path)
        assert np.array_equal(got, np.asarray(img).astype(np.uint8))


def test_pillow_written_modes(tmp_path):
    from PIL import Image

    rgb = smooth((H, W, 3), np.uint8)
    cases = {
        "rgb": Image.fromarray(rgb),
        "p": Image.fromarray(rgb).convert("P"),
        "la": Image.fromarray(rgb).convert("LA"),
        "i": Image.fromarray(smooth((H, W), np.int32)),
        "f": Image.fromarray(smooth((H, W), np.float32)),
    }
    for name, img in cases.items():
        for compression in [None, "tiff_adobe_deflate"] + (["tiff_lzw"] if HAVE_IMAGECODECS else []):
            path = tmp_path / f"{name}_{compression}.tif"
            img.save(path, compression=compression)
            check_matches_tifffile(path)


def test_cmyk_and_extra_samples(tmp_path):
    check_matches_tifffile(write(tmp_path / "cmyk.tif", smooth((H, W, 4), np.uint8), photometric="separated"))
    five = smooth((H, W, 5), np.uint16)
    path = write(tmp_path / "x.tif", five, photometric="rgb", extrasamples=["unassalpha", "unspecified"])
    got, _ = check_matches_tifffile(path)
    assert got.shape == (H, W, 5)


def test_ycbcr_without_subsampling_is_raw(tmp_path):
    data = smooth((H, W, 3), np.uint8)
    got, _ = check_matches_tifffile(write(tmp_path / "a.tif", data, photometric="ycbcr", subsampling=(1, 1)))
    assert np.array_equal(got, data)


@pytest.mark.parametrize("tile", [None, (16, 16)], ids=["strips", "tiles"])
def test_jpeg_compressed(tmp_path, tile):
    # tifffile writes JPEG-in-TIFF as YCbCr 2x2: both libraries decode with libjpeg to RGB.
    path = write(tmp_path / "rgb.tif", smooth((H, W, 3), np.uint8), compression="jpeg", tile=tile)
    assert tifffile.TiffFile(path).pages[0].photometric == 6
    check_matches_tifffile(path)
    check_matches_tifffile(write(tmp_path / "g.tif", smooth((H, W), np.uint8), compression="jpeg", tile=tile))


def test_webp_and_lerc(tmp_path):
    check_matches_tifffile(write(tmp_path / "w3.tif", smooth((H, W, 3), np.uint8), compression="webp"))
    check_matches_tifffile(write(tmp_path / "w4.tif", smooth((H, W, 4), np.uint8), compression="webp"))
    check_matches_tifffile(write(tmp_path / "l.tif", smooth((H, W), np.float32), compression="lerc"))


# ----------------------------------------------------------------------------- unsupported input


@pytest.mark.parametrize(
    "name,data,kwargs,message",
    [
        ("f16", np.ones((H, W), np.float16), {}, "16-bit floating-point"),
        ("c64", np.ones((H, W), np.complex64), {}, "complex"),
        ("vol", np.ones((4, 32, 48), np.uint8), {"volumetric": True, "tile": (2, 16, 16), "photometric": "minisblack",
                                               "planarconfig": "contig"}, "ImageDepth"),
        ("j2k", np.ones((H, W, 3), np.uint8), {"compression": "jpeg2000"}, "compression"),
    ],
)
def test_unsupported_is_a_clear_value_error(tmp_path, name, data, kwargs, message):
    path = tmp_path / f"{name}.tif"
    if name in ("u12", "j2k") and not HAVE_IMAGECODECS:
        pytest.skip("tifffile needs imagecodecs to write this file")
    tifffile.imwrite(path, data, **kwargs)
    with pytest.raises(ValueError, match=message):
        core.read_image(str(path))


def test_max_pixels_refused_at_probe(tmp_path):
    path = write(tmp_path / "a.tif", smooth((H, W, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match=rf"image of {H}x{W}x3 pixels exceeds the limit of 100 \(max_pixels\)"):
        core.read_image(str(path), max_pixels=100)
    got, _ = core.read_image(str(path), max_pixels=H * W * 3)
    assert got.shape == (H, W, 3)


# ----------------------------------------------------------------------------- hostile and corrupt files


def minimal_tiff(tags: list[tuple[int, int, int, int | bytes]], payload: bytes = b"") -> bytes:
    """Little-endian classic TIFF with one IFD at offset 8; `tags` are (tag, type, count, value),
    value an int (SHORT=3 / LONG=4, stored inline) or bytes (placed after the IFD). `payload`
    follows; its offset is 8 + IFD size + the bytes values."""
    n = len(tags)
    blob_off = 8 + 2 + 12 * n + 4
    entries, blob = b"", b""
    for tag, typ, count, value in sorted(tags):
        if isinstance(value, bytes):
            if len(value) <= 4:
                entries += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
            else:
                entries += struct.pack("<HHII", tag, typ, count, blob_off + len(blob))
                blob += value
        elif typ == 3:
            entries += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            entries += struct.pack("<HHII", tag, typ, count, value)
    return b"II*\0" + struct.pack("<IH", 8, n) + entries + b"\0\0\0\0" + blob + payload


def gray8(width: int, height: int, extra: list) -> list:
    return [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (277, 3, 1, 1)] + extra


def test_minimal_tiff_helper_is_valid(tmp_path):
    pixels = bytes(range(12))
    header = minimal_tiff(gray8(4, 3, [(273, 4, 1, 0), (278, 4, 1, 3), (279, 4, 1, 12)]))
    offset = len(header)
    path = tmp_path / "ok.tif"
    path.write_bytes(minimal_tiff(gray8(4, 3, [(273, 4, 1, offset), (278, 4, 1, 3), (279, 4, 1, 12)]), pixels))
    got, _ = check_matches_tifffile(path)
    assert np.array_equal(got, np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize(
    "name,tags",
    [
        # 100000 x 100000 x 3: refused before anything is allocated
        ("huge", [(256, 4, 1, 100000), (257, 4, 1, 100000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
                  (273, 4, 1, 200), (277, 3, 1, 3), (278, 4, 1, 1), (279, 4, 1, 100)]),
        # 65536 x 65536 tiles for a 10 x 10 image
        ("hugetile", gray8(10, 10, [(322, 4, 1, 65536), (323, 4, 1, 65536), (324, 4, 1, 200), (325, 4, 1, 100)])),
        # 2^31 - 1 strips declared, one present
        ("tallstrips", gray8(1, 2**31 - 1, [(273, 4, 1, 200), (278, 4, 1, 1), (279, 4, 1, 1)])),
        # 2^31 - 1 strip offsets claimed, far beyond the file
        ("manystrips", gray8(1, 2**31 - 1, [(273, 4, 2**31 - 1, 200), (278, 4, 1, 1), (279, 4, 2**31 - 1, 200)])),
        # a strip byte count far beyond the file
        ("bigcount", gray8(100, 100, [(273, 4, 1, 200), (278, 4, 1, 100), (279, 4, 1, 0xFFFFFFF0)])),
        ("rows0", gray8(100, 100, [(273, 4, 1, 200), (278, 4, 1, 0), (279, 4, 1, 10000)])),
        ("width0", gray8(0, 100, [(273, 4, 1, 200), (278, 4, 1, 100), (279, 4, 1, 10)])),
        ("bits7", [(256, 4, 1, 8), (257, 4, 1, 8), (258, 3, 1, 7), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 200),
                   (277, 3, 1, 1), (278, 4, 1, 8), (279, 4, 1, 64)]),
    ],
)
def test_hostile_headers_raise(tmp_path, name, tags):
    path = tmp_path / f"{name}.tif"
    path.write_bytes(minimal_tiff(tags, b"\1" * 300))
    with pytest.raises(BAD_INPUT):
        core.read_image(str(path))


def test_missing_strip_is_zero_filled_like_tifffile(tmp_path):
    # 3 strips for 4 rows of 1 row each: tifffile decodes the missing 4th as zeros (it used to
    # be an error with the memory-mapped handle, and read the file header as pixels without it).
    path = tmp_path / "fewstrips.tif"
    path.write_bytes(minimal_tiff(gray8(4, 4, [(273, 4, 3, struct.pack("<3I", 200, 204, 208)), (278, 4, 1, 1),
                                               (279, 4, 3, struct.pack("<3I", 4, 4, 4))]), b"\1" * 300))
    got, _ = check_matches_tifffile(path)
    assert not got[3].any() and got[:3].all()


def test_empty_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.tiff"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    header_only = tmp_path / "header.tif"
    header_only.write_bytes(b"II*\0\0\0\0\0")  # first IFD offset 0: no image
    png_named_tif = tmp_path / "png.tif"
    png_named_tif.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    for path in [empty, garbage, header_only, png_named_tif]:
        with pytest.raises(BAD_INPUT):
            core.read_image(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        core.read_image(str(tmp_path / "missing.tif"))
    folder = tmp_path / "folder.tif"
    folder.mkdir()
    with pytest.raises(OSError):
        core.read_image(str(folder))


CORRUPT_SOURCES = {
    "none": {},
    "zlib": {"compression": "zlib"},
    "lzw": {"compression": "lzw"},
    "tiles": {"compression": "zlib", "tile": (16, 16)},
    "planar": {"compression": "zlib", "planarconfig": "separate"},
    "jpeg": {"compression": "jpeg"},
}


@pytest.mark.parametrize("source", list(CORRUPT_SOURCES))
def test_truncated_files_raise(tmp_path, source, capfd):
    kwargs = CORRUPT_SOURCES[source]
    data = smooth((H, W, 3), np.uint8)
    if kwargs.get("planarconfig") == "separate":
        data = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    good = write(tmp_path / "good.tif", data, photometric="rgb", **kwargs).read_bytes()
    for cut in sorted({1, 4, 7, 8, 20, 100} | {len(good) * k // 10 for k in range(1, 10)} | {len(good) - 1}):
        path = tmp_path / f"cut{cut}.tif"
        path.write_bytes(good[:cut])
        with pytest.raises(BAD_INPUT):
            core.read_image(str(path))
    out, err = capfd.readouterr()
    assert out == "" and err == "", "libtiff must not print"


@pytest.mark.parametrize("source", list(CORRUPT_SOURCES))
def test_damaged_files_never_crash(tmp_path, source, capfd):
    """Random byte damage: either an error or some image of the declared shape, never a crash."""
    kwargs = CORRUPT_SOURCES[source]
    data = smooth((H, W, 3), np.uint8)
    if kwargs.get("planarconfig") == "separate":
        data = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    good = write(tmp_path / "good.tif", data, photometric="rgb", **kwargs).read_bytes()
    rng = np.random.default_rng(7)
    for i in range(60):
        damaged = bytearray(good)
        if i % 3 == 0:  # a run of garbage
            start = int(rng.integers(0, len(good) - 32))
            damaged[start : start + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        else:  # a few flipped bytes
            for pos in rng.integers(0, len(good), int(rng.integers(1, 8))):
                damaged[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"d{i}.tif"
        path.write_bytes(bytes(damaged))
        try:
            got, meta = core.read_image(str(path))
        except BAD_INPUT:
            continue
        assert list(got.shape) == meta["shape"]
    out, err = capfd.readouterr()
    assert out == "" and err == "", "libtiff must not print"


# ----------------------------------------------------------------------------- threads


def test_concurrent_reads_match_sequential(tmp_path):
    paths = []
    for i, (dtype, kwargs) in enumerate(
        [
            ("uint8", {"compression": "zlib", "tile": (16, 16)}),
            ("uint16", {"compression": "zlib", "planarconfig": "separate"}),
            ("float32", {"compression": "zlib"}),
            ("int16", {}),
        ]
    ):
        data = smooth((H, W, 3), dtype, seed=i)
        if kwargs.get("planarconfig") == "separate":
            data = np.ascontiguousarray(np.moveaxis(data, -1, 0))
        paths.append(write(tmp_path / f"{i}.tif", data, photometric="rgb", **kwargs))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(paths[0].read_bytes()[:300])
    expected = [core.read_image(str(p))[0] for p in paths]

    def read(k: int):
        if k % 5 == 4:
            with pytest.raises(BAD_INPUT):
                core.read_image(str(bad))
            return None
        return core.read_image(str(paths[k % 5]))[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(read, range(200)))
    for k, got in enumerate(results):
        if k % 5 != 4:
            assert np.array_equal(got, expected[k % 5])


# ----------------------------------------------------------------------------- issue 17, item 19


@pytest.mark.parametrize("kwargs", [{}, {"tile": (16, 16)}, {"rowsperstrip": 5}], ids=["plain", "tiled", "strips"])
@pytest.mark.parametrize("shape", [(H, W), (H, W, 3)], ids=["gray", "rgb"])
def test_12_bit_samples_decode_to_uint16_like_tifffile(tmp_path, kwargs, shape):
    """Refused on main ("12-bit ... not supported")."""
    if not HAVE_IMAGECODECS:
        pytest.skip("tifffile needs imagecodecs to write 12-bit samples")
    data = (smooth(shape, np.uint16) >> 4).astype(np.uint16)  # 12-bit values
    photometric = "rgb" if len(shape) == 3 else "minisblack"
    path = write(tmp_path / "u12.tif", data, bitspersample=12, photometric=photometric, **kwargs)
    assert tifffile.TiffFile(path).pages[0].bitspersample == 12
    got, _ = check_matches_tifffile(path)
    np.testing.assert_array_equal(got, data)  # and tifffile returns what was written


def test_planar_extra_sample_plane_with_a_zero_byte_strip_is_zero_filled_like_tifffile(tmp_path):
    """A separate-planes RGBA file whose alpha plane's strip has no bytes: refused on main."""
    data = np.ascontiguousarray(np.moveaxis(smooth((H, W, 4), np.uint8), -1, 0))
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate", extrasamples=[2], rowsperstrip=H)
    blob = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tf:
        tag = tf.pages[0].tags["StripByteCounts"]
        assert len(tag.value) == 4
        at = tag.valueoffset  # 4 counts of the tag's type, little-endian
        size = 2 if tag.dtype == 3 else 4
    blob[at + 3 * size : at + 4 * size] = bytes(size)
    path.write_bytes(bytes(blob))
    got, _ = check_matches_tifffile(path, layout="CHW")
    np.testing.assert_array_equal(got[:3], data[:3])
    assert not got[3].any()
