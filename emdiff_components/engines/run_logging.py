"""Every bundle run writes a log file beside its outputs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["log_to_file"]


def log_to_file(path: str | os.PathLike, level: int = logging.INFO) -> str:
    """Add a file handler for ``path`` to the root logger (once per path) and return the path.

    ``monai.bundle run`` configures console logging from ``configs/logging.conf``; this adds the file a person can read
    after the run (engine statistics, metrics, written files).
    """
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(level)
        root.addHandler(handler)
        root.setLevel(min(root.level, level) if root.level else level)
    return str(path)
