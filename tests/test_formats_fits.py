"""FITS decoding (cpp/src/formats/fits.cpp) against astropy's own decode.

Every image is generated here (seeded numpy, smooth content plus a little noise), written with
astropy, read back by `images_to_zarr._core.read_image` and compared with `fits.getdata` /
`hdul[ext].data`: same values (NaN == NaN) and the same dtype (astropy's arrays are big-endian,
ours native, so dtypes are compared by name).
"""

import gzip
import json
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.io import fits
from images_to_zarr._core import read_image

H, W = 37, 53  # odd sizes on purpose


# ---------------------------------------------------------------------------------------------
# Helpers: test-image generation and comparison.


def smooth(shape, dtype, seed=0):
    """Gradients + sinusoids + a little noise, spanning most of `dtype`'s range."""
    rng = np.random.default_rng(seed)
    *lead, h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 0.5 + 0.25 * np.sin(x / 5.0) * np.cos(y / 7.0) + 0.2 * (x / w - y / h)
    base = np.broadcast_to(base, tuple(lead) + (h, w)).copy()
    for i, _ in enumerate(np.ndindex(*lead)):
        base.reshape(-1, h, w)[i] += 0.05 * i
    base += rng.normal(0.0, 0.02, size=base.shape)
    base = np.clip(base, 0.0, 1.0)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (base * 2000.0 - 500.0).astype(dt)
    info = np.iinfo(dt)
    lo, hi = float(info.min), float(info.max)
    if dt.itemsize == 8:  # stay within float64's exact range
        lo, hi = max(lo, -(2.0**52)), min(hi, 2.0**52)
    return np.round(lo + base * (hi - lo)).astype(dt)


def same(ours, ref):
    ref = np.asarray(ref)
    assert ours.dtype.name == ref.dtype.name, (ours.dtype, ref.dtype)
    assert ours.dtype.isnative
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.array_equal(ours, ref, equal_nan=ref.dtype.kind == "f")


def reference(path, ext=None):
    """What astropy returns for the selector(s), stacked as channels for a list."""
    if ext is None:
        return fits.getdata(path)
    with fits.open(path) as hdul:
        if len(ext) == 1:
            return np.array(hdul[ext[0]].data)
        # np.stack promotes the dtypes as numpy.result_type does.
        return np.stack([np.array(hdul[e].data) for e in ext])


def check(path, ext=None):
    ours, info = read_image(str(path), fits_extension=ext)
    ref = reference(path, ext)
    same(ours, ref)
    assert info["format"] == "fits"
    assert info["layout"] == "CHW"
    assert info["dtype"] == ref.dtype.name
    assert list(info["shape"]) == list(ref.shape)
    return ours, info


def write_primary(path, data, **cards):
    hdu = fits.PrimaryHDU(data)
    for k, v in cards.items():
        hdu.header[k] = v
    hdu.writeto(path, overwrite=True)
    return path


def header(info):
    return json.loads(info["fits_header"])


# ---------------------------------------------------------------------------------------------
# Plain images and dtypes.


@pytest.mark.parametrize(
    "dtype", ["uint8", "int16", "int32", "int64", "float32", "float64"]
)
def test_native_dtypes(tmp_path, dtype):
    path = write_primary(tmp_path / f"{dtype}.fits", smooth((H, W), dtype, seed=1))
    _, info = check(path)
    assert (info["height"], info["width"], info["channels"]) == (H, W, 1)
    assert info["fits_extension"] == "0"


@pytest.mark.parametrize(
    "dtype,bitpix,bzero",
    [
        ("uint16", 16, 32768),
        ("uint32", 32, 2**31),
        ("uint64", 64, 2**63),
        ("int8", 8, -128),
    ],
)
def test_unsigned_convention(tmp_path, dtype, bitpix, bzero):
    # astropy writes these dtypes as signed BITPIX with BZERO = 2^(bits-1) (int8: uint8 - 128).
    path = write_primary(tmp_path / f"{dtype}.fits", smooth((H, W), dtype, seed=2))
    hdr = fits.getheader(path)
    assert hdr["BITPIX"] == bitpix and hdr["BZERO"] == bzero
    check(path)


def test_uint16_extremes(tmp_path):
    data = smooth((H, W), "uint16", seed=3)
    data[0, :4] = [0, 1, 65534, 65535]
    check(write_primary(tmp_path / "u16.fits", data))


