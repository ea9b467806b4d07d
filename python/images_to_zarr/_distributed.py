"""Scale-out on Dask: the client probes (on the workers) and plans, tasks write disjoint shard
ranges with the C++ engine, the client gathers the records and commits.

Shards are committed by rename (each task writes whole shard objects), so a task that dies or is
retried never leaves a visible partial shard, and the output is byte-identical to a local run.
"""

from __future__ import annotations

import json
import math
from typing import Any

from images_to_zarr import _core
from images_to_zarr._logging import logger


def _client(scheduler: Any) -> Any:
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


def run_distributed(conversion: Any, files: list[str], scheduler: Any, options: dict[str, Any],
                    progress: bool) -> dict[str, Any]:
    client = _client(scheduler)
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    probe_opts = {k: options[k] for k in ("fits_extension", "max_pixels") if k in options}
    probe_opts["num_workers"] = 1
    futures = [client.submit(_probe_task, files[a:b], probe_opts, pure=False, retries=3)
               for a, b in _batches(len(files), 4 * n_workers)]
    plan = conversion.plan(client.gather(futures))
    S, start, total = plan["shard_images"], plan["start_index"], plan["total_images"]
    shards = plan["end_shard"] - plan["first_shard"]
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
    from distributed import as_completed

    for _ in as_completed(tasks):
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    results = client.gather(tasks)
    records: dict[str, list[Any]] = {k: list(v) for k, v in plan["done_records"].items()}
    for r in results:
        for w in r["warnings"]:
            logger.warning(w)
        for k, v in r["records"].items():
            records[k].extend(v)
    conversion.finish()
    failed = sum(e is not None for e in records["error"])
    array = json.loads(plan["plan"])["array"]
    return {"records": records, "start_index": start, "warnings": plan["warnings"], "failed": failed,
            "shape": array["shape"], "dtype": array["data_type"]}
