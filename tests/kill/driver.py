"""Runs one kill (or fail) scenario under the LD_PRELOAD shim (tests/kill/shim.c); see
tests/test_kill_syscalls.py. Usage: driver.py WORKDIR SCENARIO MODE, SCENARIO in create / append /
overwrite, MODE kill or fail. Prints one JSON line: {"points": K, "killed": ..., "failures": [...]}.

This process only imports and forks (it never converts, so it has no threads when it forks). For
each point k a child arms the shim and runs the scenario's write; a second child then checks the
state (and, after a kill, re-runs with resume=True) against an uninterrupted reference."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr

import images_to_zarr as i2z

OPS_ALL, OPS_RENAME = 15, 1
SHIM = ctypes.CDLL(None)
SHIM.i2z_shim_arm.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_int, ctypes.c_char_p]
SHIM.i2z_shim_count.restype = ctypes.c_long

RNG = np.random.default_rng(7)
BASE = RNG.integers(0, 255, (3, 1, 8, 8), dtype=np.uint8)
NEW = RNG.integers(0, 255, (3, 1, 8, 8), dtype=np.uint8)
KW = dict(shard_images=2, chunk_shape=(1, 8, 8), num_parallel_workers=1, progress=False)
TRANSIENT = (".i2z-progress", ".i2z-tmp", ".i2z-old", ".i2z-part", ".i2z-dir")


def arm(k: int, fail: bool, ops: int, folder: Path | None) -> None:
    SHIM.i2z_shim_arm(k, int(fail), ops, str(folder).encode() if folder else b"")


def store_of(d: Path) -> Path:
    return d / "s.zarr"


def setup(d: Path, scenario: str) -> None:
    d.mkdir(parents=True)
    if scenario != "create":
        i2z.convert(store_of(d), images=BASE, image_metadata=[{"label": i} for i in range(len(BASE))], **KW)


def write(d: Path, scenario: str, resume: bool) -> None:
    meta = [{"label": 100 + i} for i in range(len(NEW))]
    if scenario == "create":
        i2z.convert(store_of(d), images=NEW, image_metadata=meta, resume=resume, **KW)
    elif scenario == "append":
        i2z.convert(store_of(d), images=NEW, image_metadata=meta, append=True, resume=resume, **KW)
    else:
        i2z.convert(store_of(d), images=NEW, image_metadata=meta, overwrite=True, resume=resume, **KW)


def snapshot(d: Path) -> dict[str, bytes]:
    """Every file of the store (group zarr.json without its run ids) and the side-car's rows."""
    out: dict[str, bytes] = {}
    store = store_of(d)
    for p in sorted(store.rglob("*")):
        if p.is_file():
            key = p.relative_to(store).as_posix()
            data = p.read_bytes()
            if key == "zarr.json":
                doc = json.loads(data)
                doc["attributes"].pop("run_id", None)
                for run in doc["attributes"].get("runs", []):
                    run.pop("run_id")
                data = json.dumps(doc, sort_keys=True).encode()
            out[key] = data
    out["<side-car rows>"] = json.dumps(pq.read_table(d / "s_metadata.parquet").to_pylist()).encode()
    return out


def check(d: Path, want: dict[str, bytes]) -> str | None:
    """None when d holds the reference store, no leftovers, and a side-car matching zarr-python."""
    left = [p.name for p in d.rglob("*") if any(t in p.name for t in TRANSIENT)]
    if left:
        return f"leftovers {left}"
    got = snapshot(d)
    if got.keys() != want.keys():
        return f"files differ: {sorted(set(got) ^ set(want))}"
    bad = [k for k in want if got[k] != want[k]]
    if bad:
        return f"bytes differ: {bad}"
    arr = zarr.open_array(str(store_of(d) / "images"), mode="r")[:]
    meta = i2z.open_store(store_of(d)).metadata  # raises on a side-car of another run
    if meta.num_rows != arr.shape[0]:
        return f"side-car has {meta.num_rows} rows, zarr-python {arr.shape[0]} images"
    means = np.array(meta.column("mean_value").to_pylist())
    if not np.allclose(means, arr.reshape(arr.shape[0], -1).mean(axis=1)):
        return "side-car means do not match zarr-python's pixels"
    attrs = i2z.open_store(store_of(d)).attrs
    if attrs["total_images"] != arr.shape[0]:
        return f"total_images {attrs['total_images']} != {arr.shape[0]}"
    return None


def in_child(fn) -> int:
    """Runs fn() in a forked child; its exit status (negative: killed by that signal)."""
    pid = os.fork()
    if pid == 0:
        try:
            code = fn()
        except BaseException:
            traceback.print_exc()
            code = 3
        os._exit(code or 0)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def main() -> None:
    work, scenario, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    i2z.configure_logging(False)
    pa.table({"warm": [1]}).to_pylist()  # pyarrow's lazy imports (pandas, if installed) before forking
    arm(0, False, 0, None)
    ref = work / "ref"
    report = work / "report.txt"

    def reference() -> int:
        setup(ref, scenario)
        write(ref, scenario, resume=False)
        (work / "ref.json").write_text(json.dumps({k: v.decode("latin-1") for k, v in snapshot(ref).items()}))
        return 0

    def count() -> int:
        d = work / "count"
        setup(d, scenario)
        arm(0, False, OPS_ALL if mode == "kill" else OPS_RENAME, d)
        write(d, scenario, resume=False)
        (work / "count.txt").write_text(str(SHIM.i2z_shim_count()))
        return 0

    assert in_child(reference) == 0 and in_child(count) == 0
    want = {k: v.encode("latin-1") for k, v in json.loads((work / "ref.json").read_text()).items()}
    points = int((work / "count.txt").read_text())
    killed, failures = 0, []
    for k in range(1, points + 1):
        d = work / f"k{k}"
        assert in_child(lambda: setup(d, scenario)) == 0
        before = snapshot(d) if scenario != "create" else None

        def run() -> int:
            arm(k, mode == "fail", OPS_ALL if mode == "kill" else OPS_RENAME, d)
            try:
                write(d, scenario, resume=False)
            except OSError:
                return 4  # the failed call surfaced as an error (fail mode)
            return 0

        status = in_child(run)
        killed += status == -9

        def verify() -> int:
            problem = None
            if status == 4 and not (store_of(d) / ".i2z-progress" / "commit.json").exists():
                # A failed rename, no journaled commit left to complete: the steps done were
                # undone (the old pair) or the commit had finished (the new pair).
                try:
                    now = snapshot(d)
                    i2z.open_store(store_of(d)).metadata
                except Exception as e:  # noqa: BLE001 - reported below
                    problem = f"after a failed rename: {type(e).__name__}: {e}"
                else:
                    if now not in (before, want):
                        problem = "after a failed rename: neither the old nor the new store"
            if problem is None:
                write(d, scenario, resume=True)
                problem = check(d, want)
            if problem:
                with open(report, "a") as f:
                    f.write(f"k={k} status={status}: {problem}\n")
                return 1
            return 0

        if in_child(verify) != 0:
            failures.append(k)
        shutil.rmtree(d)
    print(json.dumps({"points": points, "killed": killed, "failures": failures,
                      "report": report.read_text() if report.exists() else ""}))


if __name__ == "__main__":
    main()
