"""S3 inputs (issue 14 item 6, issue 17 item 15): the staging folder is private, created only once
the writer holds its lock, and a second writer cannot touch the first writer's inputs; objects are
read in bounded ranged reads. Against moto_server on loopback (fixtures of test_s3_store.py)."""

from __future__ import annotations

import stat
import threading
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import images_to_zarr as i2z
from images_to_zarr import _s3_inputs
from images_to_zarr.metadata import SidecarWriter
from test_s3_store import BUCKET, s3_server  # noqa: F401 - the fixture is found by name

pytestmark = pytest.mark.s3


def upload(srv, folder: Path, n: int) -> tuple[str, list[np.ndarray]]:
    pre = f"inputs-{uuid.uuid4().hex[:8]}"
    b = srv.boto()
    images = []
    for i in range(n):
        img = np.random.default_rng(i).integers(0, 255, (6, 7), np.uint8)
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
        b.put_object(Bucket=srv.bucket, Key=f"{pre}/img{i:02d}.png", Body=(folder / f"img{i:02d}.png").read_bytes())
        images.append(img)
    return f"s3://{BUCKET}/{pre}/", images


def test_second_writer_cannot_damage_the_first_writers_inputs(tmp_path: Path, s3_server, monkeypatch) -> None:
    """Issue 17.15: a second writer emptied the first one's predictable /tmp staging folder before
    taking the lock, and the first writer's remaining images became zero-filled failures."""
    (tmp_path / "src").mkdir()
    url, images = upload(s3_server, tmp_path / "src", 12)
    opts = s3_server.options()
    store = tmp_path / "out" / "x.zarr"
    paused, resume = threading.Event(), threading.Event()
    real = SidecarWriter.write
    first = threading.get_ident

    def write(self, first_index, records):  # the first writer stops after its first shard
        if threading.get_ident() == owner[0] and first_index == 0:
            paused.set()
            resume.wait(60)
        return real(self, first_index, records)

    owner: list[int] = []
    monkeypatch.setattr(SidecarWriter, "write", write)
    errors: list[BaseException] = []

    def run_first() -> None:
        owner.append(first())
        try:
            i2z.convert(store, folders=[url], storage_options=opts, shard_images=2, num_parallel_workers=1,
                        progress=False)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    t = threading.Thread(target=run_first)
    t.start()
    assert paused.wait(60), "first writer never reached its first shard"
    with pytest.raises(OSError, match="another writer holds the lock"):
        i2z.convert(store, folders=[url], storage_options=opts, shard_images=2, overwrite=True, progress=False)
    staging = store.with_name(".x.zarr.i2z-inputs")
    private = staging.is_dir() and stat.S_IMODE(staging.stat().st_mode) == 0o700
    resume.set()
    t.join(120)
    assert not errors, errors
    side = pq.read_table(store.with_name("x_metadata.parquet"))
    assert side.column("error").to_pylist() == [None] * 12
    pixels = i2z.open_store(store)[:]
    for i, img in enumerate(images):
        np.testing.assert_array_equal(pixels[i][0], img)
    assert private, "staging folder beside the store, mode 0700, while the first writer runs"
    assert not staging.exists()


def test_staging_exists_only_under_the_lock_and_reads_are_ranged(tmp_path: Path, s3_server, monkeypatch) -> None:
    (tmp_path / "src").mkdir()
    url, images = upload(s3_server, tmp_path / "src", 3)
    monkeypatch.setattr(_s3_inputs, "_CHUNK", 100)  # every object takes several ranged reads
    seen: list[bool] = []
    real = i2z._core.convert_files
    store = tmp_path / "x.zarr"

    def spy(path, files, options, mode):
        seen.append(store.with_name(".x.zarr.i2z-inputs").exists())  # not yet: before the lock
        return real(path, files, options, mode)

    monkeypatch.setattr(i2z._core, "convert_files", spy)
    i2z.convert(store, folders=[url], storage_options=s3_server.options(), progress=False)
    assert seen == [False]
    pixels = i2z.open_store(store)[:]
    for i, img in enumerate(images):
        np.testing.assert_array_equal(pixels[i][0], img)
    assert not store.with_name(".x.zarr.i2z-inputs").exists()


def test_a_folder_in_the_staging_place_is_never_adopted_for_an_s3_store(tmp_path: Path, monkeypatch) -> None:
    """For an s3:// store the staging folder is a new random name, created exclusively."""
    roots = {_s3_inputs._staging_root("s3://b/p/x.zarr") for _ in range(3)}
    assert len(roots) == 3
    root = roots.pop()
    root.mkdir(mode=0o755)
    try:
        with pytest.raises(FileExistsError):
            _s3_inputs.StagedInputs([], root=root).fetch()
    finally:
        root.rmdir()
