"""Resize (issue 4) compared with scikit-image, channel by channel.

Reference: ``skimage.transform.resize(channel, (H, W), order=k, preserve_range=True,
anti_aliasing=None)`` for each 2-D channel (how images_to_zarr 0.3.5 called it), then the
engine's cast rule for integer stores: ``clip(rint(v), dtype_min, dtype_max)``, NaN -> 0.

Tolerances (shared/docs/resize-semantics.md §5): bit equality wherever no anti-aliasing
applies; with anti-aliasing numpy's SIMD exp() may give Gaussian taps 1 ulp away from libm's,
so float64 must agree within 1e-12 x max(1, range) and float32 within 1e-6 relative, and
the rounded integers may differ by 1 only where skimage's value lies within 1e-9 of a .5 tie.
"""

from __future__ import annotations

import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

core = pytest.importorskip("images_to_zarr._core", reason="the C++ extension is not built")
sk_transform = pytest.importorskip("skimage.transform")

ORDERS = range(6)
DTYPES = ["uint8", "uint16", "int16", "float32", "float64"]


# ----------------------------------------------------------------------------- helpers


def sk_resize(img: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    """skimage per 2-D channel; img is (H, W) or (C, H, W)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nanmin/nanmax on all-NaN channels
        if img.ndim == 2:
            return sk_transform.resize(img, shape, order=order, preserve_range=True, anti_aliasing=None)
        return np.stack(
            [sk_transform.resize(c, shape, order=order, preserve_range=True, anti_aliasing=None) for c in img]
        )


def engine_cast(v: np.ndarray, dtype) -> np.ndarray:
    """The pipeline's float -> integer rule (normalise step): half-to-even, clip, NaN -> 0."""
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0, posinf=info.max, neginf=info.min)
    return np.clip(np.rint(v), info.min, info.max).astype(dt)


def anti_aliased(src_shape, dst_shape, order: int, dtype) -> bool:
    if order == 0 and np.dtype(dtype).kind in "ui":
        return False
    return any(m < n for n, m in zip(src_shape[-2:], dst_shape))


def assert_matches(ours: np.ndarray, ref: np.ndarray, src: np.ndarray, order: int, label: str = "") -> None:
    aa = anti_aliased(src.shape, ref.shape[-2:], order, src.dtype)
    assert ours.dtype == ref.dtype, (label, ours.dtype, ref.dtype)
    assert ours.shape == ref.shape, (label, ours.shape, ref.shape)
    if not aa:
        np.testing.assert_array_equal(ours, ref, err_msg=f"{label} (no anti-aliasing: bit equality)")
    else:
        finite = src[np.isfinite(src)].astype(np.float64)
        scale = max(1.0, float(np.ptp(finite))) if finite.size else 1.0
        rtol = 1e-6 if ours.dtype == np.float32 else 1e-12
        assert np.array_equal(np.isnan(ours), np.isnan(ref)), label
        diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
        diff = diff[~np.isnan(diff)]
        assert diff.size == 0 or diff.max() <= rtol * scale, (label, diff.max(), rtol * scale)
    if src.dtype.kind in "ui" and ours.dtype.kind == "f":
        ours_i, ref_i = engine_cast(ours, src.dtype), engine_cast(ref, src.dtype)
        bad = ours_i != ref_i
        if not aa:
            assert not bad.any(), label
        else:
            near_tie = np.abs(ref - (np.floor(ref) + 0.5)) < 1e-9
            d = np.abs(ours_i.astype(np.int64) - ref_i.astype(np.int64))
            assert (d[bad] == 1).all() and near_tie[bad].all(), label


def random_image(shape, dtype, rng) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return rng.integers(0, 256, shape).astype(dt)
    if dt == np.uint16:
        return rng.integers(0, 65536, shape).astype(dt)
    if dt == np.int16:
        return rng.integers(-32768, 32768, shape).astype(dt)
    return (rng.standard_normal(shape) * 100.0 - 20.0).astype(dt)


def check_all_orders(img: np.ndarray, shape: tuple[int, int], orders=ORDERS, label: str = "") -> None:
    for k in orders:
        ours = core.resize(img, shape[0], shape[1], k)
        assert_matches(ours, sk_resize(img, shape, k), img, k, f"{label} {img.dtype} {img.shape}->{shape} k={k}")


# ----------------------------------------------------------------------------- spec §6 cases

