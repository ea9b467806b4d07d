"""The ``images_to_zarr`` logger and its switch."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("images_to_zarr")
_handler: logging.Handler | None = None


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
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(levelname)s images_to_zarr: %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    logger.propagate = False
