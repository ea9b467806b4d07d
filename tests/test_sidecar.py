"""The streamed Parquet side-car, a folder of parts (issue 14): rows equal to values computed here
from the inputs (Pillow, astropy, os.stat) and from the store (zarr-python), across failures in
several shards, resume, append, Dask and S3; appends that write only new parts; readers of the
folder (pyarrow, pandas, polars, DuckDB); and memory that does not grow with N."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from astropy.io import fits
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images
from images_to_zarr import sidecar
from images_to_zarr.metadata import SidecarWriter
from test_s3_store import s3_server  # noqa: F401 - the moto session fixture, found by name

COLUMNS = ["filename", "label", "original_filename", "source_path", "original_extension", "file_size_bytes",
           "dtype", "shape", "fits_extension", "fits_header", "min_value", "max_value", "mean_value", "error"]
N, S = 14, 4  # images, images per shard: 4 shards, the last partial
TRUNCATED = {"img03.png", "img09.png"}  # header fine, pixels cut: fail at decode (shards 0 and 2)
GARBAGE = {"img06.png", "img13.png"}  # no PNG header: fail at probe (shards 1 and 3)


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch) -> None:
    # An earlier in-process CLI run (configure_logging) stops propagation to the root logger.
    monkeypatch.setattr(logging.getLogger("images_to_zarr"), "propagate", True)


def sidecar_path(store: Path) -> Path:
    return store.parent / f"{store.stem}_metadata.parquet"


def part(store: Path, first: int = 0) -> Path:
    return sidecar_path(store) / f"part-{first:012d}.parquet"


def temporaries(folder: Path) -> list[Path]:
    """Files a writer leaves only while it runs (the lock file stays by design)."""
    return [p for p in folder.rglob("*.i2z-*") if not p.name.endswith(".i2z-lock")]


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """N RGB images (one a FITS cube so that fits_header is filled), four of them broken."""
    d = tmp_path / "in"
    d.mkdir()
    imgs = smooth_images(N, 3, 12, 10, "uint8", seed=3)
    for i in range(N):
        name = f"img{i:02d}.png"
        if i == 5:
            hdu = fits.PrimaryHDU(imgs[i])
            hdu.header["EXPTIME"] = (12.5, "seconds")
            hdu.writeto(d / "img05.fits")
            continue
        Image.fromarray(imgs[i].transpose(1, 2, 0)).save(d / name)
        if name in TRUNCATED:
            data = (d / name).read_bytes()
            (d / name).write_bytes(data[: len(data) // 2])
        elif name in GARBAGE:
            (d / name).write_bytes(b"not an image at all" * 10)
    return d


def write_csv(path: Path, names: list[str]) -> Path:
    path.write_text("filename,label\n" + "".join(f"{n},{i * 10}\n" for i, n in enumerate(names)))
    return path


def expected_rows(files: list[Path], store: Path, first: int, labels: dict[str, int] | None) -> list[dict]:
    """Side-car rows computed from the inputs and the stored pixels, without the engine."""
    stored = zarr.open_group(str(store), mode="r")["images"]
    rows = []
    for k, f in enumerate(files):
        name = f.name
        row = {"filename": name}
        if labels is not None:
            row["label"] = labels.get(name)
        row.update(original_filename=name, source_path=str(f), original_extension=f.suffix,
                   file_size_bytes=f.stat().st_size, fits_extension=None, fits_header=None)
        if name in GARBAGE:
            row.update(dtype=None, shape=[], min_value=None, max_value=None, mean_value=None)
        else:
            if f.suffix == ".fits":
                ref = fits.getdata(f)
                row.update(fits_extension="0", fits_header=fits.getheader(f))
            else:
                with Image.open(f) as im:
                    ref = np.zeros((im.height, im.width, len(im.getbands())), np.uint8)  # header only
            row.update(dtype=ref.dtype.name, shape=list(ref.shape))
            px = stored[first + k].astype(np.float64)
            ok = name not in TRUNCATED
            row.update(min_value=px.min() if ok else None, max_value=px.max() if ok else None,
                       mean_value=px.mean() if ok else None)
        row["error"] = name in TRUNCATED | GARBAGE
        rows.append(row)
    return rows


def check_rows(table: pa.Table, want: list[dict]) -> None:
    got = table.to_pylist()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for key, value in w.items():
            if key == "error":
                assert (g["error"] is not None) == value, (g["filename"], g["error"])
            elif key == "fits_header":
                if value is None:
                    assert g[key] is None
                else:
                    cards = json.loads(g[key])
                    assert cards["EXPTIME"] == value["EXPTIME"] and cards["NAXIS3"] == value["NAXIS3"]
            elif isinstance(value, float):
                assert g[key] == pytest.approx(value), (g["filename"], key)
            else:
                assert g[key] == value, (g["filename"], key, g[key], value)


def test_rows_row_groups_and_warnings_across_shards(tmp_path: Path, folder: Path, caplog, monkeypatch) -> None:
    # Shards smaller than a row group are batched into row groups of 6 rows.
    monkeypatch.setattr(sidecar, "ROW_GROUP_ROWS", 6)
    files = sorted(folder.iterdir())
    names = [f.name for f in files]
    csv = write_csv(tmp_path / "meta.csv", names[:-1] + ["ghost.png"])  # the last image has no row
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "o.zarr", folders=folder, metadata=csv, shard_images=S, progress=False)
    assert [p.name for p in sidecar_path(store).iterdir()] == ["part-000000000000.parquet"]
    pf = pq.ParquetFile(part(store))
    assert pf.schema_arrow.names == COLUMNS
    assert S == 4 and N == 14
    assert [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)] == [6, 6, 2]
    kv = pf.metadata.metadata
    assert kv[b"i2z.run_id"].decode() == i2z.open_store(store).attrs["run_id"]
    assert (kv[b"i2z.first_index"], kv[b"i2z.rows"]) == (b"0", b"14")
    labels = {n: i * 10 for i, n in enumerate(names[:-1])}
    check_rows(pf.read(), expected_rows(files, store, 0, labels))
    assert "1 CSV rows match no image: ghost.png" in caplog.text
    assert f"1 images have no CSV row: {names[-1]}" in caplog.text
    assert "failed to read" in caplog.text and "4 failed" in caplog.text
    assert not temporaries(tmp_path)  # no temporary side-car or staging left


def split_folder(folder: Path, k: int, tmp_path: Path) -> tuple[Path, Path]:
    """Hard links of the folder's first k files in tmp_path/a, of the others in tmp_path/b."""
    files = sorted(folder.iterdir())
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    for f in files[:k]:
        os.link(f, first / f.name)
    for f in files[k:]:
        os.link(f, second / f.name)
    return first, second


