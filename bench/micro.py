"""Focused in-process micro-runs of the engine for profiling and before/after comparisons.

    python bench/micro.py w6a --reps 5          # CPU and wall seconds per repetition
    valgrind --tool=callgrind python bench/micro.py w3a --reps 2   # minus a --reps 0 run
    I2Z_MICRO_CORE=/tmp/old/_core.so python bench/micro.py w6a  # another build of the extension

Each repetition is one `_core.convert_*(...).run()` (no Parquet side-car, no Python wrapper, then
`abort()`) into /dev/shm, or for `w7` a loop of single-image reads through `open_store`. Inputs are the cached
quick-mode bench inputs (bench/.data, made by `bench/run.py --quick`). CPU seconds are the
process's user + system time, so they are not stretched by other load on the machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _load_core():
    """The installed extension, or the build named by $I2Z_MICRO_CORE (A/B runs of two builds)."""
    so = os.environ.get("I2Z_MICRO_CORE")
    if so:
        import importlib.util

        spec = importlib.util.spec_from_file_location("images_to_zarr._core", so)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["images_to_zarr._core"] = mod
    from images_to_zarr import _core

    return _core


_core = _load_core()

DATA = Path(__file__).resolve().parent / ".data"
OUT = Path("/dev/shm") / f"i2z-micro-{os.getpid()}"

# name -> (input, chunk, shard images)
FILES = {
    "w1": ("w1_png_200", (1, 256, 256), 256),
    "w2": ("w2_jpeg_200", (1, 256, 256), 256),
    "w3a": ("w3a_fits_f32_100", (1, 256, 256), 64),
    "w3b": ("w3b_fits_i16_100", (1, 256, 256), 128),
    "w4": ("w4_tiff_100", (1, 256, 256), 128),
}
ARRAYS = {
    "w6a": ("w6a_u8_300.npy", (1, 256, 256), 256),
    "w6b": ("w6b_f32_80.npy", (1, 256, 256), 64),
}


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def options(chunk, shard, workers) -> dict:
    return {"chunk_shape": list(chunk), "shard_images": shard, "compressor": "lz4", "clevel": 1,
            "num_workers": workers}


def run_and_abort(conv) -> None:
    conv.run()
    conv.abort()  # drops the work directory (OUT.i2z-tmp, on tmpfs: RAM)


def make_op(name: str, workers: int, reads: int):
    if name in FILES:
        folder, chunk, shard = FILES[name]
        files = sorted(str(p) for p in (DATA / folder).iterdir() if not p.name.startswith("."))
        return lambda: run_and_abort(_core.convert_files(str(OUT), files, options(chunk, shard, workers), "overwrite"))
    if name in ARRAYS:
        path, chunk, shard = ARRAYS[name]
        arr = np.load(DATA / path)
        return lambda: run_and_abort(_core.convert_array(str(OUT), arr, options(chunk, shard, workers), "overwrite"))
    if name == "w7":
        from images_to_zarr import open_store

        arr = np.load(DATA / ARRAYS["w6a"][0])
        conv = _core.convert_array(str(OUT), arr, options((1, 256, 256), 256, 2), "overwrite")
        conv.run()
        conv.commit()
        idx = np.random.default_rng(7).integers(0, len(arr), reads)
        s = open_store(OUT, threads=workers)

        def read():
            for i in idx:
                s[int(i)]

        return read
    sys.exit(f"unknown workload {name!r}; choose from {', '.join([*FILES, *ARRAYS, 'w7'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1, help="engine workers / reader threads (default 1)")
    ap.add_argument("--reads", type=int, default=1000, help="reads per repetition of w7")
    a = ap.parse_args()
    try:
        op = make_op(a.workload, a.workers, a.reads)
        op()  # warm-up: page cache, allocator, thread start
        cpus, walls = [], []
        for _ in range(a.reps):
            c0, t0 = cpu(), time.perf_counter()
            op()
            cpus.append(cpu() - c0)
            walls.append(time.perf_counter() - t0)
        if a.reps:
            print(f"{a.workload} workers={a.workers}: CPU s median {np.median(cpus):.4f} min {min(cpus):.4f}; "
                  f"wall s median {np.median(walls):.4f} min {min(walls):.4f} ({a.reps} reps)")
    finally:
        shutil.rmtree(OUT, ignore_errors=True)
        shutil.rmtree(f"{OUT}.i2z-tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