@pytest.mark.parametrize(
    "raw_dtype,bscale,bzero",
    [
        ("int16", 0.5, 10),  # -> float32
        ("int16", 0.1, -3.7),  # BSCALE not exact in float32: astropy scales in float32
        ("uint8", 2.0, 0),  # -> float32
        ("int32", 0.1, 3),  # -> float64
        ("int64", 1.0, 5),  # BZERO alone -> float64
        ("int16", 1.0, 100),  # BZERO not 32768 -> float32
        ("float32", 0.1, 3),  # float data scaled in float32
        ("float64", 2.5, -1),
    ],
)
def test_scaled_data(tmp_path, raw_dtype, bscale, bzero):
    raw = smooth((H, W), raw_dtype, seed=4)
    path = write_primary(tmp_path / "scaled.fits", raw, BSCALE=bscale, BZERO=bzero)
    ours, _ = check(path)
    assert ours.dtype.kind == "f"


@pytest.mark.parametrize(
    "raw_dtype,blank", [("int16", -32768), ("int32", 7), ("uint8", 255)]
)
def test_blank_becomes_nan(tmp_path, raw_dtype, blank):
    raw = smooth((H, W), raw_dtype, seed=5)
    raw[3, 4:9] = blank
    for cards in ({"BLANK": blank}, {"BLANK": blank, "BSCALE": 0.5, "BZERO": 10}):
        path = write_primary(tmp_path / "blank.fits", raw, **cards)
        ours, _ = check(path)
        assert np.isnan(ours[3, 4:9]).all()


def test_blank_zero_is_not_applied(tmp_path):
    # astropy converts to float32 but tests `if self._blank:`, so BLANK = 0 marks nothing.
    raw = smooth((H, W), "int16", seed=6)
    raw[0, 0] = 0
    ours, _ = check(write_primary(tmp_path / "blank0.fits", raw, BLANK=0))
    assert ours.dtype == np.float32 and ours[0, 0] == 0


def test_int8_with_blank_ignores_blank(tmp_path):
    # Documented difference: astropy raises here (it assigns NaN into an int8 array).
    raw = smooth((H, W), "uint8", seed=7)
    path = write_primary(tmp_path / "i8blank.fits", raw, BZERO=-128, BLANK=3)
    ours, _ = read_image(str(path))
    assert ours.dtype == np.int8
    assert np.array_equal(ours, (raw.astype(np.int16) - 128).astype(np.int8))


def test_blank_with_unsigned_convention_is_ignored(tmp_path):
    raw = smooth((H, W), "int16", seed=7)
    check(write_primary(tmp_path / "u16blank.fits", raw, BZERO=32768, BLANK=7))


@pytest.mark.parametrize("dtype", ["float32", "uint8", "int16"])
def test_cube_is_chw(tmp_path, dtype):
    path = write_primary(tmp_path / "cube.fits", smooth((3, H, W), dtype, seed=8))
    ours, info = check(path)
    assert ours.shape == (3, H, W)
    assert (info["channels"], info["height"], info["width"]) == (3, H, W)


def test_degenerate_fourth_axis_is_squeezed(tmp_path):
    data = smooth((1, 2, H, W), "float32", seed=9)
    path = write_primary(tmp_path / "4d.fits", data)
    ours, info = read_image(str(path))
    same(ours, fits.getdata(path)[0])
    assert list(info["shape"]) == [2, H, W]


def test_real_fourth_axis_is_an_error(tmp_path):
    path = write_primary(tmp_path / "4d.fits", smooth((2, 2, H, W), "float32", seed=9))
    with pytest.raises(ValueError, match="axes"):
        read_image(str(path))


def test_one_dimensional(tmp_path):
    path = write_primary(tmp_path / "spec.fits", smooth((1, W), "float32", seed=10)[0])
    _, info = check(path)
    assert (info["height"], info["width"], info["channels"]) == (1, W, 1)


@pytest.mark.parametrize("suffix", [".fit", ".fts", ".FITS"])
def test_other_extensions(tmp_path, suffix):
    check(write_primary(tmp_path / f"img{suffix}", smooth((H, W), "int16", seed=11)))


@pytest.mark.parametrize(
    "name", ["a[1].fits", "b(x).fits", "!c.fits", " lead.fits", "d+e.fits"]
)
def test_filenames_are_literal(tmp_path, name):
    # cfitsio's extended filename syntax must not apply to real file names.
    check(write_primary(tmp_path / name, smooth((H, W), "int16", seed=12)))


def test_long_path(tmp_path):
    # Longer than cfitsio's 1024-byte file-name buffer.
    d = tmp_path
    while len(str(d)) < 1100:
        d = d / ("d" * 100)
    d.mkdir(parents=True)
    check(write_primary(d / "img.fits", smooth((H, W), "int16", seed=13)))