def test_memory_rows_and_image_metadata(tmp_path: Path) -> None:
    imgs = smooth_images(10, 1, 6, 5, "uint16", seed=1)
    meta = [{"label": i % 3, "name": f"n{i}"} for i in range(10)]
    store = i2z.convert(tmp_path / "m.zarr", images=imgs, image_metadata=meta, shard_images=3, progress=False)
    t = pq.read_table(sidecar_path(store))
    assert t.column_names[:3] == ["label", "name", "filename"]
    assert t.column("filename").to_pylist() == [f"image_{i}" for i in range(10)]
    assert t.column("label").to_pylist() == [m["label"] for m in meta]
    assert t.column("mean_value").to_pylist() == pytest.approx([float(im.mean()) for im in imgs])
    more = i2z.convert(store, images=imgs[:4], image_metadata=meta[:4], append=True, shard_images=3, progress=False)
    t = pq.read_table(sidecar_path(more))
    assert t.column("filename").to_pylist() == [f"image_{i}" for i in range(14)]
    assert t.column("name").to_pylist() == [m["name"] for m in meta + meta[:4]]


def interrupt_after(monkeypatch, shards: int) -> None:
    """The side-car writer raises KeyboardInterrupt on its shards+1-th row group."""
    real = SidecarWriter.write
    calls = []

    def write(self, first_index, records):
        calls.append(first_index)
        if len(calls) > shards:
            raise KeyboardInterrupt
        return real(self, first_index, records)

    monkeypatch.setattr(SidecarWriter, "write", write)


def test_resume_rebuilds_the_rows_of_finished_shards(tmp_path: Path, folder: Path, monkeypatch) -> None:
    kw = dict(shard_images=S, num_parallel_workers=1, progress=False)
    whole = i2z.convert(tmp_path / "whole.zarr", folders=folder, **kw)
    with monkeypatch.context() as m:
        interrupt_after(m, 2)
        with pytest.raises(KeyboardInterrupt):
            i2z.convert(tmp_path / "r.zarr", folders=folder, **kw)
    progress = tmp_path / "r.zarr.i2z-tmp" / ".i2z-progress" / "records"
    assert {"0.json", "1.json"} <= {p.name for p in progress.iterdir()}
    assert not sidecar_path(tmp_path / "r.zarr").exists() and not list(tmp_path.glob("r_metadata*"))
    resumed = i2z.convert(tmp_path / "r.zarr", folders=folder, resume=True, **kw)
    a, b = pq.read_table(sidecar_path(whole)), pq.read_table(sidecar_path(resumed))
    assert a.equals(b)
    check_rows(b, expected_rows(sorted(folder.iterdir()), resumed, 0, None))


