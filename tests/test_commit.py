"""The store/commit layer (issue 17 items 7-9, 11, 12, 14 and the run id), through the public API.
Each test failed on the main branch before the commit layer (pipeline/commit.cpp) replaced the
scattered local/remote code; the syscall-level kill test is tests/test_kill_syscalls.py."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

import images_to_zarr as i2z
from conftest import smooth_images

KW = dict(shard_images=2, progress=False)


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("images_to_zarr"), "propagate", True)


def side(store: Path) -> Path:
    return store.parent / f"{store.stem}_metadata.parquet"


def test_run_id_in_group_attributes_and_parts(tmp_path: Path) -> None:
    store = i2z.convert(tmp_path / "r.zarr", images=smooth_images(3, 1, 4, 4), **KW)
    i2z.convert(store, images=smooth_images(2, 1, 4, 4, seed=1), append=True, **KW)
    attrs = zarr.open_group(str(store), mode="r").attrs.asdict()
    runs = attrs["runs"]
    assert [(r["start_index"], r["end_index"]) for r in runs] == [(0, 3), (3, 5)]
    assert attrs["run_id"] == runs[-1]["run_id"] and runs[0]["run_id"] != runs[1]["run_id"]
    for run in runs:
        kv = pq.read_metadata(side(store) / f"part-{run['start_index']:012d}.parquet").metadata
        assert kv[b"i2z.run_id"].decode() == run["run_id"]
        assert int(kv[b"i2z.rows"]) == run["end_index"] - run["start_index"]


def test_side_car_of_another_store_is_named(tmp_path: Path, capsys) -> None:
    a = i2z.convert(tmp_path / "a.zarr", images=smooth_images(3, 1, 4, 4), **KW)
    b = i2z.convert(tmp_path / "b.zarr", images=smooth_images(3, 1, 4, 4, seed=2), **KW)
    shutil.rmtree(side(b))
    shutil.copytree(side(a), side(b))  # same row count, another store's rows
    with pytest.raises(ValueError, match=r"b_metadata\.parquet does not match its store.*written by run"):
        i2z.open_store(b).metadata
    summary = i2z.inspect(b)
    assert summary.metadata_problem and "does not match" in capsys.readouterr().out
    assert summary.format_counts == {}  # another store's rows are not summarised


def test_lock_through_a_symlink_is_the_stores_lock(tmp_path: Path) -> None:
    """17.8 a: a writer through a symlink to the store takes the same lock."""
    store = i2z.convert(tmp_path / "s.zarr", images=smooth_images(2, 1, 4, 4), **KW)
    link = tmp_path / "link.zarr"
    link.symlink_to(store)
    with open(str(store) + ".i2z-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OSError, match=r"s\.zarr\.i2z-lock"):
            i2z.convert(link, images=smooth_images(1, 1, 4, 4), append=True, **KW)
    i2z.convert(link, images=smooth_images(1, 1, 4, 4), append=True, **KW)
    assert i2z.open_store(store).shape[0] == 3
    assert not (tmp_path / "link_metadata.parquet").exists()  # 17.12: beside the real store
    assert i2z.open_store(link).metadata.num_rows == 3


def test_lock_file_is_never_unlinked(tmp_path: Path) -> None:
    """17.8 b: a process waiting on the lock file's inode must not be left holding a file that
    a third writer no longer sees: the file a writer locked is the one at the path afterwards."""
    store = tmp_path / "s.zarr"
    lock_path = Path(str(store) + ".i2z-lock")
    i2z.convert(store, images=smooth_images(2, 1, 4, 4), **KW)
    with open(lock_path) as waiting:  # as a second writer blocked in flock() would hold it
        i2z.convert(store, images=smooth_images(1, 1, 4, 4), append=True, **KW)
        assert os.fstat(waiting.fileno()).st_ino == lock_path.stat().st_ino


def test_user_file_at_the_side_car_name_is_refused(tmp_path: Path) -> None:
    """17.9: a new store never replaces a file that is not ours."""
    user = tmp_path / "x_metadata.parquet"
    user.write_text("my notes")
    with pytest.raises(FileExistsError, match=r"x_metadata\.parquet.*not created by images_to_zarr"):
        i2z.convert(tmp_path / "x.zarr", images=smooth_images(2, 1, 4, 4), **KW)
    assert user.read_text() == "my notes"
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("suffix", [".i2z-old", ".i2z-tmp"])
def test_user_folders_named_like_staging_are_refused(tmp_path: Path, suffix: str) -> None:
    """17.9: overwrite=True never deletes user folders named <store>.i2z-old / .i2z-tmp."""
    store = i2z.convert(tmp_path / "y.zarr", images=smooth_images(2, 1, 4, 4), **KW)
    folder = Path(str(store) + suffix)
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    before = i2z.open_store(store)[:]
    with pytest.raises(FileExistsError, match=rf"y\.zarr\{suffix}"):
        i2z.convert(store, images=smooth_images(3, 1, 4, 4, seed=3), overwrite=True, **KW)
    assert (folder / "thesis.tex").read_text() == "precious"
    np.testing.assert_array_equal(i2z.open_store(store)[:], before)


def test_resume_after_a_committed_append_is_a_no_op(tmp_path: Path, caplog) -> None:
    """17.11: resume=True of an append that had committed appends nothing and says so."""
    store = i2z.convert(tmp_path / "z.zarr", images=smooth_images(4, 1, 4, 4), **KW)
    more = smooth_images(3, 1, 4, 4, seed=4)
    i2z.convert(store, images=more, append=True, **KW)
    files = sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file())
    with caplog.at_level(logging.INFO, logger="images_to_zarr"):
        i2z.convert(store, images=more, append=True, resume=True, **KW)
    assert "nothing to resume" in caplog.text
    assert i2z.open_store(store).shape[0] == 7
    assert sorted((p.relative_to(tmp_path), p.read_bytes()) for p in tmp_path.rglob("*") if p.is_file()) == files
    # Other inputs are not a resume of that run: a resume of a new append proceeds.
    i2z.convert(store, images=more[:1], append=True, resume=True, **KW)
    assert i2z.open_store(store).shape[0] == 8


def test_resume_after_a_committed_create_is_a_no_op(tmp_path: Path, caplog) -> None:
    imgs = smooth_images(3, 1, 4, 4)
    store = i2z.convert(tmp_path / "c.zarr", images=imgs, **KW)
    with caplog.at_level(logging.INFO, logger="images_to_zarr"):
        i2z.convert(store, images=imgs, resume=True, **KW)
    assert "nothing to resume" in caplog.text
    with pytest.raises(FileExistsError):  # without resume it is still a second create
        i2z.convert(store, images=imgs, **KW)


def test_store_moved_with_its_side_car_keeps_its_metadata(tmp_path: Path) -> None:
    """17.12: the side-car is found from the store's real location and name."""
    a = i2z.convert(tmp_path / "a.zarr", images=smooth_images(3, 1, 4, 4), **KW)
    want = i2z.open_store(a).metadata
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.rename(a, moved / "b.zarr")
    os.rename(side(a), moved / "b_metadata.parquet")
    got = i2z.open_store(moved / "b.zarr").metadata
    assert got is not None and got.equals(want)
    assert i2z.inspect(moved / "b.zarr").metadata_path == moved / "b_metadata.parquet"
    i2z.convert(moved / "b.zarr", images=smooth_images(1, 1, 4, 4), append=True, **KW)
    assert i2z.open_store(moved / "b.zarr").metadata.num_rows == 4


def test_finished_store_has_no_progress_folder(tmp_path: Path) -> None:
    """17.14: a stale progress folder in a committed store (a run killed after its commit) is
    removed by the next writer, even when that writer has nothing to do."""
    imgs = smooth_images(3, 1, 4, 4)
    store = i2z.convert(tmp_path / "p.zarr", images=imgs, **KW)
    stale = store / ".i2z-progress" / "records"
    stale.mkdir(parents=True)
    (stale / "0.json").write_text("[]")
    i2z.convert(store, images=imgs, resume=True, **KW)  # a no-op resume
    assert not (store / ".i2z-progress").exists()
    group = json.loads((store / "zarr.json").read_text())
    assert group["attributes"]["total_images"] == zarr.open_array(str(store / "images"), mode="r").shape[0]