# ---------------------------------------------------------------------------------------------
# HDU selection.


@pytest.fixture
def mef(tmp_path):
    """Primary int16 image + SCI float32 + ERR uint16 + DQ uint8 + a table + a cube."""
    path = tmp_path / "mef.fits"
    primary = fits.PrimaryHDU(smooth((H, W), "int16", seed=20))
    primary.header["EXPTIME"] = 30.0
    sci = fits.ImageHDU(smooth((H, W), "float32", seed=21), name="SCI")
    sci.header["EXPTIME"] = 12.5
    err = fits.ImageHDU(smooth((H, W), "uint16", seed=22), name="ERR")
    dq = fits.ImageHDU(smooth((H, W), "uint8", seed=23), name="DQ")
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="J", array=np.arange(5))], name="TAB"
    )
    cube = fits.ImageHDU(smooth((2, H, W), "float32", seed=24), name="CUBE")
    small = fits.ImageHDU(smooth((H - 1, W), "float32", seed=25), name="SMALL")
    sci2 = fits.ImageHDU(smooth((H, W), "int32", seed=26), name="SCI", ver=2)
    fits.HDUList([primary, sci, err, dq, table, cube, small, sci2]).writeto(path)
    return path


def test_default_is_primary_with_data(mef):
    _, info = check(mef)
    assert info["fits_extension"] == "0"
    assert header(info)["EXPTIME"] == 30.0


@pytest.mark.parametrize("ext", [0, 1, 2, 3, 5, -1, -3])
def test_select_by_index(mef, ext):
    _, info = check(mef, [ext])
    assert info["fits_extension"] == str(ext)


@pytest.mark.parametrize("name", ["SCI", "sci", "Err", "PRIMARY", "cube"])
def test_select_by_name(mef, name):
    _, info = check(mef, [name])
    assert info["fits_extension"] == name


def test_name_takes_first_match(mef):
    ours, _ = read_image(str(mef), fits_extension=["SCI"])
    assert ours.dtype == np.float32  # HDU 1, not the int32 SCI,2 at HDU 7


def test_stack_by_name(mef):
    ours, info = check(mef, ["SCI", "ERR"])
    assert ours.shape == (2, H, W) and ours.dtype == np.float32
    assert (info["channels"], info["height"], info["width"]) == (2, H, W)
    assert info["fits_extension"] == '["SCI", "ERR"]'
    assert header(info)["EXPTIME"] == 12.5  # the first HDU's header


def test_stack_mixed_dtypes_promotes(mef):
    # int16 + float32 + uint16 -> float32 (numpy's result_type).
    ours, info = check(mef, [0, 1, "ERR"])
    assert ours.dtype == np.float32
    assert info["fits_extension"] == '[0, 1, "ERR"]'
    # int16 + uint16 -> int32; uint8 + int16 -> int16
    assert check(mef, [0, "ERR"])[0].dtype == np.int32
    assert check(mef, ["DQ", 0])[0].dtype == np.int16
    # int32 + float32 -> float64
    assert check(mef, [7, 1])[0].dtype == np.float64


def test_stack_shape_mismatch_names_both(mef):
    with pytest.raises(ValueError, match=r"HDU 6.*\(36, 53\).*HDU 1.*\(37, 53\)"):
        read_image(str(mef), fits_extension=["SCI", "SMALL"])


def test_stack_of_cube_is_an_error(mef):
    with pytest.raises(ValueError, match="2-D"):
        read_image(str(mef), fits_extension=["SCI", "CUBE"])


@pytest.mark.parametrize(
    "ext,pattern",
    [
        ([8], "out of range"),
        ([-10], "out of range"),
        (["NOPE"], "NOPE"),
        (["TAB"], "table"),
        ([4], "table"),
        (["SCI", 42], "out of range"),
    ],
)
def test_selector_errors(mef, ext, pattern):
    with pytest.raises(ValueError, match=pattern):
        read_image(str(mef), fits_extension=ext)


def test_empty_primary_falls_back_to_first_extension(tmp_path):
    path = tmp_path / "ext.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(smooth((H, W), "float32", seed=30), name="SCI"),
        ]
    ).writeto(path)
    _, info = check(path)
    assert info["fits_extension"] == "1"
    assert header(info)["EXTNAME"] == "SCI"