SHAPE_CASES = [
    # 1. identity
    ((37, 23), (37, 23)),
    # 2. 1-pixel dimensions
    ((1, 1), (1, 1)),
    ((1, 1), (5, 7)),
    ((1, 9), (1, 4)),
    ((9, 1), (3, 1)),
    ((5, 1), (1, 3)),
    ((1, 2), (1, 49)),
    ((2, 2), (1, 1)),
    # 4. upsampling (exact and near .5 ties), non-square
    ((8, 8), (16, 16)),
    ((64, 48), (96, 72)),
    ((13, 9), (40, 34)),
    ((5, 7), (17, 31)),
    ((2, 2), (2, 3)),
    # 5. downsampling: sigma 0.5, factor < 2, factor > 4, kernel longer than the line, r = 0
    ((64, 48), (32, 24)),
    ((31, 17), (7, 13)),
    ((64, 48), (1, 1)),
    ((97, 61), (45, 20)),
    ((50, 50), (49, 49)),
    ((90, 70), (17, 13)),
    # 6. mixed: blur only along the shrinking axis
    ((16, 24), (21, 16)),
    ((7, 300), (300, 7)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("src_shape,dst_shape", SHAPE_CASES, ids=lambda s: "x".join(map(str, s)))
def test_matches_skimage(src_shape, dst_shape, dtype):
    rng = np.random.default_rng(zlib.crc32(repr((src_shape, dst_shape, dtype)).encode()))
    check_all_orders(random_image(src_shape, dtype, rng), dst_shape)


@pytest.mark.parametrize(
    "n,m,expected",
    [(4, 2, [1, 3]), (4, 1, [2]), (3, 2, [0, 2]), (2, 4, [0, 0, 1, 1]), (2, 49, None)],
)
def test_order0_ties(n, m, expected):
    line = np.array([[10, 20, 30, 40][:n]], dtype=np.uint8)
    got = core.resize(line, 1, m, 0)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, sk_resize(line, (1, m), 0))
    if expected is not None:
        np.testing.assert_array_equal(got[0], line[0, expected])
    else:  # 2 -> 49: (24.5 * 2/49) - 0.5 lands just below 0.5 in doubles, so o = 24 picks input 0
        assert got[0, 24] == 10 and got[0, 25] == 20
    # float64: anti-aliasing is on when shrinking
    check_all_orders(line.astype(np.float64) * 1.5, (1, m), orders=[0])
    check_all_orders(line.T.astype(np.float64) * 1.5, (m, 1), orders=[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_images_stay_constant(dtype):
    value = {"uint8": 200, "uint16": 65535, "int16": -1234, "float32": 0.1, "float64": -3.7}[dtype]
    img = np.full((19, 27), value, dtype=dtype)
    for shape in [(19, 27), (7, 5), (40, 61), (1, 1), (3, 80)]:
        for k in ORDERS:
            out = core.resize(img, *shape, k)
            assert out.shape == shape
            assert (out == np.asarray(value, dtype=out.dtype)).all(), (shape, k)


def test_result_dtypes_and_identity_copy():
    img = np.arange(37 * 23, dtype=np.uint16).reshape(37, 23)
    assert core.resize(img, 37, 23, 0).dtype == np.uint16
    for k in range(1, 6):
        out = core.resize(img, 37, 23, k)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, img)
    f = img.astype(np.float32) / 7
    for k in ORDERS:
        out = core.resize(f, 37, 23, k)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, f)
    assert core.resize(img.astype(np.int32), 5, 5, 0).dtype == np.int32
    assert core.resize(img.astype(np.int32), 5, 5, 2).dtype == np.float64
    assert core.resize(img.astype(np.float32), 50, 5, 0).dtype == np.float32


@pytest.mark.parametrize("shape", [(7, 9), (48, 40), (5, 5), (33, 17)])
def test_overshoot_is_clipped_to_channel_range(shape):
    yy, xx = np.mgrid[0:16, 0:16]
    board = ((yy + xx) % 2 * 255).astype(np.uint8)
    spot = np.zeros((16, 16), np.float64)
    spot[7, 9] = 1000.0
    overshoots = 0
    for img in (board, spot, board.astype(np.float32)):
        for k in range(2, 6):
            out = core.resize(img, *shape, k)
            assert_matches(out, sk_resize(img, shape, k), img, k, f"clip {shape} k={k}")
            assert out.min() >= img.min() and out.max() <= img.max()
            raw = sk_transform.resize(img, shape, order=k, preserve_range=True, clip=False)
            overshoots += int(raw.min() < img.min() or raw.max() > img.max())
    assert overshoots > 0  # the case really exercises the clip


def test_multichannel_uses_per_channel_bounds():
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:24, 0:24]
    rgba = np.stack(
        [
            ((yy + xx) % 2 * 255).astype(np.uint8),  # full range, overshoots
            (100 + (yy // 3 + xx // 3) % 2 * 10).astype(np.uint8),  # [100, 110]
            np.full((24, 24), 50, np.uint8),  # constant
            rng.integers(0, 256, (24, 24)).astype(np.uint8),
        ]
    )
    for shape in [(37, 41), (10, 13)]:
        for k in ORDERS:
            out = core.resize(rgba, *shape, k)
            assert out.shape == (4, *shape)
            assert_matches(out, sk_resize(rgba, shape, k), rgba, k, f"rgba {shape} k={k}")
            for c in range(4):
                assert rgba[c].min() <= out[c].min() and out[c].max() <= rgba[c].max()
        # A single skimage call on HWC clips every channel to the global [0, 255]: different.
        glob = sk_transform.resize(rgba.transpose(1, 2, 0), shape, order=3, preserve_range=True).transpose(2, 0, 1)
        assert glob[1].min() < 100 or glob[1].max() > 110
        assert not np.array_equal(core.resize(rgba, *shape, 3), glob)


def test_large_factors():
    rng = np.random.default_rng(11)
    tall = rng.integers(0, 256, (4000, 3)).astype(np.uint8)
    check_all_orders(tall, (3, 4000), label="4000x3")
    big = rng.integers(0, 256, (400, 400)).astype(np.uint8)
    check_all_orders(big, (399, 401), label="long prefilter lines")
    huge = rng.integers(0, 65536, (1000, 1000)).astype(np.uint16)
    check_all_orders(huge, (999, 1001), orders=[3], label="1000x1000")


# ----------------------------------------------------------------------------- non-finite data


def nan_policy_reference(img: np.ndarray, shape, order: int) -> np.ndarray:
    """The documented policy in numpy/skimage terms (see resize.cpp): orders 2-5 resize the
    channel with its non-finite pixels set to the finite mean, then take the order-1 value
    wherever that one is non-finite."""
    if order < 2:
        return sk_resize(img, shape, order)
    finite = np.isfinite(img)
    fill = img[finite].astype(np.float64).mean() if finite.any() else 0.0
    filled = np.where(finite, img, np.asarray(fill).astype(img.dtype))
    lo, hi = np.nanmin(img), np.nanmax(img)
    out = np.clip(sk_resize(filled, shape, order), lo, hi).astype(img.dtype)
    first = sk_resize(img, shape, 1)
    bad = ~np.isfinite(first)
    out[bad] = first[bad]
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(57, 41), (13, 9), (40, 30)])
def test_nan_policy(dtype, shape):
    rng = np.random.default_rng(5)
    img = (rng.random((40, 30)) * 255).astype(dtype)
    img[10, 12] = np.nan
    for k in ORDERS:
        ours = core.resize(img, *shape, k)
        ref = nan_policy_reference(img, shape, k)
        nan_ref = np.isnan(ref)
        np.testing.assert_array_equal(np.isnan(ours), nan_ref, err_msg=f"NaN positions k={k}")
        if shape != img.shape:
            assert 0 < nan_ref.sum() < nan_ref.size // 8  # NaN stays local, for every order
        tol = 1e-6 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(ours[~nan_ref], ref[~nan_ref], rtol=0, atol=tol * 255, err_msg=f"k={k}")
        if k < 2:  # orders 0/1 are skimage's result, NaN included
            assert_matches(ours, sk_resize(img, shape, k), img, k, f"nan k={k}")
        elif shape != img.shape:  # skimage itself turns the whole channel into NaN
            assert np.isnan(sk_resize(img, shape, k)).all()
    # cast into an integer store: NaN -> 0
    assert (engine_cast(core.resize(img, *shape, 3), np.uint8)[np.isnan(core.resize(img, *shape, 3))] == 0).all()


