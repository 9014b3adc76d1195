"""Logging set-up: stdout plus OUTPUT_DIR/stdout.log on the main process, quiet elsewhere."""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "[%(asctime)s][%(levelname)s] %(name)s:%(lineno)d: %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"


def setup_logging(output_dir: str | None = None, is_master: bool = True, level: int = logging.INFO) -> None:
    """Configure the root logger once per process.

    The main process logs to stdout and, when `output_dir` is given, appends to `output_dir/stdout.log`;
    other ranks log warnings and errors only, so multi-process runs print one stream.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_slowfast_bmvit", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level if is_master else logging.WARNING)
    formatter = logging.Formatter(_FORMAT, datefmt=_DATE_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if is_master and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(logging.FileHandler(os.path.join(output_dir, "stdout.log"), mode="a"))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._slowfast_bmvit = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def get_logger(name: str) -> logging.Logger:
    """The package's loggers are plain `logging` loggers; this is a convenience alias."""
    return logging.getLogger(name)