def test_no_image_data_is_an_error(tmp_path):
    only = tmp_path / "only.fits"
    fits.PrimaryHDU().writeto(only)
    with pytest.raises(ValueError, match="no image data"):
        read_image(str(only))
    table = tmp_path / "table.fits"
    cols = [fits.Column(name="a", format="E", array=np.ones(3))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(
        table
    )
    with pytest.raises(ValueError, match="table"):
        read_image(str(table))
    with pytest.raises(ValueError, match="no image data"):
        read_image(str(table), fits_extension=[0])


def test_zero_length_axis_is_an_error(tmp_path):
    path = tmp_path / "zero.fits"
    hdu = fits.PrimaryHDU(np.zeros((0, 5), np.int16))
    hdu.writeto(path)
    with pytest.raises(ValueError, match="no image data"):
        read_image(str(path))


# ---------------------------------------------------------------------------------------------
# Tile-compressed HDUs (.fz) and gzip (.fits.gz).


@pytest.mark.parametrize(
    "dtype,ctype",
    [
        ("int16", "RICE_1"),
        ("uint16", "RICE_1"),
        ("int8", "RICE_1"),
        ("uint32", "GZIP_1"),
        ("int32", "GZIP_1"),
        ("uint8", "GZIP_2"),
        ("int16", "HCOMPRESS_1"),
        ("int16", "PLIO_1"),
        ("float32", "GZIP_1"),  # lossy: quantised with subtractive dithering
        ("float32", "RICE_1"),
        ("float64", "GZIP_2"),
    ],
)
def test_tile_compressed(tmp_path, dtype, ctype):
    data = smooth((H, W), dtype, seed=40)
    if ctype == "PLIO_1":
        data = (data.astype(np.int64) % 4000).astype(np.int16) + 100
    comp = fits.CompImageHDU(
        data, compression_type=ctype, name="SCI", tile_shape=(16, 16)
    )
    comp.header["EXPTIME"] = 42.5
    path = tmp_path / "img.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    _, info = check(path)  # default: primary has no data -> HDU 1
    assert info["fits_extension"] == "1"
    check(path, [1])
    check(path, ["SCI"])
    hdr = header(info)
    assert (hdr["NAXIS1"], hdr["NAXIS2"], hdr["EXPTIME"]) == (W, H, 42.5)
    assert "ZIMAGE" not in hdr and hdr["BITPIX"] == fits.getheader(path, 1)["BITPIX"]


def test_tile_compressed_float_with_nan(tmp_path):
    data = smooth((H, W), "float32", seed=41)
    data[5, 5:20] = np.nan
    path = tmp_path / "nan.fz"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]
    ).writeto(path)
    ours, _ = check(path)
    assert np.isnan(ours[5, 5:20]).all()


def test_tile_compressed_scaled_and_cube(tmp_path):
    raw = smooth((3, H, W), "int16", seed=42)
    comp = fits.CompImageHDU(raw, compression_type="RICE_1")
    comp.header["BSCALE"] = 0.25
    comp.header["BZERO"] = 7
    path = tmp_path / "scaled.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    ours, _ = check(path)
    assert ours.dtype == np.float32 and ours.shape == (3, H, W)


@pytest.mark.parametrize(
    "cards", [{"BLANK": -999}, {"BLANK": -999, "BSCALE": 2.0, "BZERO": 1}]
)
def test_tile_compressed_blank(tmp_path, cards):
    raw = smooth((H, W), "int16", seed=45)
    raw[2, 3:9] = -999
    comp = fits.CompImageHDU(raw, compression_type="RICE_1")
    for k, v in cards.items():
        comp.header[k] = v
    path = tmp_path / "blank.fz"
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)
    ours, _ = check(path)
    assert np.isnan(ours[2, 3:9]).all()


def test_compressed_and_plain_stack(tmp_path):
    path = tmp_path / "mixed.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(smooth((H, W), "int16", seed=43)),
            fits.CompImageHDU(
                smooth((H, W), "uint16", seed=44), compression_type="RICE_1", name="C"
            ),
        ]
    ).writeto(path)
    ours, _ = check(path, [0, "C"])
    assert ours.dtype == np.int32


@pytest.mark.parametrize("dtype", ["int16", "float32", "uint16"])
def test_fits_gz(tmp_path, dtype):
    plain = write_primary(
        tmp_path / "plain.fits", smooth((H, W), dtype, seed=50), EXPTIME=3.5
    )
    path = tmp_path / "img.fits.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    _, info = check(path)
    assert header(info)["EXPTIME"] == 3.5


def test_fits_gz_multi_extension(tmp_path, mef):
    path = tmp_path / "mef.fits.gz"
    path.write_bytes(gzip.compress(mef.read_bytes()))
    check(path, ["SCI", 2])


