#!/usr/bin/env python3
"""The SCALE workload (issue 14 item 8): ``python bench/run.py --only SCALE`` (or this file).

For each N (default 10^5 and 10^6) it builds N small 32x32 gray PNGs in folders of 10,000 on
tmpfs plus a 4-column catalog CSV (filename, ra, dec, mag), then measures, each operation in its
own subprocess (wall time inside the child around the call, peak RSS from ``wait4``, bytes
written from ``/proc/self/io`` ``wchar``):

* convert with the catalog (``recursive=True``): wall, images/s, peak RSS;
* append 100 images without catalog columns, then 100 more with them (a catalog of their own
  100 rows): wall, RSS, bytes written;
* ``inspect``: wall, peak RSS;
* random single-image reads through ``open_store``: reads/s over ~2 s.

It reports the RSS growth per image between the two largest N. Inputs are generated fast (one
PNG encoded per distinct content, 64 variants, copied by ``os.write``) and deleted at the end.
Results: bench/out/scale.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PER_FOLDER = 10_000


def _png_variants(k: int = 64) -> list[bytes]:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(k):
        img = (rng.normal(100, 20, (32, 32)).clip(0, 255)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _name(i: int) -> str:
    return f"img_{i:09d}.png"


def generate(root: Path, n: int, first: int = 0, folders: bool = True) -> None:
    """``n`` PNGs named img_<first + i>.png, in folders of PER_FOLDER (or flat)."""
    variants = _png_variants()
    for i in range(first, first + n):
        d = root / f"d{i // PER_FOLDER:05d}" if folders else root
        if i % PER_FOLDER == 0 or i == first:
            d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / _name(i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, variants[i % len(variants)])
        os.close(fd)


def catalog(path: Path, names: range) -> None:
    rng = random.Random(1)
    with open(path, "w") as f:
        f.write("filename,ra,dec,mag\n")
        for i in names:
            f.write(f"{_name(i)},{rng.uniform(0, 360):.6f},{rng.uniform(-90, 90):.6f},{rng.uniform(14, 26):.3f}\n")


# ----------------------------------------------------------------------------------- child side

def _wchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("wchar")).split()[1])


def child(op: str, a: dict) -> dict:
    import numpy as np

    import images_to_zarr as i2z

    i2z.configure_logging(False, "ERROR")
    w0 = _wchar()
    t0 = time.perf_counter()
    out: dict = {}
    if op == "convert":
        i2z.convert(a["store"], folders=a["folders"], metadata=a.get("metadata"), recursive=True,
                    num_parallel_workers=a["workers"], progress=False)
    elif op == "append":
        i2z.convert(a["store"], folders=a["folders"], metadata=a.get("metadata"), append=True,
                    num_parallel_workers=a["workers"], progress=False)
    elif op == "inspect":
        i2z.inspect(a["store"])
    elif op == "reads":
        s = i2z.open_store(a["store"])
        n, rng, count = len(s), np.random.default_rng(2), 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2.0:
            for i in rng.integers(0, n, 256):
                s[int(i)]
            count += 256
        out["reads"] = count
    out["wall_s"] = time.perf_counter() - t0
    out["written_bytes"] = _wchar() - w0
    return out


def run_child(op: str, a: dict) -> dict:
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    p = subprocess.Popen([sys.executable, __file__, "--child", op, json.dumps(a)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    out, err = p.stdout.read().decode(), p.stderr.read().decode()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{op} failed: {err.strip().splitlines()[-1:]}")
    r = json.loads(out.strip().splitlines()[-1])
    r["peak_rss_mib"] = ru.ru_maxrss / 1024
    return r


# ----------------------------------------------------------------------------------- driver

def measure(n: int, work: Path, workers: int, log) -> dict:
    base = work / f"n{n}"
    shutil.rmtree(base, ignore_errors=True)
    inputs = base / "in"
    t = time.perf_counter()
    generate(inputs, n)
    catalog(base / "catalog.csv", range(n))
    catalog(base / "catalog_add.csv", range(n + 100, n + 200))  # the appended images' own rows
    generate(base / "add1", 100, first=n, folders=False)
    generate(base / "add2", 100, first=n + 100, folders=False)
    log(f"N={n:,}: inputs generated in {time.perf_counter() - t:.0f} s")
    store = str(base / "out" / "catalog.zarr")
    r: dict = {"n": n, "load_before": os.getloadavg()[0]}
    c = run_child("convert", {"store": store, "folders": [str(inputs)], "metadata": str(base / "catalog.csv"),
                              "workers": workers})
    r["convert"] = {**c, "images_per_s": n / c["wall_s"]}
    log(f"N={n:,}: convert {c['wall_s']:.1f} s, {n / c['wall_s']:,.0f} img/s, {c['peak_rss_mib']:.0f} MiB")
    r["append_plain"] = run_child("append", {"store": store, "folders": [str(base / "add1")], "workers": workers})
    r["append_catalog"] = run_child("append", {"store": store, "folders": [str(base / "add2")],
                                               "metadata": str(base / "catalog_add.csv"), "workers": workers})
    r["inspect"] = run_child("inspect", {"store": store})
    rd = run_child("reads", {"store": store})
    r["reads"] = {**rd, "reads_per_s": rd["reads"] / rd["wall_s"]}
    r["store_bytes"] = sum(f.stat().st_size for f in (base / "out").rglob("*") if f.is_file())
    r["shard_objects"] = sum(1 for _ in (Path(store) / "images" / "c").rglob("*") if _.is_file())
    r["load_after"] = os.getloadavg()[0]
    log(f"N={n:,}: append {r['append_plain']['wall_s']:.2f}/{r['append_catalog']['wall_s']:.2f} s, "
        f"inspect {r['inspect']['wall_s']:.2f} s {r['inspect']['peak_rss_mib']:.0f} MiB, "
        f"{r['reads']['reads_per_s']:,.0f} reads/s")
    shutil.rmtree(base, ignore_errors=True)
    return r


def render(rows: list[dict]) -> str:
    out = ["| N | convert (s) | images/s | peak RSS (MiB) | append-100 plain (s / MiB / bytes written) | "
           "append-100 catalog (s / MiB / bytes written) | inspect (s / MiB) | random reads/s | load |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c, a, b, i = r["convert"], r["append_plain"], r["append_catalog"], r["inspect"]
        out.append(f"| {r['n']:,} | {c['wall_s']:.1f} | {c['images_per_s']:,.0f} | {c['peak_rss_mib']:.0f} | "
                   f"{a['wall_s']:.2f} / {a['peak_rss_mib']:.0f} / {a['written_bytes']:,} | "
                   f"{b['wall_s']:.2f} / {b['peak_rss_mib']:.0f} / {b['written_bytes']:,} | "
                   f"{i['wall_s']:.2f} / {i['peak_rss_mib']:.0f} | {r['reads']['reads_per_s']:,.0f} | "
                   f"{r['load_before']:.1f}-{r['load_after']:.1f} |")
    if len(rows) >= 2:
        x, y = rows[-2], rows[-1]
        per = (y["convert"]["peak_rss_mib"] - x["convert"]["peak_rss_mib"]) * 2**20 / (y["n"] - x["n"])
        ratio = y["convert"]["images_per_s"] / x["convert"]["images_per_s"]
        ap = y["append_plain"]["wall_s"] / x["append_plain"]["wall_s"]
        ac = y["append_catalog"]["wall_s"] / x["append_catalog"]["wall_s"]
        out.append("")
        out.append(f"RSS growth {per:.1f} bytes/image between N={x['n']:,} and N={y['n']:,} (target <= 32); "
                   f"throughput ratio {ratio:.2f} (target >= 0.90); append-100 time ratio {ap:.2f} plain, "
                   f"{ac:.2f} with catalog (target <= 1.2).")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="SCALE workload")
    ap.add_argument("--n", default="100000,1000000", help="comma list of N")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work-dir", default="/dev/shm/i2z-scale" if os.path.isdir("/dev/shm") else "/tmp/i2z-scale")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args(argv)
    work = Path(args.work_dir)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    rows = []
    try:
        for n in sorted(int(v) for v in args.n.split(",")):
            rows.append(measure(n, work, args.workers, log))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = render(rows)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "scale.json").write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], json.loads(sys.argv[3]))))
        sys.exit(0)
    sys.exit(main())
