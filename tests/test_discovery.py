"""Discovery (issue 15 item 10, issue 17 item 13, issue 14 item 1): include/exclude globs through
the API and the CLI, recorded in creation_info; a file reached twice is converted once; the
store order is the sort of the full paths (not a sorted directory walk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from PIL import Image

import images_to_zarr as i2z


def png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((3, 5), value, np.uint8)).save(path)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for i, rel in enumerate(["a.png", "a/x.png", "a/y_mask.png", "a-b.png", "b/deep/z.png", "b/z_mask.png", "c.png"]):
        png(root / rel, 10 * (i + 1))
    return root


def stored(store: Path) -> tuple[list[str], np.ndarray]:
    side = pq.read_table(store.parent / f"{store.stem}_metadata.parquet")
    return side.column("source_path").to_pylist(), zarr.open_array(store / "images", mode="r")[:]


def test_store_order_is_the_sort_of_full_paths(tree: Path, tmp_path: Path) -> None:
    store = i2z.convert(tmp_path / "o.zarr", folders=tree, recursive=True, progress=False)
    paths, pixels = stored(store)
    expected = sorted(os.path.join(d, f) for d, _, fs in os.walk(tree) for f in fs)
    assert paths == expected  # "a-b.png" < "a.png" < "a/x.png": not the order of a sorted walk
    for p, img in zip(paths, pixels):
        np.testing.assert_array_equal(img[0], np.asarray(Image.open(p)))


def test_include_and_exclude_globs(tree: Path, tmp_path: Path) -> None:
    store = i2z.convert(tmp_path / "o.zarr", folders=tree, recursive=True, progress=False,
                        include=["*.png"], exclude=["*_mask*", "b/deep/*"])
    paths, _ = stored(store)
    assert [os.path.relpath(p, tree) for p in paths] == ["a-b.png", "a.png", "a/x.png", "c.png"]
    info = json.loads((store / "zarr.json").read_text())["attributes"]["creation_info"]
    assert info["include"] == ["*.png"] and info["exclude"] == ["*_mask*", "b/deep/*"]
    # A pattern with a '/' matches the path relative to the input folder; without, the name.
    store = i2z.convert(tmp_path / "p.zarr", folders=tree, recursive=True, progress=False, include="a/*")
    assert [os.path.relpath(p, tree) for p in stored(store)[0]] == ["a/x.png", "a/y_mask.png"]


def test_include_exclude_on_the_command_line(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.zarr"
    r = subprocess.run([sys.executable, "-m", "images_to_zarr.cli", "convert", str(tree), "--out", str(out), "-r",
                        "--exclude", "*_mask.png", "--include", "*.png", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    paths, _ = stored(out)
    assert [os.path.relpath(p, tree) for p in paths] == ["a-b.png", "a.png", "a/x.png", "b/deep/z.png", "c.png"]
    info = json.loads((out / "zarr.json").read_text())["attributes"]["creation_info"]
    assert info["include"] == ["*.png"] and info["exclude"] == ["*_mask.png"]


def test_nothing_selected_is_a_clear_error(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no supported image files"):
        i2z.convert(tmp_path / "o.zarr", folders=tree, recursive=True, progress=False, include="*.fits")


def test_same_file_reached_twice_is_converted_once(tree: Path, tmp_path: Path) -> None:
    """Issue 17.13: ``f`` and ``dir/./f`` (or a folder and a file in it) were converted twice."""
    f = tree / "c.png"
    dotted = f"{tree}/./c.png"
    store = i2z.convert(tmp_path / "o.zarr", folders=[str(f), dotted], progress=False)
    paths, pixels = stored(store)
    assert paths == [str(f)] and pixels.shape[0] == 1
    store = i2z.convert(tmp_path / "p.zarr", folders=[dotted, str(tree)], progress=False)
    paths, _ = stored(store)
    assert [os.path.relpath(p, tree) for p in paths] == ["a-b.png", "a.png", "c.png"]
