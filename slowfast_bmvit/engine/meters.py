"""Training meters and PySlowFast-style `json_stats` lines.

`log_json_stats(stats)` logs one line `json_stats: {...}` (keys sorted, floats to 6 significant digits), which
PySlowFast users grep and parse, and appends the same JSON to OUTPUT_DIR/json_stats.log on the main process.
`TrainMeter` collects per-iteration losses, learning rate and timings and emits a "train_iter" line every
LOG_PERIOD iterations and a "train_epoch" line per epoch; given a TensorBoard writer (TENSORBOARD.ENABLE), it writes
the same numbers there: "train_iter" at the number of training clips seen (the clip position, see `TrainMeter`),
"train_epoch" at the 1-based epoch. The values are whatever the detection task returns for a step
(engine/task.py): for BMViT the weighted loss terms and "loss", each term unweighted ("loss_bbox_unscaled", ...),
and the criterion's detection health counts: "tokens_above_thresh" (tokens per clip with p(actor) above
BMVIT.ACTOR_THRESH), "actors_per_clip" and "cardinality_error" (the mean absolute difference of the two per clip;
DETR's name).

Timings are wall-clock seconds: dt_data is the wait for the batch, dt_net the rest of the iteration (forward,
backward, step), dt their sum. On the GPU, dt_net includes the device time only where the step synchronises
(e.g. `loss.item()`), as upstream.
"""

from __future__ import annotations

import datetime
import decimal
import logging
import math
import os
import time
from collections import deque
from typing import Any, Mapping

import numpy as np
import simplejson
import torch

from .distributed import is_master_proc

logger = logging.getLogger(__name__)

# Name of the file (inside OUTPUT_DIR) that collects every json_stats line.
JSON_STATS_FILE = "json_stats.log"
_SIGNIFICANT_DIGITS = 6


def _jsonable(value: Any) -> Any:
    """Numbers as JSON-ready values: finite floats become Decimals with 6 significant digits (so 1.5e-05 stays
    readable where upstream's 3 decimals print 0.000); tensors and numpy scalars become Python numbers."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value):
        return decimal.Decimal(f"{value:.{_SIGNIFICANT_DIGITS}g}")
    return value


def format_json_stats(stats: Mapping[str, Any]) -> str:
    """The JSON text of `stats`: keys sorted, floats rounded (see `_jsonable`). A NaN / infinite value (a diverged
    loss) is written as NaN / Infinity, which Python's json reads, rather than failing the training step."""
    stats = {k: _jsonable(v) for k, v in stats.items()}
    return simplejson.dumps(stats, sort_keys=True, use_decimal=True, allow_nan=True)


def log_json_stats(stats: Mapping[str, Any], output_dir: str | None = None) -> str:
    """Log `json_stats: <json>` and, on the main process with `output_dir`, append <json> to
    output_dir/json_stats.log. Returns the JSON text."""
    text = format_json_stats(stats)
    logger.info("json_stats: %s", text)
    if output_dir and is_master_proc():
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, JSON_STATS_FILE), "a") as handle:
            handle.write(text + "\n")
    return text


class ScalarMeter:
    """A scalar series: median / mean over the last `window_size` values and a weighted global mean."""

    def __init__(self, window_size: int):
        self.window: deque[float] = deque(maxlen=max(1, window_size))
        self.total = 0.0
        self.count = 0

    def reset(self) -> None:
        self.window.clear()
        self.total = 0.0
        self.count = 0

    def add_value(self, value: float, weight: int = 1) -> None:
        """Add `value`, counted `weight` times in the global mean (e.g. a batch-mean loss with the batch size)."""
        self.window.append(float(value))
        self.total += float(value) * weight
        self.count += weight

    def get_win_median(self) -> float:
        return float(np.median(self.window)) if self.window else float("nan")

    def get_win_avg(self) -> float:
        return float(np.mean(self.window)) if self.window else float("nan")

    def get_global_avg(self) -> float:
        return self.total / self.count if self.count else float("nan")


