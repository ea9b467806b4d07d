"""File conversion (issue 3): mixed folders, the documented normalisation, per-image failures, CSV join."""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
import zarr
from astropy.io import fits
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images

H, W = 40, 52


def _rgb(seed: int) -> np.ndarray:
    return smooth_images(1, 3, H, W, "uint8", seed=seed)[0].transpose(1, 2, 0)


def _gray(seed: int, dtype: str = "uint8") -> np.ndarray:
    return smooth_images(1, 1, H, W, dtype, seed=seed)[0, 0]


def make_mixed_folder(d: Path) -> dict[str, np.ndarray]:
    """Writes one file per format/kind; returns the reference decode of each (reference libraries)."""
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(1)).save(d / "a_rgb.png")
    Image.fromarray(_gray(2)).save(d / "b_gray.png")
    Image.fromarray(_rgb(3)).save(d / "c_rgb.jpg", quality=90)
    Image.fromarray(_gray(4)).save(d / "d_gray.jpeg", quality=90)
    tifffile.imwrite(d / "e_rgb.tif", _rgb(5), photometric="rgb")
    tifffile.imwrite(d / "f_gray.tiff", _gray(6))
    fits.PrimaryHDU(_gray(7)).writeto(d / "g_gray.fits")
    refs = {
        "a_rgb.png": np.asarray(Image.open(d / "a_rgb.png")),
        "b_gray.png": np.asarray(Image.open(d / "b_gray.png")),
        "c_rgb.jpg": np.asarray(Image.open(d / "c_rgb.jpg")),
        "d_gray.jpeg": np.asarray(Image.open(d / "d_gray.jpeg")),
        "e_rgb.tif": tifffile.imread(d / "e_rgb.tif"),
        "f_gray.tiff": tifffile.imread(d / "f_gray.tiff"),
        "g_gray.fits": fits.getdata(d / "g_gray.fits"),
    }
    return refs


def to_chw3(ref: np.ndarray) -> np.ndarray:
    """The design's normalisation into a 3-channel store: HWC -> CHW, gray replicated."""
    if ref.ndim == 2:
        return np.repeat(ref[None], 3, axis=0)
    return ref.transpose(2, 0, 1)


def test_mixed_folder_matches_references(tmp_path):
    refs = make_mixed_folder(tmp_path / "in")
    store = i2z.convert(tmp_path / "out", folders=tmp_path / "in", progress=False)
    assert store == tmp_path / "out" / "images.zarr"
    z = zarr.open_array(store / "images", mode="r")
    names = sorted(refs)
    assert z.shape == (len(names), 3, H, W) and z.dtype == np.uint8
    for i, name in enumerate(names):
        exp = to_chw3(refs[name])
        got = z[i]
        if name.endswith((".jpg", ".jpeg")):  # Pillow bundles a different libjpeg-turbo build
            assert np.abs(got.astype(int) - exp.astype(int)).max() <= 1, name
        else:
            np.testing.assert_array_equal(got, exp, err_msg=name)
    t = pq.read_table(tmp_path / "out" / "images_metadata.parquet")
    assert t.column("filename").to_pylist() == names
    assert t.column("original_extension").to_pylist() == [".png", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".fits"]
    assert t.column("shape").to_pylist()[0] == [H, W, 3]
    assert t.column("shape").to_pylist()[1] == [H, W]
    assert t.column("dtype").to_pylist() == ["uint8"] * 7
    for i in range(len(names)):
        assert t.column("min_value")[i].as_py() == z[i].min()
        assert t.column("max_value")[i].as_py() == z[i].max()


