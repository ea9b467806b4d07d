"""Users' habits (issue 15): ``python -m``, CLI spellings, progress bar and capped warnings,
``max_failures``/``--strict``, stage logging, ``inspect --json``, 0.3.5-compatible arguments and
``display_sample_images`` on non-colour channels. Each through the API and the CLI in a subprocess
(a pseudo-terminal where the progress bar matters)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import warnings
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zarr
from astropy.io import fits
from PIL import Image

import images_to_zarr as i2z
from conftest import smooth_images

H, W = 24, 28


def cli(*args: str | os.PathLike, module: str = "images_to_zarr") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``images_to_zarr: error: ...`` line of a failed command (exit status 1)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("images_to_zarr: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def pngs(folder: Path, n: int, corrupt: int = 0, size: tuple[int, int] = (H, W)) -> list[Path]:
    """``n`` gray PNGs; the last ``corrupt`` of them truncated after the header (decode fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i:04d}.png"
        Image.fromarray(smooth_images(1, 1, *size, "uint8", seed=i)[0, 0]).save(p)
        if i >= n - corrupt:
            p.write_bytes(p.read_bytes()[:60])
        paths.append(p)
    return paths


def run_in_pty(args: list[str], module: str | None = "images_to_zarr") -> tuple[int, str]:
    """Runs the CLI (``python -m module args``, or ``python args``) with stdin/stdout/stderr on a
    pseudo-terminal; returns (exit status, output)."""
    leader, follower = pty.openpty()
    # A terminal of 24 x 100 (a new pty is 0 x 0, on which tqdm draws nothing).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, *(["-m", module] if module else []), *args], stdin=follower, stdout=follower,
                            stderr=follower, close_fds=True)
    os.close(follower)
    out = bytearray()
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            proc.kill()
            raise AssertionError("the CLI produced no output for 300 s")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=300), out.decode("utf-8", "replace")


# --- 1. python -m, CLI spellings, 0.3.5-compatible arguments ------------------------------------

def test_python_dash_m_runs_the_cli(tmp_path: Path):
    assert cli("--version").stdout.strip().endswith(i2z.__version__)
    pngs(tmp_path / "in", 3)
    result = cli("convert", tmp_path / "in", "--out", tmp_path / "s.zarr", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "s.zarr")
    assert zarr.open_array(tmp_path / "s.zarr" / "images", mode="r").shape == (3, 1, H, W)


def test_cli_messages_use_cli_spellings_and_no_class_names(tmp_path: Path):
    pngs(tmp_path / "in", 2)
    assert cli("convert", tmp_path / "in", "--out", tmp_path / "s.zarr", "--no-progress").returncode == 0
    line = error_line(cli("convert", tmp_path / "in", "--out", tmp_path / "s.zarr", "--no-progress"))
    assert "--overwrite" in line and "--append" in line and "already exists" in line
    assert "=True" not in line and "FileExistsError" not in line
    with pytest.raises(FileExistsError, match=r"overwrite=True"):  # the API keeps its spellings
        i2z.convert(tmp_path / "s.zarr", folders=tmp_path / "in", progress=False)

    pngs(tmp_path / "mixed", 1)
    Image.fromarray(smooth_images(1, 1, H + 3, W, "uint8")[0, 0]).save(tmp_path / "mixed" / "z.png")
    line = error_line(cli("convert", tmp_path / "mixed", "--out", tmp_path / "m.zarr", "--no-progress"))
    assert "--resize H,W" in line and "--pad" in line and "z.png" in line and "ValueError" not in line
    assert not (tmp_path / "m.zarr").exists()
    with pytest.raises(ValueError, match=r"resize=\(H, W\) or pad=True"):
        i2z.convert(tmp_path / "m.zarr", folders=tmp_path / "mixed", progress=False)

    line = error_line(cli("inspect", tmp_path / "nope.zarr"))
    assert line == f"images_to_zarr: error: store not found: {tmp_path / 'nope.zarr'}"


def test_cli_message_translation_table():
    from images_to_zarr.cli import cli_message

    assert cli_message(ValueError("shard_images (3) must be a multiple of chunk_shape[0] (2)")) == \
        "--shard-images (3) must be a multiple of --chunk-shape (2)"
    assert cli_message(KeyError("no such key")) == "no such key"
    assert cli_message(ValueError("unknown storage_options key 'x'")) == "unknown --storage-option key 'x'"