def test_fits_gz_bomb_is_bounded(tmp_path):
    # 64 MiB of FITS-looking zeros compresses to ~64 KiB; with max_pixels = 1000 the bound is
    # 8000 bytes + 64 MiB of slack, so inflating must stop instead of allocating it all.
    hdr = fits.PrimaryHDU(np.zeros((10, 10), np.uint8)).header.tostring().encode()
    path = tmp_path / "bomb.fits.gz"
    path.write_bytes(gzip.compress(hdr + bytes(80 << 20)))
    with pytest.raises(ValueError, match="exceeds"):
        read_image(str(path), max_pixels=1000)


# ---------------------------------------------------------------------------------------------
# Header JSON.


def test_header_json(tmp_path):
    path = tmp_path / "hdr.fits"
    hdu = fits.PrimaryHDU(smooth((H, W), "float32", seed=60))
    h = hdu.header
    h["EXPTIME"] = 12.5
    h["NCOMBINE"] = 7
    h["OBJECT"] = "M31 'core'"
    h["LONGSTR"] = "a long value " * 12  # CONTINUE cards
    h["FLAGT"] = True
    h["FLAGF"] = False
    h["BIGINT"] = 2**40
    h["TINY"] = 1.5e-300
    h["EMPTY"] = ""
    h["HIERARCH ESO DET CHIP"] = 3
    h["COMMENT"] = "first comment"
    h["COMMENT"] = "second comment"
    h["HISTORY"] = "made by a test"
    hdu.writeto(path)
    _, info = read_image(str(path))
    ours = header(info)
    ref = fits.getheader(path)
    for key in ref:
        if key in ("COMMENT", "HISTORY", ""):
            continue
        assert ours[key] == ref[key] and type(ours[key]) is type(ref[key]), key
    assert ours["LONGSTR"] == ("a long value " * 12).rstrip()
    assert ours["FLAGT"] is True and ours["FLAGF"] is False
    assert ours["COMMENT"] == ["first comment", "second comment"]
    assert ours["HISTORY"] == ["made by a test"]
    assert ours["ESO DET CHIP"] == 3
    assert list(ours)[:3] == ["SIMPLE", "BITPIX", "NAXIS"]  # card order kept
    assert "" not in ours


def test_header_json_never_has_nan_or_inf(tmp_path):
    path = tmp_path / "inf.fits"
    hdu = fits.PrimaryHDU(np.zeros((2, 2), np.int16))
    hdu.header["HUGE"] = 1.0  # rewritten below as a value no double can hold
    hdu.writeto(path)
    raw = path.read_bytes().replace(
        b"HUGE    =                  1.0", b"HUGE    =               1E9999"
    )
    path.write_bytes(raw)
    _, info = read_image(str(path))
    text = info["fits_header"]
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["HUGE"] == "inf"


# ---------------------------------------------------------------------------------------------
# Limits and bad files.


def test_max_pixels_checked_at_probe(tmp_path):
    path = write_primary(tmp_path / "cube.fits", smooth((3, H, W), "int16", seed=70))
    read_image(str(path), max_pixels=3 * H * W)
    with pytest.raises(
        ValueError,
        match=rf"3x{H}x{W} pixels exceeds the limit of {3 * H * W - 1} \(max_pixels\)",
    ):
        read_image(str(path), max_pixels=3 * H * W - 1)


