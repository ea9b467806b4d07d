"""The ``images_to_zarr`` command line, run as a user runs it: in a subprocess.

Exit status 0 done, 1 failed (one ``images_to_zarr: error: ...`` line, no traceback), 2 usage error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
import zarr
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images

H, W = 36, 44
SCRIPT = Path(sysconfig.get_path("scripts")) / "images_to_zarr"


def run(*args: str | os.PathLike, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "images_to_zarr.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def make_folder(d: Path, size: tuple[int, int] = (H, W)) -> dict[str, np.ndarray]:
    """Two gray PNGs and two uint16 TIFFs; returns what Pillow / tifffile decode."""
    d.mkdir(parents=True, exist_ok=True)
    h, w = size
    refs = {}
    for i in range(2):
        Image.fromarray(smooth_images(1, 1, h, w, "uint8", seed=i)[0, 0]).save(d / f"p{i}.png")
        refs[f"p{i}.png"] = np.asarray(Image.open(d / f"p{i}.png"))
        tifffile.imwrite(d / f"t{i}.tif", smooth_images(1, 1, h, w, "uint16", seed=10 + i)[0, 0])
        refs[f"t{i}.tif"] = tifffile.imread(d / f"t{i}.tif")
    return refs


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("images_to_zarr: error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_version_and_help():
    for command in ([sys.executable, "-m", "images_to_zarr.cli"], [str(SCRIPT)]):
        version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
        assert version.returncode == 0 and i2z.__version__ in version.stdout
        helped = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
        assert helped.returncode == 0
        assert all(c in helped.stdout for c in ("convert", "inspect", "display"))
    convert_help = run("convert", "--help").stdout
    for flag in ["--out", "--metadata", "--recursive", "--workers", "--fits-ext", "--chunk-shape", "--shard-images",
                 "--compressor", "--clevel", "--resize", "--interpolation-order", "--dtype", "--pad", "--overwrite",
                 "--append", "--resume", "--scheduler", "--no-progress", "--quiet", "--debug", "--max-failures",
                 "--strict"]:
        assert flag in convert_help, flag
    assert "--save" in run("display", "--help").stdout and "--indices" in run("display", "--help").stdout
    assert "--json" in run("inspect", "--help").stdout


def test_convert_with_every_common_flag(tmp_path: Path):
    refs = make_folder(tmp_path / "in")
    (tmp_path / "labels.csv").write_text("filename,label\n" + "".join(f"{n},{i}\n" for i, n in enumerate(sorted(refs))))
    result = run("convert", tmp_path / "in", "--out", tmp_path / "out", "--metadata", tmp_path / "labels.csv",
                 "--chunk-shape", "2,16,16", "--compressor", "zstd", "--clevel", "3", "--shard-images", "4",
                 "--workers", "2", "--dtype", "float32", "--no-progress", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "INFO" not in result.stderr  # --quiet
    store = tmp_path / "out" / "labels.zarr"
    a = zarr.open_array(store / "images", mode="r")
    assert a.shape == (4, 1, H, W) and a.dtype == np.float32
    assert a.chunks == (2, 1, 16, 16) and a.shards[0] == 4
    for i, name in enumerate(sorted(refs)):
        np.testing.assert_array_equal(a[i, 0], refs[name].astype(np.float32), err_msg=name)
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    assert (attrs["compressor"], attrs["compression_level"]) == ("zstd", 3)
    table = pq.read_table(tmp_path / "out" / "labels_metadata.parquet")
    assert table.column("label").to_pylist() == [0, 1, 2, 3]
    assert table.column("dtype").to_pylist() == ["uint8", "uint8", "uint16", "uint16"]


def test_convert_prints_the_store_and_the_console_script_works(tmp_path: Path):
    make_folder(tmp_path / "in")
    result = subprocess.run([str(SCRIPT), "convert", str(tmp_path / "in"), "--out", str(tmp_path / "o.zarr"),
                             "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "o.zarr")
    assert zarr.open_array(tmp_path / "o.zarr" / "images", mode="r").shape == (4, 1, H, W)


def test_runtime_failures_exit_1_with_one_line(tmp_path: Path):
    make_folder(tmp_path / "in")
    assert run("convert", tmp_path / "in", "--out", tmp_path / "o", "--no-progress").returncode == 0
    assert_one_line_error(run("convert", tmp_path / "in", "--out", tmp_path / "o", "--no-progress"),
                          "already exists")
    assert run("convert", tmp_path / "in", "--out", tmp_path / "o", "--overwrite", "--no-progress").returncode == 0

    assert_one_line_error(run("convert", tmp_path / "missing", "--out", tmp_path / "o2", "--no-progress"),
                          "no supported image files")
    assert not (tmp_path / "o2" / "images.zarr").exists()

    make_folder(tmp_path / "mixed")
    Image.fromarray(smooth_images(1, 1, H + 4, W, "uint8")[0, 0]).save(tmp_path / "mixed" / "z_big.png")
    assert_one_line_error(run("convert", tmp_path / "mixed", "--out", tmp_path / "o3", "--no-progress"),
                          "z_big.png", "resize")
    assert not (tmp_path / "o3" / "images.zarr").exists()


def test_debug_shows_the_traceback(tmp_path: Path):
    result = run("convert", tmp_path / "missing", "--out", tmp_path / "o", "--no-progress", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr


@pytest.mark.parametrize("flags", [
    ["--resize", "12x"], ["--chunk-shape", "0,1"], ["--chunk-shape", "1,2"], ["--no-such-flag"],
    ["--overwrite", "--append"], ["--interpolation-order", "9"], ["--compressor", "snappy"], ["--workers", "-1"],
    ["--resize", "1,2,3"], ["--max-failures", "ten"], ["--max-failures", "120%"], ["--max-failures", "-1"],
    ["--strict", "--max-failures", "1"],
])
def test_usage_errors_exit_2(tmp_path: Path, flags: list[str]):
    make_folder(tmp_path / "in")
    result = run("convert", tmp_path / "in", "--out", tmp_path / "o", "--no-progress", *flags)
    assert result.returncode == 2, (flags, result.stderr)
    assert "Traceback" not in result.stderr and "Error" in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_arguments_exit_2(tmp_path: Path):
    assert run("convert", "--out", tmp_path / "o").returncode == 2
    assert run("convert", tmp_path).returncode == 2
    assert run("inspect").returncode == 2
    assert run("no-such-command").returncode == 2


def test_inspect_and_display(tmp_path: Path):
    make_folder(tmp_path / "in")
    assert run("convert", tmp_path / "in", "--out", tmp_path / "o", "--no-progress").returncode == 0
    store = tmp_path / "o" / "images.zarr"
    result = run("inspect", store)
    assert result.returncode == 0, result.stderr
    assert "SUMMARY STATISTICS" in result.stdout and "Total images across all files: 4" in result.stdout
    assert "PNG: 2 (50.0%)" in result.stdout and "TIFF: 2 (50.0%)" in result.stdout

    png = tmp_path / "grid.png"
    result = run("display", store, "--num-samples", "3", "--save", png, "--seed", "0")
    assert result.returncode == 0, result.stderr
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100

    assert_one_line_error(run("inspect", tmp_path / "nope.zarr"), "store not found")
    assert_one_line_error(run("inspect", tmp_path / "in"), "not a Zarr")
    assert_one_line_error(run("display", tmp_path / "nope.zarr", "--save", png), "store not found")
    assert run("display", store, "--num-samples", "0").returncode == 2