def test_compressor_names_are_case_insensitive(tmp_path: Path):
    arr = smooth_images(4, 1, H, W, "uint16")
    store = i2z.convert(tmp_path / "a.zarr", images=arr, compressor="ZSTD", clevel=3, progress=False)
    a = zarr.open_array(store / "images", mode="r")
    assert [type(c).__name__ for c in a.compressors] == ["ZstdCodec", "Crc32cCodec"]
    np.testing.assert_array_equal(a[:], arr)
    assert json.loads((store / "zarr.json").read_text())["attributes"]["compressor"] == "zstd"
    with pytest.raises(ValueError, match=r"unknown compressor 'snappy'; valid: .*zstd"):
        i2z.convert(tmp_path / "b.zarr", images=arr, compressor="snappy", progress=False)

    pngs(tmp_path / "in", 2)
    result = cli("convert", tmp_path / "in", "--out", tmp_path / "c.zarr", "--compressor", "Gzip", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "c.zarr" / "zarr.json").read_text())["attributes"]["compressor"] == "gzip"


def test_resize_with_one_int_is_a_square(tmp_path: Path):
    from skimage.transform import resize

    paths = pngs(tmp_path / "in", 2)
    store = i2z.convert(tmp_path / "a.zarr", folders=tmp_path / "in", resize=16, dtype="float64", progress=False)
    a = zarr.open_array(store / "images", mode="r")
    assert a.shape == (2, 1, 16, 16)
    for i, p in enumerate(paths):
        ref = resize(np.asarray(Image.open(p)).astype(np.float64), (16, 16), order=1, preserve_range=True,
                     anti_aliasing=None)
        np.testing.assert_allclose(a[i, 0], ref, rtol=1e-12, atol=1e-9)
    assert json.loads((store / "zarr.json").read_text())["attributes"]["creation_info"]["resize"] == [16, 16]
    for bad in ["16", (16,), (1, 2, 3), 0, -4, (16.5, 8), True]:
        with pytest.raises(ValueError, match=r"resize must be \(height, width\) or one size"):
            i2z.convert(tmp_path / "b.zarr", folders=tmp_path / "in", resize=bad, progress=False)
    with pytest.raises(ValueError, match="resize applies to image files"):  # not silently ignored
        i2z.convert(tmp_path / "m.zarr", images=smooth_images(2, 1, H, W), resize=16, progress=False)
    assert not (tmp_path / "m.zarr").exists()
    result = cli("convert", tmp_path / "in", "--out", tmp_path / "c.zarr", "--resize", "12", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert zarr.open_array(tmp_path / "c.zarr" / "images", mode="r").shape == (2, 1, 12, 12)


def test_zero_workers_means_one_per_cpu_in_api_and_cli(tmp_path: Path):
    pngs(tmp_path / "in", 5)
    one = i2z.convert(tmp_path / "one.zarr", folders=tmp_path / "in", num_parallel_workers=1, progress=False)
    zero = i2z.convert(tmp_path / "zero.zarr", folders=tmp_path / "in", num_parallel_workers=0, progress=False)
    result = cli("convert", tmp_path / "in", "--out", tmp_path / "cli.zarr", "--workers", "0", "--no-progress")
    assert result.returncode == 0, result.stderr
    shard = Path("images/c/0/0/0/0")
    assert (one / shard).read_bytes() == (zero / shard).read_bytes() == (tmp_path / "cli.zarr" / shard).read_bytes()
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match=r"num_parallel_workers must be an integer >= 0"):
            i2z.convert(tmp_path / "bad.zarr", folders=tmp_path / "in", num_parallel_workers=bad, progress=False)
    assert cli("convert", tmp_path / "in", "--out", tmp_path / "bad.zarr", "--workers", "-1").returncode == 2


# --- 2. progress bar, capped warnings, stage logging ---------------------------------------------

