"""PNG and JPEG decoding compared with Pillow's own decode of the same file.

Reference: ``np.asarray(Image.open(p))``, except that palette PNGs are compared with
``Image.open(p).convert("RGBA" if "transparency" in im.info else "RGB")`` (we expand
palettes) and 1-bit PNGs (Pillow mode "1", a bool array) with its uint8 0/1 cast.

Images are generated here: Pillow writes the common modes; a small PNG encoder below
writes what Pillow cannot (2/4/16-bit colour, 16-bit gray+alpha, Adam7 interlacing,
palettes of 1-4 bits, every filter type).
"""

from __future__ import annotations

import concurrent.futures
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

core = pytest.importorskip("images_to_zarr._core", reason="the C++ extension is not built")

BAD_INPUT = (ValueError, OSError)


# ----------------------------------------------------------------------------- test images


def smooth(shape: tuple[int, ...], seed: int, maxval: int = 255) -> np.ndarray:
    """Gradients and sinusoids plus a little noise, in 0..maxval (an int64 array)."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for k in range(c):
        phase = rng.uniform(0, 2 * np.pi)
        base = 0.5 + 0.25 * np.sin(x / (3.0 + k) + phase) * np.cos(y / (5.0 + 2 * k))
        base += 0.2 * (x / max(w - 1, 1) - y / max(h - 1, 1)) * (1 if k % 2 else -1)
        base += rng.normal(0, 0.02, size=(h, w))
        planes.append(base)
    out = np.clip(np.round(np.stack(planes, axis=-1) * maxval), 0, maxval).astype(np.int64)
    return out if len(shape) == 3 else out[..., 0]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _filter_row(raw: bytes, prev: bytes, bpp: int, ftype: int) -> bytes:
    x = np.frombuffer(raw, np.uint8).astype(np.int32)
    b = np.frombuffer(prev, np.uint8).astype(np.int32)
    a = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]]) if len(x) > bpp else np.zeros_like(x)
    c = np.concatenate([np.zeros(bpp, np.int32), b[:-bpp]]) if len(b) > bpp else np.zeros_like(b)
    if ftype == 0:
        pred = np.zeros_like(x)
    elif ftype == 1:
        pred = a
    elif ftype == 2:
        pred = b
    elif ftype == 3:
        pred = (a + b) // 2
    else:  # Paeth
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return bytes([ftype]) + ((x - pred) & 0xFF).astype(np.uint8).tobytes()


def _pack_rows(samples: np.ndarray, bit_depth: int) -> list[bytes]:
    """(h, w*c) sample values -> PNG scanline bytes (big-endian, MSB-first bit packing)."""
    if bit_depth == 16:
        return [row.astype(">u2").tobytes() for row in samples]
    if bit_depth == 8:
        return [row.astype(np.uint8).tobytes() for row in samples]
    per_byte = 8 // bit_depth
    rows = []
    for row in samples:
        padded = np.zeros(-(-len(row) // per_byte) * per_byte, np.int64)
        padded[: len(row)] = row
        groups = padded.reshape(-1, per_byte)
        shifts = (8 - bit_depth) - bit_depth * np.arange(per_byte)
        rows.append((groups << shifts).sum(axis=1).astype(np.uint8).tobytes())
    return rows


# Adam7 passes as (x0, y0, dx, dy)
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def write_png(path: Path, samples: np.ndarray, color_type: int, bit_depth: int, *, interlace: bool = False,
              palette: bytes | None = None, trns: bytes | None = None, seed: int = 0) -> Path:
    """Minimal PNG encoder: samples (H, W[, C]) of raw sample values; every filter type used."""
    h, w = samples.shape[:2]
    flat = samples.reshape(h, w, -1)
    c = CHANNELS[color_type]
    assert flat.shape[2] == c
    bpp = max(1, c * bit_depth // 8)
    rng = np.random.default_rng(seed)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = flat[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        prev = None
        for line in _pack_rows(sub.reshape(sub.shape[0], -1), bit_depth):
            above = prev if prev is not None else bytes(len(line))
            raw += _filter_row(line, above, bpp, int(rng.integers(0, 5)))
            prev = line
    data = b"\x89PNG\r\n\x1a\n"
    data += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    data += _chunk(b"gAMA", struct.pack(">I", 45455))  # must be ignored, as Pillow does
    if palette is not None:
        data += _chunk(b"PLTE", palette)
    if trns is not None:
        data += _chunk(b"tRNS", trns)
    z = zlib.compress(raw, 6)
    for i in range(0, len(z), 1000):  # several IDAT chunks
        data += _chunk(b"IDAT", z[i : i + 1000])
    data += _chunk(b"tEXt", b"Comment\x00after the image data")
    data += _chunk(b"IEND", b"")
    path.write_bytes(data)
    return path


def pillow_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode == "P":
            return np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
        arr = np.asarray(im)
        return arr.astype(np.uint8) if arr.dtype == bool else arr


def pillow_jpeg(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def assert_same(path: Path, expected: np.ndarray, fmt: str) -> None:
    arr, meta = core.read_image(str(path))
    assert arr.dtype == expected.dtype, (arr.dtype, expected.dtype)
    assert arr.shape == expected.shape, (arr.shape, expected.shape)
    if not np.array_equal(arr, expected):
        diff = np.abs(arr.astype(np.int64) - expected.astype(np.int64))
        pytest.fail(f"{path.name}: {np.count_nonzero(diff)} pixels differ, max difference {diff.max()}")
    assert meta["format"] == fmt
    assert meta["dtype"] == str(expected.dtype)
    assert tuple(meta["shape"]) == expected.shape
    assert (meta["height"], meta["width"]) == expected.shape[:2]
    assert meta["channels"] == (1 if expected.ndim == 2 else expected.shape[2])
    assert meta["layout"] == "HWC"


SIZES = [(37, 53), (1, 1), (1, 9), (11, 1), (64, 48)]

# ----------------------------------------------------------------------------- PNG


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", ["L", "I;16", "LA", "RGB", "RGBA"])
def test_png_pillow_written(tmp_path, mode, size):
    channels = {"L": 1, "I;16": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    shape = size if channels == 1 else (*size, channels)
    pixels = smooth(shape, seed=len(mode) * 31 + size[1], maxval=65535 if mode == "I;16" else 255)
    arr = pixels.astype(np.uint16 if mode == "I;16" else np.uint8)
    im = Image.fromarray(arr)
    assert im.mode == mode
    p = tmp_path / "img.png"
    im.save(p)
    expected = pillow_png(p)
    assert np.array_equal(expected, arr)  # lossless round trip
    assert_same(p, expected, "png")


def test_png_pillow_palette_and_bilevel(tmp_path):
    rgb = Image.fromarray(smooth((37, 53, 3), seed=1).astype(np.uint8))
    pal = rgb.quantize(colors=40)
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "p_trns_index.png", transparency=3)
    pal.save(tmp_path / "p_trns_bytes.png", transparency=bytes(range(0, 200, 10)))
    pal.quantize(colors=4).save(tmp_path / "p_2bit.png", bits=2)
    Image.fromarray(smooth((37, 53), seed=2).astype(np.uint8) > 128).save(tmp_path / "bilevel.png")
    for name, channels in [("p", 3), ("p_trns_index", 4), ("p_trns_bytes", 4), ("p_2bit", 3), ("bilevel", 1)]:
        expected = pillow_png(tmp_path / f"{name}.png")
        assert (expected.ndim == 2) == (channels == 1) and (channels == 1 or expected.shape[2] == channels)
        assert_same(tmp_path / f"{name}.png", expected, "png")


# (color type, bit depth) pairs allowed by the PNG specification
PNG_KINDS = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
             (4, 8), (4, 16), (6, 8), (6, 16)]


def _palette(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=3 * n).astype(np.uint8).tobytes()


@pytest.mark.parametrize("interlace", [False, True], ids=["plain", "adam7"])
@pytest.mark.parametrize("kind", PNG_KINDS, ids=[f"ct{c}-{b}bit" for c, b in PNG_KINDS])
def test_png_every_kind(tmp_path, kind, interlace):
    color_type, bit_depth = kind
    c = CHANNELS[color_type]
    h, w = 37, 53
    maxval = (1 << bit_depth) - 1
    samples = smooth((h, w) if c == 1 else (h, w, c), seed=color_type * 100 + bit_depth, maxval=maxval)
    palette = _palette(1 << bit_depth, seed=bit_depth) if color_type == 3 else None
    for trns in ([None, b"\x00\x80\xff\x10"[: 1 << bit_depth]] if color_type == 3 else [None]):
        p = write_png(tmp_path / f"k{trns is not None}.png", samples, color_type, bit_depth,
                      interlace=interlace, palette=palette, trns=trns, seed=bit_depth)
        expected = pillow_png(p)
        if color_type == 3:
            assert expected.shape == (h, w, 3 if trns is None else 4)
        assert_same(p, expected, "png")


def test_png_16bit_values(tmp_path):
    """Pin down the Pillow behaviour we copy: 16-bit gray stays uint16 (native byte order),
    16-bit colour keeps the high byte, 16-bit gray+alpha becomes G,G,G,A."""
    gray = smooth((9, 7), seed=5, maxval=65535)
    write_png(tmp_path / "g16.png", gray, 0, 16)
    arr, _ = core.read_image(str(tmp_path / "g16.png"))
    assert arr.dtype == np.uint16 and np.array_equal(arr, gray)

    rgb = smooth((9, 7, 3), seed=6, maxval=65535)
    write_png(tmp_path / "rgb16.png", rgb, 2, 16)
    arr, _ = core.read_image(str(tmp_path / "rgb16.png"))
    assert arr.dtype == np.uint8 and np.array_equal(arr, rgb >> 8)
    assert np.array_equal(arr, pillow_png(tmp_path / "rgb16.png"))

    ga = smooth((9, 7, 2), seed=7, maxval=65535)
    write_png(tmp_path / "ga16.png", ga, 4, 16)
    arr, _ = core.read_image(str(tmp_path / "ga16.png"))
    hi = ga >> 8
    assert np.array_equal(arr, np.stack([hi[..., 0]] * 3 + [hi[..., 1]], axis=-1))
    assert np.array_equal(arr, pillow_png(tmp_path / "ga16.png"))


def test_png_transparency_of_gray_and_rgb_is_ignored(tmp_path):
    gray = smooth((13, 17), seed=8)
    write_png(tmp_path / "g.png", gray, 0, 8, trns=b"\x00\x05")
    rgb = smooth((13, 17, 3), seed=9)
    write_png(tmp_path / "rgb.png", rgb, 2, 8, trns=b"\x00\x05\x00\x06\x00\x07")
    for name in ("g", "rgb"):
        expected = pillow_png(tmp_path / f"{name}.png")
        assert expected.ndim == (2 if name == "g" else 3) and (name == "g" or expected.shape[2] == 3)
        assert_same(tmp_path / f"{name}.png", expected, "png")


def test_png_palette_index_past_plte(tmp_path):
    """Indices beyond the PLTE entries decode as black (alpha 255), as in Pillow."""
    idx = smooth((15, 21), seed=10, maxval=15)
    write_png(tmp_path / "short.png", idx, 3, 4, palette=_palette(6, seed=3))
    write_png(tmp_path / "short_t.png", idx, 3, 4, palette=_palette(6, seed=3), trns=b"\x20\x40")
    for name in ("short", "short_t"):
        assert_same(tmp_path / f"{name}.png", pillow_png(tmp_path / f"{name}.png"), "png")


# ----------------------------------------------------------------------------- JPEG

JPEG_VARIANTS = {
    "gray": ("L", {}),
    "rgb444": ("RGB", {"subsampling": 0, "quality": 90}),
    "rgb422": ("RGB", {"subsampling": 1, "quality": 75}),
    "rgb420": ("RGB", {"subsampling": 2, "quality": 50}),
    "rgb420_q100": ("RGB", {"subsampling": 2, "quality": 100}),
    "progressive": ("RGB", {"progressive": True, "quality": 80}),
    "progressive_gray": ("L", {"progressive": True}),
    "optimize": ("RGB", {"optimize": True, "quality": 60}),
    "restart": ("RGB", {"restart_marker_blocks": 2}),
    "keep_rgb": ("RGB", {"keep_rgb": True, "subsampling": 0}),
    "cmyk": ("CMYK", {"quality": 85}),
    "cmyk_progressive": ("CMYK", {"progressive": True}),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", list(JPEG_VARIANTS))
def test_jpeg_matches_pillow(tmp_path, variant, size):
    mode, kwargs = JPEG_VARIANTS[variant]
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    shape = size if channels == 1 else (*size, channels)
    pixels = smooth(shape, seed=len(variant) * 7 + size[0]).astype(np.uint8)
    im = Image.frombytes(mode, size[::-1], pixels.tobytes())
    p = tmp_path / ("img.jpeg" if channels == 3 else "img.jpg")
    im.save(p, **kwargs)
    expected = pillow_jpeg(p)
    assert expected.shape == shape
    # Pillow 13 bundles libjpeg-turbo 3.x, the system has 2.1.x: same islow IDCT and fancy
    # upsampling, so the pixels are expected to be identical, not merely close.
    assert_same(p, expected, "jpeg")


def test_jpeg_cmyk_is_inverted_like_pillow(tmp_path):
    """Pillow reads 4-component JPEGs as Adobe-inverted CMYK ("CMYK;I"), and writes them the
    same way, so a CMYK round trip through Pillow is close to the original values."""
    cmyk = smooth((24, 32, 4), seed=11).astype(np.uint8)
    Image.frombytes("CMYK", (32, 24), cmyk.tobytes()).save(tmp_path / "c.jpg", quality=100, subsampling=0)
    arr, _ = core.read_image(str(tmp_path / "c.jpg"))
    assert np.abs(arr.astype(int) - cmyk.astype(int)).max() <= 8


# ----------------------------------------------------------------------------- both


def _png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each IDAT chunk, CRC included."""
    pos, out = 8, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            out.append((pos, pos + 12 + length))
        pos += 12 + length
    return out


