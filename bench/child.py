"""One measured operation, run in its own process (so its peak RSS is its own).

    python child.py '<json spec>'

Prints one JSON line on stdout: {"seconds": <wall time of the operation only>, ...} or
{"error": "<one line>"} when the tool cannot do it. Imports and input loading are not timed.
Runs under our interpreter and under the peers' venvs, so it imports only numpy and the tool.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor


_CPU: list[float] = []


def _cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return ru.ru_utime + ru.ru_stime


def _clock():
    return (time.perf_counter(), _cpu())


def _since(t0) -> float:
    """Wall seconds since t0; also records the CPU seconds (all threads) spent meanwhile, which
    load on the machine does not stretch."""
    wall = time.perf_counter() - t0[0]
    _CPU.append(_cpu() - t0[1])
    return wall


def _files(spec):
    folder = spec["folder"]
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if not f.startswith("."))


def _load_array(spec):
    import numpy as np

    arr = np.load(spec["array"])  # fully in memory, like a user's array
    if spec.get("limit"):
        arr = np.ascontiguousarray(arr[: spec["limit"]])
    return arr


def _drop(fn):
    """fn whose result is discarded at once (a floor must not keep every decoded image alive)."""

    def run(x):
        fn(x)

    return run


def _pool_map(fn, items, threads):
    with ThreadPoolExecutor(max_workers=threads) as ex:
        return list(ex.map(fn, items))


# ---------------------------------------------------------------- ours (images_to_zarr 0.4)
def op_i2z_files(spec):
    import images_to_zarr

    images_to_zarr.configure_logging(False)
    kw = dict(
        num_parallel_workers=spec["threads"],
        chunk_shape=tuple(spec["chunk"]),
        compressor="lz4",
        clevel=1,
        shard_images=spec["shard"],
        progress=False,
    )
    if spec.get("resize"):
        kw["resize"] = tuple(spec["resize"])
        kw["interpolation_order"] = spec.get("order", 1)
    if spec.get("append"):
        kw["append"] = True
    else:
        kw["overwrite"] = True
    t0 = _clock()
    images_to_zarr.convert(spec["out"], folders=[spec["folder"]], **kw)
    return {"seconds": _since(t0)}


def op_i2z_array(spec):
    import images_to_zarr

    images_to_zarr.configure_logging(False)
    arr = _load_array(spec)
    t0 = _clock()
    images_to_zarr.convert(
        spec["out"],
        images=arr,
        num_parallel_workers=spec["threads"],
        chunk_shape=tuple(spec["chunk"]),
        compressor="lz4",
        clevel=1,
        shard_images=spec["shard"],
        overwrite=True,
        progress=False,
    )
    return {"seconds": _since(t0)}


def op_i2z_read(spec):
    import numpy as np

    try:
        from images_to_zarr import open_store
    except ImportError:
        try:
            from images_to_zarr.reader import open_store
        except ImportError as e:
            raise NotImplementedError("open_store not in this build yet") from e
    idx = np.random.default_rng(spec["seed"]).integers(0, spec["n_store"], spec["n_reads"])
    s = open_store(spec["store"], threads=spec["threads"])
    checksum = 0
    t0 = _clock()
    for i in idx:
        checksum += int(np.asarray(s[int(i)]).reshape(-1)[0])
    return {"seconds": _since(t0), "checksum": checksum}


# ---------------------------------------------------------------- images_to_zarr 0.3.5 (PyPI)
def _i2z035():
    import images_to_zarr

    images_to_zarr.configure_logging(enable=False)
    try:  # loguru: silence everything, progress bars too
        from loguru import logger

        logger.remove()
    except Exception:
        pass
    return images_to_zarr


def op_i2z035_files(spec):
    i2z = _i2z035()
    kw = dict(num_parallel_workers=spec["threads"], chunk_shape=tuple(spec["chunk"]), compressor="lz4", clevel=1)
    if spec.get("resize"):
        kw["resize"] = tuple(spec["resize"])
        kw["interpolation_order"] = spec.get("order", 1)
    if spec.get("append"):
        kw["append"] = True
    else:
        kw["overwrite"] = True
    t0 = _clock()
    i2z.convert(spec["out"], folders=[spec["folder"]], **kw)
    return {"seconds": _since(t0)}


def op_i2z035_array(spec):
    i2z = _i2z035()
    arr = _load_array(spec)
    t0 = _clock()
    i2z.convert(
        spec["out"],
        images=arr,
        num_parallel_workers=spec["threads"],
        chunk_shape=tuple(spec["chunk"]),
        compressor="lz4",
        clevel=1,
        overwrite=True,
    )
    return {"seconds": _since(t0)}


# ---------------------------------------------------------------- zarr-python 3
def _zarr_threads(threads):
    import zarr

    zarr.config.set({"threading.max_workers": threads, "async.concurrency": max(threads * 4, 8)})
    return zarr


def _shuffle(itemsize: int) -> str:
    # What our "lz4" compressor writes (README): byte shuffle for every dtype (c-blosc skips it
    # for 1-byte types). Every peer gets the same codec configuration, so the shards hold the
    # same kind of bytes.
    return "shuffle"


def _zarr_codec(itemsize: int):
    import zarr

    return zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle=_shuffle(itemsize), typesize=itemsize)


def op_zarr_array(spec):
    zarr = _zarr_threads(spec["threads"])
    arr = _load_array(spec)
    n, c, h, w = arr.shape
    ch = spec["chunk"]
    t0 = _clock()
    z = zarr.create_array(
        store=spec["out"],
        name="images",
        shape=arr.shape,
        dtype=arr.dtype,
        chunks=(ch[0], c, min(ch[1], h), min(ch[2], w)),
        shards=(spec["shard"], c, h, w),
        compressors=[_zarr_codec(arr.dtype.itemsize), zarr.codecs.Crc32cCodec()],  # our default chain
        fill_value=0,
        overwrite=True,
        dimension_names=["image", "channel", "y", "x"],
    )
    z[:] = arr
    return {"seconds": _since(t0)}


def op_zarr_read(spec):
    import numpy as np

    zarr = _zarr_threads(spec["threads"])
    idx = np.random.default_rng(spec["seed"]).integers(0, spec["n_store"], spec["n_reads"])
    z = zarr.open_array(os.path.join(spec["store"], "images"), mode="r")
    checksum = 0
    t0 = _clock()
    for i in idx:
        checksum += int(z[int(i)].reshape(-1)[0])
    return {"seconds": _since(t0), "checksum": checksum}


def op_zarr_append(spec):
    zarr = _zarr_threads(spec["threads"])
    arr = _load_array(spec)
    t0 = _clock()
    z = zarr.open_array(os.path.join(spec["out"], "images"), mode="r+")
    z.append(arr, axis=0)
    return {"seconds": _since(t0), "shape": list(z.shape)}


# ---------------------------------------------------------------- tensorstore
def _ts_spec(path, threads, create=None):
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": path},
        "context": {
            "data_copy_concurrency": {"limit": threads},
            "file_io_concurrency": {"limit": max(threads, 2)},
            "cache_pool": {"total_bytes_limit": 0},
        },
    }
    if create:
        spec.update(create)
    return spec


def op_tensorstore_array(spec):
    import tensorstore as ts

    arr = _load_array(spec)
    n, c, h, w = arr.shape
    ch = spec["chunk"]
    inner = [ch[0], c, min(ch[1], h), min(ch[2], w)]
    meta = {
        "shape": list(arr.shape),
        "data_type": str(arr.dtype),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [spec["shard"], c, h, w]}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0,
        "dimension_names": ["image", "channel", "y", "x"],
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": inner,
                    "codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "blosc", "configuration": {"cname": "lz4", "clevel": 1, "shuffle": _shuffle(arr.dtype.itemsize),
                                                            "typesize": arr.dtype.itemsize, "blocksize": 0}},
                        {"name": "crc32c"},  # our default chain ends with a checksum
                    ],
                    "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }
        ],
    }
    t0 = _clock()
    store = ts.open(
        _ts_spec(os.path.join(spec["out"], "images"), spec["threads"], {"metadata": meta}),
        create=True,
        delete_existing=True,
    ).result()
    store.write(arr).result()
    return {"seconds": _since(t0)}


def op_tensorstore_read(spec):
    import numpy as np
    import tensorstore as ts

    idx = np.random.default_rng(spec["seed"]).integers(0, spec["n_store"], spec["n_reads"])
    store = ts.open(_ts_spec(os.path.join(spec["store"], "images"), spec["threads"]), open=True).result()
    checksum = 0
    t0 = _clock()
    for i in idx:
        checksum += int(store[int(i)].read().result().reshape(-1)[0])
    return {"seconds": _since(t0), "checksum": checksum}


# ---------------------------------------------------------------- acquire-zarr
def op_acquire_array(spec):
    import acquire_zarr as aqz
    import numpy as np

    arr = _load_array(spec)
    n, c, h, w = arr.shape
    ch = spec["chunk"]
    ih, iw = min(ch[1], h), min(ch[2], w)
    dtypes = {"uint8": aqz.DataType.UINT8, "uint16": aqz.DataType.UINT16, "float32": aqz.DataType.FLOAT32}
    dims = [
        aqz.Dimension(name="image", kind=aqz.DimensionType.TIME, array_size_px=n, chunk_size_px=ch[0],
                      shard_size_chunks=spec["shard"] // ch[0]),
        aqz.Dimension(name="channel", kind=aqz.DimensionType.CHANNEL, array_size_px=c, chunk_size_px=c,
                      shard_size_chunks=1),
        aqz.Dimension(name="y", kind=aqz.DimensionType.SPACE, array_size_px=h, chunk_size_px=ih,
                      shard_size_chunks=(h + ih - 1) // ih),
        aqz.Dimension(name="x", kind=aqz.DimensionType.SPACE, array_size_px=w, chunk_size_px=iw,
                      shard_size_chunks=(w + iw - 1) // iw),
    ]
    settings = aqz.StreamSettings(
        store_path=spec["out"],
        arrays=[
            aqz.ArraySettings(
                output_key="images",
                dimensions=dims,
                data_type=dtypes[str(arr.dtype)],
                compression=aqz.CompressionSettings(
                    compressor=aqz.Compressor.BLOSC1, codec=aqz.CompressionCodec.BLOSC_LZ4, level=1,
                    shuffle=1,  # BLOSC_SHUFFLE, as _shuffle() says for every dtype
                ),
            )
        ],
        max_threads=spec["threads"],
        overwrite=True,
    )
    t0 = _clock()
    stream = aqz.ZarrStream(settings)
    stream.append(np.ascontiguousarray(arr), key="images")
    stream.close()
    return {"seconds": _since(t0)}


# ---------------------------------------------------------------- floors
def _decode_floor(spec, decode):
    """Times `decode` over the spec's files on a `threads`-thread pool (results dropped)."""
    files = _files(spec)
    t0 = _clock()
    _pool_map(_drop(decode), files, spec["threads"])
    return {"seconds": _since(t0)}