def test_warnings_print_above_the_bar_capped_with_a_summary(tmp_path: Path):
    pngs(tmp_path / "in", 60, corrupt=25)
    status, out = run_in_pty(["convert", str(tmp_path / "in"), "--out", str(tmp_path / "s.zarr"), "--workers", "1"])
    assert status == 0, out
    assert "converting:" in out  # the bar was drawn (stderr is a terminal)
    lines = out.replace("\r\n", "\n").split("\n")
    warned = [ln for ln in lines if "WARNING" in ln]
    # Every log line starts a line of its own: whatever the bar drew on that line was erased
    # (tqdm.write: "\r" + clear) before it, so the text after the last "\r" is the log line.
    for ln in warned:
        assert ln.split("\r")[-1].lstrip("\x1b[A").startswith("WARNING images_to_zarr: "), repr(ln)
    failed = [ln for ln in warned if "failed to read" in ln]
    assert len(failed) == 10, out
    summary = [ln for ln in warned if "more failed-image warnings not shown" in ln]
    assert len(summary) == 1 and "15 more" in summary[0] and "'error' column of s_metadata.parquet" in summary[0]
    assert any("converted 35 of 60 images" in ln and "25 failed" in ln for ln in warned)
    errors = pq.read_table(tmp_path / "s_metadata.parquet").column("error")
    assert len(errors) - errors.null_count == 25  # every failure is in the side-car
    assert [i for i, e in enumerate(errors.to_pylist()) if e] == list(range(35, 60))


def test_api_without_configure_logging_keeps_warnings_off_the_bar(tmp_path: Path):
    """A script that never configured logging: while the bar runs, a handler through it stands
    in for Python's last-resort handler (which writes on the bar's line)."""
    pngs(tmp_path / "in", 30, corrupt=5)
    code = (f"import images_to_zarr as i2z; i2z.convert({str(tmp_path / 's.zarr')!r}, "
            f"folders={str(tmp_path / 'in')!r}, num_parallel_workers=1)")
    status, out = run_in_pty(["-c", code], module=None)
    assert status == 0, out
    assert "images:" in out or "converting:" in out
    failed = [ln for ln in out.replace("\r\n", "\n").split("\n") if "failed to read" in ln]
    assert len(failed) == 5
    for ln in failed:
        assert ln.split("\r")[-1].startswith("failed to read"), repr(ln)


def test_api_warnings_capped_and_routed_through_the_logger(tmp_path: Path, caplog):
    pngs(tmp_path / "in", 20, corrupt=12)
    i2z.configure_logging(False)  # let caplog see the records (propagate)
    i2z.logger.propagate = True
    i2z.logger.setLevel("INFO")
    try:
        i2z.convert(tmp_path / "s.zarr", folders=tmp_path / "in", progress=False)
    finally:
        i2z.configure_logging(True, "INFO")
    messages = [r.getMessage() for r in caplog.records if r.name == "images_to_zarr"]
    assert sum("failed to read" in m for m in messages) == 10
    assert sum("2 more failed-image warnings not shown" in m for m in messages) == 1


def test_debug_logs_each_stage_with_counts_and_rates(tmp_path: Path):
    pngs(tmp_path / "in", 7, corrupt=1)
    result = cli("convert", tmp_path / "in", "--out", tmp_path / "s.zarr", "--no-progress", "--debug")
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert re.search(r"DEBUG images_to_zarr: discover: 7 files in [\d.]+ s \([\d,.]+ files/s\)", err), err
    assert re.search(r"probe \+ plan: 7 new images .*array \(7, 1, 24, 28\) uint8, shards 0\.\.0 of 7", err), err
    raw = 7 * H * W / 2**20
    m = re.search(r"write: 7 images \(1 failed\), ([\d.]+) MiB raw, stored ([\d.]+) MiB .* img/s, .* MiB/s\)", err)
    assert m and abs(float(m.group(1)) - raw) < 0.05, err
    stored = sum(f.stat().st_size for f in (tmp_path / "s.zarr" / "images" / "c").rglob("*") if f.is_file())
    assert abs(float(m.group(2)) - stored / 2**20) < 0.05
    assert re.search(r"commit: side-car and zarr\.json of .*s\.zarr in [\d.]+ s", err), err


# --- 3. max_failures / --strict -------------------------------------------------------------------

