"""Speed-up of a Dask conversion with 2 local workers vs 1 (README "Scaling out").

Usage: python bench/dask_speedup.py [N_IMAGES] [REPEATS]
Both clusters convert the same generated PNG folder in the same run; the figure is the ratio of
the median wall times (1 worker / 2 workers), each worker a process with one thread.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from distributed import Client, LocalCluster
from PIL import Image

import images_to_zarr as i2z


def make_inputs(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256]
    for i in range(n):
        base = 127 + 100 * np.sin(x / (8 + i % 7)) * np.cos(y / (9 + i % 5))
        img = np.clip(base[..., None] + rng.normal(0, 6, (256, 256, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i:05d}.png")


def timed(client: Client, src: Path, out: Path, repeats: int) -> float:
    times = []
    for r in range(repeats + 1):  # the first run warms the workers up and is not counted
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        i2z.convert(out, folders=src, scheduler=client, progress=False, shard_images=32)
        if r:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out.zarr"
        src.mkdir()
        make_inputs(src, n)
        result = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
                    Client(c) as client:
                result[workers] = timed(client, src, out, repeats)
        print(f"{n} RGB PNG 256x256, median of {repeats}: 1 worker {result[1]:.2f} s "
              f"({n / result[1]:.0f} img/s), 2 workers {result[2]:.2f} s ({n / result[2]:.0f} img/s), "
              f"speed-up {result[1] / result[2]:.2f}x")


if __name__ == "__main__":
    main()
