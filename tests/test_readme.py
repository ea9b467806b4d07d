"""The README's examples, run as written on the bundled examples/data, so the manual cannot drift.

Every fenced ``python`` block runs, in README order, in one namespace (a reader's session), with
the working directory a scratch folder holding a copy of ``examples/``. Every fenced ``sh`` block
runs line by line in a subprocess. A block preceded by ``<!-- readme-test: KIND ... -->`` is run
with what KIND needs, started here: ``s3`` a local moto_server (its endpoint and keys replace the
example's ``opts``, its bucket the example's), ``dask`` a ``LocalCluster`` (its address replaces
``tcp://scheduler:8786``, a scratch folder ``/shared/``). A block of an unknown KIND fails; none
is skipped.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

from test_s3_store import S3Server, _loopback_without_proxy, s3_server  # noqa: F401 - fixtures by name

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"(?:<!-- readme-test: (\w+)[^>]*-->\n)?```(python|sh)\n(.*?)```", re.S)
KINDS = {None, "s3", "dask"}


@dataclass
class Block:
    lang: str
    kind: str | None
    code: str
    line: int


def blocks() -> list[Block]:
    text = (ROOT / "README.md").read_text()
    return [Block(m.group(2), m.group(1), m.group(3), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def test_every_example_block_is_found_and_of_a_known_kind():
    found = blocks()
    assert sum(b.lang == "python" for b in found) >= 3 and sum(b.lang == "sh" for b in found) >= 2
    assert {b.kind for b in found} <= KINDS, {b.kind for b in found}
    # An example needing a server says so: no s3:// or Dask scheduler in an unmarked block.
    for b in found:
        if b.kind is None:
            assert "s3://" not in b.code and "scheduler" not in b.code, f"README line {b.line} needs a marker"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("out"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def dask_cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


def _setup(kind: str | None, code: str, workdir: Path, request) -> str:
    """The block's code with the stand-ins of KIND replaced by what this test started."""
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        prefix = f"readme-{workdir.name[-12:]}"
        s3 = server.boto()
        for f in sorted((workdir / "examples" / "data").rglob("*")):
            if f.is_file():
                key = f"{prefix}/raw/cutouts/{f.relative_to(workdir / 'examples' / 'data')}"
                s3.put_object(Bucket=server.bucket, Key=key, Body=f.read_bytes())
        code, n = re.subn(r"^opts = \{.*\}$", f"opts = {server.options()!r}", code, flags=re.M)
        assert n == 1, "the S3 example defines opts on one line"
        return code.replace("s3://bucket/", f"s3://{server.bucket}/{prefix}/")
    if kind == "dask":
        cluster = request.getfixturevalue("dask_cluster")
        shared = workdir / "shared"
        if not shared.exists():
            shutil.copytree(workdir / "examples" / "data", shared / "cutouts")
        assert "tcp://scheduler:8786" in code and "/shared/" in code
        return code.replace("tcp://scheduler:8786", cluster.scheduler_address).replace("/shared/", f"{shared}/")
    return code


CLAIM = re.compile(r"^# -> Path\(\"([^\"]+)\"\).*$", re.M)


def _run_python(code: str, where: str, namespace: dict) -> None:
    """Runs ``code``; at each ``# -> Path("X")`` line (the example's claim about what the
    statement above it returns), checks that its variable is the store ``X``."""
    pos = 0
    for claim in CLAIM.finditer(code):
        part = code[pos:claim.start()]
        exec(compile("\n" * code.count("\n", 0, pos) + part, where, "exec"), namespace)  # noqa: S102
        name = re.findall(r"^(\w+) = ", part, re.M)[-1]
        assert Path(namespace[name]) == Path(claim.group(1)) and Path(claim.group(1)).is_dir(), (name, claim.group(1))
        pos = claim.end()
    exec(compile("\n" * code.count("\n", 0, pos) + code[pos:], where, "exec"), namespace)  # noqa: S102


def test_python_examples_run(workdir: Path, request):
    namespace: dict = {"__name__": "__readme__"}
    ran = []
    try:
        for b in (b for b in blocks() if b.lang == "python"):
            code = _setup(b.kind, b.code, workdir, request)
            _run_python(code, f"README.md:{b.line + 1}", namespace)  # the manual's own code
            ran.append(b.kind)
    finally:
        if "client" in namespace:  # the Dask example's client, before its cluster stops
            namespace["client"].close()
    assert ran.count(None) >= 1 and "s3" in ran and "dask" in ran
    # What the quick start says it made.
    store = zarr.open_group("out/metadata.zarr", mode="r")
    assert store["images"].shape[0] == len(list(Path("examples/data").rglob("*.*"))) - 1  # all but the CSV
    assert zarr.open_array("out/astro.zarr/images", mode="r").shape[1] == 2  # SCI and ERR
    assert Path("grid.png").stat().st_size > 1000
    assert isinstance(namespace["summary"], dict) and json.dumps(namespace["summary"])
    assert namespace["first"].shape == (3, 128, 128)  # of train.zarr, the last `store`


def _argv(line: str) -> list[str]:
    words = shlex.split(line)
    if words[0] == "images_to_zarr":
        return [sys.executable, "-m", "images_to_zarr", *words[1:]]
    assert words[:3] == ["python", "-m", "images_to_zarr"], f"not a command of this package: {line}"
    return [sys.executable, *words[1:]]


def test_cli_examples_run(workdir: Path, request):
    ran = 0
    for b in (b for b in blocks() if b.lang == "sh"):
        for line in _setup(b.kind, b.code, workdir, request).splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            result = subprocess.run(_argv(line), capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"README.md:{b.line}: {line}\n{result.stderr}"
            if "--json" in line:
                assert json.loads(result.stdout)["total_images"] > 0
            ran += 1
    assert ran >= 5
    assert Path("cli-out/grid.png").is_file()
    astro = zarr.open_array("cli-out/astro.zarr/images", mode="r")
    assert astro.shape[2:] == (32, 32)
    assert json.loads(Path("cli-out/astro.zarr/zarr.json").read_text())["attributes"]["compressor"] == "zstd"
    assert zarr.open_array(Path("shared/cli.zarr/images"), mode="r").shape[0] == np.int64(11)