def test_max_failures_aborts_with_nothing_committed(tmp_path: Path):
    pngs(tmp_path / "in", 10, corrupt=3)
    with pytest.raises(i2z.TooManyFailuresError, match=r"3 of 10 images failed, more than max_failures=2") as e:
        i2z.convert(tmp_path / "a.zarr", folders=tmp_path / "in", max_failures=2, progress=False)
    assert "failed to read" in str(e.value)  # names the first failure
    # No store and no side-car; what an interrupted run leaves (a.zarr.i2z-tmp) is discarded by
    # the next run, or continued by resume=True.
    assert not (tmp_path / "a.zarr").exists() and not list(tmp_path.glob("a_metadata*"))
    with pytest.raises(i2z.TooManyFailuresError, match=r"max_failures=20%"):
        i2z.convert(tmp_path / "a.zarr", folders=tmp_path / "in", max_failures="20%", progress=False)
    i2z.convert(tmp_path / "b.zarr", folders=tmp_path / "in", max_failures="30%", progress=False)
    i2z.convert(tmp_path / "c.zarr", folders=tmp_path / "in", max_failures=3, progress=False)
    assert zarr.open_array(tmp_path / "c.zarr" / "images", mode="r").shape == (10, 1, H, W)
    for bad in (-1, "x", "101%", 1.5):
        with pytest.raises(ValueError, match="max_failures must be"):
            i2z.convert(tmp_path / "d.zarr", folders=tmp_path / "in", max_failures=bad, progress=False)


