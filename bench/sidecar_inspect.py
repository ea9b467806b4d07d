#!/usr/bin/env python3
"""inspect() on a store whose side-car has N rows (default 10^6): wall time and peak RSS.

    python bench/sidecar_inspect.py [N] [--reps 5] [--dir /dev/shm/i2z-inspect]

The store is a real one (1x1 pixel images converted from memory); its side-car folder is then
replaced by synthetic rows shaped like a file conversion's (extensions, shapes, sizes, FITS cards,
errors), written as the part writer does (row groups of 1,024 rows, run id of the store). Each
repetition runs ``inspect(print_summary=False)`` in a fresh subprocess; time is taken inside it around the call
only, peak RSS is that child's VmHWM, next to the peak of a child that only imports.
Medians are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
import images_to_zarr as i2z
t, c = time.perf_counter(), time.process_time()
if sys.argv[2] == "inspect":
    s = i2z.inspect(sys.argv[1], print_summary=False)
    assert sum(s.format_counts.values()) == int(sys.argv[3])
# VmHWM: this process image's peak (ru_maxrss would carry the parent's peak across fork + exec).
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"s": time.perf_counter() - t, "cpu": time.process_time() - c, "rss": hwm}))
"""


def build(folder: Path, n: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import images_to_zarr as i2z
    from images_to_zarr import sidecar

    i2z.configure_logging(False)
    store = i2z.convert(folder / "big.zarr", images=np.zeros((n, 1, 1, 1), np.uint8), progress=False)
    run = i2z.open_store(store).attrs["run_id"]
    side = folder / "big_metadata.parquet"
    shutil.rmtree(side)
    side.mkdir()
    rng = np.random.default_rng(0)
    exts = np.array([".png", ".fits", ".jpeg", ".tif", ".fits.gz"])
    header = json.dumps({f"KEY{i}": i * 1.5 for i in range(8)})
    with pq.ParquetWriter(side / sidecar.part_name(0), _schema()) as w:
        for lo in range(0, n, sidecar.ROW_GROUP_ROWS):
            k = min(sidecar.ROW_GROUP_ROWS, n - lo)
            pick = rng.integers(0, len(exts), k)
            names = [f"cutout_{lo + i:09d}{exts[p]}" for i, p in enumerate(pick)]
            mins = rng.normal(0, 1, k)
            table = pa.table({
                "filename": names, "label": rng.integers(0, 10, k),
                "original_filename": names, "source_path": [f"/data/survey/{x}" for x in names],
                "original_extension": exts[pick], "file_size_bytes": rng.integers(1_000, 100_000, k),
                "dtype": np.array(["uint8", "float32"])[pick % 2],
                "shape": pa.array([[64, 64] if p % 2 else [64, 64, 3] for p in pick], pa.list_(pa.int64())),
                "fits_extension": pa.array(["0" if p in (1, 4) else None for p in pick], pa.string()),
                "fits_header": pa.array([header if p in (1, 4) else None for p in pick], pa.string()),
                "min_value": mins, "max_value": mins + 10, "mean_value": mins + 5,
                "error": pa.array(["corrupt" if (lo + i) % 997 == 0 else None for i in range(k)], pa.string()),
            }, schema=_schema())
            w.write_table(table, row_group_size=k)
        w.add_key_value_metadata({"i2z.run_id": run, "i2z.first_index": "0", "i2z.rows": str(n)})
    return store


def _schema():
    import pyarrow as pa

    from images_to_zarr.sidecar import RECORD_SCHEMA

    return pa.schema([("filename", pa.string()), ("label", pa.int64()), *RECORD_SCHEMA])


def child(store: Path, what: str, n: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(store), what, str(n)], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", default="/dev/shm/i2z-inspect")
    args = ap.parse_args()
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        store = build(folder, args.n)
        size = sum(p.stat().st_size for p in (folder / "big_metadata.parquet").iterdir())
        base = statistics.median(child(store, "import", args.n)["rss"] for _ in range(3))
        runs = [child(store, "inspect", args.n) for _ in range(args.reps)]
        t, cpu, rss = (statistics.median(r[k] for r in runs) for k in ("s", "cpu", "rss"))
        print(f"inspect of {args.n:,} side-car rows ({size / 2**20:.1f} MiB of Parquet), median of {args.reps}: "
              f"{t:.2f} s wall, {cpu:.2f} s CPU, peak RSS {rss / 2**20:.0f} MiB "
              f"(a child that only imports: {base / 2**20:.0f} MiB); load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
