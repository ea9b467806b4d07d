"""The pipeline on S3 (issue 7; the Dask test is issue 8's): convert, append, inspect, display,
read back (our reader and zarr-python over obstore), multipart shards, inputs from S3, faults,
wrong credentials, Dask workers writing to S3.

Everything runs against ``moto_server`` on loopback, started by the session fixtures of
``test_s3_store.py`` (imported here): a server that cannot start FAILS the tests. Stores are
compared object by object (every key and its bytes) with the same conversion to a local path.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images
from images_to_zarr.cli import cli
from test_s3_store import (  # noqa: F401 - fixtures are found by name
    BUCKET,
    MIB,
    SECRET_CANARY,
    FaultProxy,
    S3Server,
    _loopback_without_proxy,
    fault_proxy,
    s3_auth_server,
    s3_server,
)

pytestmark = pytest.mark.s3


def _url(name: str) -> tuple[str, str]:
    """(key prefix, s3:// URL) of a fresh store ``x.zarr`` (same name as the local twin)."""
    pre = f"{name}-{uuid.uuid4().hex[:8]}"
    return pre, f"s3://{BUCKET}/{pre}/x.zarr"


def s3_objects(srv: S3Server, prefix: str) -> dict[str, bytes]:
    """Every object under ``prefix/`` (paginated, the server's own client) by relative key."""
    b = srv.boto()
    out: dict[str, bytes] = {}
    for page in b.get_paginator("list_objects_v2").paginate(Bucket=srv.bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1 :]] = b.get_object(Bucket=srv.bucket, Key=o["Key"])["Body"].read()
    return out


def local_objects(store: Path) -> dict[str, bytes]:
    """A local store and its side-car's parts, keyed like ``s3_objects`` of the store's folder."""
    files = [*sorted((store.parent / f"{store.stem}_metadata.parquet").glob("*")), *sorted(store.rglob("*"))]
    return {p.relative_to(store.parent).as_posix(): p.read_bytes() for p in files if p.is_file()}


def _group(group_json: bytes, sources: bool) -> dict[str, Any]:
    """A group document without what differs between two runs: run ids (and the inputs' folders)."""
    doc = json.loads(group_json)
    attrs = doc["attributes"]
    attrs.pop("run_id")
    for run in attrs["runs"]:
        run.pop("run_id")
    if not sources:
        attrs["creation_info"].pop("source_folders")
        for run in attrs["runs"]:
            run.pop("inputs")
    return doc


def assert_same_store(local: Path, srv: S3Server, prefix: str, source_paths: dict[str, str] | None = None) -> None:
    """Every object of the local store is on S3 with the same bytes, and nothing else is (the
    group's run ids aside); the side-cars are equal tables. With ``source_paths`` (local path ->
    the S3 input's URL) the inputs differ: those paths are mapped, and the group's
    ``source_folders`` not compared."""
    want, got = local_objects(local), s3_objects(srv, prefix)
    side = f"{local.stem}_metadata.parquet/"
    assert sorted(got) == sorted(want)
    for key in want:
        if key == f"{local.name}/zarr.json":
            assert _group(got[key], source_paths is None) == _group(want[key], source_paths is None)
        elif not key.startswith(side):
            assert got[key] == want[key], key
    parts = sorted(k for k in want if k.startswith(side))
    t_local, t_s3 = (pa.concat_tables([pq.read_table(io.BytesIO(objs[k])) for k in parts], promote_options="permissive")
                     for objs in (want, got))
    if source_paths is not None:
        t_local = t_local.set_column(
            t_local.column_names.index("source_path"), "source_path",
            [[source_paths[p] for p in t_local.column("source_path").to_pylist()]])
    assert t_s3.equals(t_local)


def make_folder(d: Path, n: int, h: int = 24, w: int = 32, seed: int = 0, sub: bool = True) -> Path:
    """``n`` images (PNG, TIFF, gray PNG) in ``d`` and, with ``sub``, a sub-folder."""
    imgs = smooth_images(n, 3, h, w, "uint8", seed=seed)
    for i in range(n):
        folder = d / "deeper" / "sub" if sub and i % 4 == 3 else d
        folder.mkdir(parents=True, exist_ok=True)
        hwc = imgs[i].transpose(1, 2, 0)
        if i % 3 == 0:
            Image.fromarray(hwc).save(folder / f"img{i:04d}.png")
        elif i % 3 == 1:
            tifffile.imwrite(folder / f"img{i:04d}.tif", hwc)
        else:
            Image.fromarray(hwc[:, :, 0]).save(folder / f"img{i:04d}.PNG")
    return d