def test_dtype_promotion_and_alpha(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_gray(1)).save(d / "a.png")                      # uint8 gray
    tifffile.imwrite(d / "b.tif", _gray(2, "uint16"))                 # uint16 gray
    rgba = smooth_images(1, 4, H, W, "uint8", seed=3)[0].transpose(1, 2, 0)
    Image.fromarray(rgba, mode="RGBA").save(d / "c.png")              # RGBA -> C = 4
    store = i2z.convert(tmp_path / "o.zarr", folders=d, progress=False)
    z = zarr.open_array(store / "images", mode="r")
    assert z.shape == (3, 4, H, W) and z.dtype == np.uint16
    a = np.asarray(Image.open(d / "a.png")).astype(np.uint16)
    np.testing.assert_array_equal(z[0, :3], np.repeat(a[None], 3, axis=0))
    assert (z[0, 3] == 65535).all()  # alpha of a replicated gray image = dtype max
    np.testing.assert_array_equal(z[1, 0], tifffile.imread(d / "b.tif"))
    np.testing.assert_array_equal(z[2], np.asarray(Image.open(d / "c.png")).transpose(2, 0, 1).astype(np.uint16))


def test_explicit_dtype_rounds_and_clips(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    data = np.array([[-3.5, 0.5, 1.5, 2.5], [254.5, 255.49, 300.0, np.nan]], dtype=np.float32)
    fits.PrimaryHDU(data).writeto(d / "x.fits")
    store = i2z.convert(tmp_path / "o.zarr", folders=d, dtype="uint8", progress=False)
    got = zarr.open_array(store / "images", mode="r")[0, 0]
    np.testing.assert_array_equal(got, [[0, 0, 2, 2], [254, 255, 255, 0]])


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif", "fits"])
def test_corrupt_files_are_recorded_not_fatal(tmp_path, fmt, caplog):
    d = tmp_path / "in"
    d.mkdir()
    good = _rgb(1) if fmt != "fits" else _gray(1)
    def write(p: Path, arr: np.ndarray) -> None:
        if fmt == "png" or fmt == "jpg":
            Image.fromarray(arr).save(p)
        elif fmt == "tif":
            tifffile.imwrite(p, arr)
        else:
            fits.PrimaryHDU(arr).writeto(p)
    write(d / f"a_good.{fmt}", good)
    write(d / f"z_good.{fmt}", good)
    full = (d / f"a_good.{fmt}").read_bytes()
    bad = {
        f"b_trunc_head.{fmt}": full[:20],
        f"c_trunc_mid.{fmt}": full[: len(full) // 2],
        f"d_garbage.{fmt}": bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),
        f"e_empty.{fmt}": b"",
    }
    for name, blob in bad.items():
        (d / name).write_bytes(blob)
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "o.zarr", folders=d, progress=False)
    t = pq.read_table(tmp_path / "o_metadata.parquet")
    errors = dict(zip(t.column("filename").to_pylist(), t.column("error").to_pylist()))
    assert errors[f"a_good.{fmt}"] is None and errors[f"z_good.{fmt}"] is None
    for name in bad:
        assert errors[name], f"{name} should have failed"
    z = zarr.open_array(store / "images", mode="r")
    names = t.column("filename").to_pylist()
    exp = to_chw3(good) if good.ndim == 3 else good[None]
    for i, name in enumerate(names):
        if name in bad:
            assert not z[i].any(), f"{name} slot must be zero-filled"
        elif fmt == "jpg":
            assert np.abs(z[i].astype(int) - to_chw3(np.asarray(Image.open(d / name))).astype(int)).max() <= 1
        else:
            np.testing.assert_array_equal(z[i], exp)
    assert "4 failed" in caplog.text


def test_size_mismatch_raises_before_writing(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_gray(1)).save(d / "a.png")
    Image.fromarray(_gray(2)[:-1]).save(d / "b.png")
    with pytest.raises(ValueError, match=r"b\.png.*resize"):
        i2z.convert(tmp_path / "o.zarr", folders=d, progress=False)
    assert not (tmp_path / "o.zarr").exists()
    assert [p.name for p in tmp_path.glob("o.zarr*")] == ["o.zarr.i2z-lock"]  # the lock file stays


