"""TensorBoard event files of a run (TENSORBOARD.ENABLE), written on the main process.

What is written, tag by tag:
- every numeric value of every `json_stats` line as `<_type>/<name>`: `train_iter/loss`, `train_iter/lr`,
  `train_iter/dt`, ... at the number of training clips seen (over all processes: epoch x clips per epoch + the
  clips of the epoch trained so far, `datasets.clip_position`; not PySlowFast's iteration count, which multigrid's
  long cycle and a resume at another batch size would send backwards), `train_epoch/*` and `val_epoch/map` at the
  1-based epoch, `test/map` at the epochs of the tested checkpoint;
  `gpu_mem` ("1.23G" in the JSON) as GiB;
- at every evaluation (validation and the final test): `<split>/AP/<class name>` for each class, `<split>/mAP` and,
  for AVA, `<split>/mAP/<label type>`, plus two figures: `<split>/per_class_ap` (bars, as `per_class_ap.png`) and
  `<split>/pr_curves` (precision-recall curve of each class).

The tensorboard package is optional: `TensorboardWriter` raises a one-line ConfigError naming TENSORBOARD.ENABLE when
it is missing, before any training happens.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

from slowfast_bmvit.config import ConfigError

from .ap_plots import per_class_ap_figure, pr_curves_figure

_GIGABYTES = re.compile(r"^(\d+(?:\.\d*)?)G$")


def tensorboard_log_dir(cfg) -> str:
    """TENSORBOARD.LOG_DIR inside OUTPUT_DIR (an absolute path stays as it is); "" gives OUTPUT_DIR/runs-<dataset>."""
    name = cfg.TENSORBOARD.LOG_DIR or f"runs-{cfg.TRAIN.DATASET}"
    return os.path.join(cfg.OUTPUT_DIR, name)


def _scalar(value: Any) -> float | None:
    """The number a json_stats value stands for, or None for text (epoch "1/10", eta "0:01:02")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return float(value.item())
    if isinstance(value, str):
        match = _GIGABYTES.match(value)
        return float(match.group(1)) if match else None
    try:  # decimal.Decimal and other numbers
        return float(value)
    except (TypeError, ValueError):
        return None


class TensorboardWriter:
    """A SummaryWriter that knows the package's stats and evaluation results.

    Args:
        log_dir: the event file folder (see `tensorboard_log_dir`).
    Raises:
        ConfigError: the tensorboard package is not installed.
    """

    def __init__(self, log_dir: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("TENSORBOARD.ENABLE: the tensorboard package is not installed "
                              "(pip install tensorboard, or set TENSORBOARD.ENABLE False)") from None
        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=log_dir)

    def add_stats(self, stats: Mapping[str, Any], step: int) -> None:
        """The numeric values of one json_stats dict, tagged `<stats["_type"]>/<name>`."""
        kind = stats.get("_type", "stats")
        for name, value in stats.items():
            number = _scalar(value) if name != "_type" else None
            if number is not None:
                self.writer.add_scalar(f"{kind}/{name}", number, step)

    def add_evaluation(self, split: str, result: Mapping[str, Any], step: int) -> None:
        """Per-class AP, mAP, group mAPs and the AP figures of one evaluation result (an evaluator's dict)."""
        per_class = {name: float(ap) for name, ap in result.get("per_class", {}).items()}
        for name, ap in per_class.items():
            if math.isfinite(ap):
                self.writer.add_scalar(f"{split}/AP/{name}", ap, step)
        self.writer.add_scalar(f"{split}/mAP", float(result["mAP"]), step)
        for group, value in result.get("groups", {}).items():
            self.writer.add_scalar(f"{split}/mAP/{group}", float(value), step)
        finite = {name: ap for name, ap in per_class.items() if math.isfinite(ap)}
        if finite:
            title = f"{split}: mAP {float(result['mAP']):.4f}"
            self.writer.add_figure(f"{split}/per_class_ap", per_class_ap_figure(finite, title=title), step)
        curves = result.get("curves")
        if curves:
            self.writer.add_figure(f"{split}/pr_curves", pr_curves_figure(curves, title=split), step)
        self.writer.flush()

    def flush(self) -> None:
        """Write pending events to disk (the writer also flushes by itself every two minutes)."""
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(cfg, is_master: bool) -> TensorboardWriter | None:
    """The run's writer on the main process when TENSORBOARD.ENABLE, else None."""
    if not cfg.TENSORBOARD.ENABLE or not is_master:
        return None
    return TensorboardWriter(tensorboard_log_dir(cfg))