def obstore_group(srv: S3Server, prefix: str) -> Any:
    """The store opened by zarr-python through obstore on the same endpoint."""
    import zarr
    from obstore.store import S3Store

    s3 = S3Store(BUCKET, prefix=prefix, endpoint=srv.endpoint, access_key_id=srv.key, secret_access_key=srv.secret,
                 region="us-east-1", client_options={"allow_http": True})
    return zarr.open_group(zarr.storage.ObjectStore(s3, read_only=True), mode="r")


KW: dict[str, Any] = dict(shard_images=8, progress=False)


# ----------------------------------------------------------------------------------------------
# Convert, append, read back


def test_convert_files_to_s3_is_the_local_store(tmp_path, s3_server):
    src = make_folder(tmp_path / "in", 30)
    local = i2z.convert(tmp_path / "x.zarr", folders=src, recursive=True, **KW)
    pre, url = _url("files")
    opts = s3_server.options(list_max_keys=4)
    out = i2z.convert(url, folders=src, recursive=True, storage_options=opts, **KW)
    assert out == url
    assert_same_store(local, s3_server, pre)
    assert len([k for k in s3_objects(s3_server, pre) if k.startswith("x.zarr/images/c/")]) == 4

    # Our reader (ranged GETs), its side-car, pickling with the options.
    ref = i2z.open_store(local)[:]
    s = i2z.open_store(url, storage_options=opts)
    assert s.path == url and s.shape == ref.shape and s.dtype == ref.dtype
    np.testing.assert_array_equal(s[:], ref)
    np.testing.assert_array_equal(s[[29, 0, 13]], ref[[29, 0, 13]])
    np.testing.assert_array_equal(s[5], ref[5])
    assert _group(json.dumps({"attributes": s.attrs}).encode(), True) == \
        _group(json.dumps({"attributes": i2z.open_store(local).attrs}).encode(), True)
    assert s.metadata.equals(i2z.open_store(local).metadata)
    s2 = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(s2[3:9], ref[3:9])

    # zarr-python on the same endpoint, through obstore.
    g = obstore_group(s3_server, f"{pre}/x.zarr")
    np.testing.assert_array_equal(g["images"][:], ref)
    assert g.attrs["total_images"] == 30


def test_convert_memory_append_and_overwrite_on_s3(tmp_path, s3_server):
    imgs = smooth_images(20, 2, 16, 24, "uint16", seed=3)
    more = smooth_images(7, 2, 16, 24, "uint16", seed=4)
    rows = [{"filename": f"m{i}", "label": i % 3} for i in range(20)]
    pre, url = _url("memory")
    opts = s3_server.options()
    local = tmp_path / "x.zarr"
    for target, so in ((local, None), (url, opts)):
        i2z.convert(target, images=imgs, image_metadata=rows, compressor="zstd", storage_options=so, **KW)
        i2z.convert(target, images=more, append=True, storage_options=so, **KW)
    assert_same_store(local, s3_server, pre)
    s = i2z.open_store(url, storage_options=opts)
    np.testing.assert_array_equal(s[:], np.concatenate([imgs, more]))
    assert s.attrs["append_history"] == [{"appended_count": 7, "start_index": 20, "end_index": 27}]
    assert s.metadata.num_rows == 27 and s.metadata.column("label").to_pylist()[:3] == [0, 1, 2]

    # Appending files, then overwriting with a smaller store: no object of the old one is left.
    src = make_folder(tmp_path / "in", 5, 16, 24, sub=False)
    for target, so in ((local, None), (url, opts)):
        with pytest.raises(FileExistsError, match="already exists"):
            i2z.convert(target, images=imgs, storage_options=so, **KW)
        i2z.convert(target, images=smooth_images(4, 3, 16, 24), overwrite=True, storage_options=so, **KW)
        i2z.convert(target, folders=src, append=True, storage_options=so, **KW)
    assert_same_store(local, s3_server, pre)
    assert i2z.open_store(url, storage_options=opts).shape == (9, 3, 16, 24)
    with pytest.raises(FileNotFoundError, match="cannot append"):
        i2z.convert(f"s3://{BUCKET}/{pre}-none/x.zarr", images=more, append=True, storage_options=opts, **KW)