def test_huge_header_dimensions_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.fits"
    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = -64
    hdr["NAXIS"] = 2
    hdr["NAXIS1"] = 100000
    hdr["NAXIS2"] = 100000
    path.write_bytes(
        hdr.tostring().encode() + bytes(2880)
    )  # the data is not even there
    with pytest.raises(ValueError, match="100000x100000 pixels exceeds the limit"):
        read_image(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(str(tmp_path / "nope.fits"))


@pytest.mark.parametrize("suffix", [".fits", ".fits.gz", ".fz"])
def test_garbage_and_empty(tmp_path, suffix):
    rng = np.random.default_rng(80)
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    for p in (garbage, empty):
        with pytest.raises((ValueError, OSError)):
            read_image(str(p))


def truncations(blob):
    n = len(blob)
    return sorted(
        {1, 9, 80, 1000, 2879, 2880, 2881, 2880 + 100, n // 2, n - 2880, n - 1} - {0, n}
    )


@pytest.mark.parametrize("kind", ["plain", "cube", "fz", "gz"])
def test_truncated(tmp_path, kind):
    if kind == "plain":
        blob = write_primary(
            tmp_path / "src.fits", smooth((H, W), "float64", seed=81)
        ).read_bytes()
    elif kind == "cube":
        blob = write_primary(
            tmp_path / "src.fits", smooth((3, H, W), "int16", seed=82)
        ).read_bytes()
    elif kind == "fz":
        src = tmp_path / "src.fits"
        comp = fits.CompImageHDU(
            smooth((H, W), "int32", seed=83), compression_type="RICE_1"
        )
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(src)
        blob = src.read_bytes()
    else:
        src = write_primary(tmp_path / "src.fits", smooth((H, W), "int16", seed=84))
        blob = gzip.compress(src.read_bytes())
    suffix = {"plain": ".fits", "cube": ".fits", "fz": ".fz", "gz": ".fits.gz"}[kind]
    for cut in truncations(blob):
        p = tmp_path / f"cut{cut}{suffix}"
        p.write_bytes(blob[:cut])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = np.array(fits.getdata(p)) if kind != "gz" else None
        except Exception:  # noqa: BLE001 - astropy raises many types on broken files
            ref = None
        if ref is None:
            with pytest.raises((ValueError, OSError)):
                read_image(str(p))
        else:  # only block padding was cut: astropy reads it, and so do we, identically
            same(read_image(str(p))[0], ref)


def test_corrupt_compressed_tiles(tmp_path):
    src = tmp_path / "src.fz"
    comp = fits.CompImageHDU(
        smooth((H, W), "int16", seed=85), compression_type="RICE_1", tile_shape=(8, 8)
    )
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(src)
    blob = bytearray(src.read_bytes())
    heap_start = (
        len(blob) - 2880
    )  # the heap is in the last block(s) for this small image
    rng = np.random.default_rng(86)
    for trial in range(5):
        bad = bytearray(blob)
        pos = rng.integers(heap_start, len(blob) - 200, 20)
        bad[pos[0] : pos[0] + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
        p = tmp_path / f"bad{trial}.fz"
        p.write_bytes(bytes(bad))
        try:
            read_image(str(p))  # garbage in tiles may still decode; it must not crash
        except (ValueError, OSError):
            pass


def compressed_blob(tmp_path, ctype, dtype="int16"):
    """A .fz file and the file offset of its tile table (one (length, offset) pair per tile)."""
    src = tmp_path / f"src_{ctype}.fz"
    comp = fits.CompImageHDU(
        smooth((H, W), dtype, seed=88), compression_type=ctype, tile_shape=(8, 8)
    )
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(src)
    with fits.open(src, disable_image_compression=True) as hdul:
        table = hdul[1]
        assert table.header["TFORM1"].startswith("1PB")
        return (
            bytearray(src.read_bytes()),
            table._data_offset,
            table.header["NAXIS2"],
            table.header["NAXIS1"],
        )


@pytest.mark.parametrize("ctype", ["RICE_1", "GZIP_1", "GZIP_2", "HCOMPRESS_1"])
def test_hostile_tile_tables_fail_cleanly(tmp_path, ctype):
    # cfitsio 4.2 overreads (RICE, HCOMPRESS) or grows memory without bound (GZIP) on these;
    # the tiles are checked before cfitsio decodes them.
    blob, start, rows, row_bytes = compressed_blob(tmp_path, ctype)
    cases = {}
    empty = bytearray(blob)  # every tile of length 0
    empty[start : start + rows * row_bytes] = bytes(rows * row_bytes)
    cases["empty"] = empty
    short = bytearray(blob)  # every stream cut short by 5 bytes
    for r in range(rows):
        at = start + r * row_bytes
        n = int.from_bytes(short[at : at + 4], "big")
        short[at : at + 4] = max(n - 5, 1).to_bytes(4, "big")
    cases["short"] = short
    outside = bytearray(blob)  # a descriptor pointing past the heap
    outside[start + 4 : start + 8] = (10**6).to_bytes(4, "big")
    cases["outside"] = outside
    zeros = bytearray(
        blob
    )  # the streams' bytes zeroed (RICE: endless run of zero bits)
    heap = start + rows * row_bytes
    zeros[heap : len(zeros) - 10] = bytes(len(zeros) - 10 - heap)
    cases["zeros"] = zeros
    for name, data in cases.items():
        p = tmp_path / f"{name}.fz"
        p.write_bytes(bytes(data))
        try:
            ours = read_image(str(p))[0]
        except (ValueError, OSError):
            ours = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = np.array(fits.getdata(p))
        except Exception:  # noqa: BLE001 - astropy raises many types on broken files
            ref = None
        if ctype == "HCOMPRESS_1":
            # Only the HCOMPRESS header is checked: a damaged stream may decode to other values.
            assert name not in ("empty", "outside") or ours is None, name
        elif ref is None:
            assert ours is None, name
        elif ours is not None:
            same(ours, ref)


def test_bad_header_values(tmp_path):
    good = write_primary(
        tmp_path / "good.fits", smooth((H, W), "int16", seed=87)
    ).read_bytes()
    for old, new in [
        (b"BITPIX  =                   16", b"BITPIX  =                   17"),
        (b"NAXIS   =                    2", b"NAXIS   =                   -2"),
        (b"NAXIS1  =                   53", b"NAXIS1  =                 -53"),
        (b"NAXIS1  =                   53", b"NAXIS1  =                  'a'"),
    ]:
        assert old in good
        p = tmp_path / "bad.fits"
        p.write_bytes(good.replace(old, new))
        with pytest.raises((ValueError, OSError)):
            read_image(str(p))


# ---------------------------------------------------------------------------------------------
# Threads: many threads decoding the same and different files at once.


def test_concurrent_reads(tmp_path, mef):
    files = []
    for i in range(6):
        files.append(
            write_primary(
                tmp_path / f"t{i}.fits", smooth((H, W), "float32", seed=90 + i)
            )
        )
    gz = tmp_path / "t.fits.gz"
    gz.write_bytes(gzip.compress(files[0].read_bytes()))
    fz = tmp_path / "t.fz"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(smooth((H, W), "int16", seed=99))]
    ).writeto(fz)
    jobs = [(str(p), None) for p in files + [gz, fz]] + [
        (str(mef), [0, 1, "ERR"]),
        (str(mef), ["SCI"]),
    ]
    expected = {(p, json.dumps(e)): read_image(p, fits_extension=e)[0] for p, e in jobs}
    barrier = threading.Barrier(8)

    def work(k):
        if k < 8:
            barrier.wait()
        p, e = jobs[k % len(jobs)]
        ours, _ = read_image(p, fits_extension=e)
        return np.array_equal(ours, expected[(p, json.dumps(e))], equal_nan=True)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(200)))