def test_strict_cli_exit_1_and_append_left_unchanged(tmp_path: Path):
    pngs(tmp_path / "good", 4)
    pngs(tmp_path / "bad", 3, corrupt=1)
    line = error_line(cli("convert", tmp_path / "bad", "--out", tmp_path / "s.zarr", "--strict", "--no-progress"))
    assert "1 of 3 images failed, more than --max-failures 0 allows" in line and "TooMany" not in line
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "s_metadata.parquet").exists()

    assert cli("convert", tmp_path / "good", "--out", tmp_path / "s.zarr", "--no-progress").returncode == 0
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.glob("s*/**/*") if p.is_file()}
    sidecar_before = sorted((tmp_path / "s_metadata.parquet").iterdir())  # the side-car's parts
    line = error_line(cli("convert", tmp_path / "bad", "--out", tmp_path / "s.zarr", "--append",
                          "--max-failures", "0", "--no-progress"))
    assert "--max-failures 0" in line
    # Every file of the store is as it was (an aborted append may leave objects beyond the
    # array's shape, invisible to readers, and its progress for --resume).
    assert {p: (tmp_path / p).read_bytes() for p in before} == before
    assert sorted((tmp_path / "s_metadata.parquet").iterdir()) == sidecar_before  # bytes: in `before`
    assert zarr.open_array(tmp_path / "s.zarr" / "images", mode="r").shape == (4, 1, H, W)
    result = cli("convert", tmp_path / "bad", "--out", tmp_path / "s.zarr", "--append", "--max-failures", "34%",
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    assert zarr.open_array(tmp_path / "s.zarr" / "images", mode="r").shape == (7, 1, H, W)


# --- 4. inspect --json, to_dict, print_summary -------------------------------------------------

def test_inspect_json_matches_store_and_sidecar(tmp_path: Path):
    pngs(tmp_path / "in", 6, corrupt=1)
    pngs(tmp_path / "more", 2)
    store = i2z.convert(tmp_path / "s.zarr", folders=tmp_path / "in", progress=False, shard_images=2)
    i2z.convert(store, folders=tmp_path / "more", append=True, progress=False)
    result = cli("inspect", store, "--json")
    assert result.returncode == 0, result.stderr
    d = json.loads(result.stdout)
    a = zarr.open_array(store / "images", mode="r")
    assert d["total_images"] == a.shape[0] == 8
    assert d["image_shape"] == list(a.shape[1:]) and d["dtype"] == str(a.dtype)
    assert d["chunk_shape"] == list(a.chunks) and d["shard_shape"] == list(a.shards)
    assert d["num_shards"] == 4 and d["path"] == str(store)
    assert d["storage_bytes"] == sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    assert d["compressor"] == "lz4" and d["compression_level"] == 1
    table = pq.read_table(tmp_path / "s_metadata.parquet")
    assert d["metadata_path"] == str(tmp_path / "s_metadata.parquet")
    assert d["failed_images"] == len(table) - table.column("error").null_count == 1
    assert d["format_counts"] == {"PNG": 8} and d["source_files"] == 8
    dtypes = table.column("dtype").to_pylist()
    assert d["original_dtype_counts"] == {t: dtypes.count(t) for t in set(map(str, dtypes))} | (
        {"unknown": dtypes.count(None)} if None in dtypes else {})
    shapes = [tuple(s) if s else () for s in table.column("shape").to_pylist()]
    assert {tuple(e["shape"]): e["count"] for e in d["shape_counts"]} == {s: shapes.count(s) for s in set(shapes)}
    sizes = table.column("file_size_bytes").to_pylist()
    assert d["file_size_stats"] == {"min": min(sizes), "max": max(sizes), "mean": pytest.approx(np.mean(sizes)),
                                    "total": sum(sizes)}
    ok = table.filter(pc.is_null(table.column("error")))
    assert d["dynamic_range"]["min"] == min(ok.column("min_value").to_pylist())
    assert d["dynamic_range"]["max"] == max(ok.column("max_value").to_pylist())
    history = json.loads((store / "zarr.json").read_text())["attributes"]["append_history"]
    assert d["append_history"] == history == [{"appended_count": 2, "start_index": 6, "end_index": 8}]
    text = cli("inspect", store).stdout
    assert "+2 images (indices 6 to 7)" in text


def test_to_dict_dumps_and_print_summary_false_is_quiet(tmp_path: Path, capsys):
    store = i2z.convert(tmp_path / "m.zarr", images=smooth_images(3, 2, H, W), progress=False)
    capsys.readouterr()
    summary = i2z.inspect(store, print_summary=False)
    assert capsys.readouterr().out == ""
    d = json.loads(json.dumps(summary.to_dict()))
    assert d["shape_counts"] == [{"shape": [2, H, W], "count": 3}] and d["source_files"] == 0
    assert d["file_size_stats"] is None
    i2z.inspect(store)
    out = capsys.readouterr().out
    assert "Original file size statistics: none (no source files: the images came from memory)" in out
    assert "min: 0 B" not in out


# --- 5. display_sample_images ------------------------------------------------------------------

def fits_stack(folder: Path, n: int) -> list[list[np.ndarray]]:
    """FITS files with a primary image and SCI/ERR extensions of very different ranges."""
    folder.mkdir(parents=True, exist_ok=True)
    planes = []
    for i in range(n):
        prim = smooth_images(1, 1, H, W, "float32", seed=i)[0, 0]
        sci = prim * 1e4 + 5e5
        err = np.sqrt(np.abs(prim)).astype(np.float32)
        fits.HDUList([fits.PrimaryHDU(prim), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(err, name="ERR")]) \
            .writeto(folder / f"f{i}.fits")
        planes.append([prim, sci, err])
    return planes


def test_display_draws_first_channel_of_stacked_fits_and_takes_indices(tmp_path: Path):
    planes = fits_stack(tmp_path / "in", 3)
    store = i2z.convert(tmp_path / "s.zarr", folders=tmp_path / "in", fits_extension=[0, 1, "ERR"], progress=False)
    fig = i2z.display_sample_images(store, save_path=tmp_path / "g.png", indices=[2, 0])
    assert [ax.get_title() for ax in fig.axes] == ["2: f2.fits [ch 0 of 3]", "0: f0.fits [ch 0 of 3]"]
    for ax, i in zip(fig.axes, [2, 0]):
        shown = ax.get_images()[0]
        assert shown.get_cmap().name == "viridis"
        np.testing.assert_array_equal(np.asarray(shown.get_array()), i2z.display.stretch(planes[i][0]))
    # An RGB PNG store is still drawn in colour with one stretch.
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(smooth_images(1, 3, H, W)[0].transpose(1, 2, 0)).save(rgb / "c.png")
    fig = i2z.display_sample_images(i2z.convert(tmp_path / "c.zarr", folders=rgb, progress=False),
                                    save_path=tmp_path / "c.png")
    assert np.asarray(fig.axes[0].get_images()[0].get_array()).shape == (H, W, 3)
    with pytest.raises(IndexError, match="index 3 is out of range for 3 images"):
        i2z.display_sample_images(store, save_path=tmp_path / "g.png", indices=[3])
    result = cli("display", store, "--indices", "1,2", "--save", tmp_path / "cli.png")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "cli.png") as im:
        assert im.format == "PNG"
    line = error_line(cli("display", store, "--indices", "7", "--save", tmp_path / "x.png"))
    assert line == "images_to_zarr: error: index 7 is out of range for 3 images"


