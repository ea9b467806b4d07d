"""Scale-out on Dask: the client probes (on the workers) and plans, tasks write disjoint shard
ranges with the C++ engine and return their shards' records, which the client streams into the
side-car in shard order (one task result in memory at a time), then commits.

Shards are committed by rename (each task writes whole shard objects), so a task that dies or is
retried never leaves a visible partial shard, and the output is byte-identical to a local run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from images_to_zarr import _core
from images_to_zarr._logging import logger


def connect(scheduler: Any) -> Any:
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler
    if isinstance(scheduler, str):
        return Client(scheduler)
    raise ValueError(f"scheduler must be a dask.distributed.Client or an address like tcp://host:8786, got {scheduler!r}")


def _probe_task(files: list[str], options: dict[str, Any]) -> str:
    return _core.probe_files(files, options)


def _write_task(plan: str, files: list[str], first: int, end: int) -> dict[str, Any]:
    return _core.write_shards(plan, files, first, end, 1)


def _batches(n: int, parts: int) -> list[tuple[int, int]]:
    size = max(1, math.ceil(n / max(1, parts)))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _workers(client: Any) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def plan(conversion: Any, files: list[str], client: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Probes the headers in Dask tasks and plans the conversion on the client."""
    probe_opts = {k: options[k] for k in ("fits_extension", "max_pixels") if k in options}
    probe_opts["num_workers"] = 1
    futures = [client.submit(_probe_task, files[a:b], probe_opts, pure=False, retries=3)
               for a, b in _batches(len(files), 4 * _workers(client))]
    return conversion.plan(client.gather(futures))


def write(conversion: Any, plan: dict[str, Any], files: list[str], client: Any, progress: bool,
          sidecar: Any, warn: Callable[[str], None] = logger.warning) -> dict[str, Any]:
    """Writes the remaining shards in Dask tasks and streams every shard's records to ``sidecar``
    in shard order (the saved ones of a resumed run first); ``warn`` gets the per-image warnings."""
    S, start, total = plan["shard_images"], plan["start_index"], plan["total_images"]
    for s in range(start // S, plan["first_shard"]):
        sidecar.write(max(s * S, start), conversion.saved_records(s))
    shards = plan["end_shard"] - plan["first_shard"]
    n_workers = _workers(client)
    # Contiguous shard ranges, a few per worker, so the first shard's append carry stays in one task.
    tasks = []
    for a, b in _batches(shards, 4 * n_workers):
        first, end = plan["first_shard"] + a, plan["first_shard"] + b
        lo, hi = max(first * S, start) - start, min(end * S, total) - start
        tasks.append(client.submit(_write_task, plan["plan"], files[lo:hi], first, end, pure=False, retries=3))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="shard tasks", unit="task", leave=False)
    try:
        # In task order; results of tasks that finish early wait on their workers, not here.
        tasks.reverse()
        while tasks:
            result = tasks.pop().result()  # dropping the future lets Dask forget the result
            for w in result["warnings"]:
                warn(w)
            for first_index, columns in result["shards"]:
                sidecar.write(first_index, columns)
            del result
            if bar is not None:
                bar.update(1)
    except BaseException:
        client.cancel(tasks)  # no task may write into the work store once the caller aborts it
        raise
    finally:
        if bar is not None:
            bar.close()
    conversion.finish()
    array = json.loads(plan["plan"])["array"]
    return {"start_index": start, "warnings": plan["warnings"], "failed": sidecar.failed,
            "shape": array["shape"], "dtype": array["data_type"]}