# ---------------------------------------------------------------------------------------------
# Issue 17: invalid scaling values, HDU choice, compressed headers cfitsio's converter refuses.


@pytest.mark.parametrize("card", [b"BZERO   =                'abc'", b"BSCALE  =                  NAN"])
def test_invalid_bzero_or_bscale_is_refused_like_astropy(tmp_path, card):
    """Accepted on main (unscaled values stored with no error)."""
    import images_to_zarr as i2z
    import pyarrow.parquet as pq

    good = write_primary(tmp_path / "good.fits", smooth((H, W), "int16", seed=5), BZERO=1.0).read_bytes()
    old = b"BZERO   =                  1.0"
    assert old in good
    d = tmp_path / "in"
    d.mkdir()
    bad = d / "bad.fits"
    bad.write_bytes(good.replace(old, card.ljust(len(old))))
    with pytest.raises(Exception):  # astropy: ValueError / VerifyError on the scaled read
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.asarray(fits.getdata(bad))
    with pytest.raises(ValueError, match="invalid B(ZERO|SCALE) value"):
        read_image(str(bad))
    write_primary(d / "ok.fits", smooth((H, W), "int16", seed=6))
    store = i2z.convert(tmp_path / "o.zarr", folders=d, progress=False)
    t = pq.read_table(tmp_path / "o_metadata.parquet")
    errors = dict(zip(t.column("filename").to_pylist(), t.column("error").to_pylist()))
    assert errors["ok.fits"] is None and "invalid B" in errors["bad.fits"]
    assert store.exists()


def test_default_hdu_is_the_first_image_hdu_with_data_tables_skipped(tmp_path):
    """main read the primary HDU, else HDU 1 only: here HDU 1 is a table (an error on main)."""
    path = tmp_path / "t.fits"
    cols = [fits.Column(name="a", format="E", array=np.ones(3))]
    data = smooth((H, W), "float32", seed=31)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols), fits.ImageHDU(), fits.ImageHDU(data, name="SCI")]).writeto(path)
    ours, info = read_image(str(path))
    with fits.open(path) as hdul:
        same(ours, hdul[3].data)
    assert info["fits_extension"] == "3"
    assert header(info)["EXTNAME"] == "SCI"


def test_default_hdu_skips_tables_before_a_tile_compressed_image(tmp_path):
    path = tmp_path / "t.fz"
    cols = [fits.Column(name="a", format="J", array=np.arange(3))]
    data = smooth((H, W), "int16", seed=32)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols),
                  fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(path)
    ours, info = read_image(str(path))
    with fits.open(path) as hdul:
        same(ours, hdul[2].data)
    assert info["fits_extension"] == "2"


