"""Scale-out on Dask (issue 8): distributed output is byte-identical to the local conversion."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from distributed import Client, LocalCluster
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images

N_IMAGES = 2000


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, Client(c) as client:
        yield client


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("mixed")
    imgs = smooth_images(N_IMAGES, 3, 32, 32, "uint8", seed=5)
    for i in range(N_IMAGES):
        sub = d / f"part{i % 3}"
        sub.mkdir(exist_ok=True)
        hwc = imgs[i].transpose(1, 2, 0)
        if i % 4 == 0:
            Image.fromarray(hwc).save(sub / f"img{i:05d}.png")
        elif i % 4 == 1:
            Image.fromarray(hwc).save(sub / f"img{i:05d}.jpg", quality=90)
        elif i % 4 == 2:
            tifffile.imwrite(sub / f"img{i:05d}.tif", hwc)
        else:
            Image.fromarray(hwc[:, :, 0]).save(sub / f"img{i:05d}.png")
    (d / "part0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return d


def tree(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def assert_identical(a: Path, b: Path) -> None:
    ta, tb = tree(a), tree(b)
    ta.pop("zarr.json"), tb.pop("zarr.json")  # the group names its own side-car (differs by store name)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k] == tb[k], k
    pa_, pb = (pq.read_table(s.parent / f"{s.stem}_metadata.parquet") for s in (a, b))
    assert pa_.equals(pb)


def test_distributed_equals_local(tmp_path, cluster, mixed_folder):
    kw = dict(recursive=True, shard_images=64, progress=False)
    local = i2z.convert(tmp_path / "local.zarr", folders=mixed_folder, **kw)
    dist = i2z.convert(tmp_path / "dist.zarr", folders=mixed_folder, scheduler=cluster, **kw)
    assert_identical(local, dist)
    t = pq.read_table(tmp_path / "dist_metadata.parquet")
    assert t.num_rows == N_IMAGES + 1 and t.column("error").null_count == N_IMAGES


def test_distributed_append_equals_local(tmp_path, cluster, mixed_folder):
    kw = dict(shard_images=64, progress=False)
    parts = sorted(mixed_folder.iterdir())
    local = i2z.convert(tmp_path / "l.zarr", folders=parts[0], **kw)
    i2z.convert(local, folders=parts[1], append=True, **kw)
    dist = i2z.convert(tmp_path / "d.zarr", folders=parts[0], scheduler=cluster, **kw)
    i2z.convert(dist, folders=parts[1], append=True, scheduler=cluster, **kw)
    assert_identical(local, dist)


def test_worker_killed_mid_run(tmp_path, cluster, mixed_folder):
    kw = dict(recursive=True, shard_images=16, progress=False, compressor="zstd", clevel=15)
    ref = i2z.convert(tmp_path / "ref.zarr", folders=mixed_folder, **kw)
    pids = list(cluster.run(os.getpid).values())
    shards = tmp_path / "dist.zarr.i2z-tmp" / "images" / "c"
    killed_mid_run = []

    def kill_one() -> None:  # once a few shards exist, i.e. while tasks are running
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if shards.exists() and len(list(shards.iterdir())) >= 8:
                os.kill(pids[0], signal.SIGKILL)
                killed_mid_run.append(not (tmp_path / "dist.zarr").exists())
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one)
    killer.start()
    dist = i2z.convert(tmp_path / "dist.zarr", folders=mixed_folder, scheduler=cluster, **kw)
    killer.join()
    assert killed_mid_run == [True]
    assert_identical(ref, dist)
    assert not [p for p in dist.rglob("*") if ".i2z-part-" in p.name]


def test_in_memory_with_scheduler_is_refused(tmp_path, cluster):
    with pytest.raises(ValueError, match="scheduler"):
        i2z.convert(tmp_path / "x.zarr", images=np.zeros((1, 1, 4, 4), np.uint8), scheduler=cluster)