def test_pad_keeps_original_shape(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    a, b = _gray(1), _gray(2)[:30, :41]
    Image.fromarray(a).save(d / "a.png")
    Image.fromarray(b).save(d / "b.png")
    store = i2z.convert(tmp_path / "o.zarr", folders=d, pad=True, progress=False)
    z = zarr.open_array(store / "images", mode="r")
    assert z.shape == (2, 1, H, W)
    np.testing.assert_array_equal(z[1, 0, :30, :41], b)
    assert not z[1, 0, 30:].any() and not z[1, 0, :, 41:].any()
    assert pq.read_table(tmp_path / "o_metadata.parquet").column("shape").to_pylist() == [[H, W], [30, 41]]


def test_csv_join_and_store_name(tmp_path, caplog):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for i, name in enumerate(["x.png", "y.png", "sub/z.png"]):
        Image.fromarray(_gray(i)).save(d / name)
    csv = tmp_path / "catalog.csv"
    csv.write_text('filename,label,note\nx.png,1,"a, quoted"\nz.png,3,\nmissing.png,9,gone\n')
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "out", folders=d, metadata=csv, recursive=True, progress=False)
    assert store == tmp_path / "out" / "catalog.zarr"
    t = pq.read_table(tmp_path / "out" / "catalog_metadata.parquet")
    assert t.column("filename").to_pylist() == ["z.png", "x.png", "y.png"]  # sorted by path: in/sub/z < in/x
    assert t.column("label").to_pylist() == [3, 1, None]
    assert t.column("note").to_pylist()[1] == "a, quoted"
    assert "missing.png" in caplog.text and "y.png" in caplog.text
    attrs = zarr.open_group(store, mode="r").attrs
    assert attrs["metadata_file"] == "catalog_metadata.parquet"
    assert attrs["creation_info"]["recursive_scan"] is True


def test_ambiguous_basenames_use_relative_paths(tmp_path):
    d = tmp_path / "in"
    for sub in ("a", "b"):
        (d / sub).mkdir(parents=True)
        Image.fromarray(_gray(1)).save(d / sub / "img.png")
    csv = tmp_path / "m.csv"
    csv.write_text("filename,v\na/img.png,1\nb/img.png,2\n")
    i2z.convert(tmp_path / "o.zarr", folders=d, metadata=csv, recursive=True, progress=False)
    t = pq.read_table(tmp_path / "o_metadata.parquet")
    assert t.column("filename").to_pylist() == ["a/img.png", "b/img.png"]
    assert t.column("v").to_pylist() == [1, 2]


def test_discovery_rules(tmp_path, caplog):
    d = tmp_path / "in"
    (d / "deep").mkdir(parents=True)
    Image.fromarray(_gray(1)).save(d / "UPPER.PNG")
    Image.fromarray(_gray(2)).save(d / "deep" / "inner.png")
    (d / "notes.txt").write_text("ignore me")
    with gzip.open(d / "sky.fits.gz", "wb") as f:
        fits.PrimaryHDU(_gray(3)).writeto(f)
    (d / "deep" / "loop").symlink_to(d, target_is_directory=True)
    files, _ = i2z._core.discover_files([str(d)], False)
    assert [Path(f).name for f in files] == ["UPPER.PNG", "sky.fits.gz"]
    files, _ = i2z._core.discover_files([str(d)], True)
    assert [Path(f).name for f in files] == ["UPPER.PNG", "inner.png", "sky.fits.gz"]
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "o.zarr", folders=[d, tmp_path / "nope"], progress=False)
    assert "nope" in caplog.text
    assert zarr.open_array(store / "images", mode="r").shape[0] == 2
    with pytest.raises(ValueError, match="no supported image files"):
        i2z.convert(tmp_path / "p.zarr", folders=tmp_path / "nope", progress=False)
    with pytest.raises(FileNotFoundError):
        i2z.convert(tmp_path / "p.zarr", folders=d, metadata=tmp_path / "absent.csv")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("name,v\nx,1\n")
    with pytest.raises(ValueError, match="filename"):
        i2z.convert(tmp_path / "p.zarr", folders=d, metadata=bad_csv)