def test_missing_matplotlib_says_to_install_the_plot_extra(tmp_path: Path):
    store = i2z.convert(tmp_path / "m.zarr", images=smooth_images(2, 1, H, W), progress=False)
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import images_to_zarr.cli as c; c.main()")
    result = subprocess.run([sys.executable, "-c", code, "display", str(store), "--save", str(tmp_path / "g.png")],
                            capture_output=True, text=True, timeout=300)
    assert error_line(result) == ("images_to_zarr: error: display_sample_images needs matplotlib: "
                                  "pip install 'images_to_zarr[plot]'")


# --- 6. consolidated metadata --------------------------------------------------------------------

def test_consolidated_metadata_xarray_zarr_tensorstore(tmp_path: Path):
    import tensorstore as ts
    import xarray as xr

    paths = pngs(tmp_path / "in", 5)
    more = pngs(tmp_path / "more", 7)
    for p in more[:5]:
        p.unlink()
    more = more[5:]  # 2 more, other pixels (seeds 5, 6)
    store = i2z.convert(tmp_path / "s.zarr", folders=tmp_path / "in", shard_images=2, progress=False)
    refs = [np.asarray(Image.open(p)) for p in paths]

    def check(n: int) -> None:
        group = json.loads((store / "zarr.json").read_text())
        array = json.loads((store / "images" / "zarr.json").read_text())
        consolidated = group["consolidated_metadata"]
        assert consolidated["kind"] == "inline" and consolidated["must_understand"] is False
        assert consolidated["metadata"] == {"images": array} and array["shape"][0] == n
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "Failed to open Zarr store with consolidated metadata"
            ds = xr.open_zarr(store)
            assert ds["images"].dims == ("image", "channel", "y", "x") and ds["images"].shape == (n, 1, H, W)
            np.testing.assert_array_equal(ds["images"].values[:, 0], np.stack(refs))
            g = zarr.open_consolidated(store, mode="r")
            np.testing.assert_array_equal(g["images"][:, 0], np.stack(refs))
        plain = zarr.open_group(store, mode="r", use_consolidated=False)  # a reader that ignores it
        assert plain.metadata.consolidated_metadata is None
        np.testing.assert_array_equal(plain["images"][:, 0], np.stack(refs))
        t = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(store / "images")}}).result()
        np.testing.assert_array_equal(t.read().result()[:, 0], np.stack(refs))
        assert len(i2z.open_store(store)) == n

    check(5)
    i2z.convert(store, folders=tmp_path / "more", append=True, progress=False)  # kept current on append
    refs += [np.asarray(Image.open(p)) for p in more]
    check(7)
    result = cli("convert", tmp_path / "in", "--out", store, "--overwrite", "--no-progress")
    assert result.returncode == 0, result.stderr
    refs = refs[:5]
    check(5)