def _compressed_with_table_cards(tmp_path, name, mutate):
    """A RICE tile-compressed HDU whose table header `mutate` edits (astropy writes it as is)."""
    raw = (np.arange(H * W, dtype=np.int16).reshape(H, W) - 900)
    src = tmp_path / "src.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(raw, compression_type="RICE_1")]).writeto(src, overwrite=True)
    out = tmp_path / name
    with fits.open(src, disable_image_compression=True) as hdul:
        t = hdul[1]
        mutate(t.header)
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(t.data, t.header)]).writeto(out)
    return out


def _ztension_last(h):
    v = h["ZTENSION"]
    del h["ZTENSION"]
    h.append(("ZTENSION", v), end=True)


def _bscale_bzero_then_ztension_last(h):
    _ztension_last(h)  # BSCALE/BZERO go in by bytes below: astropy drops them from a table's header


def _with_cards_before_ztension(path, cards):
    """Inserts 80-byte `cards` before the (last) ZTENSION card of HDU 1, using the header's padding."""
    blob = bytearray(path.read_bytes())
    at = blob.index(b"ZTENSION= ", 2880)
    end = blob.index(b"END" + b" " * 77, at)
    new = b"".join(c.ljust(80).encode() for c in cards)
    assert blob[end + 80 : end + 80 + len(new)] == b" " * len(new)  # room in the header block
    blob[at : end + 80 + len(new)] = new + blob[at : end + 80]
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("mutate", [_ztension_last, _bscale_bzero_then_ztension_last],
                         ids=["ztension_late", "bscale_bzero_in_table_header"])
def test_compressed_headers_fits_convert_hdr2str_refuses_are_read_like_astropy(tmp_path, mutate):
    """main: "FITS cannot read the header: 1st key not SIMPLE or XTENSION (cfitsio status 252)"."""
    path = _compressed_with_table_cards(tmp_path, "c.fz", mutate)
    if mutate is _bscale_bzero_then_ztension_last:
        _with_cards_before_ztension(path, ["BSCALE  =                  2.0", "BZERO   =                 10.0"])
    with fits.open(path, disable_image_compression=True) as hdul:  # the shape under test
        keys = list(hdul[1].header.keys())
        assert keys[-1] == "ZTENSION"
    ours, info = check(path)
    h = header(info)
    with fits.open(path) as hdul:
        ref = hdul[1].header
        for k in ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT"):
            assert h[k] == ref[k], k
    assert list(h)[:7] == ["XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT"]
    assert h["BITPIX"] == 16 and not any(k.startswith(("ZNAME", "ZVAL", "ZTILE", "TTYPE", "TFORM")) for k in h)
    if mutate is _bscale_bzero_then_ztension_last:
        assert h["BSCALE"] == 2.0 and h["BZERO"] == 10.0
        assert ours.dtype == np.float32 and ours[0, 0] == -900 * 2.0 + 10.0


@pytest.mark.parametrize("suffix", [".fit.gz", ".fts.gz"])
def test_gzipped_fit_and_fts_are_discovered(tmp_path, suffix):
    """Not discovered on main."""
    import images_to_zarr as i2z
    from images_to_zarr.reader import open_store

    d = tmp_path / "in"
    d.mkdir()
    data = smooth((H, W), "int16", seed=40)
    plain = tmp_path / "x.fits"
    write_primary(plain, data)
    (d / f"x{suffix}").write_bytes(gzip.compress(plain.read_bytes()))
    i2z.convert(tmp_path / "o.zarr", folders=d, progress=False)
    np.testing.assert_array_equal(open_store(tmp_path / "o.zarr")[0][0], fits.getdata(d / f"x{suffix}"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gzip_fallback_tiles_of_float_images(tmp_path, dtype):
    """Float tiles that cannot be quantised (all NaN, constant) are stored gzip'd in
    GZIP_COMPRESSED_DATA; the exact-size check of the guard (fuzz_fits finding 14) must keep
    accepting them, with astropy's pixels."""
    a = smooth((16, 16), dtype, seed=3)
    a[0:4, :] = np.nan
    a[4:8, :] = 3.0
    path = tmp_path / f"fallback_{dtype}.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(a, compression_type="RICE_1", tile_shape=(4, 16))]).writeto(path)
    with fits.open(path, disable_image_compression=True) as hl:
        assert "GZIP_COMPRESSED_DATA" in hl[1].columns.names
        assert 0 in [len(v) for v in hl[1].data["COMPRESSED_DATA"]]  # some tiles did fall back
    check(path)