def test_append_keeps_the_old_rows_and_unifies_columns(tmp_path: Path, folder: Path) -> None:
    files = sorted(folder.iterdir())
    first, second = split_folder(folder, 6, tmp_path)
    csv = write_csv(tmp_path / "x.csv", [f.name for f in files[:6]])
    store = i2z.convert(tmp_path / "x.zarr", folders=first, metadata=csv, shard_images=S, progress=False)
    old = pq.read_table(sidecar_path(store))
    # A part past the committed count, as an append killed after publishing its part: ignored by
    # readers, replaced by the next append.
    pq.write_table(old.slice(0, 3), part(store, 6))
    assert i2z.open_store(store).metadata.equals(old)
    i2z.convert(store, folders=second, append=True, shard_images=S, progress=False)
    t = pq.read_table(sidecar_path(store))
    assert t.column_names == COLUMNS
    assert t.num_rows == N
    assert t.slice(0, 6).equals(old)
    assert t.column("label").to_pylist()[6:] == [None] * (N - 6)
    want = expected_rows([second / f.name for f in files[6:]], store, 6, {})
    check_rows(t.slice(6).drop_columns(["label"]), [{k: v for k, v in w.items() if k != "label"} for w in want])


def test_append_without_side_car_writes_the_new_rows(tmp_path: Path, caplog) -> None:
    imgs = smooth_images(5, 1, 4, 4, seed=2)
    store = i2z.convert(tmp_path / "y.zarr", images=imgs, progress=False)
    part(store).unlink()
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        i2z.convert(store, images=imgs, append=True, progress=False)
        # Row i describes image i: the lost rows read as nulls, the appended rows follow.
        t = i2z.open_store(store).metadata
    assert "no rows for images 0..4" in caplog.text
    assert t.column("filename").to_pylist() == [None] * 5 + [f"image_{i}" for i in range(5, 10)]


def test_append_to_a_short_side_car_pads_with_nulls(tmp_path: Path, caplog) -> None:
    imgs = smooth_images(6, 1, 4, 4, seed=5)
    store = i2z.convert(tmp_path / "y.zarr", images=imgs, progress=False)
    pq.write_table(pq.read_table(part(store)).slice(0, 4), part(store))  # 2 rows lost
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        i2z.convert(store, images=imgs[:2], append=True, progress=False)
        t = i2z.open_store(store).metadata
    assert "no rows for images 4..5" in caplog.text
    assert t.column("filename").to_pylist() == ["image_0", "image_1", "image_2", "image_3", None, None,
                                                "image_6", "image_7"]
    assert t.column("mean_value").to_pylist()[6:] == pytest.approx([float(im.mean()) for im in imgs[:2]])


def test_append_writes_only_its_own_part(tmp_path: Path, folder: Path) -> None:
    files = sorted(folder.iterdir())
    first, second = split_folder(folder, 8, tmp_path)
    csv = write_csv(tmp_path / "x.csv", [f.name for f in files[:8]])
    store = i2z.convert(tmp_path / "x.zarr", folders=first, metadata=csv, shard_images=S, progress=False)
    st = part(store).stat()
    old = pq.read_table(sidecar_path(store))
    i2z.convert(store, folders=second, append=True, shard_images=S, progress=False)
    assert part(store).stat().st_ino == st.st_ino and part(store).stat().st_mtime_ns == st.st_mtime_ns
    assert sorted(p.name for p in sidecar_path(store).iterdir()) == [part(store).name, part(store, 8).name]
    # The new part has the old columns (label: nulls), so a one-schema reader sees every row.
    new = pq.read_table(part(store, 8))
    assert new.column_names == COLUMNS and new.column("label").null_count == N - 8
    t = pq.read_table(sidecar_path(store))
    assert t.slice(0, 8).equals(old) and t.num_rows == N
    check_rows(t.slice(8).drop_columns(["label"]),
               [{k: v for k, v in w.items() if k != "label"}
                for w in expected_rows([second / f.name for f in files[8:]], store, 8, None)])
    assert not temporaries(tmp_path)


