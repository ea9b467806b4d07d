"""The streamed catalog join (issue 14 item 2, issue 17 items 5, 10, 13): CSV and Parquet catalogs
joined through spill files on disk, compared with pyarrow's whole-file readers and its own hash
join (Acero, ``Table.join``) as the reference; the
user's values kept under repeated or reserved column names; broken catalogs refused before any
shard is written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import images_to_zarr as i2z
from images_to_zarr import catalog


@pytest.fixture(autouse=True)
def _logs_reach_caplog(monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger("images_to_zarr"), "propagate", True)


@pytest.fixture()
def small_spills(monkeypatch) -> None:
    """Tiny partitions, batches and buckets, so that a small catalog takes every multi-part path."""
    monkeypatch.setattr(catalog, "_PART_BYTES", 200)
    monkeypatch.setattr(catalog, "_BATCH", 7)
    monkeypatch.setattr(catalog, "_BUCKETS", 5)
    monkeypatch.setattr(catalog, "_CSV_BLOCK", 256)


def make_tree(root: Path) -> list[Path]:
    """45 tiny PNGs in three folders; the names in ``b/`` repeat those of ``a/`` (relative keys)."""
    files = []
    for sub, names in (("a", [f"img{i:02d}.png" for i in range(20)]), ("b", [f"img{i:02d}.png" for i in range(10)]),
                       ("c", [f"x{i:02d}.png" for i in range(15)])):
        (root / sub).mkdir(parents=True)
        for n in names:
            p = root / sub / n
            Image.fromarray(np.full((4, 4), len(files), np.uint8)).save(p)
            files.append(p)
    return files


def sidecar(store: Path) -> pa.Table:
    return pq.read_table(store.parent / f"{store.stem}_metadata.parquet")


def reference_join(side: pa.Table, cat: pa.Table) -> pa.Table:
    """``cat``'s rows for each side-car row, by Acero's hash join (a left outer join on filename)."""
    left = pa.table({"filename": side.column("filename"), "__i": np.arange(side.num_rows)})
    return left.join(cat, "filename", join_type="left outer").sort_by("__i")


def same(side: pa.Table, ref: pa.Table, col: str) -> None:
    assert side.column(col).to_pylist() == ref.column(col).to_pylist(), col


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_join_matches_pyarrow_hash_join(tmp_path: Path, small_spills, caplog, fmt: str) -> None:
    make_tree(tmp_path / "in")
    rng = np.random.default_rng(5)
    keys = [f"img{i:02d}.png" for i in range(10, 20)] + [f"a/img{i:02d}.png" for i in range(10)] + \
           [f"b/img{i:02d}.png" for i in range(0, 10, 2)] + [f"x{i:02d}.png" for i in range(15) if i != 7] + \
           ["ghost1.png", "ghost2.png", "./c/../x07_missing.png"]
    order = rng.permutation(len(keys))
    cat = pa.table({"filename": [keys[i] for i in order],
                    "ra": rng.normal(size=len(keys)).round(6), "label": rng.integers(0, 9, len(keys)),
                    "survey": [f"s{i % 4}" for i in range(len(keys))]})
    path = tmp_path / f"cat.{fmt}"
    if fmt == "csv":
        pacsv.write_csv(cat, path)
    else:
        pq.write_table(cat, path, row_group_size=9)
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "out", folders=tmp_path / "in", metadata=path, recursive=True,
                            shard_images=4, progress=False)
    assert store.name == "cat.zarr"
    side = sidecar(store)
    ref_cat = pacsv.read_csv(path) if fmt == "csv" else pq.read_table(path)
    # The reference join is on the same normalised names the tool documents (os.path.normpath).
    ref_cat = ref_cat.set_column(0, "filename", pa.array([os.path.normpath(k) for k in
                                                          ref_cat.column("filename").to_pylist()]))
    ref = reference_join(side, ref_cat)
    assert side.num_rows == 45
    for col in ("ra", "label", "survey"):
        same(side, ref, col)
    assert side.column("label").null_count == 45 - (10 + 10 + 5 + 14)
    what = fmt.upper() if fmt == "csv" else "Parquet"
    ghosts = [k for k in cat.column("filename").to_pylist() if "ghost" in k or "missing" in k]  # catalog order
    assert f"3 {what} rows match no image: {', '.join(ghosts)}" in caplog.text
    assert f"6 images have no {what} row: b/img01.png" in caplog.text
    assert not list(store.parent.glob(".*i2z-catalog*")), "spill folder left behind"


def test_csv_column_retyped_when_later_block_does_not_fit(tmp_path: Path, small_spills) -> None:
    files = make_tree(tmp_path / "in")
    names = [f.name for f in files if f.parent.name == "c"]
    values = [str(i) for i in range(14)] + ["later"]  # ints in the first blocks, text at the end
    path = tmp_path / "m.csv"
    path.write_text("filename,v\n" + "".join(f"{n},{v}\n" for n, v in zip(names, values)))
    store = i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False)
    side = sidecar(store)
    ref = reference_join(side, pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"v": pa.string()})))
    same(side, ref, "v")
    assert side.column("v").to_pylist()[14] == "later"


def test_duplicate_keys_in_different_partitions_are_refused_up_front(tmp_path: Path, small_spills) -> None:
    make_tree(tmp_path / "in")
    path = tmp_path / "m.csv"
    rows = [f"x{i:02d}.png,{i}" for i in range(15)] + ["x03.png,99", "x11.png,98"]
    path.write_text("filename,v\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"more than once: x03\.png, x11\.png"):
        i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False)
    assert not (tmp_path / "o.zarr").exists()
    assert not list(tmp_path.glob(".*i2z-catalog*"))


def test_repeated_column_names_keep_every_value(tmp_path: Path, caplog) -> None:
    """Issue 17.5: ``label`` twice ended in a KeyError after the shards were written."""
    make_tree(tmp_path / "in")
    path = tmp_path / "m.csv"
    path.write_text("filename,label,label,label.1\nx00.png,1,2,3\nx01.png,4,5,6\n")
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False)
    t = pq.read_table(store.parent / "o_metadata.parquet")
    assert t.column("label").to_pylist()[:3] == [1, 4, None]
    assert t.column("label.2").to_pylist()[:2] == [2, 5]  # "label.1" is the user's own third column
    assert t.column("label.1").to_pylist()[:2] == [3, 6]
    assert "'label' -> 'label.2'" in caplog.text


def test_repeated_filename_column_is_refused_before_writing(tmp_path: Path) -> None:
    make_tree(tmp_path / "in")
    path = tmp_path / "m.csv"
    path.write_text("filename,filename\nx00.png,x01.png\n")
    with pytest.raises(ValueError, match="2 columns named 'filename'"):
        i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_columns_named_like_the_tools_own_keep_the_users_values(tmp_path: Path, caplog) -> None:
    """Issue 17.10: ``error``, ``shape``, ``dtype``, ``min_value``, ``source_path`` were overwritten."""
    make_tree(tmp_path / "in")
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"filename": ["x00.png", "x01.png"], "error": ["e0", "e1"], "shape": ["round", "flat"],
                             "dtype": ["galaxy", "star"], "min_value": [-1.5, -2.5],
                             "source_path": ["survey/a", "survey/b"], "catalog_error": [7, 8]}), path)
    with caplog.at_level(logging.WARNING, logger="images_to_zarr"):
        store = i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False)
    t = pq.read_table(store.parent / "o_metadata.parquet").slice(0, 2)
    assert t.column("catalog_error.1").to_pylist() == ["e0", "e1"]
    assert t.column("catalog_error").to_pylist() == [7, 8]
    assert t.column("catalog_shape").to_pylist() == ["round", "flat"]
    assert t.column("catalog_dtype").to_pylist() == ["galaxy", "star"]
    assert t.column("catalog_min_value").to_pylist() == [-1.5, -2.5]
    assert t.column("catalog_source_path").to_pylist() == ["survey/a", "survey/b"]
    # The tool's own columns are the tool's.
    assert t.column("error").to_pylist() == [None, None]
    assert t.column("dtype").to_pylist() == ["uint8", "uint8"]
    assert t.column("source_path").to_pylist() == [os.fspath(tmp_path / "in" / "c" / n) for n in ("x00.png", "x01.png")]
    assert "'error' -> 'catalog_error.1'" in caplog.text and "'shape' -> 'catalog_shape'" in caplog.text


def test_unterminated_csv_quote_is_a_clear_error(tmp_path: Path) -> None:
    """Issue 17.13: the quote swallowed the rest of the file with only a "no CSV row" warning."""
    make_tree(tmp_path / "in")
    path = tmp_path / "m.csv"
    path.write_text('filename,note\nx00.png,"fine, ""quoted"""\nx01.png,"oops\nx02.png,c\nx03.png,d\n')
    with pytest.raises(ValueError, match=r"m\.csv has an unterminated quote: .* line 3"):
        i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False)
    assert not (tmp_path / "o.zarr").exists()


