"""``_core.parquet_append``: a Parquet append that copies the old file's bytes and merges footers.

pyarrow is the reference: it writes the inputs, and the merged file read back by pyarrow must
equal ``concat(old[:keep], new)``, row group by row group. The page index (OffsetIndex holds
absolute file offsets) is checked with a small independent compact-protocol reader below:
every page location of the merged file must point at the same page bytes as in the new file.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from images_to_zarr import _core
from test_s3_store import _loopback_without_proxy, s3_server  # noqa: F401 - fixtures are found by name


def make_table(start: int, n: int, dictionary: bool = False) -> pa.Table:
    idx = range(start, start + n)
    values = [None if i % 7 == 3 else (float("nan") if i % 11 == 5 else i * 0.5) for i in idx]
    names = pa.array([f"img_{i:06d}.png" for i in idx])
    cats = pa.array([["red", "green", "blue"][i % 3] for i in idx])
    return pa.table(
        {
            "filename": names,
            "shape": pa.array([[3, 64 + i % 5, 64] for i in idx], pa.list_(pa.int64())),
            "file_size_bytes": pa.array([None if i % 13 == 0 else 1000 + i for i in idx], pa.int64()),
            "mean_value": pa.array(values, pa.float64()),
            "category": cats.dictionary_encode() if dictionary else cats,
            "fits_header": pa.array(
                [None if i % 2 else f'{{"NAXIS": 2, "I": {i}}}' for i in idx],
                pa.string(),
            ),
        }
    )


def parquet_bytes(table: pa.Table, **kw: Any) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **kw)
    return sink.getvalue()


def nan_free(t: pa.Table) -> pa.Table:
    """NaN != NaN in Table.equals: replace NaN by a sentinel (nulls stay null)."""
    cols = [pc.if_else(pc.is_nan(c), -1e300, c) if pa.types.is_floating(c.type) else c for c in t.columns]
    return pa.table(cols, names=t.column_names)


def assert_tables_equal(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.equals(want.schema), (got.schema, want.schema)
    assert nan_free(got.combine_chunks()).equals(nan_free(want.combine_chunks()))


# -- a minimal, independent Thrift compact reader (only what an OffsetIndex / footer holds) ----


class _Compact:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.d, self.p = data, pos

    def byte(self) -> int:
        b = self.d[self.p]
        self.p += 1
        return b

    def varint(self) -> int:
        shift = out = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return out

    def zz(self) -> int:
        u = self.varint()
        return (u >> 1) ^ -(u & 1)

    def value(self, t: int, in_list: bool = False) -> Any:
        if t in (1, 2):
            return self.byte() == 1 if in_list else t == 1
        if t == 3:
            return self.byte()
        if t in (4, 5, 6):
            return self.zz()
        if t == 7:
            self.p += 8
            return None
        if t == 8:
            n = self.varint()
            self.p += n
            return self.d[self.p - n : self.p]
        if t in (9, 10):
            h = self.byte()
            n, et = h >> 4, h & 15
            if n == 15:
                n = self.varint()
            return [self.value(et, True) for _ in range(n)]
        if t == 12:
            return self.struct()
        raise AssertionError(f"type {t}")

    def struct(self) -> dict[int, Any]:
        out: dict[int, Any] = {}
        last = 0
        while True:
            h = self.byte()
            if h == 0:
                return out
            fid = last + (h >> 4) if h >> 4 else self.zz()
            out[fid] = self.value(h & 15)
            last = fid


def footer(data: bytes) -> dict[int, Any]:
    n = int.from_bytes(data[-8:-4], "little")
    return _Compact(data[-8 - n : -8]).struct()


def page_spans(data: bytes) -> list[list[tuple[int, int]]]:
    """(offset, size) of every page of every column chunk, from the OffsetIndex structures."""
    out = []
    for rg in footer(data)[4]:
        for cc in rg[1]:
            assert 4 in cc and 5 in cc, "column chunk without offset index"
            oi = _Compact(data[cc[4] : cc[4] + cc[5]]).struct()
            out.append([(loc[1], loc[2]) for loc in oi[1]])
    return out


def column_indexes(data: bytes) -> list[bytes | None]:
    """The ColumnIndex bytes of every column chunk (None when it has none)."""
    return [data[cc[6] : cc[6] + cc[7]] if 6 in cc else None for rg in footer(data)[4] for cc in rg[1]]


# -----------------------------------------------------------------------------------------------


def local_store(tmp_path: Path):
    return _core.Store.open(str(tmp_path))


@pytest.mark.parametrize("compression", ["snappy", "zstd", "none"])
@pytest.mark.parametrize("page_index", [False, True])
@pytest.mark.parametrize("dictionary", [False, True])
def test_merge_equals_concat(tmp_path, compression, page_index, dictionary):
    kw = {
        "compression": compression,
        "write_page_index": page_index,
        "write_statistics": True,
    }
    old = make_table(0, 300, dictionary)
    new = make_table(300, 70, dictionary)
    (tmp_path / "side.parquet").write_bytes(parquet_bytes(old, row_group_size=100, **kw))
    new_bytes = parquet_bytes(new, row_group_size=50, data_page_size=512, **kw)  # several pages
    store = local_store(tmp_path)
    assert _core.parquet_append(store, "side.parquet", 300, new_bytes, "out.parquet") is True

    out = tmp_path / "out.parquet"
    assert_tables_equal(pq.read_table(out), pa.concat_tables([old, new]))
    pf = pq.ParquetFile(out)
    md = pf.metadata
    assert md.num_rows == 370 and md.num_row_groups == 3 + 2
    assert [md.row_group(i).num_rows for i in range(5)] == [100, 100, 100, 50, 20]
    assert md.metadata == pq.ParquetFile(tmp_path / "side.parquet").metadata.metadata  # ARROW:schema kept
    want = pa.concat_tables([old, new])
    starts = [0, 100, 200, 300, 350, 370]
    for i in range(5):  # each row group on its own: its shifted offsets are right
        assert_tables_equal(pf.read_row_group(i), want.slice(starts[i], starts[i + 1] - starts[i]))
        stats = md.row_group(i).column(2).statistics  # file_size_bytes
        chunk = want.column("file_size_bytes").slice(starts[i], starts[i + 1] - starts[i])
        assert stats.has_min_max and stats.min == pc.min(chunk).as_py() and stats.max == pc.max(chunk).as_py()
        assert stats.null_count == chunk.null_count
    if page_index:
        merged = out.read_bytes()
        new_spans = page_spans(new_bytes)
        merged_spans = page_spans(merged)
        assert len(merged_spans) == 5 * 6
        # The shift, from pyarrow's own reading of both footers.
        new_md = pq.ParquetFile(io.BytesIO(new_bytes)).metadata
        shift = md.row_group(3).column(0).data_page_offset - new_md.row_group(0).column(0).data_page_offset
        for got, orig in zip(merged_spans[3 * 6 :], new_spans):
            assert [(o + shift, s) for o, s in orig] == got
            for (go, gs), (oo, os_) in zip(got, orig):
                assert merged[go : go + gs] == new_bytes[oo : oo + os_]
        new_ci = column_indexes(new_bytes)
        assert any(new_ci) and column_indexes(merged)[3 * 6 :] == new_ci
        assert column_indexes(merged)[: 3 * 6] == column_indexes((tmp_path / "side.parquet").read_bytes())


def test_keep_on_earlier_boundary_drops_leftover_rows(tmp_path):
    old = make_table(0, 300)
    new = make_table(200, 40)
    (tmp_path / "side.parquet").write_bytes(parquet_bytes(old, row_group_size=100))
    store = local_store(tmp_path)
    assert _core.parquet_append(store, "side.parquet", 200, parquet_bytes(new), "side.parquet") is True
    got = pq.read_table(tmp_path / "side.parquet")
    assert_tables_equal(got, pa.concat_tables([old.slice(0, 200), new]))
    assert pq.ParquetFile(tmp_path / "side.parquet").metadata.num_row_groups == 3
    # keep = 0: only the new rows remain
    assert _core.parquet_append(store, "side.parquet", 0, parquet_bytes(new), "zero.parquet") is True
    assert_tables_equal(pq.read_table(tmp_path / "zero.parquet"), new)


def test_repeated_appends_from_a_file_path(tmp_path):
    tables = [make_table(0, 120)]
    (tmp_path / "side.parquet").write_bytes(parquet_bytes(tables[0], write_page_index=True))
    store = local_store(tmp_path)
    total = 120
    for k in range(5):
        t = make_table(total, 10 + k)
        new_path = tmp_path / f"new{k}.parquet"
        pq.write_table(t, new_path, write_page_index=True)
        assert _core.parquet_append(store, "side.parquet", total, new_path, "side.parquet") is True
        tables.append(t)
        total += t.num_rows
    merged = (tmp_path / "side.parquet").read_bytes()
    assert_tables_equal(pq.read_table(io.BytesIO(merged)), pa.concat_tables(tables))
    md = pq.ParquetFile(io.BytesIO(merged)).metadata
    assert md.num_row_groups == 6 and md.num_rows == total
    for spans in page_spans(merged):  # every offset index points inside the data part
        for off, size in spans:
            assert 4 <= off and off + size < len(merged) - 8
    assert not [p.name for p in tmp_path.iterdir() if "i2z-part" in p.name]


@pytest.mark.parametrize("keep", [50, 150, 301])
def test_keep_not_on_a_boundary_is_not_possible(tmp_path, keep):
    (tmp_path / "side.parquet").write_bytes(parquet_bytes(make_table(0, 300), row_group_size=100))
    before = (tmp_path / "side.parquet").read_bytes()
    store = local_store(tmp_path)
    new = parquet_bytes(make_table(300, 10))
    assert _core.parquet_append(store, "side.parquet", keep, new, "side.parquet") is False
    assert (tmp_path / "side.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side.parquet"]


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.drop_columns(["fits_header"]),  # a column fewer
        lambda t: t.set_column(2, "file_size_bytes", t.column(2).cast(pa.int32())),  # other type
        lambda t: t.rename_columns([*t.column_names[:-1], "header"]),  # other name
        lambda t: t.select([1, 0, 2, 3, 4, 5]),  # other order
        lambda t: t.set_column(4, "category", t.column(4).dictionary_encode()),  # same Parquet, other Arrow type
    ],
)
def test_schema_mismatch_is_not_possible(tmp_path, change):
    (tmp_path / "side.parquet").write_bytes(parquet_bytes(make_table(0, 30)))
    store = local_store(tmp_path)
    new = parquet_bytes(change(make_table(30, 5)))
    assert _core.parquet_append(store, "side.parquet", 30, new, "out.parquet") is False
    assert not (tmp_path / "out.parquet").exists()


def test_missing_corrupt_and_encrypted_inputs_are_not_possible(tmp_path):
    store = local_store(tmp_path)
    good = parquet_bytes(make_table(0, 30))
    new = parquet_bytes(make_table(30, 5))
    assert _core.parquet_append(store, "absent.parquet", 0, new, "out.parquet") is False
    n = int.from_bytes(good[-8:-4], "little")
    foot = len(good) - 8 - n
    corrupt = {
        "empty": b"",
        "short": b"PAR1PAR1",
        "no magic": good[:-4] + b"XXXX",
        "encrypted footer": good[:-4] + b"PARE",
        "huge footer length": good[:-8] + (len(good)).to_bytes(4, "little") + b"PAR1",
        "footer garbage": good[:foot] + bytes([0xFF]) * n + good[-8:],
        "footer truncated": good[: foot + n // 2] + (n // 2).to_bytes(4, "little") + b"PAR1",
        "bad head magic": b"XXXX" + good[4:],
    }
    for name, data in corrupt.items():
        (tmp_path / "bad.parquet").write_bytes(data)
        assert _core.parquet_append(store, "bad.parquet", 0, new, "out.parquet") is False, name
        (tmp_path / "side.parquet").write_bytes(good)
        assert _core.parquet_append(store, "side.parquet", 30, data, "out.parquet") is False, name
        assert not (tmp_path / "out.parquet").exists(), name
    # footer bytes flipped one at a time: never a crash, and a True result reads back
    for i in range(foot, len(good) - 8, 7):
        flipped = bytearray(good)
        flipped[i] ^= 0x5A
        (tmp_path / "bad.parquet").write_bytes(bytes(flipped))
        _core.parquet_append(store, "bad.parquet", 30, new, "fuzz.parquet")
    with pytest.raises(OSError):
        _core.parquet_append(store, "side.parquet", 30, tmp_path / "no-such-new.parquet", "out.parquet")


@pytest.mark.s3
def test_s3_append(s3_server):  # noqa: F811 - the imported fixture
    prefix = f"pq-{uuid.uuid4().hex[:8]}"
    store = s3_server.store(prefix)
    old = make_table(0, 200)
    new = make_table(200, 30)
    store.set(
        "x_metadata.parquet",
        parquet_bytes(old, row_group_size=100, write_page_index=True),
    )
    assert (
        _core.parquet_append(
            store,
            "x_metadata.parquet",
            200,
            parquet_bytes(new, write_page_index=True),
            "x_metadata.parquet",
        )
        is True
    )
    merged = store.get("x_metadata.parquet")
    assert_tables_equal(pq.read_table(io.BytesIO(merged)), pa.concat_tables([old, new]))
    assert pq.ParquetFile(io.BytesIO(merged)).metadata.num_row_groups == 3
    assert _core.parquet_append(store, "x_metadata.parquet", 150, parquet_bytes(new), "y.parquet") is False
    assert store.get("y.parquet") is None
    assert store.list("") == ["x_metadata.parquet"]


@pytest.mark.s3
def test_s3_append_multipart(s3_server):  # noqa: F811 - the imported fixture
    """A side-car larger than one part: streamed in pieces, committed by multipart completion."""
    store = s3_server.store(f"pq-{uuid.uuid4().hex[:8]}", part_size=str(5 << 20))
    blobs = pa.array([os.urandom(1024) for _ in range(7000)], pa.binary())  # 7 MiB, incompressible
    old = make_table(0, 7000).append_column("blob", blobs)
    new = make_table(7000, 5).append_column("blob", blobs.slice(0, 5))
    store.set("m.parquet", parquet_bytes(old, compression="none", row_group_size=3500))
    assert _core.parquet_append(store, "m.parquet", 7000, parquet_bytes(new, compression="none"), "m.parquet")
    merged = store.get("m.parquet")
    assert len(merged) > 7 << 20
    assert_tables_equal(pq.read_table(io.BytesIO(merged)), pa.concat_tables([old, new]))