def test_append_bytes_written_do_not_grow_with_the_store(tmp_path: Path) -> None:
    """An append of 100 images writes the same bytes (write() calls, /proc/self/io) to a store of
    2,000 or 20,000 images: its shard, its side-car part and the two documents; no old row."""
    if not Path("/proc/self/io").exists():
        pytest.skip("no /proc/self/io on this system")
    kw = dict(shard_images=100, chunk_shape=(1, 4, 4), progress=False, num_parallel_workers=1)
    written = {}
    for n in (2_000, 20_000):
        store = i2z.convert(tmp_path / f"s{n}.zarr", images=smooth_images(n, 1, 4, 4, seed=1), **kw)
        new = smooth_images(100, 1, 4, 4, seed=2)

        def wchar() -> int:
            return int(next(line.split()[1] for line in open("/proc/self/io") if line.startswith("wchar:")))

        before = wchar()
        i2z.convert(store, images=new, append=True, **kw)
        written[n] = wchar() - before
    # Only the digits of N (in the documents and the part's name) differ.
    assert abs(written[20_000] - written[2_000]) < 200, written


@pytest.mark.parametrize("with_new_column", [False, True])
def test_the_folder_reads_as_one_table_everywhere(tmp_path: Path, with_new_column: bool) -> None:
    """pyarrow, pandas, polars and DuckDB read the folder (row i = image i), across an append
    without the catalog's columns (nulls) and one with a new column."""
    imgs = smooth_images(12, 1, 4, 4, seed=7)
    store = i2z.convert(tmp_path / "r.zarr", images=imgs[:7], image_metadata=[{"label": i} for i in range(7)],
                        progress=False)
    extra = [{"label": 7 + i, "weight": 0.5 * i} for i in range(5)] if with_new_column else None
    i2z.convert(store, images=imgs[7:], image_metadata=extra, append=True, progress=False)
    side = sidecar_path(store)
    want = i2z.open_store(store).metadata
    assert want.column("filename").to_pylist() == [f"image_{i}" for i in range(12)]
    labels = list(range(12)) if with_new_column else list(range(7)) + [None] * 5
    assert want.column("label").to_pylist() == labels
    if with_new_column:
        assert want.column("weight").to_pylist() == [None] * 7 + [0.5 * i for i in range(5)]
    base = want.drop_columns(["weight"]) if with_new_column else want
    # Readers that take the first part's schema see the old columns; the new one on request.
    assert pq.read_table(side).equals(base)
    assert pq.read_table(side, schema=want.schema).equals(want)
    missing = []
    try:
        import pandas as pd
    except ImportError:
        missing.append("pandas")
    else:
        df = pd.read_parquet(side)
        assert df["filename"].tolist() == want.column("filename").to_pylist()
        assert [None if v != v else int(v) for v in df["label"]] == labels
    try:
        import polars as pl
    except ImportError:
        missing.append("polars")
    else:
        df = pl.scan_parquet(f"{side}/*.parquet", missing_columns="insert", extra_columns="ignore").collect()
        assert df["filename"].to_list() == want.column("filename").to_pylist() and df["label"].to_list() == labels
    try:
        import duckdb
    except ImportError:
        missing.append("duckdb")
    else:
        rows = duckdb.sql(f"select filename, label from read_parquet('{side}/*.parquet', union_by_name=true)").fetchall()
        assert rows == list(zip(want.column("filename").to_pylist(), labels))
    if missing:
        pytest.skip(f"not installed, not checked: {', '.join(missing)} (the pyarrow checks ran)")


def test_single_file_side_car_of_an_earlier_version(tmp_path: Path) -> None:
    """Stores of earlier versions have one file at the side-car's name: read it, and an append
    moves it into the folder as part 0 (renames only, its bytes unchanged)."""
    imgs = smooth_images(6, 1, 4, 4, seed=8)
    store = i2z.convert(tmp_path / "v.zarr", images=imgs[:4], progress=False)
    old = pq.read_table(part(store)).replace_schema_metadata(None)
    group = json.loads((store / "zarr.json").read_text())
    for key in ("run_id", "runs"):  # what earlier versions did not write
        group["attributes"].pop(key)
    (store / "zarr.json").write_text(json.dumps(group))
    side = sidecar_path(store)
    part(store).unlink()
    side.rmdir()
    pq.write_table(old, side)
    blob = side.read_bytes()
    assert i2z.open_store(store).metadata.equals(old)
    assert i2z.inspect(store).metadata_path == side
    i2z.convert(store, images=imgs[4:], append=True, progress=False)
    assert side.is_dir() and part(store).read_bytes() == blob
    t = i2z.open_store(store).metadata
    assert t.column("filename").to_pylist() == [f"image_{i}" for i in range(6)]
    assert t.slice(0, 4).equals(old)


