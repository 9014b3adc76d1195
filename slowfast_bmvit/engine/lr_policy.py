"""Learning-rate schedules as a function of (fractional) training epoch, PySlowFast's `lr_policy` semantics.

The trainer calls `get_lr_at_epoch(cfg, epoch + iter / iters_per_epoch)` before every step and hands the value
to `optimizer.set_lr`, which multiplies it by each parameter group's "lr_scale".

Shard scaling: with SOLVER.BASE_LR_SCALE_NUM_SHARDS, upstream's `assert_and_infer_cfg` multiplies BASE_LR,
WARMUP_START_LR and COSINE_END_LR by NUM_SHARDS in the config. This package never mutates the config for it;
the same three values are scaled here instead, so the numbers are upstream's and the config stays as written.
"""

from __future__ import annotations

import math
from typing import Callable

from slowfast_bmvit.config import ConfigError


def _shard_scale(cfg) -> float:
    return float(cfg.NUM_SHARDS) if cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS else 1.0


def get_base_lr(cfg) -> float:
    """SOLVER.BASE_LR, times NUM_SHARDS when SOLVER.BASE_LR_SCALE_NUM_SHARDS."""
    return cfg.SOLVER.BASE_LR * _shard_scale(cfg)


def _cosine(cfg, epoch: float) -> float:
    """Half-cosine from the base LR at the start (or at the end of warmup with SOLVER.COSINE_AFTER_WARMUP)
    down to SOLVER.COSINE_END_LR at SOLVER.MAX_EPOCH."""
    base_lr = get_base_lr(cfg)
    end_lr = cfg.SOLVER.COSINE_END_LR * _shard_scale(cfg)
    if not end_lr < base_lr:
        raise ConfigError(
            f"SOLVER.COSINE_END_LR: {end_lr} must be below SOLVER.BASE_LR {base_lr} for the cosine policy"
        )
    offset = cfg.SOLVER.WARMUP_EPOCHS if cfg.SOLVER.COSINE_AFTER_WARMUP else 0.0
    span = cfg.SOLVER.MAX_EPOCH - offset
    if span <= 0:
        raise ConfigError(f"SOLVER.MAX_EPOCH: {cfg.SOLVER.MAX_EPOCH} leaves no epochs after the {offset} warmup epochs")
    return end_lr + (base_lr - end_lr) * 0.5 * (math.cos(math.pi * (epoch - offset) / span) + 1.0)


def get_step_index(cfg, epoch: float) -> int:
    """Index i of the step stage containing `epoch`: SOLVER.STEPS[i] <= epoch < SOLVER.STEPS[i + 1] (the last
    stage runs to SOLVER.MAX_EPOCH and beyond)."""
    boundaries = list(cfg.SOLVER.STEPS) + [cfg.SOLVER.MAX_EPOCH]
    for index, boundary in enumerate(boundaries):
        if epoch < boundary:
            return index - 1
    return len(boundaries) - 2


def _steps_with_relative_lrs(cfg, epoch: float) -> float:
    """SOLVER.LRS[i] x base LR inside stage i of SOLVER.STEPS (which starts with 0)."""
    steps, lrs = list(cfg.SOLVER.STEPS), list(cfg.SOLVER.LRS)
    if not steps or len(steps) != len(lrs):
        raise ConfigError(
            f"SOLVER.STEPS: steps_with_relative_lrs needs as many STEPS as LRS (at least one); got {steps} and {lrs}"
        )
    return lrs[max(get_step_index(cfg, epoch), 0)] * get_base_lr(cfg)


def _constant(cfg, epoch: float) -> float:
    return get_base_lr(cfg)


_POLICIES: dict[str, Callable[[object, float], float]] = {
    "cosine": _cosine,
    "steps_with_relative_lrs": _steps_with_relative_lrs,
    "constant": _constant,
}


def get_lr_at_epoch(cfg, cur_epoch: float) -> float:
    """The learning rate at fractional epoch `cur_epoch` (= epoch + iter / iters_per_epoch, 0-based).

    Before SOLVER.WARMUP_EPOCHS the rate rises linearly from SOLVER.WARMUP_START_LR (at epoch 0) to the policy's
    own value at epoch WARMUP_EPOCHS; afterwards it is the policy's value (SOLVER.LR_POLICY).
    """
    try:
        policy = _POLICIES[cfg.SOLVER.LR_POLICY]
    except KeyError:
        raise ConfigError(
            f"SOLVER.LR_POLICY: {cfg.SOLVER.LR_POLICY!r} is not one of {', '.join(_POLICIES)}"
        ) from None
    warmup_epochs = cfg.SOLVER.WARMUP_EPOCHS
    if cur_epoch < warmup_epochs:
        start_lr = cfg.SOLVER.WARMUP_START_LR * _shard_scale(cfg)
        end_lr = policy(cfg, warmup_epochs)
        return start_lr + (end_lr - start_lr) * cur_epoch / warmup_epochs
    return policy(cfg, cur_epoch)