def test_fits_extension_stacking_and_header(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    sci, err = _gray(1, "int16").astype(np.float32), _gray(2, "int16").astype(np.float32)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(err, name="ERR")])
    hdul[1].header["EXPTIME"] = 30.5
    hdul.writeto(d / "m.fits")
    store = i2z.convert(tmp_path / "o.zarr", folders=d, fits_extension=["SCI", "ERR"], progress=False)
    z = zarr.open_array(store / "images", mode="r")
    assert z.shape == (1, 2, H, W) and z.dtype == np.float32
    np.testing.assert_array_equal(z[0, 0], sci)
    np.testing.assert_array_equal(z[0, 1], err)
    t = pq.read_table(tmp_path / "o_metadata.parquet")
    header = json.loads(t.column("fits_header")[0].as_py())
    assert header["EXPTIME"] == 30.5
    assert t.column("fits_extension")[0].as_py()


def _plan_then_run(files: list[Path], store: Path, change) -> dict:
    """Plans (probes every file), lets `change` modify the inputs, then runs the conversion."""
    from images_to_zarr import _core

    opts = {"chunk_shape": [1, 32, 32], "shard_images": 2, "compressor": "lz4", "clevel": 1, "num_workers": 2}
    conv = _core.convert_files(str(store), [str(f) for f in files], opts, "create")
    conv.plan()
    change()
    columns: dict[str, list] = {}

    def on_records(first: int, batch: dict) -> None:  # shards arrive in order
        for k, v in batch.items():
            columns.setdefault(k, []).extend(v)

    res = conv.run(None, on_records)
    conv.abort()
    res["records"] = columns
    return res


@pytest.mark.parametrize("how", ["new_size", "same_size_new_pixels"])
def test_file_changed_between_probe_and_decode_is_a_per_image_error(tmp_path, how):
    # The decode pass re-validates each file with the size and mtime taken when it was probed;
    # an equal-size rewrite (FITS: fixed size for a given shape) is caught by its mtime alone.
    d = tmp_path / "in"
    d.mkdir()
    files = []
    for i in range(4):
        f = d / f"{i}.fits"
        fits.PrimaryHDU(_gray(10 + i, "float32")).writeto(f)
        files.append(f)
    target = files[2]
    stat0 = target.stat()

    def change():
        if how == "new_size":
            fits.PrimaryHDU(np.zeros((H + 8, W), np.float32)).writeto(target, overwrite=True)
        else:
            fits.PrimaryHDU(_gray(99, "float32")).writeto(target, overwrite=True)
            assert target.stat().st_size == stat0.st_size
            os.utime(target, ns=(stat0.st_atime_ns, stat0.st_mtime_ns + 1_000_000_000))

    res = _plan_then_run(files, tmp_path / "out.zarr", change)
    errors = res["records"]["error"]
    assert res["failed"] == 1
    assert errors[2] is not None and "changed" in errors[2]
    assert [e is None for e in errors] == [True, True, False, True]
    headers = res["records"]["fits_header"]
    assert headers[0] is not None and json.loads(headers[0])["NAXIS1"] == W


def test_fits_header_column_matches_the_probe(tmp_path):
    # The header cards now come from the decode pass: they must equal what a probe reports.
    from images_to_zarr import _core

    d = tmp_path / "in"
    d.mkdir()
    hdu = fits.PrimaryHDU(_gray(5, "int16"))
    hdu.header["OBSERVER"] = "perf"
    hdu.writeto(d / "a.fits")
    res = _plan_then_run([d / "a.fits"], tmp_path / "out.zarr", lambda: None)
    _, info = _core.read_image(str(d / "a.fits"))
    assert res["records"]["fits_header"][0] == info["fits_header"]
    assert json.loads(res["records"]["fits_header"][0])["OBSERVER"] == "perf"
