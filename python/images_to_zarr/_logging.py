"""The ``images_to_zarr`` logger and its switch.

Its lines are written with ``tqdm.write``, so they appear above a running progress bar instead
of on its line.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("images_to_zarr")
_handler: logging.Handler | None = None


class _BarSafeHandler(logging.Handler):
    """Writes to stderr (looked up at each line, as pytest and redirections replace it) through
    ``tqdm.write``, which clears the bars on the same stream, prints and redraws them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()  # as StreamHandler does: in order with what goes to stdout
        except Exception:  # noqa: BLE001 - logging must never raise into the conversion
            self.handleError(record)


def configure_logging(enable: bool = True, level: str | int = "INFO") -> None:
    """Send the package's log lines to stderr at ``level`` (``enable=False`` silences them)."""
    global _handler
    if _handler is not None:
        logger.removeHandler(_handler)
        _handler = None
    if not enable:
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
        return
    _handler = _BarSafeHandler()
    _handler.setFormatter(logging.Formatter("%(levelname)s images_to_zarr: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    logger.propagate = False