def test_distributed_resume_and_row_groups(tmp_path: Path, folder: Path, monkeypatch) -> None:
    from distributed import Client, LocalCluster

    kw = dict(shard_images=S, progress=False)
    whole = i2z.convert(tmp_path / "whole.zarr", folders=folder, **kw)
    with monkeypatch.context() as m:
        interrupt_after(m, 1)
        with pytest.raises(KeyboardInterrupt):
            i2z.convert(tmp_path / "d.zarr", folders=folder, num_parallel_workers=1, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c, Client(c) as client:
        dist = i2z.convert(tmp_path / "d.zarr", folders=folder, scheduler=client, resume=True, **kw)
    assert pq.read_table(sidecar_path(whole)).equals(pq.read_table(sidecar_path(dist)))


@pytest.mark.s3
def test_s3_append_streams_the_old_side_car(tmp_path: Path, folder: Path, s3_server) -> None:
    files = sorted(folder.iterdir())
    first, second = split_folder(folder, 9, tmp_path)
    opts = s3_server.options()
    url = f"s3://{s3_server.bucket}/sidecar-{uuid.uuid4().hex[:8]}/x.zarr"
    kw = dict(shard_images=S, progress=False)
    temps_before = set(Path(tempfile.gettempdir()).glob("i2z-sidecar-*"))
    i2z.convert(url, folders=first, storage_options=opts, **kw)
    i2z.convert(url, folders=second, append=True, storage_options=opts, **kw)
    local = i2z.convert(tmp_path / "x.zarr", folders=first, **kw)
    i2z.convert(local, folders=second, append=True, **kw)
    keys = i2z._core.Store.open(url.rsplit("/", 1)[0] + "/x_metadata.parquet", opts).list("")
    assert keys == ["part-000000000000.parquet", "part-000000000009.parquet"]
    got, want = i2z.open_store(url, storage_options=opts).metadata, pq.read_table(sidecar_path(local))
    assert got.drop_columns(["source_path"]).equals(want.drop_columns(["source_path"]))
    assert got.num_rows == N
    assert set(Path(tempfile.gettempdir()).glob("i2z-sidecar-*")) <= temps_before  # local copies removed


# VmHWM is the peak RSS of this process image; ru_maxrss would carry pytest's own peak across exec.
CHILD = textwrap.dedent(
    """
    import sys
    import images_to_zarr as i2z
    i2z.configure_logging(False)
    i2z.convert(sys.argv[2], folders=sys.argv[1], shard_images=100, num_parallel_workers=2, progress=False)
    print(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")))
    """
)


def test_peak_rss_does_not_grow_with_the_image_count(tmp_path: Path) -> None:
    """Peak RSS of a whole conversion in a fresh process, 1,500 vs 7,500 small PNGs (100 per shard;
    both above the side-car's 1,024-row batch, whose transient cost is bounded but not per image).
    Before the side-car was streamed, every image's record stayed until the end: about 2.4 KiB
    per image on top of the file list. What is left (~0.55 KiB) is the file list itself, held by
    the engine (path, probe result) and briefly by Python."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("peak RSS means nothing under AddressSanitizer (shadow memory, quarantine)")
    rss = {}
    img = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8))
    for n in (1500, 7500):
        d = tmp_path / f"in{n}"
        d.mkdir()
        for i in range(n):
            img.save(d / f"image_with_a_longish_name_{i:06d}.png")
        out = subprocess.run([sys.executable, "-c", CHILD, str(d), str(tmp_path / f"o{n}.zarr")],
                             capture_output=True, text=True, check=True)
        rss[n] = int(out.stdout.split()[-1]) * 1024
        assert pq.read_metadata(part(tmp_path / f"o{n}.zarr")).num_rows == n
    per_image = (rss[7500] - rss[1500]) / 6000
    assert per_image < 1200, f"{per_image:.0f} bytes of peak RSS per image ({rss})"


def test_leftovers_of_a_killed_writer_are_removed(tmp_path: Path) -> None:
    """Parts beyond the committed count and temporaries inside the side-car folder are a dead
    writer's (we hold the lock): the next append removes them; files beside it are not ours."""
    imgs = smooth_images(4, 1, 4, 4, seed=6)
    store = i2z.convert(tmp_path / "z.zarr", images=imgs, progress=False)
    side = sidecar_path(store)
    stale = [side / "part-000000000004.parquet.i2z-part-4242-0", part(store, 6)]
    for f in stale:
        f.write_bytes(b"left by a killed writer")
    other = tmp_path / "other_metadata.parquet.i2z-part-1-0"  # another store's: not ours to delete
    other.write_bytes(b"x")
    i2z.convert(store, images=imgs, append=True, progress=False)
    assert not any(f.exists() for f in stale)
    assert other.exists()
    assert pq.read_table(side).num_rows == 8