def op_floor_decode(spec):
    from images_to_zarr import _core

    return _decode_floor(spec, _core.read_image)


def op_floor_libpng(spec):
    """libpng alone: our PNG decoder without its fast path (what floor_decode measured before)."""
    from images_to_zarr import _core

    return _decode_floor(spec, lambda p: _core.read_png(p, "libpng"))


def op_floor_pillow(spec):
    import numpy as np
    from PIL import Image

    def dec(p):
        with Image.open(p) as im:
            return np.asarray(im)

    return _decode_floor(spec, dec)


def op_floor_tifffile(spec):
    import tifffile

    return _decode_floor(spec, tifffile.imread)


def op_floor_astropy(spec):
    from astropy.io import fits

    return _decode_floor(spec, fits.getdata)


def op_floor_blosc(spec):
    """Compress-only: the store's inner chunks, pre-cut into contiguous buffers, through c-blosc
    (numcodecs; lz4, clevel 1, the same shuffle as ours; one blosc thread per call) on `threads`
    threads."""
    return _compress_chunks(_load_array(spec), spec)


def _compress_chunks(arr, spec):
    import numpy as np
    from numcodecs import Blosc, blosc

    blosc.use_threads = False  # contexts, like the engine; the pool supplies the parallelism
    n, c, h, w = arr.shape
    ch = spec["chunk"]
    ih, iw = min(ch[1], h), min(ch[2], w)
    chunks = []
    for i in range(0, n, ch[0]):
        for y in range(0, h, ih):
            for x in range(0, w, iw):
                chunks.append(np.ascontiguousarray(arr[i : i + ch[0], :, y : y + ih, x : x + iw]))
    del arr
    shuffle = {"shuffle": Blosc.SHUFFLE, "bitshuffle": Blosc.BITSHUFFLE}[_shuffle(chunks[0].dtype.itemsize)]
    codec = Blosc(cname="lz4", clevel=1, shuffle=shuffle, blocksize=0)
    t0 = _clock()
    sizes = _pool_map(lambda buf: len(codec.encode(buf)), chunks, spec["threads"])
    return {"seconds": _since(t0), "compressed_bytes": sum(sizes)}


def op_floor_compress_files(spec):
    """Compress-only floor of a file workload: the images decoded beforehand (untimed, by our
    decoders, laid out CHW like the store), then their inner chunks through c-blosc as in
    op_floor_blosc."""
    import numpy as np
    from images_to_zarr import _core

    imgs = []
    for p in _files(spec):
        a, info = _core.read_image(p)
        a = np.asarray(a)
        if a.ndim == 2:
            a = a[None]
        elif info["layout"] == "HWC":
            a = a.transpose(2, 0, 1)
        imgs.append(np.ascontiguousarray(a))
    arr = np.stack(imgs)
    del imgs
    return _compress_chunks(arr, spec)


def op_baseline(spec):
    """Peak RSS of the interpreter with the tool imported and nothing done (context for RSS)."""
    for m in spec["modules"]:
        __import__(m)
    return {"seconds": 0.0}


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        res = globals()["op_" + spec["op"]](spec)
        if _CPU:
            res["cpu_s"] = _CPU[-1]
    except BaseException as e:  # reported as "n/a (reason)", never a figure
        tb = traceback.format_exc().strip().splitlines()
        res = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200], "trace": tb[-6:]}
    sys.stdout.write("\n@@RESULT@@" + json.dumps(res) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
