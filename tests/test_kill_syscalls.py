"""Syscall-level crash safety (issue 17, "Must show"; items 7, 11 and 14).

An LD_PRELOAD shim (tests/kill/shim.c, compiled here) counts the rename/unlink/write/close calls
a small create, append and overwrite make on their folder, then, for every k, a forked child is
SIGKILLed at the k-th one; the write is re-run with resume=True and the result must be
byte-identical to an uninterrupted run (group run ids aside), hold no progress or staging files,
agree with itself (total_images) and have a side-car that matches what zarr-python reads (row
count, per-image means). A second pass makes each rename of an overwrite fail instead (EIO): the
old store and side-car must be left in place (rolled back) or the new pair committed. The driver
(tests/kill/driver.py) forks from a process that has only imported, so each point costs a fork
and two tiny conversions. Main before the commit layer failed these (e.g. overwrite left the old
store with the new side-car, and a failed second rename left no store at all).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "kill"

pytestmark = pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", "") or not sys.platform.startswith("linux"),
    reason="the syscall shim needs Linux and does not combine with AddressSanitizer's preload")


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler to build the syscall shim (set CC)")
    out = tmp_path_factory.mktemp("shim") / "shim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(HERE / "shim.c"), "-ldl"], check=True)
    return out


@pytest.mark.parametrize("scenario,mode", [("create", "kill"), ("append", "kill"), ("overwrite", "kill"),
                                           ("overwrite", "fail")])
def test_every_kill_point_recovers_to_the_uninterrupted_store(tmp_path: Path, shim: Path, scenario: str,
                                                              mode: str) -> None:
    env = dict(os.environ, LD_PRELOAD=str(shim))
    out = subprocess.run([sys.executable, str(HERE / "driver.py"), str(tmp_path), scenario, mode], env=env,
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["points"] >= (60 if mode == "kill" else 8), result  # the shim saw the writes
    if mode == "kill":
        assert result["killed"] >= 0.9 * result["points"], result
    assert result["failures"] == [], result["report"][:4000]
