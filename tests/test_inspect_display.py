"""Read side (issue 6): ``inspect`` reports what the store and its Parquet side-car hold;
``display_sample_images`` draws visible panels for every kind of data."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile
import zarr
from astropy.io import fits
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images
from images_to_zarr.display import stretch, to_display

H, W = 40, 48


def make_folder(d: Path) -> None:
    """Gray PNG, RGB PNG, uint16 TIFF and float32 FITS of one size, plus a corrupt PNG."""
    d.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(smooth_images(1, 1, H, W, "uint8", seed=i)[0, 0]).save(d / f"gray_{i}.png")
    Image.fromarray(smooth_images(1, 3, H, W, "uint8", seed=9)[0].transpose(1, 2, 0)).save(d / "rgb.png")
    for i in range(2):
        tifffile.imwrite(d / f"micro_{i}.tif", smooth_images(1, 1, H, W, "uint16", seed=10 + i)[0, 0])
    fits.PrimaryHDU(fits_like(1, H, W, seed=20)[0, 0]).writeto(d / "sky.fits")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)


def fits_like(n: int, h: int, w: int, seed: int) -> np.ndarray:
    """(n, 1, h, w) float32 skies: noise, Gaussian stars, and a few extreme pixels (and a NaN)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = rng.normal(100.0, 5.0, (n, 1, h, w))
    for i in range(n):
        for _ in range(4):
            x0, y0, flux = rng.uniform(0, w), rng.uniform(0, h), 10 ** rng.uniform(2.5, 4.5)
            out[i, 0] += flux * np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / 4.0)
        out[i, 0, 1, 1], out[i, 0, 2, 3], out[i, 0, 5, 5] = 3e7, -2e6, np.nan  # cosmic ray, bad pixel, NaN
    return out.astype(np.float32)


@pytest.fixture
def file_store(tmp_path: Path) -> Path:
    make_folder(tmp_path / "in")
    names = sorted(p.name for p in (tmp_path / "in").iterdir())
    (tmp_path / "meta.csv").write_text("filename,label\n" + "".join(f"{n},x\n" for n in names))
    return i2z.convert(tmp_path / "out", folders=tmp_path / "in", metadata=tmp_path / "meta.csv", progress=False,
                       chunk_shape=(1, 16, 16), shard_images=3, compressor="zstd", clevel=4)


def test_inspect_numbers_match_store_and_parquet(file_store: Path, capsys):
    summary = i2z.inspect(file_store)
    printed = capsys.readouterr().out
    assert isinstance(summary, i2z.StoreSummary) and str(summary) in printed

    a = zarr.open_array(file_store / "images", mode="r")
    pixels = a[...]
    attrs = json.loads((file_store / "zarr.json").read_text())["attributes"]
    table = pq.read_table(file_store.parent / attrs["metadata_file"])
    files = [p for p in file_store.rglob("*") if p.is_file()]

    assert summary.total_images == a.shape[0] == 8
    assert summary.image_shape == a.shape[1:] == (3, H, W)
    assert summary.dtype == str(a.dtype) == "float32"
    assert (summary.compressor, summary.compression_level) == ("zstd", 4)
    assert summary.chunk_shape == a.chunks and summary.shard_shape == a.shards
    assert summary.num_shards == math.ceil(a.shape[0] / a.shards[0]) == 3
    assert summary.num_shards == len(list((file_store / "images" / "c").rglob("*/*/*/*")))
    assert summary.storage_bytes == sum(p.stat().st_size for p in files)

    assert summary.format_counts == {"PNG": 5, "TIFF": 2, "FITS": 1}
    assert summary.original_dtype_counts == dict(Counter(d or "unknown" for d in table.column("dtype").to_pylist()))
    shapes = Counter(tuple(s) if s else () for s in table.column("shape").to_pylist())
    assert summary.shape_counts == dict(shapes)
    sizes = table.column("file_size_bytes").to_pylist()
    assert summary.file_size_stats == pytest.approx(
        {"min": min(sizes), "max": max(sizes), "mean": np.mean(sizes), "total": sum(sizes)})
    assert sizes == [p.stat().st_size for p in sorted((file_store.parent.parent / "in").iterdir())]

    errors = table.column("error").to_pylist()
    assert summary.failed_images == sum(e is not None for e in errors) == 1
    ok = [i for i, e in enumerate(errors) if e is None]
    good = pixels[ok].astype(np.float64)
    assert summary.dynamic_range == pytest.approx(
        {"min": np.nanmin(good), "max": np.nanmax(good), "mean": np.mean([np.nanmean(g) for g in good])}, rel=1e-6)
    assert summary.append_history == []

    for line in ["SUMMARY STATISTICS", "Total images across all files: 8", "Image dimensions: (3, 40, 48)",
                 "Data type: float32", "Compression: zstd (level 4)", f"Chunk shape: {_t(a.chunks)}",
                 f"Shard shape: {_t(a.shards)}", "Number of shards: 3", "PNG: 5 (62.5%)", "TIFF: 2 (25.0%)",
                 "FITS: 1 (12.5%)", "Failed images: 1", "Append history: none",
                 f"Total storage size: {summary.storage_bytes / 2**20:,.2f} MB ({summary.storage_bytes:,} bytes)"]:
        assert line in printed, line
    assert printed.startswith("=" * 80 + "\nSUMMARY STATISTICS\n" + "=" * 80)