def test_infinities_and_all_nan_channels():
    img = np.linspace(0, 1, 20 * 16).reshape(20, 16)
    img[3, 4] = np.inf
    img[15, 10] = -np.inf
    for k in ORDERS:
        ours = core.resize(img, 31, 23, k)
        ref = nan_policy_reference(img, (31, 23), k)
        np.testing.assert_array_equal(ours[~np.isfinite(ref)], ref[~np.isfinite(ref)])
        fin = np.isfinite(ref)
        assert fin.mean() > 0.9
        np.testing.assert_allclose(ours[fin], ref[fin], rtol=0, atol=1e-12)
    stack = np.stack([np.full((8, 8), np.nan), np.ones((8, 8))])
    for k in ORDERS:
        out = core.resize(stack, 5, 11, k)
        assert np.isnan(out[0]).all() and (out[1] == 1).all()


def test_errors():
    img = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError):
        core.resize(img, 3, 3, 6)
    with pytest.raises(ValueError):
        core.resize(img, 0, 3, 1)
    with pytest.raises(ValueError):
        core.resize(np.zeros((1, 1, 4, 4), np.uint8), 3, 3, 1)
    with pytest.raises((ValueError, TypeError)):
        core.resize(np.zeros((4, 4), bool), 3, 3, 0)


