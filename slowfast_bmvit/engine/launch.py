"""One job of tools/run_net.py: training then testing, each launched over the configured processes."""

from __future__ import annotations

import os

from . import distributed as du
from .tester import test
from .trainer import train


def run_job(cfg, init_method: str) -> None:
    """TRAIN.ENABLE trains (validating every TRAIN.EVAL_PERIOD epochs); TEST.ENABLE then tests."""
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    if cfg.TRAIN.ENABLE:
        du.launch_job(cfg, init_method, train)
    if cfg.TEST.ENABLE:
        du.launch_job(cfg, init_method, test)
