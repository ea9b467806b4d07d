"""Host-side checks of `make test-wheel` (scripts/test-wheel.sh).

store WORK: the store the wheel wrote in the clean root, read with zarr-python, equals the wheel's
    own read-back (readback.npy) and every source decoded by Pillow / tifffile / astropy, laid
    out as README "How images are read" says; the process loaded one TLS stack and no system copy
    of a bundled library (maps.json).
sdist DIR: `python -m build --sdist` holds every git-tracked file a build needs and nothing of
    build/, dist/, bench/.data, bench/.venv-peers; a wheel built from it imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def reference(path: Path, fits_extension: str | None) -> np.ndarray:
    """The source decoded by an independent library, as (C, H, W)."""
    name = path.name.lower()
    if name.endswith((".fits", ".fits.gz", ".fit", ".fts")):
        from astropy.io import fits

        arr = np.asarray(fits.getdata(path, ext=int(fits_extension or 0)))
        return arr[None] if arr.ndim == 2 else arr
    if name.endswith((".tif", ".tiff")):
        import tifffile

        arr = tifffile.imread(path, key=0)
    else:
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im)
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def check_store(work: Path) -> None:
    import zarr

    store = zarr.open_array(work / "out" / "metadata.zarr" / "images", mode="r")[...]
    readback = np.load(work / "readback.npy")
    rows = json.loads((work / "rows.json").read_text())
    assert store.shape == (11, 3, 64, 64), store.shape
    assert readback.dtype == store.dtype and np.array_equal(readback, store), "wheel read-back != zarr-python"
    assert len(rows) == len(store)
    for i, row in enumerate(rows):
        assert row["error"] is None, row
        ref = reference(work / row["source_path"], row["fits_extension"])
        if ref.shape[0] == 1:  # a 1-channel image in a 3-channel store is replicated
            ref = np.repeat(ref, store.shape[1], axis=0)
        assert ref.shape == store[i].shape, (row, ref.shape)
        assert np.array_equal(ref.astype(store.dtype), store[i]), f"pixels differ: {row['source_path']}"
    print(f"ok: {len(rows)} images equal zarr-python's read and the reference decoders")

    # Every library the extension needs came from the wheel; no GnuTLS, no libcurl.so (static);
    # the system OpenSSL may be mapped too, by Python's own ssl module (pyarrow imports it).
    maps = json.loads((work / "maps.json").read_text())
    ours = sorted(m.split("/")[-1] for m in maps if "/images_to_zarr.libs/" in m)
    tls = sorted(m for m in maps if m.split("/")[-1].startswith(("libssl", "libgnutls", "libnss3", "libcurl")))
    print(f"shared objects mapped after convert + read-back: {len(maps)}, of them from the wheel: {len(ours)}")
    print(f"TLS/curl libraries mapped: {tls}")
    assert not [m for m in tls if "gnutls" in m or "libcurl" in m], tls
    assert any(n.startswith("libssl-") for n in ours) and any(n.startswith("libcrypto-") for n in ours), ours
    stems = {n.split("-")[0] for n in ours} - {"libssl", "libcrypto"}
    system = [m for m in maps if "/images_to_zarr" not in m and m.split("/")[-1].split(".so")[0] in stems]
    assert not system, f"system copies of bundled libraries were loaded: {system}"


def check_sdist(out: Path) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.tar.gz"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(REPO)],
                   check=True, stdout=subprocess.DEVNULL)
    (sdist,) = out.glob("images_to_zarr-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    banned = [m for m in members if m.startswith(("build/", "dist/", "bench/.data", "bench/.venv-peers", ".venv"))]
    assert not banned, f"sdist contains {banned[:5]}"
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True)
    needed = [f for f in tracked.stdout.split()
              if f.startswith(("cpp/src/", "cpp/include/", "python/")) or f in ("CMakeLists.txt", "pyproject.toml", "README.md")]
    missing = [f for f in needed if f not in members and (REPO / f).exists()]
    assert not missing, f"sdist lacks {missing[:5]}"
    print(f"ok: {sdist.name} ({sdist.stat().st_size // 1024} KiB, {len(members)} files) has all {len(needed)} "
          "build files and nothing of build/, dist/, bench/.data, bench/.venv-peers")

    # From source, as a user without git would: unpack, build a wheel, install it into a folder
    # and use it from there (python -S: no .pth, so no editable install of this checkout wins).
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (src,) = Path(tmp).iterdir()
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                        "-w", f"{tmp}/wheel", str(src)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", f"{tmp}/site",
                        *map(str, Path(tmp, "wheel").glob("*.whl"))], check=True)
        import site

        probe = f"""
import sys; sys.path[:0] = {[f"{tmp}/site", *site.getsitepackages()]!r}
import numpy as np, images_to_zarr as i
from images_to_zarr import convert, open_store
a = np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 1, 8, 8)
assert np.array_equal(open_store(convert("{tmp}/a.zarr", images=a, progress=False))[0:2], a)
print(i.__file__)"""
        res = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, cwd=tmp)
        assert res.returncode == 0 and res.stdout.startswith(f"{tmp}/site/"), res.stdout + res.stderr
    print("ok: a wheel built from the sdist imports and converts")


if __name__ == "__main__":
    cmd, arg = sys.argv[1], Path(sys.argv[2])
    {"store": check_store, "sdist": check_sdist}[cmd](arg)