def test_non_contiguous_input_and_gil_release():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (3, 40, 50)).astype(np.uint8)
    view = img[:, ::2, ::-1]
    np.testing.assert_array_equal(core.resize(view, 17, 31, 3), sk_resize(np.ascontiguousarray(view), (17, 31), 3))
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(lambda k: core.resize(img, 29, 61, k), [1, 3, 5, 3, 1]))
    np.testing.assert_array_equal(outs[1], outs[3])
    np.testing.assert_array_equal(outs[0], outs[4])


# ----------------------------------------------------------------------------- through the pipeline


@pytest.mark.parametrize("order", [1, 3])
def test_convert_folder_with_resize(tmp_path, order):
    zarr = pytest.importorskip("zarr")
    import images_to_zarr as i2z

    rng = np.random.default_rng(order)
    d = tmp_path / "in"
    d.mkdir()
    refs = {}
    for i, (h, w) in enumerate([(64, 80), (120, 90), (33, 47), (200, 310)]):
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), rng.integers(0, 256, (h, w))], -1)
        rgb = rgb.astype(np.uint8)
        name = f"img{i}.png"
        Image.fromarray(rgb).save(d / name)
        refs[name] = rgb.transpose(2, 0, 1)
    store = i2z.convert(tmp_path / "out", folders=[d], resize=(64, 80), interpolation_order=order, progress=False)
    z = zarr.open_array(store / "images", mode="r")
    assert z.shape == (4, 3, 64, 80) and z.dtype == np.uint8
    for i, name in enumerate(sorted(refs)):
        src = refs[name]
        ref = sk_resize(src, (64, 80), order)
        got = z[i]
        exp = engine_cast(ref, np.uint8)
        bad = got != exp
        if src.shape[1:] == (64, 80) or not anti_aliased(src.shape, (64, 80), order, src.dtype):
            assert not bad.any(), name
        else:
            near_tie = np.abs(ref - (np.floor(ref) + 0.5)) < 1e-9
            assert (np.abs(got.astype(int) - exp.astype(int))[bad] == 1).all() and near_tie[bad].all(), name
        # and the engine's own float result, cast the same way, is exactly what was stored
        np.testing.assert_array_equal(got, engine_cast(core.resize(src, 64, 80, order), np.uint8), err_msg=name)


def test_runtime_budget_smoke():
    """The non-separable order-5 evaluation stays fast enough for the pipeline."""
    img = np.random.default_rng(0).integers(0, 256, (3, 256, 256)).astype(np.uint8)
    t = time.perf_counter()
    core.resize(img, 512, 512, 5)
    assert time.perf_counter() - t < 5.0


@pytest.mark.parametrize("src_shape", [(480, 640), (200, 300), (300, 225)], ids=lambda s: "x".join(map(str, s)))
def test_w5_shapes_match_skimage(src_shape):
    """The benchmark's W5 case: 8-bit channels shrunk (or stretched) to 224x224, every order."""
    rng = np.random.default_rng(zlib.crc32(repr(src_shape).encode()))
    check_all_orders(random_image(src_shape, np.uint8, rng), (224, 224))
