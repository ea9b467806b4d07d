"""What a running conversion shows: the progress bar, the per-image warnings (the first
``WARNINGS_SHOWN``, then one summary line) and the ``max_failures`` limit."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from typing import Any

import numpy as np

from images_to_zarr._logging import logger

WARNINGS_SHOWN = 10


class TooManyFailuresError(RuntimeError):
    """More images failed than ``max_failures`` allows; the conversion was aborted, nothing committed."""


def failure_limit(max_failures: int | str | None) -> tuple[int | None, float | None]:
    """``None`` (no limit), a count ``N >= 0`` or a percentage ``"P%"`` -> (count, percent)."""
    if max_failures is None:
        return None, None
    count, percent = -1, -1.0
    with contextlib.suppress(TypeError, ValueError):
        if isinstance(max_failures, str) and max_failures.strip().endswith("%"):
            percent = float(max_failures.strip()[:-1])
        elif not isinstance(max_failures, (bool, float)):
            count = int(max_failures)
    if count >= 0:
        return count, None
    if 0.0 <= percent <= 100.0:
        return None, percent
    raise ValueError(f"max_failures must be a count >= 0 or a percentage 'P%' with 0 <= P <= 100, got {max_failures!r}")


class Monitor:
    """Progress callback of one conversion (``callback``) plus the checks of its final result."""

    def __init__(self, progress: bool, desc: str, max_failures: int | str | None, sidecar_name: str) -> None:
        self.progress, self.desc, self.sidecar_name = progress, desc, sidecar_name
        self.spec = max_failures
        self.count, self.percent = failure_limit(max_failures)
        self.warnings = 0
        self.first_warning: str | None = None
        self.bar: Any = None
        self._redirect: contextlib.ExitStack | None = None

    def warn(self, message: str) -> None:
        """One image's warning: logged while fewer than ``WARNINGS_SHOWN`` were, else counted."""
        self.warnings += 1
        if self.first_warning is None:
            self.first_warning = message
        if self.warnings <= WARNINGS_SHOWN:
            logger.warning(message)

    def check(self, failed: int, total: int) -> None:
        """Raises ``TooManyFailuresError`` once ``failed`` of ``total`` images exceed the limit."""
        limit = self.count if self.percent is None else math.floor(self.percent * total / 100.0)
        if limit is None or failed <= limit:
            return
        first = f" (first: {self.first_warning})" if self.first_warning else ""
        raise TooManyFailuresError(f"{failed} of {total} images failed, more than max_failures={self.spec} "
                                   f"allows; aborted, nothing was committed{first}")

    def callback(self, done: int, total: int, failed: int, warnings: list[str]) -> None:
        if self.progress:
            self._draw(done, total, failed)
        for w in warnings:  # above the bar (the log handler writes through tqdm)
            self.warn(w)
        self.check(failed, total)

    def _draw(self, done: int, total: int, failed: int) -> None:
        if self.bar is None:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # While the bar runs, the root logger's console handlers write through it (with none,
            # one through the bar stands in for Python's last-resort handler, which would write
            # on the bar's line).
            self._redirect = contextlib.ExitStack()
            self._redirect.enter_context(logging_redirect_tqdm(loggers=[logging.root]))
            self.bar = tqdm(total=total, desc=self.desc, unit="img", dynamic_ncols=True, leave=False)
        self.bar.update(done - self.bar.n)
        if failed:
            self.bar.set_postfix(failed=failed, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None
        hidden = self.warnings - WARNINGS_SHOWN
        if hidden > 0:
            logger.warning(f"{hidden:,} more failed-image warnings not shown; every failure is in the "
                           f"'error' column of {self.sidecar_name}")
            self.warnings = WARNINGS_SHOWN  # summarised once


def _rate(count: float, seconds: float, unit: str) -> str:
    return f"{count / seconds:,.1f} {unit}/s" if seconds > 0 else f"- {unit}/s"


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


class StageLog:
    """DEBUG lines for each stage of a conversion (discover, probe + plan, write, commit) with
    counts, bytes and rates, so a slow run can be understood without a profiler."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.plan: dict[str, Any] = {}
        self.images = 0
        self.shards = range(0)

    def _lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.t = now - self.t, now
        return elapsed

    @staticmethod
    def discovered(files: int, folders: list[str], seconds: float) -> None:
        logger.debug(f"discover: {files:,} files in {seconds:.3f} s ({_rate(files, seconds, 'files')}) "
                     f"from {len(folders)} input(s)")

    def planned(self, plan: dict[str, Any]) -> None:
        seconds = self._lap()
        self.plan = json.loads(plan["plan"]) if isinstance(plan.get("plan"), str) else {}
        self.images = int(plan["total_images"]) - int(plan["start_index"])
        self.shards = range(int(plan["first_shard"]), int(plan["end_shard"]))
        array = self.plan.get("array", {})
        shape = array.get("shape", [])
        logger.debug(f"probe + plan: {self.images:,} new images in {seconds:.3f} s "
                     f"({_rate(self.images, seconds, 'headers')}); array {tuple(shape)} {array.get('data_type')}, "
                     f"shards {plan['first_shard']}..{plan['end_shard'] - 1} of {plan['shard_images']} images "
                     f"to write, starting at image {plan['start_index']:,}")

    def written(self, result: dict[str, Any]) -> None:
        seconds = self._lap()
        if not logger.isEnabledFor(logging.DEBUG):
            return
        shape = result["shape"]
        raw = self.images * int(np.prod(shape[1:])) * np.dtype(result["dtype"]).itemsize
        stored = self._stored_bytes()
        ratio = f", stored {_mib(stored)} (ratio {raw / stored:.2f})" if stored else ""
        logger.debug(f"write: {self.images:,} images ({result['failed']:,} failed), {_mib(raw)} raw{ratio} "
                     f"in {seconds:.3f} s ({_rate(self.images, seconds, 'img')}, "
                     f"{_rate(raw / 2**20, seconds, 'MiB')})")

    def committed(self, store: Any) -> None:
        logger.debug(f"commit: side-car and zarr.json of {store} in {self._lap():.3f} s")

    def _stored_bytes(self) -> int:
        """Bytes of the shards this run wrote (a local store; ``0`` when unknown)."""
        work = self.plan.get("work")
        if not work or "://" in str(work):
            return 0
        shards = os.path.join(work, "images", "c")
        total = 0
        for s in self.shards:
            for folder, _, names in os.walk(os.path.join(shards, str(s))):
                total += sum(os.path.getsize(os.path.join(folder, n)) for n in names)
        return total