# --- 7. housekeeping ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_license_changelog_py_typed_and_core_stubs():
    import ast
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == {"text": "MIT"}
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
    package = Path(i2z.__file__).parent
    assert (package / "py.typed").is_file()
    # The stub is generated from the built extension and installed beside it.
    stub = Path(i2z._core.__file__).parent / "_core.pyi"
    tree = ast.parse(stub.read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    public = {name for name in dir(i2z._core) if not name.startswith("_")}
    assert public <= declared, public - declared
    assert {"Reader", "Store", "convert_files", "convert_array", "discover_files"} <= declared


def test_image_store_context_manager_and_close(tmp_path: Path):
    arr = smooth_images(4, 1, H, W)
    store = i2z.convert(tmp_path / "m.zarr", images=arr, progress=False)
    with i2z.open_store(store) as s:
        np.testing.assert_array_equal(s[1:3], arr[1:3])
        assert not s.closed
    assert s.closed and "closed" in repr(s)
    for use in (lambda: s[0], lambda: len(s), lambda: s.metadata, lambda: s.__enter__()):
        with pytest.raises(ValueError, match="is closed"):
            use()
    s.close()  # idempotent
    again = i2z.open_store(store)
    again.close()
    assert again.closed


def test_shell_completion_as_the_readme_says():
    script = Path(sys.executable).parent / "images_to_zarr"
    env = {**os.environ, "_IMAGES_TO_ZARR_COMPLETE": "bash_source"}
    source = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert source.returncode == 0 and "_images_to_zarr_completion" in source.stdout
    assert 'eval "$(_IMAGES_TO_ZARR_COMPLETE=bash_source images_to_zarr)"' in (ROOT / "README.md").read_text()
    env = {**os.environ, "_IMAGES_TO_ZARR_COMPLETE": "bash_complete", "COMP_WORDS": "images_to_zarr convert --str",
           "COMP_CWORD": "2"}
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["plain,--strict"], done.stdout


def test_readme_store_layout_and_naming_match_what_is_written(tmp_path: Path):
    readme = (ROOT / "README.md").read_text()
    pngs(tmp_path / "in", 3)
    (tmp_path / "cat.csv").write_text("filename,label\n" + "".join(f"img{i:04d}.png,{i}\n" for i in range(3)))
    store = i2z.convert(tmp_path / "out", folders=tmp_path / "in", metadata=tmp_path / "cat.csv", progress=False)
    assert store == tmp_path / "out" / "cat.zarr"  # <out>/<csv-stem>.zarr
    assert i2z.convert(tmp_path / "out", folders=tmp_path / "in", progress=False) == tmp_path / "out" / "images.zarr"
    assert i2z.convert(tmp_path / "x.zarr", folders=tmp_path / "in", progress=False) == tmp_path / "x.zarr"
    for name in ("cat", "images", "x"):
        assert (store.parent.parent / "out" if name != "x" else tmp_path).joinpath(f"{name}_metadata.parquet").exists()
    assert "images/c/<s>/0/0/0" in readme and (store / "images" / "c" / "0" / "0" / "0" / "0").is_file()
    assert (store / "zarr.json").is_file() and (store / "images" / "zarr.json").is_file()
    # The README's list of group attributes and creation_info keys is what the store has.
    section = readme[readme.index("* Group attributes:"):readme.index("* The group's `zarr.json` carries")]
    info = section[section.index("{"):section.index("}")]
    listed_info = set(re.findall(r"`(\w+)`", info))
    listed = set(re.findall(r"`(\w+)`", section.replace(info, ""))) - {"C", "H", "W"}
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    assert listed == set(attrs), listed ^ set(attrs)
    assert listed_info == set(attrs["creation_info"]), listed_info ^ set(attrs["creation_info"])
    array = json.loads((store / "images" / "zarr.json").read_text())
    assert array["dimension_names"] == ["image", "channel", "y", "x"] and array["fill_value"] == 0


def test_unknown_extname_lists_the_files_extnames(tmp_path: Path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = smooth_images(1, 1, H, W, "float32")[0, 0]
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(data, name="SCI"), fits.ImageHDU(data),
                  fits.ImageHDU(data, name="ERR")]).writeto(folder / "a.fits")
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(data, name="ERR")]).writeto(folder / "b.fits")
    assert [h.name for h in fits.open(folder / "a.fits")] == ["PRIMARY", "SCI", "", "ERR"]  # astropy's view
    i2z.convert(tmp_path / "s.zarr", folders=folder, fits_extension="SCI", progress=False)
    errors = pq.read_table(tmp_path / "s_metadata.parquet").column("error").to_pylist()
    assert errors[0] is None
    assert "no FITS HDU with EXTNAME 'SCI' (the file has 2 HDUs, EXTNAMEs: PRIMARY, ERR)" in errors[1]
    line = error_line(cli("convert", folder / "a.fits", "--out", tmp_path / "t.zarr", "--fits-ext", "MASK",
                          "--no-progress"))
    assert "no FITS HDU with EXTNAME 'MASK' (the file has 4 HDUs, EXTNAMEs: PRIMARY, SCI, (none), ERR)" in line
