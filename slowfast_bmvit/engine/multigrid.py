"""Multigrid training schedule (Wu et al., "A Multigrid Method for Efficiently Training Video Models", CVPR 2020),
with PySlowFast's numbers.

Long cycle: training cycles through (T, S) shapes MULTIGRID.LONG_CYCLE_FACTORS x (DATA.NUM_FRAMES,
DATA.TRAIN_CROP_SIZE) inside every LR stage of SOLVER.STEPS, with the batch scaled so that B x T x S^2 stays
constant; the epochs of each shape are chosen so that every shape gets the same number of iterations, and the whole
schedule (plus a fine-tuning stage at the full shape) is stretched to SOLVER.MAX_EPOCH x MULTIGRID.EPOCH_FACTOR.
Short cycle: iterations cycle through crops MULTIGRID.SHORT_CYCLE_FACTORS x the default crop, then the current crop,
with the batch scaled by (crop ratio)^2.

What is wired where:
- `MultigridSchedule.init(cfg)` rewrites SOLVER.STEPS / LRS / MAX_EPOCH (as upstream) and records the default
  batch/frames/crop in MULTIGRID.DEFAULT_B/T/S; `update_long_cycle(cfg, epoch)` sets TRAIN.BATCH_SIZE,
  DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE and MULTIGRID.LONG_CYCLE_SAMPLING_RATE for the epoch. When it reports a
  change, the trainer rebuilds the train loader (the model and optimizer carry on); the keyframe datasets read
  MULTIGRID.LONG_CYCLE_SAMPLING_RATE (when > 0) instead of DATA.SAMPLING_RATE so the clip keeps its temporal span.
- Short cycle (datasets/short_cycle.py): under MULTIGRID.SHORT_CYCLE `construct_loader` builds the train loader
  from `ShortCycleBatchSampler` (batches of (index, cycle position) keys) and `ShortCycleDataset` (each clip
  resized to its position's crop; boxes are fractions of the clip, so they stay valid). The LR is not changed
  within the cycle, as upstream.
- Upstream's BatchNorm adjustments (BN.NORM_TYPE / NUM_SPLITS / NUM_SYNC_DEVICES) are not made: the transformer
  models here have no BatchNorm.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.datasets.short_cycle import (  # noqa: F401  (re-exported: upstream code imports them here)
    ShortCycleBatchSampler,
    ShortCycleDataset,
    resize_clip,
    short_cycle_batch_factors,
    short_cycle_crop_sizes,
)

logger = logging.getLogger(__name__)


class LongCycleStage(NamedTuple):
    """One stage of the long-cycle schedule (a tuple, so `stage[-1]` is the end epoch as in upstream code).

    lr_stage: index of the SOLVER.STEPS stage it belongs to (the last index is the fine-tuning stage).
    shape: (batch factor relative to MULTIGRID.DEFAULT_B, frames T, crop size S in pixels).
    end_epoch: the stage covers epochs [previous stage's end_epoch, end_epoch).
    """

    lr_stage: int
    shape: tuple[int, int, int]
    end_epoch: int


def _batch_factor(default_size: float, frames: float, crop: float) -> int:
    """Batch multiplier keeping B x T x S^2 at the default shape's value."""
    return int(round(default_size / (frames * crop * crop)))


def compute_long_cycle_schedule(cfg) -> list[LongCycleStage]:
    """The long-cycle schedule for the config's (not yet rewritten) SOLVER.STEPS, MAX_EPOCH and MULTIGRID keys.

    SOLVER.STEPS starts with 0; its stages [STEPS[i], STEPS[i+1]) are split among the long-cycle shapes in
    proportion to their (average, over the short cycle) batch factor, so that each shape gets the same number of
    iterations. The stage after STEPS[-1] up to MAX_EPOCH is a fine-tuning stage at the last long-cycle shape
    (normally the full one), shortened by the same iteration saving. Finally all stage lengths are stretched so
    the total is MAX_EPOCH x EPOCH_FACTOR, and end epochs are rounded to integers.
    """
    steps = list(cfg.SOLVER.STEPS)
    if len(steps) < 2 or steps[0] != 0 or steps[-1] > cfg.SOLVER.MAX_EPOCH:
        raise ConfigError(
            f"SOLVER.STEPS: the multigrid long cycle needs [0, ..., last] with last <= SOLVER.MAX_EPOCH; got {steps}"
        )
    frames, crop = cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE
    default_crop = cfg.MULTIGRID.DEFAULT_S or crop
    default_size = float(frames * crop * crop)

    cycle_shapes: list[tuple[int, int, int]] = []  # the base (B factor, T, S) of each long-cycle shape
    mean_batch_factors: list[float] = []
    for t_factor, s_factor in cfg.MULTIGRID.LONG_CYCLE_FACTORS:
        base_t = int(round(frames * t_factor))
        base_s = int(round(crop * s_factor))
        sizes = [(base_t, base_s)]
        if cfg.MULTIGRID.SHORT_CYCLE:
            sizes = [(base_t, default_crop * f) for f in cfg.MULTIGRID.SHORT_CYCLE_FACTORS] + sizes
        factors = [_batch_factor(default_size, t, s) for t, s in sizes]
        mean_batch_factors.append(sum(factors) / len(factors))
        cycle_shapes.append((factors[-1], base_t, base_s))

    stages: list[tuple[int, tuple[int, int, int], float]] = []  # (lr stage, shape, length in epochs)
    total_iters = 0.0  # in units of (default-shape epochs' worth of iterations)
    for lr_stage in range(len(steps) - 1):
        stage_epochs = steps[lr_stage + 1] - steps[lr_stage]
        for shape, mean_factor in zip(cycle_shapes, mean_batch_factors):
            epochs = stage_epochs * mean_factor / sum(mean_batch_factors)
            total_iters += epochs / mean_factor
            stages.append((lr_stage, shape, epochs))
    iteration_saving = steps[-1] / total_iters
    fine_tune_epochs = (cfg.SOLVER.MAX_EPOCH - steps[-1]) / iteration_saving * mean_batch_factors[-1]
    stages.append((len(steps) - 1, cycle_shapes[-1], fine_tune_epochs))

    stretch = cfg.SOLVER.MAX_EPOCH * cfg.MULTIGRID.EPOCH_FACTOR / sum(length for _, _, length in stages)
    schedule, elapsed = [], 0.0
    for lr_stage, shape, length in stages:
        elapsed += length * stretch
        schedule.append(LongCycleStage(lr_stage, shape, int(round(elapsed))))
    return schedule


def long_cycle_shape_at(schedule: Sequence[LongCycleStage], epoch: int) -> tuple[int, int, int]:
    """(batch factor, T, S) of the stage containing `epoch` (the last stage's shape after the schedule ends)."""
    for stage in schedule:
        if epoch < stage.end_epoch:
            return stage.shape
    return schedule[-1].shape


class MultigridSchedule:
    """The multigrid schedule of one run; upstream's `MultigridSchedule` with the same config side effects.

    Usage (trainer):
        multigrid = MultigridSchedule()
        cfg = multigrid.init(cfg)                      # once, before building anything
        cfg, changed = multigrid.update_long_cycle(cfg, start_epoch)   # before every epoch (no-op without it)
        if changed: rebuild the train loader (and model/optimizer, as upstream does)
    """

    def __init__(self) -> None:
        self.schedule: list[LongCycleStage] | None = None
        self._cfg = None

    def init(self, cfg):
        """Record MULTIGRID.DEFAULT_B/T/S and rewrite the solver keys for multigrid; returns `cfg` (modified).

        Long cycle: SOLVER.STEPS = [0] + stage ends, with the last one moved to the middle of the fine-tuning
        stage; SOLVER.LRS = GAMMA ** lr_stage x batch factor per stage, the fine-tuning stage's first half keeping
        the previous rate; SOLVER.MAX_EPOCH = the schedule's end. Short cycle only: STEPS and MAX_EPOCH are
        multiplied by EPOCH_FACTOR.
        """
        cfg.MULTIGRID.DEFAULT_B = cfg.TRAIN.BATCH_SIZE
        cfg.MULTIGRID.DEFAULT_T = cfg.DATA.NUM_FRAMES
        cfg.MULTIGRID.DEFAULT_S = cfg.DATA.TRAIN_CROP_SIZE
        if cfg.MULTIGRID.SHORT_CYCLE and len(cfg.MULTIGRID.SHORT_CYCLE_FACTORS) != 2:
            raise ConfigError(
                f"MULTIGRID.SHORT_CYCLE_FACTORS: needs two crop factors, got {list(cfg.MULTIGRID.SHORT_CYCLE_FACTORS)}"
            )
        if cfg.MULTIGRID.LONG_CYCLE:
            self.schedule = compute_long_cycle_schedule(cfg)
            steps = [0] + [stage.end_epoch for stage in self.schedule]
            steps[-1] = (steps[-2] + steps[-1]) // 2
            lrs = [cfg.SOLVER.GAMMA**stage.lr_stage * stage.shape[0] for stage in self.schedule]
            lrs = lrs[:-1] + [lrs[-2], lrs[-1]]
            cfg.SOLVER.STEPS = steps
            cfg.SOLVER.LRS = lrs
            cfg.SOLVER.MAX_EPOCH = self.schedule[-1].end_epoch
            logger.info("multigrid long cycle (LR stage, (batch factor, T, S), end epoch):")
            for stage in self.schedule:
                logger.info("  %d  %s  %d", stage.lr_stage, stage.shape, stage.end_epoch)
        elif cfg.MULTIGRID.SHORT_CYCLE:
            cfg.SOLVER.STEPS = [int(step * cfg.MULTIGRID.EPOCH_FACTOR) for step in cfg.SOLVER.STEPS]
            cfg.SOLVER.MAX_EPOCH = int(cfg.SOLVER.MAX_EPOCH * cfg.MULTIGRID.EPOCH_FACTOR)
        self._cfg = cfg
        return cfg

    # Upstream's method name.
    init_multigrid = init

    def update_long_cycle(self, cfg, cur_epoch: int):
        """Set the long-cycle shape of epoch `cur_epoch` in `cfg`; returns (cfg, changed).

        On a change: DATA.NUM_FRAMES = T, DATA.TRAIN_CROP_SIZE = S, TRAIN.BATCH_SIZE = factor x DEFAULT_B and
        MULTIGRID.LONG_CYCLE_SAMPLING_RATE = DATA.SAMPLING_RATE x (DEFAULT_T // T).
        """
        self._cfg = cfg
        if not self.schedule:
            return cfg, False
        batch_factor, frames, crop = long_cycle_shape_at(self.schedule, cur_epoch)
        if frames == cfg.DATA.NUM_FRAMES and crop == cfg.DATA.TRAIN_CROP_SIZE:
            return cfg, False
        cfg.DATA.NUM_FRAMES = frames
        cfg.DATA.TRAIN_CROP_SIZE = crop
        cfg.TRAIN.BATCH_SIZE = batch_factor * cfg.MULTIGRID.DEFAULT_B
        cfg.MULTIGRID.LONG_CYCLE_SAMPLING_RATE = cfg.DATA.SAMPLING_RATE * (cfg.MULTIGRID.DEFAULT_T // frames)
        logger.info(
            "long cycle at epoch %d: TRAIN.BATCH_SIZE %d, DATA.NUM_FRAMES x sampling rate %d x %d, crop %d",
            cur_epoch,
            cfg.TRAIN.BATCH_SIZE,
            frames,
            cfg.MULTIGRID.LONG_CYCLE_SAMPLING_RATE,
            crop,
        )
        return cfg, True

    def short_cycle_shape(self, iteration: int) -> tuple[int, int]:
        """(global batch size, crop size) of iteration `iteration` under the short cycle (positions repeat every
        3 iterations); (TRAIN.BATCH_SIZE, TRAIN_CROP_SIZE) without it. Uses the config of the last init/update."""
        cfg = self._cfg
        if cfg is None:
            raise RuntimeError("MultigridSchedule.init(cfg) must be called first")
        if not cfg.MULTIGRID.SHORT_CYCLE:
            return cfg.TRAIN.BATCH_SIZE, cfg.DATA.TRAIN_CROP_SIZE
        position = iteration % 3
        return (
            cfg.TRAIN.BATCH_SIZE * short_cycle_batch_factors(cfg)[position],
            short_cycle_crop_sizes(cfg)[position],
        )
