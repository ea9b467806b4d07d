"""The fast PNG path (png_fast.cpp) against Pillow and against libpng alone.

``core.read_png(p, "fast")`` runs only the fast path (None when it refuses the file),
``core.read_png(p, "libpng")`` only libpng; ``core.read_image`` is what conversions use (fast
path, libpng when refused). The fast path must take the common layouts, give Pillow's pixels
on them, refuse the rest, and on damaged files either refuse or agree with libpng.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_formats_png_jpeg import CHANNELS, _chunk, pillow_png, smooth, write_png

core = pytest.importorskip("images_to_zarr._core", reason="the C++ extension is not built")

FAST_KINDS = [(0, 8), (0, 16), (2, 8), (2, 16), (4, 8), (4, 16), (6, 8), (6, 16)]
SIZES = [(1, 1), (1, 7), (9, 1), (37, 53), (64, 3)]


def _write(tmp_path: Path, kind, size, seed=0, name="a.png") -> Path:
    ct, depth = kind
    c = CHANNELS[ct]
    h, w = size
    samples = smooth((h, w) if c == 1 else (h, w, c), seed=seed + ct * 10 + depth, maxval=(1 << depth) - 1)
    return write_png(tmp_path / name, samples, ct, depth, seed=seed)


def _outcome(fn, path):
    try:
        return ("ok", fn(str(path)))
    except (ValueError, OSError) as e:
        return ("error", type(e))


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("kind", FAST_KINDS, ids=[f"ct{c}-{b}bit" for c, b in FAST_KINDS])
def test_fast_path_takes_common_layouts_and_matches_pillow(tmp_path, kind, size):
    for seed in range(3):  # write_png draws every row's filter type at random
        p = _write(tmp_path, kind, size, seed=seed)
        fast = core.read_png(str(p), "fast")
        assert fast is not None, "the fast path refused a common layout"
        expected = pillow_png(p)
        assert fast.dtype == expected.dtype and fast.shape == expected.shape
        assert np.array_equal(fast, expected)
        assert np.array_equal(fast, core.read_png(str(p), "libpng"))


@pytest.mark.parametrize("mode", ["L", "I;16", "LA", "RGB", "RGBA"])
def test_fast_path_on_pillow_written_files(tmp_path, mode):
    maxval = 65535 if mode == "I;16" else 255
    c = {"L": 1, "I;16": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    a = smooth((45, 61) if c == 1 else (45, 61, c), seed=3, maxval=maxval)
    im = Image.fromarray(a.astype(np.uint16 if mode == "I;16" else np.uint8))
    assert im.mode == mode
    for optimize in (False, True):
        p = tmp_path / f"{mode.replace(';', '')}{optimize}.png"
        im.save(p, optimize=optimize)
        fast = core.read_png(str(p), "fast")
        assert fast is not None
        assert np.array_equal(fast, pillow_png(p))


def _png(ihdr: bytes, body: list[tuple[bytes, bytes]], raw: bytes) -> bytes:
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    for kind, payload in body:
        data += _chunk(kind, payload)
    return data + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def test_ancillary_chunks_that_pillow_ignores_keep_the_fast_path(tmp_path):
    """gAMA, iCCP, sBIT, sRGB, cHRM, pHYs, text: Pillow does not apply them, nor do we."""
    h, w = 5, 4
    raw = b"".join(b"\x00" + bytes((x * 40 + y * 3) % 256 for x in range(3 * w)) for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    icc = b"prof\x00\x00" + zlib.compress(b"not really a profile")
    body = [(b"gAMA", struct.pack(">I", 100000)), (b"sBIT", b"\x05\x06\x05"), (b"iCCP", icc),
            (b"cHRM", bytes(32)), (b"pHYs", bytes(9)), (b"tEXt", b"k\x00v")]
    p = tmp_path / "anc.png"
    p.write_bytes(_png(ihdr, body, raw))
    fast = core.read_png(str(p), "fast")
    assert fast is not None
    assert np.array_equal(fast, pillow_png(p))


def test_refused_layouts_still_decode_like_pillow(tmp_path):
    """Interlaced, palette, bit depths < 8, tRNS, PLTE in RGB, unknown chunks: libpng decodes."""
    s = smooth((13, 17, 3), seed=1)
    cases = {
        "adam7": write_png(tmp_path / "i.png", s, 2, 8, interlace=True),
        "palette": write_png(tmp_path / "p.png", smooth((13, 17), seed=2, maxval=15), 3, 4,
                             palette=bytes(range(48))),
        "gray4": write_png(tmp_path / "g4.png", smooth((13, 17), seed=3, maxval=15), 0, 4),
        "rgb-trns": write_png(tmp_path / "t.png", s, 2, 8, trns=b"\x00\x01\x00\x02\x00\x03"),
    }
    raw = b"".join(b"\x00" + bytes(3 * 4) for _ in range(3))
    ihdr = struct.pack(">IIBBBBB", 4, 3, 8, 2, 0, 0, 0)
    for name, body in {"plte": [(b"PLTE", bytes(6))], "unknown": [(b"prVt", b"private")]}.items():
        cases[name] = tmp_path / f"{name}.png"
        cases[name].write_bytes(_png(ihdr, body, raw))
    for name, p in cases.items():
        assert core.read_png(str(p), "fast") is None, name
        arr, _ = core.read_image(str(p))
        assert np.array_equal(arr, pillow_png(p)), name


def _idat_span(data: bytes) -> tuple[int, int]:
    """Byte range of the IDAT chunks (headers and CRCs included)."""
    pos, lo, hi = 8, None, None
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            lo = pos if lo is None else lo
            hi = pos + 12 + n
        pos += 12 + n
    return lo, hi


def _check_damaged(p: Path) -> str:
    """The combined decoder agrees with libpng alone; the fast path refuses or agrees."""
    lib = _outcome(lambda q: core.read_png(q, "libpng"), p)
    both = _outcome(lambda q: core.read_image(q)[0], p)
    assert lib[0] == both[0], (lib, both)
    if lib[0] == "ok":
        assert np.array_equal(lib[1], both[1])
    fast = _outcome(lambda q: core.read_png(q, "fast"), p)
    if fast[0] == "ok" and fast[1] is not None:
        assert lib[0] == "ok" and np.array_equal(fast[1], lib[1])
        return "fast"
    return lib[0]


@pytest.mark.parametrize("kind", [(2, 8), (6, 16), (0, 8)], ids=["rgb8", "rgba16", "gray8"])
def test_truncated_and_corrupt_files_agree_with_libpng(tmp_path, kind):
    good = _write(tmp_path, kind, (23, 19), seed=4, name="good.png").read_bytes()
    lo, hi = _idat_span(good)
    p = tmp_path / "bad.png"
    seen = set()
    # Every truncation point through the chunk headers, IDAT and the end of the file.
    for n in list(range(0, 80)) + list(range(lo, len(good), 7)):
        p.write_bytes(good[:n])
        seen.add(_check_damaged(p))
    rng = np.random.default_rng(0)
    for pos in rng.integers(8, len(good), size=150):  # one flipped bit anywhere after the signature
        d = bytearray(good)
        d[int(pos)] ^= 1 << int(rng.integers(0, 8))
        p.write_bytes(bytes(d))
        seen.add(_check_damaged(p))
    assert "error" in seen and "fast" in seen


def test_bad_checksums_fall_back_to_libpng(tmp_path):
    """A bad Adler-32 or a bad IDAT CRC: the fast path refuses, libpng decides (today both are
    errors there: libpng reads the Adler-32 in the same inflate call as the last row)."""
    good_path = _write(tmp_path, (2, 8), (16, 16), seed=5, name="good.png")
    good = good_path.read_bytes()
    # Rebuild with one IDAT whose zlib stream has a wrong Adler-32 (CRC recomputed).
    lo, hi = _idat_span(good)
    z = zlib.compress(zlib.decompress(b"".join(_idat_payloads(good))))
    bad_adler = z[:-4] + bytes(b ^ 0xFF for b in z[-4:])
    p = tmp_path / "adler.png"
    p.write_bytes(good[:lo] + _chunk(b"IDAT", bad_adler) + good[hi:])
    assert core.read_png(str(p), "fast") is None
    assert _check_damaged(p) == "error"
    assert core.read_png(str(good_path), "fast") is not None
    # Wrong CRC on the IDAT: an error, as before.
    d = bytearray(good)
    d[hi - 1] ^= 0x55
    p.write_bytes(bytes(d))
    assert core.read_png(str(p), "fast") is None
    with pytest.raises(ValueError):
        core.read_image(str(p))


def _idat_payloads(data: bytes) -> list[bytes]:
    pos, out = 8, []
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            out.append(data[pos + 8 : pos + 8 + n])
        pos += 12 + n
    return out


def test_extra_data_and_idat_layout(tmp_path):
    """Zero-length IDATs, one byte per IDAT, a file ending right after the IDAT run: taken by
    the fast path with Pillow's pixels. Trailing bytes after the zlib stream: libpng accepts
    them (a warning); the fast path may take the file too, with the same pixels."""
    good = _write(tmp_path, (6, 8), (7, 5), seed=6, name="good.png").read_bytes()
    lo, hi = _idat_span(good)
    z = b"".join(_idat_payloads(good))
    variants = {
        "zero-length": _chunk(b"IDAT", b"") + _chunk(b"IDAT", z) + _chunk(b"IDAT", b""),
        "byte-chunks": b"".join(_chunk(b"IDAT", z[i : i + 1]) for i in range(len(z))),
    }
    expected = core.read_png(str(tmp_path / "good.png"), "libpng")
    for name, idat in variants.items():
        p = tmp_path / f"{name}.png"
        p.write_bytes(good[:lo] + idat + good[hi:])
        assert np.array_equal(core.read_png(str(p), "fast"), expected), name
    p = tmp_path / "no-iend.png"
    p.write_bytes(good[:hi])
    assert np.array_equal(core.read_png(str(p), "fast"), expected)
    p = tmp_path / "trailing.png"
    p.write_bytes(good[:lo] + _chunk(b"IDAT", z + b"\x00junk") + good[hi:])
    assert _check_damaged(p) in ("fast", "ok")
    assert np.array_equal(core.read_image(str(p))[0], expected)