def test_open_store_errors_on_s3(s3_server):
    opts = s3_server.options()
    pre, url = _url("errors")
    with pytest.raises(FileNotFoundError, match="no such store"):
        i2z.open_store(url, storage_options=opts)
    s3_server.store(f"{pre}/x.zarr").set("something/else", b"1")
    with pytest.raises(ValueError, match="not a Zarr v3 store"):
        i2z.open_store(url, storage_options=opts)
    with pytest.raises(FileNotFoundError, match="not found"):
        i2z.inspect(url.replace("x.zarr", "y.zarr"), storage_options=opts)
    with pytest.raises(ValueError, match="storage_options"):
        i2z.open_store("/tmp/nowhere.zarr", storage_options={"anon": True})


# ----------------------------------------------------------------------------------------------
# inspect, display, CLI


def test_inspect_display_and_cli_on_s3(tmp_path, s3_server, capsys):
    src = make_folder(tmp_path / "in", 12, sub=False)
    local = i2z.convert(tmp_path / "x.zarr", folders=src, **KW)
    pre, url = _url("inspect")
    opts = s3_server.options()
    i2z.convert(url, folders=src, storage_options=opts, **KW)
    ref = i2z.inspect(local)
    got = i2z.inspect(url, storage_options=opts)
    assert got.path == url and got.metadata_path == f"s3://{BUCKET}/{pre}/x_metadata.parquet"
    assert (got.total_images, got.num_shards, got.storage_bytes) == (12, 2, ref.storage_bytes)
    assert got.format_counts == ref.format_counts and got.file_size_stats == ref.file_size_stats
    def lines(summary: i2z.StoreSummary) -> list[str]:
        return [ln for ln in str(summary).splitlines() if not ln.startswith("Store:")]

    assert lines(got) == lines(ref)
    capsys.readouterr()

    fig = i2z.display_sample_images(url, num_samples=4, seed=1, save_path=tmp_path / "grid.png", storage_options=opts)
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert [ax.get_title() for ax in fig.axes] == [ax.get_title() for ax in i2z.display_sample_images(
        local, num_samples=4, seed=1, save_path=tmp_path / "grid2.png").axes]

    args = [f"--storage-option={k}={v}" for k, v in opts.items()]
    runner = CliRunner()
    pre2, url2 = _url("cli")
    r = runner.invoke(cli, ["convert", str(src), "--out", url2, "--shard-images", "8", "--no-progress", *args])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == url2
    assert_same_store(local, s3_server, pre2)
    r = runner.invoke(cli, ["inspect", url2, *args])
    assert r.exit_code == 0, r.output
    assert "Total images across all files: 12" in r.output and f"Store: {url2}" in r.output
    r = runner.invoke(cli, ["display", url2, "-n", "2", "--save", str(tmp_path / "g.png"), *args])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["inspect", url2, "--storage-option", "nonsense"])
    assert r.exit_code == 2 and "KEY=VALUE" in r.output


# ----------------------------------------------------------------------------------------------
# Multipart shards


def test_multipart_shard(s3_server):
    imgs = np.random.default_rng(0).integers(0, 256, (4, 3, 1024, 1024), dtype=np.uint8)  # 12 MiB, incompressible
    pre, url = _url("multipart")
    opts = s3_server.options(part_size=5 * MIB)
    i2z.convert(url, images=imgs, compressor="none", shard_images=4, chunk_shape=(1, 512, 512),
                storage_options=opts, progress=False)
    key = f"{pre}/x.zarr/images/c/0/0/0/0"
    head = s3_server.boto().head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] > 12 * MIB
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # parts of 5, 5 and 2+ MiB
    s = i2z.open_store(url, storage_options=opts)
    np.testing.assert_array_equal(s[:], imgs)
    np.testing.assert_array_equal(obstore_group(s3_server, f"{pre}/x.zarr")["images"][2], imgs[2])


# ----------------------------------------------------------------------------------------------
# Inputs from S3


def _upload_tree(srv: S3Server, folder: Path, prefix: str) -> None:
    b = srv.boto()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            b.put_object(Bucket=srv.bucket, Key=f"{prefix}/{p.relative_to(folder).as_posix()}", Body=p.read_bytes())
    b.put_object(Bucket=srv.bucket, Key=f"{prefix}/notes.txt", Body=b"not an image")
    b.put_object(Bucket=srv.bucket, Key=f"{prefix}/empty-folder/", Body=b"")  # a console "folder"


def _staging_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("i2z-s3-inputs-*")}