def _legacy_sidecar(side: Path) -> Path:
    """The side-car's folder replaced by a single file (the layout of earlier versions), which
    readers still read."""
    shutil.rmtree(side)
    return side


def _t(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def test_inspect_without_sidecar(file_store: Path, capsys):
    shutil.rmtree(file_store.parent / "meta_metadata.parquet")
    summary = i2z.inspect(file_store)
    printed = capsys.readouterr().out
    assert summary.metadata_path is None and summary.total_images == 8
    assert summary.format_counts == {} and summary.file_size_stats is None and summary.failed_images is None
    assert "no Parquet side-car found" in printed and "Format distribution" not in printed
    assert "Number of shards: 3" in printed


def test_inspect_trims_longer_sidecar_and_reads_append_history(tmp_path: Path):
    """A side-car with more rows than the store (a crash after the Parquet, before the commit) is
    trimmed; append history is read from the group attributes."""
    store = i2z.convert(tmp_path / "s.zarr", images=smooth_images(4, 1, 16, 16, "uint16"), progress=False)
    side = tmp_path / "s_metadata.parquet"
    table = pq.read_table(side)
    pq.write_table(pa.concat_tables([table, table]), side / "part-000000000000.parquet")
    group = store / "zarr.json"
    meta = json.loads(group.read_text())
    history = [{"appended_count": 2, "start_index": 2, "end_index": 4}]
    meta["attributes"]["append_history"] = history
    group.write_text(json.dumps(meta))
    summary = i2z.inspect(store)
    assert summary.total_images == 4 and summary.format_counts == {"array": 4}
    assert summary.original_dtype_counts == {"uint16": 4} and summary.failed_images == 0
    assert summary.append_history == history
    assert "+2 images (indices 2 to 3)" in str(summary)  # end_index 4 is exclusive


def test_inspect_after_append(tmp_path: Path):
    first = smooth_images(3, 1, 16, 16, "uint8", seed=1)
    store = i2z.convert(tmp_path / "a.zarr", images=first, progress=False)
    try:
        i2z.convert(tmp_path / "a.zarr", images=smooth_images(2, 1, 16, 16, "uint8", seed=2), append=True,
                    progress=False)
    except NotImplementedError:
        pytest.skip("append is not implemented in this build yet")
    summary = i2z.inspect(store)
    assert summary.total_images == 5
    assert [(h["appended_count"], h["start_index"], h["end_index"]) for h in summary.append_history] == [(2, 3, 5)]


def test_inspect_large_sidecar_is_vectorised(tmp_path: Path):
    """200,000 synthetic rows: distributions equal a plain Python count."""
    n = 200_000
    store = i2z.convert(tmp_path / "big.zarr", images=smooth_images(1, 1, 8, 8, "uint8"), progress=False)
    meta_path = store / "images" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["shape"][0] = n
    meta_path.write_text(json.dumps(meta))
    rng = np.random.default_rng(0)
    ext = np.array([".png", ".FITS", ".jpeg", ".tif", ".fits.gz", ".xyz"])[rng.integers(0, 6, n)]
    shapes = [[64, 64], [64, 64, 3], [32, 48]]
    pick = rng.integers(0, 3, n)
    mins = rng.normal(0, 1, n)
    mins[::1000] = np.nan
    pq.write_table(pa.table({
        "original_extension": ext, "dtype": np.array(["uint8", "int16"])[pick % 2],
        "shape": pa.array([shapes[k] for k in pick], pa.list_(pa.int64())),
        "file_size_bytes": rng.integers(100, 10_000, n), "min_value": mins, "max_value": mins + 10,
        "mean_value": mins + 5, "error": pa.array([None] * n, pa.string()),
    }), _legacy_sidecar(tmp_path / "big_metadata.parquet"))
    s = i2z.inspect(store)
    fmt = Counter({".png": "PNG", ".fits": "FITS", ".jpeg": "JPEG", ".tif": "TIFF", ".fits.gz": "FITS",
                   ".xyz": "XYZ"}[e.lower()] for e in ext)
    assert s.format_counts == dict(fmt)
    assert s.shape_counts == dict(Counter(tuple(shapes[k]) for k in pick))
    assert s.dynamic_range == pytest.approx({"min": np.nanmin(mins), "max": np.nanmax(mins) + 10,
                                             "mean": np.nanmean(mins) + 5})
    assert list(s.format_counts.values()) == sorted(s.format_counts.values(), reverse=True)


def test_inspect_errors(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        i2z.inspect(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a Zarr"):
        i2z.inspect(tmp_path / "plain")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(ValueError, match="not a Zarr"):
        i2z.inspect(tmp_path / "file.zarr")
    v2 = tmp_path / "v2.zarr"
    v2.mkdir()
    (v2 / ".zgroup").write_text('{"zarr_format": 2}')
    with pytest.raises(ValueError, match="v2"):
        i2z.inspect(v2)
    group_only = tmp_path / "g.zarr"
    group_only.mkdir()
    (group_only / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(ValueError):
        i2z.inspect(group_only)


def test_inspect_store_written_by_zarr_python(tmp_path: Path):
    """No group attributes, no side-car: what the array metadata says is reported."""
    root = zarr.open_group(tmp_path / "z.zarr", mode="w")
    arr = root.create_array("images", shape=(5, 1, 20, 20), chunks=(1, 1, 10, 10), shards=(2, 1, 20, 20),
                            dtype="uint16", compressors=zarr.codecs.ZstdCodec(level=3))
    arr[...] = smooth_images(5, 1, 20, 20, "uint16")
    s = i2z.inspect(tmp_path / "z.zarr")
    assert (s.total_images, s.image_shape, s.dtype) == (5, (1, 20, 20), "uint16")
    assert (s.compressor, s.compression_level) == ("zstd", 3)
    assert s.chunk_shape == (1, 1, 10, 10) and s.shard_shape == (2, 1, 20, 20) and s.num_shards == 3


# ---- display --------------------------------------------------------------------------------

def _kinds() -> dict[str, np.ndarray]:
    return {
        "uint8_rgb": smooth_images(6, 3, 48, 64, "uint8", seed=3),
        "uint16_gray": smooth_images(5, 1, 40, 40, "uint16", seed=4),
        "float32_fits": fits_like(4, 48, 48, seed=5),
    }


def panel_regions(png: np.ndarray, fig) -> list[np.ndarray]:
    """The pixels of each axes in the saved PNG (matplotlib's origin is bottom-left)."""
    height = png.shape[0]
    regions = []
    for ax in fig.axes:
        b = ax.get_window_extent()
        regions.append(png[height - int(b.y1) + 1: height - int(b.y0) - 1, int(b.x0) + 1: int(b.x1) - 1])
    return regions


def count_panels(png: np.ndarray) -> int:
    """Panels found in the picture alone: large connected regions that differ from the white page."""
    from scipy import ndimage

    ink = np.any(png[..., :3] < 250, axis=-1)
    labels, count = ndimage.label(ndimage.binary_closing(ink, iterations=2))
    areas = np.bincount(labels.ravel())[1:]
    return int(np.sum(areas > 0.01 * ink.size))


@pytest.mark.parametrize("kind", ["uint8_rgb", "uint16_gray", "float32_fits"])
def test_display_writes_png_with_visible_panels(tmp_path: Path, kind: str):
    images = _kinds()[kind]
    store = i2z.convert(tmp_path / f"{kind}.zarr", images=images, progress=False)
    out = tmp_path / f"{kind}.png"
    num = len(images) - 1
    fig = i2z.display_sample_images(store, num_samples=num, figsize=(9, 6), save_path=out, seed=1)
    png = np.asarray(Image.open(out).convert("RGB"))
    assert png.shape[:2] == (round(6 * fig.dpi), round(9 * fig.dpi))
    assert len(fig.axes) == num
    assert count_panels(png) == num
    titles = [ax.get_title() for ax in fig.axes]
    assert all(t.split(": ")[1] == f"image_{t.split(': ')[0]}" for t in titles), titles
    for region in panel_regions(png, fig):
        gray = region.astype(np.float64).mean(axis=-1)
        assert gray.std() > 10, "panel is flat"
        assert np.mean(gray < 5) < 0.5 and np.mean(gray > 250) < 0.5, "panel is mostly black or white"
        if kind == "uint8_rgb":  # colour kept: the channels differ
            assert np.abs(region[..., 0].astype(int) - region[..., 1]).mean() > 5


def test_display_seed_and_sample_count(tmp_path: Path):
    store = i2z.convert(tmp_path / "s.zarr", images=smooth_images(20, 1, 16, 16, "uint8"), progress=False)
    titles = [[ax.get_title() for ax in i2z.display_sample_images(store, 5, save_path=tmp_path / f"{k}.png",
                                                                  seed=7).axes] for k in range(2)]
    assert titles[0] == titles[1] and len(set(titles[0])) == 5
    assert len(i2z.display_sample_images(store, 50, save_path=tmp_path / "all.png", seed=0).axes) == 20
    with pytest.raises(ValueError):
        i2z.display_sample_images(store, 0, save_path=tmp_path / "x.png")
    with pytest.raises(FileNotFoundError):
        i2z.display_sample_images(tmp_path / "missing.zarr", save_path=tmp_path / "x.png")


def test_display_titles_use_sidecar_filenames(file_store: Path, tmp_path: Path):
    fig = i2z.display_sample_images(file_store, 8, save_path=tmp_path / "f.png", seed=0)
    table = pq.read_table(file_store.parent / "meta_metadata.parquet")
    names, errors = table.column("filename").to_pylist(), table.column("error").to_pylist()
    expected = [f"{i}: {n}" + (" (failed)" if e else "") for i, (n, e) in enumerate(zip(names, errors))]
    assert sorted(ax.get_title() for ax in fig.axes) == sorted(expected)
    assert "0: broken.png (failed)" in expected


def test_display_without_sidecar_titles_indices(file_store: Path, tmp_path: Path):
    shutil.rmtree(file_store.parent / "meta_metadata.parquet")
    fig = i2z.display_sample_images(file_store, 3, save_path=tmp_path / "f.png", seed=0)
    assert all(ax.get_title().isdigit() for ax in fig.axes)


def test_display_keeps_the_users_backend(tmp_path: Path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    store = i2z.convert(tmp_path / "s.zarr", images=smooth_images(2, 1, 16, 16, "uint8"), progress=False)
    before = matplotlib.get_backend()
    plt.switch_backend("svg")
    try:
        i2z.display_sample_images(store, 2, save_path=tmp_path / "a.png")
        assert matplotlib.get_backend() == "svg"
        assert Image.open(tmp_path / "a.png").format == "PNG"
        shown = []
        monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
        fig = i2z.display_sample_images(store, 2)  # non-interactive backend: a warning, no show
        assert shown == [] and len(fig.axes) == 2
        plt.close(fig)
    finally:
        plt.switch_backend(before)


def test_stretch_is_robust_and_nan_safe():
    sky = fits_like(1, 32, 32, seed=0)[0, 0]
    out = stretch(sky)
    assert out.dtype == np.float64 and np.all(np.isfinite(out)) and out.min() >= 0 and out.max() <= 1
    assert out[5, 5] == 0.0  # the NaN
    background = np.delete(out.ravel(), np.argsort(sky.ravel())[-40:])  # without stars and extremes
    assert 0.03 < np.median(background) < 0.6 and background.std() > 0.01
    assert stretch(np.full((4, 4), 7.0)).tolist() == [[0.5] * 4] * 4
    assert stretch(np.full((4, 4), np.nan)).max() == 0
    rgb, cmap = to_display(smooth_images(1, 3, 8, 8, "uint8")[0])
    assert rgb.shape == (8, 8, 3) and cmap is None
    rgba, _ = to_display(smooth_images(1, 4, 8, 8, "uint16")[0])
    assert rgba.shape == (8, 8, 4)
    first, cmap = to_display(smooth_images(1, 5, 8, 8, "float32")[0])
    assert first.shape == (8, 8) and cmap == "viridis"
    assert to_display(smooth_images(1, 1, 8, 8, "int16")[0])[1] == "gray"