def test_quoted_line_breaks_still_read(tmp_path: Path) -> None:
    make_tree(tmp_path / "in")
    path = tmp_path / "m.csv"
    path.write_text('filename,note\nx00.png,"two\nlines"\nx01.png,b\n')
    store = i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False)
    side = sidecar(store)
    ref = reference_join(side, pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True)))
    same(side, ref, "note")
    assert side.column("note").to_pylist()[:2] == ["two\nlines", "b"]


def test_append_joins_the_new_images_only(tmp_path: Path, small_spills) -> None:
    make_tree(tmp_path / "in")
    path = tmp_path / "m.csv"
    path.write_text("filename,v\n" + "".join(f"x{i:02d}.png,{i}\n" for i in range(15)) +
                    "".join(f"img{i:02d}.png,{100 + i}\n" for i in range(10, 20)))
    store = i2z.convert(tmp_path / "o.zarr", folders=tmp_path / "in" / "c", metadata=path, progress=False,
                        shard_images=4)
    i2z.convert(store, folders=tmp_path / "in" / "a", metadata=path, append=True, progress=False)
    side = sidecar(store)
    ref = reference_join(side, pacsv.read_csv(path))
    assert side.num_rows == 35
    same(side, ref, "v")
    assert side.column("v").to_pylist()[:2] == [0, 1] and side.column("v").to_pylist()[25:27] == [110, 111]