def gpu_mem_usage_gb() -> float | None:
    """Peak GPU memory allocated by this process, in GiB; None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 1024**3


def _format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds))) if math.isfinite(seconds) else "unknown"


class TrainMeter:
    """Training statistics of one epoch at a time.

    Per iteration, the trainer calls:
        meter.iter_tic()                 # before fetching the batch
        meter.data_toc()                 # batch in hand
        ... forward / backward / step ...
        meter.iter_toc()
        meter.update_stats({"loss": total, "loss_bbox": ..., "cardinality_error": ...}, lr, batch_size,
                           grad_norm=None)
        meter.log_iter_stats(cur_epoch, cur_iter)      # logs every LOG_PERIOD iterations
    after `meter.start_epoch(first_clip)` at the start of each epoch, and after the epoch
    `meter.log_epoch_stats(cur_epoch)` then `meter.reset()`.
    Losses are whatever the trainer passes (already averaged over processes if it wants global numbers);
    "loss" is the conventional total.

    Args:
        epoch_iters: iterations per epoch (len(train_loader)).
        cfg: reads SOLVER.MAX_EPOCH, LOG_PERIOD, OUTPUT_DIR and NUM_GPUS.
        writer: a `visualization.tensorboard.TensorboardWriter` (or None): "train_iter" stats at the clips seen,
            first_clip + the clips of the iterations since (the batch sizes given to `update_stats`), "train_epoch"
            stats at the 1-based epoch. Clips, not iterations: multigrid's long cycle changes the iterations per
            epoch, and a mid-epoch resume may change the batch size, but the clip position only grows, and a resumed
            run puts its points where the uninterrupted run would.
    """

    def __init__(self, epoch_iters: int, cfg, writer=None):
        self.epoch_iters = epoch_iters
        self.max_epoch = cfg.SOLVER.MAX_EPOCH
        self.log_period = max(1, cfg.LOG_PERIOD)
        self.output_dir = cfg.OUTPUT_DIR
        self.on_gpu = cfg.NUM_GPUS > 0
        self.writer = writer
        self.losses: dict[str, ScalarMeter] = {}
        self.iter_time = ScalarMeter(self.log_period)
        self.data_time = ScalarMeter(self.log_period)
        self.net_time = ScalarMeter(self.log_period)
        self.grad_norm = ScalarMeter(self.log_period)
        self.lr: float | None = None
        self.num_samples = 0
        self.first_clip: int | None = None
        self._tic = self._data_done = None

    def reset(self) -> None:
        """Clear everything for a new epoch."""
        for meter in (*self.losses.values(), self.iter_time, self.data_time, self.net_time, self.grad_norm):
            meter.reset()
        self.losses = {}
        self.lr = None
        self.num_samples = 0
        self.first_clip = None

    def start_epoch(self, first_clip: int) -> None:
        """The clip position of the epoch's first iteration (`datasets.clip_position`: clips of all processes before
        it, over the whole run); the TensorBoard step counts on from it."""
        self.first_clip = first_clip

    def iter_tic(self) -> None:
        """Start of an iteration (before the data loader is asked for the batch)."""
        self._tic = time.perf_counter()
        self._data_done = None

    def data_toc(self) -> None:
        """The batch has arrived."""
        self._data_done = time.perf_counter()

    def iter_toc(self) -> None:
        """End of the iteration (after the optimizer step)."""
        if self._tic is None:
            raise RuntimeError("TrainMeter.iter_toc() called without iter_tic()")
        end = time.perf_counter()
        data_done = self._data_done if self._data_done is not None else self._tic
        self.iter_time.add_value(end - self._tic)
        self.data_time.add_value(data_done - self._tic)
        self.net_time.add_value(end - data_done)
        self._tic = None

    def update_stats(
        self,
        losses: Mapping[str, float | torch.Tensor],
        lr: float,
        batch_size: int,
        grad_norm: float | torch.Tensor | None = None,
    ) -> None:
        """Record one iteration's loss components (scalars), learning rate, clips in the batch and, optionally,
        the gradient norm."""
        for name, value in losses.items():
            value = value.item() if isinstance(value, torch.Tensor) else float(value)
            self.losses.setdefault(name, ScalarMeter(self.log_period)).add_value(value, batch_size)
        if grad_norm is not None:
            self.grad_norm.add_value(grad_norm.item() if isinstance(grad_norm, torch.Tensor) else grad_norm)
        self.lr = lr
        self.num_samples += batch_size

    def _common_stats(self, whole_epoch: bool) -> dict[str, Any]:
        stats: dict[str, Any] = {"lr": self.lr}
        if self.grad_norm.count:
            stats["grad_norm"] = self.grad_norm.get_global_avg() if whole_epoch else self.grad_norm.get_win_median()
        memory = gpu_mem_usage_gb() if self.on_gpu else None
        if memory is not None:
            stats["gpu_mem"] = f"{memory:.2f}G"
        return stats

    def log_iter_stats(self, cur_epoch: int, cur_iter: int) -> dict[str, Any] | None:
        """Log a "train_iter" line when (cur_iter + 1) is a multiple of LOG_PERIOD (0-based epoch and iter);
        returns the stats logged, else None. Loss values are medians over the last LOG_PERIOD iterations."""
        if (cur_iter + 1) % self.log_period:
            return None
        done = cur_epoch * self.epoch_iters + cur_iter + 1
        remaining = self.max_epoch * self.epoch_iters - done
        stats: dict[str, Any] = {
            "_type": "train_iter",
            "epoch": f"{cur_epoch + 1}/{self.max_epoch}",
            "iter": f"{cur_iter + 1}/{self.epoch_iters}",
            "dt": self.iter_time.get_win_median(),
            "dt_data": self.data_time.get_win_median(),
            "dt_net": self.net_time.get_win_median(),
            "eta": _format_eta(self.iter_time.get_win_median() * remaining),
            **{name: meter.get_win_median() for name, meter in self.losses.items()},
            **self._common_stats(whole_epoch=False),
        }
        log_json_stats(stats, self.output_dir)
        if self.writer is not None:
            if self.first_clip is None:
                raise RuntimeError("TrainMeter.start_epoch(first_clip) must be called before the epoch's iterations "
                                   "when a TensorBoard writer is given")
            self.writer.add_stats(stats, self.first_clip + self.num_samples)
        return stats

    def log_epoch_stats(self, cur_epoch: int) -> dict[str, Any]:
        """Log the "train_epoch" line of 0-based epoch `cur_epoch`: losses averaged over every sample of the
        epoch, mean timings; returns the stats logged."""
        mean_iter = self.iter_time.get_global_avg()
        remaining = (self.max_epoch - cur_epoch - 1) * self.epoch_iters
        stats: dict[str, Any] = {
            "_type": "train_epoch",
            "epoch": f"{cur_epoch + 1}/{self.max_epoch}",
            "dt": mean_iter,
            "dt_data": self.data_time.get_global_avg(),
            "dt_net": self.net_time.get_global_avg(),
            "eta": _format_eta(mean_iter * remaining),
            **{name: meter.get_global_avg() for name, meter in self.losses.items()},
            **self._common_stats(whole_epoch=True),
        }
        log_json_stats(stats, self.output_dir)
        if self.writer is not None:
            self.writer.add_stats(stats, cur_epoch + 1)
            self.writer.flush()
        return stats