@pytest.mark.parametrize("recursive", [True, False])
def test_inputs_from_s3(tmp_path, s3_server, recursive):
    src = make_folder(tmp_path / "in", 23)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    in_pre = f"inputs-{uuid.uuid4().hex[:8]}/images"
    _upload_tree(s3_server, src, in_pre)
    in_url = f"s3://{BUCKET}/{in_pre}/"
    opts = s3_server.options(list_max_keys=5)  # the listing is paginated
    before = _staging_dirs()
    local = i2z.convert(tmp_path / "x.zarr", folders=src, recursive=recursive, **KW)
    # Output on S3, and output on a local path (then storage_options serve the inputs only).
    pre, url = _url("from-s3")
    i2z.convert(url, folders=[in_url], recursive=recursive, storage_options=opts, **KW)
    local2 = i2z.convert(tmp_path / "y" / "x.zarr", folders=[in_url], recursive=recursive, storage_options=opts, **KW)
    assert _staging_dirs() == before  # the downloaded copies are gone

    files = [p for p in sorted(src.rglob("*") if recursive else src.iterdir()) if p.is_file()]
    urls = {str(p): f"s3://{BUCKET}/{in_pre}/{p.relative_to(src).as_posix()}" for p in files}
    assert_same_store(local, s3_server, pre, source_paths=urls)
    for rel, data in local_objects(local).items():
        if rel.startswith("x.zarr/images/"):
            assert (local2.parent / rel).read_bytes() == data, rel
    t = pq.read_table(tmp_path / "y" / "x_metadata.parquet")
    assert t.num_rows == (24 if recursive else 19)
    assert t.column("source_path").to_pylist() == [urls[str(p)] for p in files]
    broken = t.filter(pc.is_valid(t.column("error")))
    assert broken.column("filename").to_pylist() == ["broken.png"]
    assert "i2z-s3-inputs" not in broken.column("error")[0].as_py()

    # One object's URL is an input too; a missing prefix names itself.
    one = i2z.convert(tmp_path / "one.zarr", folders=[f"s3://{BUCKET}/{in_pre}/img0000.png"], storage_options=opts, **KW)
    assert i2z.open_store(one).shape == (1, 3, 24, 32)
    with pytest.raises(ValueError, match=f"no supported image files found in s3://{BUCKET}/nothing-here"):
        i2z.convert(tmp_path / "none.zarr", folders=[f"s3://{BUCKET}/nothing-here/"], storage_options=opts, **KW)


# ----------------------------------------------------------------------------------------------
# Faults and credentials


def test_faults_leave_the_store_identical(tmp_path, s3_server, fault_proxy):
    src = make_folder(tmp_path / "in", 60, 80, 80)
    imgs = smooth_images(9, 3, 80, 80, "uint8", seed=9)
    kw = dict(shard_images=4, compressor="zstd", progress=False)
    clean_pre, clean = _url("clean")
    i2z.convert(clean, folders=src, recursive=True, storage_options=s3_server.options(), **kw)
    i2z.convert(clean, images=imgs, append=True, storage_options=s3_server.options(), **kw)

    proxy = fault_proxy(s3_server, fault_rate=0.2, seed=7011)
    flaky = s3_server.options(max_retries=14, list_max_keys=3, part_size=5 * MIB)
    flaky["endpoint_url"] = f"http://127.0.0.1:{proxy.port}"
    pre, url = _url("flaky")
    i2z.convert(url, folders=src, recursive=True, storage_options=flaky, **kw)
    i2z.convert(url, images=imgs, append=True, storage_options=flaky, **kw)
    np.testing.assert_array_equal(i2z.open_store(url, storage_options=flaky)[-9:], imgs)
    assert proxy.requests > 100 and sum(proxy.faults.values()) > 20, (proxy.requests, proxy.faults)
    assert set(proxy.faults) == set(FaultProxy.KINDS), proxy.faults  # every kind of fault happened

    a, b = s3_objects(s3_server, clean_pre), s3_objects(s3_server, pre)
    assert sorted(a) == sorted(b)
    for k in a:
        if k.endswith(".parquet"):
            assert pq.read_table(io.BytesIO(a[k])).equals(pq.read_table(io.BytesIO(b[k]))), k
        elif k.endswith("x.zarr/zarr.json"):
            assert _group(a[k], True) == _group(b[k], True)
        else:
            assert a[k] == b[k], k


def _auth_keys(srv: S3Server, prefix: str) -> list[str]:
    # A bucket-root listing: moto's signature check fails on a percent-encoded prefix= value.
    pages = srv.boto().get_paginator("list_objects_v2").paginate(Bucket=srv.bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].startswith(prefix + "/")]


