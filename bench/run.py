#!/usr/bin/env python3
"""Side-by-side benchmarks of images_to_zarr against its peers and against the floors (issue 9).

    python bench/run.py            # full run (make bench)
    python bench/run.py --quick    # smaller inputs, 3 repetitions (make bench-quick, < 5 min on 2 cores)

Every measured operation runs in its own subprocess (bench/child.py); its wall time is taken
inside the child around the operation only (imports and input loading excluded) and its peak RSS
from os.wait4's rusage (ru_maxrss of that child alone). Tools take turns within each repetition
(round robin) so a load spike hits all of them alike; one warm-up round precedes the measured
ones and the medians are reported. Inputs are generated deterministically (seeded smooth content
plus noise) under bench/.data and reused. Peers live in their own venvs under bench/.venv-peers
(created on first use); a peer that cannot be installed or cannot do a workload is reported as
"n/a (reason)", never as a number.

Outputs: the Markdown table on stdout, bench/out/table.md and bench/out/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data  # noqa: E402  (bench/data.py)

CHILD = HERE / "child.py"
VENVS = HERE / ".venv-peers"

# Peers installed into private venvs so that they never shadow our package.
PEER_VENVS = {
    # 0.3.5 writes its Parquet side-car through pandas but does not declare pyarrow.
    "i2z035": ["images-to-zarr==0.3.5", "pyarrow"],
    "acquire": ["acquire-zarr", "numpy"],
}


# ------------------------------------------------------------------------------------------ peers
def ensure_venv(name: str, packages: list[str], log) -> tuple[str | None, str]:
    """(python executable, "") or (None, reason). Idempotent: a marker records what was installed."""
    root = VENVS / name
    py = root / "bin" / "python"
    marker = root / ".installed"
    want = json.dumps(packages)
    if py.exists() and marker.exists() and marker.read_text() == want:
        return str(py), ""
    log(f"setting up peer venv {root} ({' '.join(packages)}) ...")
    try:
        if not py.exists():
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True, text=True)
        r = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", *packages], capture_output=True, text=True, timeout=1200
        )
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"venv setup failed: {type(e).__name__}"
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip() and not ln.startswith("WARNING")]
        return None, "pip install failed: " + (lines[-1][:120] if lines else f"exit {r.returncode}")
    marker.write_text(want)
    return str(py), ""


def check_import(py: str, module: str) -> str:
    r = subprocess.run([py, "-c", f"import {module}"], capture_output=True, text=True)
    if r.returncode == 0:
        return ""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return f"import {module} failed: " + (lines[-1][:120] if lines else "?")


# ------------------------------------------------------------------------------------- measuring
@dataclass
class Case:
    workload: str
    tool: str
    role: str  # ours | peer | floor | context
    python: str | None
    spec: dict
    items: int  # images (or reads) per operation
    nbytes: int = 0  # raw (decoded) bytes per operation, for GB/s
    prep: object = None  # callable run before each repetition (untimed)
    na: str = ""  # reason when the case cannot run at all
    unit: str = "img/s"
    note: str = ""
    runs: list = field(default_factory=list)  # (seconds, peak_rss_bytes, cpu_seconds)
    overhead: list = field(default_factory=lambda: [0.0, 0.0])  # prep seconds, child wall seconds
    error: str = ""


def run_child(python: str, spec: dict, timeout: float) -> tuple[dict, int]:
    """Runs child.py once; returns (its JSON result, peak RSS in bytes of that child)."""
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONWARNINGS="ignore", PYTHONDONTWRITEBYTECODE="1")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen([python, str(CHILD), json.dumps(spec)], stdout=out, stderr=err, env=env, cwd="/")
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                p.returncode = -9
                return {"error": f"timeout after {timeout:.0f} s"}, 0
            time.sleep(0.005)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
        rss = ru.ru_maxrss * 1024  # Linux: KiB
        if "@@RESULT@@" not in text:
            err.seek(0)
            lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
            return {"error": f"child exited {p.returncode}: " + (lines[-1][:150] if lines else "")}, rss
        return json.loads(text.rsplit("@@RESULT@@", 1)[1].strip()), rss


def measure(cases: list[Case], reps: int, warmup: int, timeout: float, log) -> None:
    """Round robin over the cases: warm-up rounds, then `reps` measured rounds."""
    live = [c for c in cases if not c.na]
    for r in range(warmup + reps):
        for c in live:
            if c.error:
                continue
            t0 = time.monotonic()
            if c.prep:
                c.prep()
            t1 = time.monotonic()
            res, rss = run_child(c.python, c.spec, timeout)
            c.overhead[0] += t1 - t0
            c.overhead[1] += time.monotonic() - t1
            if "error" in res:
                c.error = res["error"]
                log(f"    {c.workload} {c.tool}: n/a ({c.error})")
                for ln in res.get("trace", []):
                    log(f"        {ln}")
                continue
            if r >= warmup:
                c.runs.append((res["seconds"], rss, res.get("cpu_s")))
        done = [c for c in live if c.runs and not c.error]
        log(
            f"  {'warm-up' if r < warmup else f'rep {r - warmup + 1}/{reps}'}: "
            + ", ".join(f"{c.tool} {c.runs[-1][0]:.2f}s" for c in done if r >= warmup)
        )


def summarize(c: Case) -> dict:
    d = {
        "workload": c.workload,
        "tool": c.tool,
        "role": c.role,
        "items": c.items,
        "bytes": c.nbytes,
        "unit": c.unit,
        "note": c.note,
    }
    if c.na or c.error or not c.runs:
        d["na"] = c.na or c.error or "no run"
        return d
    d["prep_s_total"], d["child_wall_s_total"] = c.overhead
    secs = [r[0] for r in c.runs]
    rss = [r[1] for r in c.runs]
    cpu = [r[2] for r in c.runs if r[2] is not None]
    med = statistics.median(secs)
    d.update(
        seconds=secs,
        median_s=med,
        rss_bytes=rss,
        median_rss_mib=statistics.median(rss) / 2**20,
        cpu_s=cpu,
        median_cpu_s=statistics.median(cpu) if cpu else None,
        throughput=(c.nbytes / med / 1e9) if c.unit == "GB/s" else (c.items / med if med > 0 else None),
    )
    return d


# ------------------------------------------------------------------------------------ workloads
SIZES = {
    # name: (full, quick)
    "w1": (2000, 200),
    "w2": (2000, 200),
    "w3": (500, 100),
    "w4": (500, 100),
    "w5": (1000, 200),
    "w6a": (2000, 300),
    "w6b": (500, 80),
    "w7_reads": (1000, 200),
    "w8_small": (2000, 300),
    "w8_large": (20000, 3000),
    "w8_append": (100, 100),
    "rss_small": (2000, 300),
    "rss_large": (20000, 3000),
}

W5_SHAPES = [(200, 300), (256, 256), (384, 512), (480, 640), (300, 225)]


def build(args, log) -> tuple[list[list[Case]], dict]:
    q = 1 if args.quick else 0
    N = {k: v[q] for k, v in SIZES.items()}
    T = args.threads
    D = Path(args.data_dir)
    W = Path(args.work_dir)
    ours = sys.executable
    seed = 20260101
    ctx: dict = {"sizes": N}

    peers = {}
    for name, pkgs in PEER_VENVS.items():
        py, why = ensure_venv(name, pkgs, log)
        if py:
            why = check_import(py, {"i2z035": "images_to_zarr", "acquire": "acquire_zarr"}[name])
        peers[name] = (py if not why else None, why)
    for mod in ("zarr", "tensorstore", "numcodecs"):
        why = check_import(ours, mod)
        peers[mod] = (ours if not why else None, why)
    ctx["peers"] = {k: (v[1] or "ok") for k, v in peers.items()}

    def peer(name):
        return peers[name]

    def out_dir(tag):
        p = W / tag
        return p

    def cleaner(path):
        def prep():
            shutil.rmtree(path, ignore_errors=True)
            Path(path).mkdir(parents=True, exist_ok=True)

        return prep

    def file_cases(wl, folder, n, raw_bytes, shard, floors, resize=None):
        cs = []
        common = {"folder": str(folder), "threads": T, "chunk": [1, 256, 256], "shard": shard}
        if resize:
            common.update(resize=list(resize), order=1)
        o = out_dir(f"{wl}-ours")
        cs.append(Case(wl, "images_to_zarr (ours)", "ours", ours, dict(common, op="i2z_files", out=str(o)), n,
                       raw_bytes, cleaner(o)))
        py, why = peer("i2z035")
        o = out_dir(f"{wl}-035")
        cs.append(Case(wl, "images-to-zarr 0.3.5", "peer", py, dict(common, op="i2z035_files", out=str(o)), n,
                       raw_bytes, cleaner(o), na=why, note="no shard option: unsharded chunks"))
        for op, label, role in floors:
            if role == "context" and args.quick:  # context rows only in full runs (time budget)
                continue
            cs.append(Case(wl, label, role, ours, dict(common, op=op), n, raw_bytes))
        return cs

    groups: list[list[Case]] = []
    ours_floor = ("floor_decode", "decode floor (our C decoders)", "floor")
    compress_floor = ("floor_compress_files", "compress floor (c-blosc, same chunks, pre-decoded)", "cfloor")

    # W1-W4: (workload, name, data kind, side, bytes per pixel, shard images, context decoder row)
    pillow = ("floor_pillow", "Pillow decode (context)", "context")
    astropy = ("floor_astropy", "astropy decode (context)", "context")
    tifffile = ("floor_tifffile", "tifffile decode (context)", "context")
    libpng = ("floor_libpng", "libpng decode (context)", "context")
    file_workloads = [
        ("W1", "W1 PNG 256x256 RGB", f"w1_png_{N['w1']}", "png", N["w1"], 256, 3, 256, pillow, 1),
        ("W2", "W2 JPEG 256x256 RGB q90", f"w2_jpeg_{N['w2']}", "jpeg", N["w2"], 256, 3, 256, pillow, 2),
        ("W3", "W3a FITS 512x512 float32", f"w3a_fits_f32_{N['w3']}", "fits_f32", N["w3"], 512, 4, 64, astropy, 3),
        ("W3", "W3b FITS 512x512 int16+BZERO", f"w3b_fits_i16_{N['w3']}", "fits_i16_bzero", N["w3"], 512, 2, 128,
         astropy, 4),
        ("W4", "W4 TIFF 512x512 uint16 deflate", f"w4_tiff_{N['w4']}", "tiff_u16", N["w4"], 512, 2, 128, tifffile, 5),
    ]
    for key, name, folder, kind, n, side, item, shard, context, seed_offset in file_workloads:
        if key not in args.only:
            continue
        log(f"data: {name} ...")
        f = D / folder
        data.ensure_files(f, [(kind, side, side)] * n, seed + seed_offset, T)
        # W1: libpng alone (png_format() without its fast path, i.e. the decode floor before issue 18).
        extra = [libpng] if key == "W1" else []
        groups.append(file_cases(name, f, n, n * side * side * item, shard,
                                 [ours_floor, compress_floor, context, *extra]))
    if "W5" in args.only:
        log("data: W5 mixed ...")
        f = D / f"w5_mixed_{N['w5']}"
        spec = [("jpeg" if i % 2 else "png", *W5_SHAPES[i % len(W5_SHAPES)]) for i in range(N["w5"])]
        data.ensure_files(f, spec, seed + 6, T)
        groups.append(file_cases("W5 mixed JPEG/PNG -> 224x224 (order 1)", f, N["w5"], N["w5"] * 224 * 224 * 3, 512,
                                 [("floor_decode", "decode floor, no resize (context)", "context")],
                                 resize=(224, 224)))

    def array_cases(wl, arr_path, shape, itemsize, shard):
        n = shape[0]
        raw = n * shape[1] * shape[2] * shape[3] * itemsize
        common = {"array": str(arr_path), "threads": T, "chunk": [1, 256, 256], "shard": shard}
        cs = []
        specs = [
            ("images_to_zarr (ours)", "ours", ours, "", "i2z_array", ""),
            ("images-to-zarr 0.3.5", "peer", *peer("i2z035"), "i2z035_array",
             "no shard option: unsharded; byte shuffle hard-coded"),
            ("zarr-python 3 (shards=)", "peer", *peer("zarr"), "zarr_array", ""),
            ("tensorstore", "peer", *peer("tensorstore"), "tensorstore_array", ""),
            ("acquire-zarr", "peer", *peer("acquire"), "acquire_array", ""),
        ]
        for label, role, py, why, op, note in specs:
            o = out_dir(f"{wl.split()[0]}-{op}") / "store.zarr"
            cs.append(Case(wl, label, role, py, dict(common, op=op, out=str(o)), n, raw, cleaner(o.parent), na=why,
                           unit="GB/s", note=note))
        py, why = peer("numcodecs")
        cs.append(Case(wl, "compress floor (c-blosc lz4, numcodecs)", "floor", py, dict(common, op="floor_blosc"), n,
                       raw, na=why, unit="GB/s"))
        return cs

    if "W6" in args.only or "W7" in args.only:
        log("data: W6 arrays ...")
        a6 = data.ensure_array(D / f"w6a_u8_{N['w6a']}.npy", (N["w6a"], 3, 256, 256), "uint8", seed + 7, T)
    if "W6" in args.only:
        a6b = data.ensure_array(D / f"w6b_f32_{N['w6b']}.npy", (N["w6b"], 1, 512, 512), "float32", seed + 8, T)
        groups.append(array_cases(f"W6a array ({N['w6a']},3,256,256) uint8", a6, (N["w6a"], 3, 256, 256), 1, 256))
        groups.append(array_cases(f"W6b array ({N['w6b']},1,512,512) float32", a6b, (N["w6b"], 1, 512, 512), 4, 64))

    if "W7" in args.only:
        # One store written by us from the W6a array (falls back to zarr-python), read by everyone.
        store = W / "w7-store" / "store.zarr"
        shutil.rmtree(store.parent, ignore_errors=True)
        mk = {"array": str(a6), "threads": T, "chunk": [1, 256, 256], "shard": 256, "out": str(store)}
        res, _ = run_child(ours, dict(mk, op="i2z_array"), 600)
        ctx["w7_store_writer"] = "images_to_zarr (ours)"
        if "error" in res:
            shutil.rmtree(store.parent, ignore_errors=True)
            res, _ = run_child(ours, dict(mk, op="zarr_array"), 600)
            ctx["w7_store_writer"] = "zarr-python"
        wl = f"W7 {N['w7_reads']} random single-image reads ({N['w6a']}x3x256x256 u8 store)"
        common = {"store": str(store), "threads": T, "seed": seed, "n_store": N["w6a"], "n_reads": N["w7_reads"]}
        cs = [Case(wl, "images_to_zarr open_store (ours)", "ours", ours, dict(common, op="i2z_read"), N["w7_reads"],
                   unit="reads/s")]
        for label, name, op in (("zarr-python 3", "zarr", "zarr_read"), ("tensorstore", "tensorstore", "tensorstore_read")):
            py, why = peer(name)
            cs.append(Case(wl, label, "peer", py, dict(common, op=op), N["w7_reads"], unit="reads/s", na=why))
        if "error" in res:
            for c in cs:
                c.na = c.na or f"no store to read: {res['error']}"
        groups.append(cs)

    if "W8" in args.only or "RSS" in args.only:
        log("data: 64x64 PNG sets ...")
        small = D / f"png64_{N['rss_small']}"
        large = D / f"png64_{N['rss_large']}"
        add = D / f"png64_append_{N['w8_append']}"
        data.ensure_files(small, [("png", 64, 64)] * N["rss_small"], seed + 9, T)
        data.ensure_files(large, [("png", 64, 64)] * N["rss_large"], seed + 10, T)
        data.ensure_files(add, [("png", 64, 64)] * N["w8_append"], seed + 11, T)

    if "RSS" in args.only:
        wl = f"RSS {N['rss_small']} vs {N['rss_large']} PNG 64x64 RGB"
        cs = []
        for folder, n in ((small, N["rss_small"]), (large, N["rss_large"])):
            o = out_dir(f"rss-{n}")
            cs.append(Case(wl, f"images_to_zarr (ours), N={n}", "ours", ours,
                           {"op": "i2z_files", "folder": str(folder), "threads": T, "chunk": [1, 256, 256],
                            "shard": 2048, "out": str(o)}, n, n * 64 * 64 * 3, cleaner(o)))
        cs.append(Case(wl, "baseline: python + import images_to_zarr", "context", ours,
                       {"op": "baseline", "modules": ["images_to_zarr"]}, 0))
        groups.append(cs)

    if "W8" in args.only:
        wl = f"W8 append {N['w8_append']} PNG 64x64 to a {N['w8_small']} / {N['w8_large']}-image store"
        # Both base sizes end on a shard boundary, so an append never re-packs a partial shard
        # (whose cost is bounded by the shard size, not by N): what remains is what grows with N.
        w8_shard = N["w8_small"] // 2
        cs = []
        arr_add = data.ensure_array(D / f"png64_append_{N['w8_append']}.npy", (N["w8_append"], 3, 64, 64), "uint8",
                                    seed + 11, T)
        for n, folder in ((N["w8_small"], small if N["w8_small"] == N["rss_small"] else None),
                          (N["w8_large"], large if N["w8_large"] == N["rss_large"] else None)):
            for label, tool, name in (("images_to_zarr (ours)", "ours", None), ("images-to-zarr 0.3.5", "peer", "i2z035"),
                                      ("zarr-python 3", "peer", "zarr")):
                py, why = (ours, "") if name is None else peer(name)
                base = W / f"w8-base-{tool}-{name}-{n}" / "store.zarr"
                work = W / f"w8-work-{tool}-{name}-{n}" / "store.zarr"
                if name == "zarr":
                    spec = {"op": "zarr_append", "array": str(arr_add), "threads": T, "out": str(work)}
                else:
                    spec = {"op": "i2z_files" if name is None else "i2z035_files", "folder": str(add), "threads": T,
                            "chunk": [1, 256, 256], "shard": w8_shard, "append": True, "out": str(work)}
                c = Case(wl, f"{label}, base N={n}", tool, py, spec, N["w8_append"], na=why,
                         note="appends the same 100 images from memory" if name == "zarr" else "")
                if not why:
                    c.na = make_base(c, base, work, folder, n, name, py, T, D, seed, log, w8_shard)
                groups_prep(c, base, work)
                cs.append(c)
        groups.append(cs)
    return groups, ctx


def make_base(c: Case, base: Path, work: Path, folder, n, name, py, T, D, seed, log, shard) -> str:
    """Builds the untimed base store of an append case; '' or the reason it failed. Peers' base
    stores are cached next to the inputs (they only depend on the peer's version); ours is
    rebuilt on every run by the code under test."""
    cache = D / "w8-bases" / f"{base.parent.name}-s{shard}" if name is not None else None
    shutil.rmtree(base.parent, ignore_errors=True)
    if cache is not None and (cache / ".ok").exists():
        shutil.copytree(cache, base.parent, symlinks=True)
        return ""
    log(f"  building W8 base store: {c.tool} ...")
    base.parent.mkdir(parents=True)
    if name == "zarr":
        arr = data.ensure_array(D / f"png64_base_{n}.npy", (n, 3, 64, 64), "uint8", seed + 12, T)
        spec = {"op": "zarr_array", "array": str(arr), "threads": T, "chunk": [1, 256, 256], "shard": shard,
                "out": str(base)}
    else:
        spec = {"op": "i2z_files" if name is None else "i2z035_files", "folder": str(folder), "threads": T,
                "chunk": [1, 256, 256], "shard": shard, "out": str(base)}
    res, _ = run_child(py, spec, 3600)
    if "error" in res:
        return f"base store failed: {res['error']}"
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(base.parent, cache, symlinks=True)
        (cache / ".ok").write_text("")
    return ""


def groups_prep(c: Case, base: Path, work: Path) -> None:
    """Before each repetition: a fresh copy of the base store (store + Parquet side-car)."""

    def prep():
        shutil.rmtree(work.parent, ignore_errors=True)
        shutil.copytree(base.parent, work.parent, symlinks=True)

    c.prep = prep


def derived_bound(rows: list[dict], wl: str) -> list[dict]:
    """Decode and compress must both happen for every image: with the same threads, the best a
    converter can do is 1 / (1/decode + 1/compress) (writing the bytes not even counted)."""
    d = [r for r in rows if r["workload"] == wl and r["role"] == "floor" and r.get("throughput")]
    c = [r for r in rows if r["workload"] == wl and r["role"] == "cfloor" and r.get("throughput")]
    if not d or not c or d[0]["unit"] != c[0]["unit"]:
        return []
    tp = 1.0 / (1.0 / d[0]["throughput"] + 1.0 / c[0]["throughput"])
    return [{"workload": wl, "tool": "decode + compress bound (derived, not run)", "role": "bound",
             "items": d[0]["items"], "bytes": d[0]["bytes"], "unit": d[0]["unit"], "note": "",
             "throughput": tp, "median_s": d[0]["items"] / tp}]


# ---------------------------------------------------------------------------------------- report
def fmt_tp(d: dict) -> str:
    if "na" in d:
        return f"n/a ({d['na']})"
    v = d["throughput"]
    if d["unit"] == "GB/s":
        return f"{v:.2f} GB/s"
    return f"{v:,.0f} {d['unit']}"


def render(rows: list[dict], ctx: dict, targets: list[dict]) -> str:
    out = []
    out.append("| Workload | Tool | Throughput | Median time (s) | CPU (s) | Peak RSS (MiB) | Ours vs this |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    by_wl: dict[str, list[dict]] = {}
    for r in rows:
        by_wl.setdefault(r["workload"], []).append(r)
    for wl, rs in by_wl.items():
        ours = [r for r in rs if r["role"] == "ours"]
        for r in rs:
            ratio = ""
            if r["role"] != "ours" and "na" not in r and ours and "na" not in ours[0] and r.get("throughput"):
                ratio = f"{ours[0]['throughput'] / r['throughput']:.2f}x"
                if r["role"] == "floor":
                    ratio = f"{ours[0]['throughput'] / r['throughput']:.2f} of floor"
                elif r["role"] == "bound":
                    ratio = f"{ours[0]['throughput'] / r['throughput']:.2f} of bound"
            tool = r["tool"] + (f" [{r['note']}]" if r.get("note") else "")
            med = f"{r['median_s']:.3f}" if "median_s" in r else ""
            rss = f"{r['median_rss_mib']:.0f}" if "median_rss_mib" in r else ""
            tp = fmt_tp(r) if r["items"] or "na" in r else "-"
            cpu = f"{r['median_cpu_s']:.2f}" if r.get("median_cpu_s") is not None else ""
            out.append(f"| {wl} | {tool} | {tp} | {med} | {cpu} | {rss} | {ratio} |")
    out.append("")
    out.append("| Target | Measured | Met? |")
    out.append("|---|---|---|")
    for t in targets:
        out.append(f"| {t['target']} | {t['measured']} | {t['met']} |")
    return "\n".join(out)


def evaluate(rows: list[dict]) -> list[dict]:
    def get(wl_prefix, role=None, tool_prefix=None):
        return [r for r in rows if r["workload"].startswith(wl_prefix) and (role is None or r["role"] == role)
                and (tool_prefix is None or r["tool"].startswith(tool_prefix))]

    def tp(r):
        return r.get("throughput") if r and "na" not in r else None

    targets = []
    for wl in ("W1", "W2", "W3a", "W3b", "W4"):
        o = get(wl + " ", "ours")
        f = get(wl + " ", "floor")
        p = get(wl + " ", tool_prefix="images-to-zarr 0.3.5")
        if not o:
            continue
        o = o[0]
        for lab, other, bar in (("decode floor", f, 0.85), ("images-to-zarr 0.3.5", p, 10.0)):
            if tp(o) and other and tp(other[0]):
                v = tp(o) / tp(other[0])
                targets.append({"target": f"{wl}: >= {bar:g}x {lab}", "measured": f"{v:.2f}x",
                                "met": "yes" if v >= bar else "**no**"})
            else:
                why = (o.get("na") or (other[0].get("na") if other else "not measured"))
                targets.append({"target": f"{wl}: >= {bar:g}x {lab}", "measured": f"n/a ({why})", "met": "n/a"})
    # Issue 18: our PNG decode vs libpng's on the W1 files; W5 vs 0.3.5 and vs its no-resize floor.
    ratios = [
        ("W1: our PNG decode >= 1.6x libpng decode", get("W1 ", "floor"), get("W1 ", tool_prefix="libpng"), 1.6),
        ("W1: >= 3.5x images-to-zarr 0.3.5", get("W1 ", "ours"), get("W1 ", tool_prefix="images-to-zarr 0.3.5"), 3.5),
        ("W5: >= 5x images-to-zarr 0.3.5", get("W5 ", "ours"), get("W5 ", tool_prefix="images-to-zarr 0.3.5"), 5.0),
        ("W5: >= 0.6 of the no-resize decode floor", get("W5 ", "ours"), get("W5 ", tool_prefix="decode floor"), 0.6),
    ]
    for label, a, b, bar in ratios:
        if a and b and tp(a[0]) and tp(b[0]):
            v = tp(a[0]) / tp(b[0])
            targets.append({"target": label, "measured": f"{v:.2f}x", "met": "yes" if v >= bar else "**no**"})
        elif a or b:
            why = next((r.get("na") for r in (a + b) if r.get("na")), "not measured")
            targets.append({"target": label, "measured": f"n/a ({why})", "met": "n/a"})
    for wl in ("W6a", "W6b"):
        o = get(wl + " ", "ours")
        peers = [r for r in get(wl + " ", "peer") if tp(r)]
        if o and tp(o[0]) and peers:
            best = max(peers, key=tp)
            v = tp(o[0]) / tp(best)
            targets.append({"target": f"{wl}: >= 1.5x fastest peer", "measured": f"{v:.2f}x ({best['tool']})",
                            "met": "yes" if v >= 1.5 else "**no**"})
        elif o:
            targets.append({"target": f"{wl}: >= 1.5x fastest peer",
                            "measured": f"n/a ({o[0].get('na', 'no peer ran')})", "met": "n/a"})
    o = get("W7", "ours")
    z = get("W7", tool_prefix="zarr-python")
    if o:
        if tp(o[0]) and z and tp(z[0]):
            v = tp(o[0]) / tp(z[0])
            targets.append({"target": "W7: >= 10x zarr-python", "measured": f"{v:.1f}x",
                            "met": "yes" if v >= 10 else "**no**"})
        else:
            targets.append({"target": "W7: >= 10x zarr-python", "measured": f"n/a ({o[0].get('na', '')})",
                            "met": "n/a (pending)"})
    o = get("W8", "ours")
    if len(o) == 2:
        if all("median_s" in r for r in o):
            v = o[1]["median_s"] / o[0]["median_s"]
            targets.append({"target": "W8: append time independent of store size (large/small within 1.2x)",
                            "measured": f"{v:.2f}x ({o[0]['median_s']:.3f} s vs {o[1]['median_s']:.3f} s)",
                            "met": "yes" if v <= 1.2 else "**no**"})
        else:
            targets.append({"target": "W8: append time independent of store size",
                            "measured": f"n/a ({o[0].get('na') or o[1].get('na')})", "met": "n/a (pending)"})
    o = [r for r in get("RSS", "ours")]
    if len(o) == 2:
        if all("median_rss_mib" in r for r in o):
            v = o[1]["median_rss_mib"] / o[0]["median_rss_mib"]
            targets.append({"target": "peak RSS flat in N (large/small within 1.10)",
                            "measured": f"{v:.3f} ({o[0]['median_rss_mib']:.0f} vs {o[1]['median_rss_mib']:.0f} MiB)",
                            "met": "yes" if v <= 1.10 else "**no**"})
        else:
            targets.append({"target": "peak RSS flat in N", "measured": f"n/a ({o[0].get('na') or o[1].get('na')})",
                            "met": "n/a"})
    return targets


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                info["cpu"] = ln.split(":", 1)[1].strip()
                break
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal"):
                info["mem_gib"] = round(int(ln.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def default_work_dir() -> str:
    # Outputs go to tmpfs when there is one: on a disk mounted with `discard` (this project's
    # machines) every unlink costs milliseconds, and deleting the previous repetition's stores of
    # 10^4-10^5 files would dominate the run. All tools write to the same place.
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 6 * 2**30:
        return str(shm / f"i2z-bench-{os.getuid()}")
    return str(HERE / ".work")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small inputs, 3 repetitions, no context rows (< 5 min on 2 cores)")
    ap.add_argument("--reps", type=int, help="measured repetitions (default 5, quick 3)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up rounds (default 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every tool")
    ap.add_argument("--only", default="W1,W2,W3,W4,W5,W6,W7,W8,RSS",
                    help="comma list of workloads (SCALE, not in the default: bench/scale.py)")
    ap.add_argument("--data-dir", default=str(HERE / ".data"))
    ap.add_argument("--work-dir", default=default_work_dir(),
                    help="where outputs are written (default: tmpfs /dev/shm when present, see BENCHMARKS.md)")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--prepare-only", action="store_true", help="generate inputs and set up peers, measure nothing")
    ap.add_argument("--timeout", type=float, help="per operation, seconds (default 900, quick 180)")
    args = ap.parse_args()
    args.only = {w.strip().upper() for w in args.only.split(",")}
    if "SCALE" in args.only:  # its own driver (bench/scale.py): N = 10^5 and 10^6 small PNGs
        import scale

        scale.main(["--workers", str(args.threads)])
        args.only.discard("SCALE")
        if not args.only:
            return 0
    reps = args.reps or (3 if args.quick else 5)
    timeout = args.timeout or (180 if args.quick else 900)
    t_start = time.time()

    def log(msg):
        print(f"[{time.time() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    log(f"mode {'quick' if args.quick else 'full'}, threads {args.threads}, reps {reps} (+{args.warmup} warm-up), "
        f"load {load_before[0]:.2f}")
    groups, ctx = build(args, log)
    if args.prepare_only:
        log("inputs, peer venvs and base stores are ready (--prepare-only)")
        return 0
    rows = []
    loads = {}
    for cases in groups:
        wl = cases[0].workload
        log(f"{wl}: load {os.getloadavg()[0]:.2f}")
        la = os.getloadavg()[0]
        measure(cases, reps, args.warmup, timeout, log)
        loads[wl] = [la, os.getloadavg()[0]]
        rows.extend(summarize(c) for c in cases)
        rows.extend(derived_bound(rows, wl))
    shutil.rmtree(args.work_dir, ignore_errors=True)
    targets = evaluate(rows)
    table = render(rows, ctx, targets)
    cmd = "python bench/run.py" + (" --quick" if args.quick else "")
    header = (f"Command: `{cmd}`; {args.threads} threads for every tool; medians of {reps} runs after "
              f"{args.warmup} warm-up; load average at start {load_before[0]:.2f}.\n")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(header + "\n" + table + "\n")
    (out / "results.json").write_text(json.dumps(
        {"mode": "quick" if args.quick else "full", "command": cmd, "threads": args.threads, "reps": reps,
         "warmup": args.warmup, "machine": machine(), "context": ctx, "load_per_workload": loads,
         "load_at_start": load_before, "wall_s": time.time() - t_start, "rows": rows, "targets": targets},
        indent=1))
    print(header)
    print(table)
    log(f"done in {time.time() - t_start:.0f} s; wrote {out / 'table.md'} and {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