def _samples(tmp_path: Path) -> dict[str, Path]:
    rgb = smooth((37, 53, 3), seed=12).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    Image.fromarray(rgb).save(tmp_path / "ok.jpg", quality=90)
    Image.fromarray(rgb).save(tmp_path / "ok_prog.jpg", progressive=True)
    write_png(tmp_path / "ok_adam7.png", rgb, 2, 8, interlace=True)
    return {"png": tmp_path / "ok.png", "jpg": tmp_path / "ok.jpg", "jpg_prog": tmp_path / "ok_prog.jpg",
            "png_adam7": tmp_path / "ok_adam7.png"}


@pytest.mark.parametrize("which", ["png", "jpg", "jpg_prog", "png_adam7"])
def test_truncated_files_raise(tmp_path, which):
    src = _samples(tmp_path)[which]
    data = src.read_bytes()
    # PNG: everything up to the last IDAT's CRC is needed (chunks after it are not read, as
    # in Pillow). JPEG: everything, EOI marker included (libjpeg reads ahead into it; Pillow
    # also refuses a file without it).
    end = _png_chunks(data)[-1][1] if src.suffix == ".png" else len(data)
    offsets = sorted({1, 4, 8, 16, 30, 60, 200, end // 3, end // 2, end - 5, end - 2, end - 1})
    for n in offsets:
        p = tmp_path / f"cut{n}{src.suffix}"
        p.write_bytes(data[:n])
        with pytest.raises(BAD_INPUT):
            core.read_image(str(p))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg"])
def test_zero_byte_and_garbage_raise(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(np.random.default_rng(13).integers(0, 256, 4096).astype(np.uint8).tobytes())
    for p in (empty, garbage):
        with pytest.raises(BAD_INPUT):
            core.read_image(str(p))
    with pytest.raises(FileNotFoundError):
        core.read_image(str(tmp_path / f"missing{suffix}"))


def test_png_garbage_after_signature_and_bad_crc_raise(tmp_path):
    good = _samples(tmp_path)["png"].read_bytes()
    bad = tmp_path / "sig_then_garbage.png"
    bad.write_bytes(good[:8] + bytes(range(256)) * 4)
    with pytest.raises(BAD_INPUT):
        core.read_image(str(bad))
    # Flip one bit of the first IDAT's CRC: the data itself is intact.
    flipped = bytearray(good)
    flipped[_png_chunks(good)[0][1] - 1] ^= 0x01
    crc = tmp_path / "bad_crc.png"
    crc.write_bytes(bytes(flipped))
    with pytest.raises(BAD_INPUT, match="CRC"):
        core.read_image(str(crc))


def test_jpeg_garbage_after_header_raises(tmp_path):
    good = _samples(tmp_path)["jpg"].read_bytes()
    sos = good.index(b"\xff\xda")
    bad = tmp_path / "bad_scan.jpg"
    bad.write_bytes(good[: sos + 20] + b"\xff\xd9")  # scan cut short, then EOI
    with pytest.raises(BAD_INPUT):
        core.read_image(str(bad))


@pytest.mark.parametrize("which", ["png", "jpg"])
def test_max_pixels(tmp_path, which):
    p = _samples(tmp_path)[which]
    with pytest.raises(ValueError, match="max_pixels"):
        core.read_image(str(p), max_pixels=37 * 53 * 3 - 1)
    arr, _ = core.read_image(str(p), max_pixels=37 * 53 * 3)
    assert arr.shape == (37, 53, 3)


def test_concurrent_decodes_agree(tmp_path):
    paths = list(_samples(tmp_path).values()) * 8
    expected = {p: core.read_image(str(p))[0] for p in set(paths)}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: core.read_image(str(p))[0], paths))
    for p, arr in zip(paths, results):
        assert np.array_equal(arr, expected[p])