def test_wrong_credentials_one_clear_error_nothing_committed(tmp_path, s3_auth_server):
    srv = s3_auth_server
    src = make_folder(tmp_path / "in", 6, sub=False)
    pre = f"creds-{uuid.uuid4().hex[:8]}"
    url = f"s3://{BUCKET}/{pre}/x.zarr"
    bad = srv.options() | {"secret": SECRET_CANARY}
    for kwargs in (dict(folders=src), dict(images=smooth_images(3, 1, 8, 8))):
        with pytest.raises(OSError) as e:
            i2z.convert(url, storage_options=bad, **kwargs, **KW)
        msg = str(e.value)
        assert "access denied" in msg and f"s3://{BUCKET}/{pre}/x.zarr/" in msg, msg
        assert SECRET_CANARY not in msg and srv.secret not in msg, msg
    assert _auth_keys(srv, pre) == []  # nothing written, so no zarr.json either
    with pytest.raises(OSError, match="access denied"):
        i2z.open_store(url, storage_options=bad)
    with pytest.raises(OSError, match="access denied"):
        i2z.inspect(url, storage_options=bad)

    # The CLI: exit status 1 and one line.
    args = [f"--storage-option={k}={v}" for k, v in bad.items()]
    r = CliRunner().invoke(cli, ["convert", str(src), "--out", url, "--no-progress", *args])
    assert r.exit_code == 1
    assert len(r.output.strip().splitlines()) == 1 and "access denied" in r.output and SECRET_CANARY not in r.output


def test_wrong_credentials_keep_an_existing_store(tmp_path, s3_auth_server):
    """Overwrite/append with a bad secret fail before deleting or adding anything."""
    srv = s3_auth_server
    pre = f"keep-{uuid.uuid4().hex[:8]}"
    url = f"s3://{BUCKET}/{pre}/x.zarr"
    imgs = smooth_images(5, 1, 8, 8)
    # moto's signature check needs the bucket-root URL for listings: write with boto the objects
    # of a converted local store instead of converting on this server.
    local = i2z.convert(tmp_path / "x.zarr", images=imgs, **KW)
    b = srv.boto()
    for rel, data in local_objects(local).items():
        b.put_object(Bucket=BUCKET, Key=f"{pre}/{rel}", Body=data)
    before = {k: b.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in _auth_keys(srv, pre)}
    bad = srv.options() | {"secret": SECRET_CANARY}
    for mode in (dict(overwrite=True), dict(append=True)):
        with pytest.raises(OSError, match="access denied"):
            i2z.convert(url, images=imgs, storage_options=bad, **mode, **KW)
    after = {k: b.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in _auth_keys(srv, pre)}
    assert after == before


# ----------------------------------------------------------------------------------------------
# Dask workers writing to S3 (issue 8)


def test_dask_workers_write_to_s3(tmp_path, s3_server):
    from distributed import Client, LocalCluster

    src = make_folder(tmp_path / "in", 300, 16, 16, seed=11)
    kw = dict(recursive=True, shard_images=16, progress=False)
    local = i2z.convert(tmp_path / "x.zarr", folders=src, **kw)
    pre, url = _url("dask")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, Client(c) as client:
        i2z.convert(url, folders=src, scheduler=client, storage_options=s3_server.options(), **kw)
        ran_on = set(client.run(lambda: 1))
    assert len(ran_on) == 2
    assert_same_store(local, s3_server, pre)


def test_interrupted_run_resumes_on_s3(tmp_path, s3_server, monkeypatch):
    """An interrupted conversion shows no store (no zarr.json) and resume=True completes it with
    the same bytes as an uninterrupted run."""
    conv = sys.modules["images_to_zarr.convert"]  # the name images_to_zarr.convert is the function
    src = make_folder(tmp_path / "in", 40, sub=False)
    kw = dict(shard_images=4, num_parallel_workers=2, progress=True)
    local = i2z.convert(tmp_path / "x.zarr", folders=src, shard_images=4, progress=False)
    pre, url = _url("resume")
    opts = s3_server.options()

    def interrupting(self, done: int, total: int, failed: int, warnings: list[str]) -> None:
        if done >= 20:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(conv.Monitor, "callback", interrupting)
        with pytest.raises(KeyboardInterrupt):
            i2z.convert(url, folders=src, storage_options=opts, **kw)
    left = s3_objects(s3_server, pre)
    assert "x.zarr/zarr.json" not in left and "x.zarr/images/zarr.json" not in left
    assert any(k.startswith("x.zarr/images/c/") for k in left)  # some shards were written
    i2z.convert(url, folders=src, storage_options=opts, resume=True, shard_images=4, progress=False)
    assert_same_store(local, s3_server, pre)
