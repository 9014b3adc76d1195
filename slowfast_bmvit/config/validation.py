"""Validation of a merged config: every check names the offending key in its message."""

from __future__ import annotations

from typing import Any, Iterable

from fvcore.common.config import CfgNode

from .errors import ConfigError

# Allowed values of the string-valued keys that select behaviour.
CHOICES: dict[str, tuple[str, ...]] = {
    "MVIT.MODE": ("conv", "max", "avg"),
    "MVIT.ATTN_IMPL": ("auto", "folded", "sdpa", "explicit"),
    "MVIT.NORM": ("layernorm",),
    "BMVIT.TOKEN_ARRANGEMENT": ("all", "center", "center_tpool", "two_halves", "all_tpool"),
    "BMVIT.BOX_REFERENCE": ("token_grid", "none"),
    "BMVIT.CLASS_LOSS": ("bce", "ce"),
    "BMVIT.SCORE_RULE": ("class_x_actor", "class"),
    "SOLVER.OPTIMIZING_METHOD": ("sgd", "adam", "adamw"),
    "SOLVER.LR_POLICY": ("cosine", "steps_with_relative_lrs", "constant"),
    "TRAIN.MIXED_PRECISION_DTYPE": ("bfloat16", "float16"),
    "TRAIN.CHECKPOINT_TYPE": ("pytorch",),
    "TEST.CHECKPOINT_TYPE": ("pytorch",),
    "DATA.RESIZE_MODE": ("square", "short_side"),
    "DATA.ON_BAD_FRAME": ("error", "skip"),
    "AVA.EVAL_PROTOCOL": ("pyslowfast", "activitynet"),
    "ACT.SOURCE": ("frames", "videos"),
    "AVA.IMG_PROC_BACKEND": ("cv2",),
}

# Upstream keys accepted in YAML files for compatibility whose non-default behaviour this package does not offer.
UNSUPPORTED_WHEN_TRUE = ("AVA.TEST_FORCE_FLIP", "DATA.REVERSE_INPUT_CHANNEL", "TRAIN.CHECKPOINT_INFLATE")


def _get(cfg: CfgNode, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{key}: {message}")


def _check_block_lists(cfg: CfgNode, key: str, width: int) -> None:
    """Per-block lists like [[block, a, b, c], ...] must name blocks inside MVIT.DEPTH."""
    for item in _get(cfg, key) or []:
        _require(len(item) == width, key, f"each entry must have {width} numbers, got {list(item)}")
        _require(0 <= int(item[0]) < cfg.MVIT.DEPTH, key, f"block index {item[0]} outside 0..{cfg.MVIT.DEPTH - 1}")


def _check_positive(cfg: CfgNode, keys: Iterable[str]) -> None:
    for key in keys:
        _require(_get(cfg, key) > 0, key, f"must be > 0, got {_get(cfg, key)}")


def assert_and_infer_cfg(cfg: CfgNode) -> CfgNode:
    """Check value ranges and choices, then freeze nothing and return `cfg` (validated in place).

    Raises:
        ConfigError: one line naming the first offending key.
    """
    for key, allowed in CHOICES.items():
        value = _get(cfg, key)
        _require(value in allowed, key, f"{value!r} is not one of {', '.join(allowed)}")

    if cfg.MULTIGRID.SHORT_CYCLE:
        factors = list(cfg.MULTIGRID.SHORT_CYCLE_FACTORS)
        _require(len(factors) == 2 and all(0 < f <= 1 for f in factors), "MULTIGRID.SHORT_CYCLE_FACTORS",
                 f"needs two crop factors in (0, 1], got {factors}")
    if cfg.MULTIGRID.LONG_CYCLE:
        _require(cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs", "SOLVER.LR_POLICY",
                 "multigrid's long cycle needs steps_with_relative_lrs (its LR stages come from SOLVER.STEPS)")
    for key in UNSUPPORTED_WHEN_TRUE:
        _require(not _get(cfg, key), key, "True is not supported by slowfast_bmvit (leave it False)")
    _require(cfg.NUM_GPUS >= 0, "NUM_GPUS", f"must be >= 0, got {cfg.NUM_GPUS}")
    _require(cfg.NUM_SHARDS >= 1, "NUM_SHARDS", f"must be >= 1, got {cfg.NUM_SHARDS}")
    _require(0 <= cfg.SHARD_ID < cfg.NUM_SHARDS, "SHARD_ID", f"must be in 0..NUM_SHARDS-1, got {cfg.SHARD_ID}")
    _check_positive(
        cfg,
        (
            "TRAIN.BATCH_SIZE",
            "TEST.BATCH_SIZE",
            "DATA.NUM_FRAMES",
            "DATA.SAMPLING_RATE",
            "DATA.TRAIN_CROP_SIZE",
            "DATA.TEST_CROP_SIZE",
            "MODEL.NUM_CLASSES",
            "MVIT.DEPTH",
            "MVIT.EMBED_DIM",
            "MVIT.NUM_HEADS",
            "BMVIT.PROJ_DIM",
            "BMVIT.HEAD_LAYERS",
            "SOLVER.MAX_EPOCH",
        ),
    )
    world = max(cfg.NUM_GPUS, 1) * cfg.NUM_SHARDS
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        _require(_get(cfg, key) % world == 0, key, f"{_get(cfg, key)} is not divisible by the {world} processes")
    for key in ("DATA.MEAN", "DATA.STD"):
        _require(len(_get(cfg, key)) == 3, key, f"needs 3 values (RGB), got {list(_get(cfg, key))}")
    _require(all(s > 0 for s in cfg.DATA.STD), "DATA.STD", "values must be > 0")
    _require(len(cfg.DATA.TRAIN_JITTER_SCALES) == 2, "DATA.TRAIN_JITTER_SCALES", "needs [min, max]")
    _require(
        cfg.DATA.TRAIN_JITTER_SCALES[0] <= cfg.DATA.TRAIN_JITTER_SCALES[1],
        "DATA.TRAIN_JITTER_SCALES",
        f"min > max in {list(cfg.DATA.TRAIN_JITTER_SCALES)}",
    )
    _require(0.0 <= cfg.BMVIT.ACTOR_THRESH < 1.0, "BMVIT.ACTOR_THRESH", "must be in [0, 1)")
    _require(cfg.BMVIT.TOP_K >= 0, "BMVIT.TOP_K", "must be >= 0")
    _require(0.0 <= cfg.BMVIT.NMS_IOU < 1.0, "BMVIT.NMS_IOU", "must be in [0, 1) (0 turns NMS off)")
    _require(0.0 < cfg.BMVIT.NO_ACTOR_WEIGHT <= 1.0, "BMVIT.NO_ACTOR_WEIGHT", "must be in (0, 1]")
    _require(0.0 < cfg.SOLVER.LAYER_DECAY <= 1.0, "SOLVER.LAYER_DECAY", "must be in (0, 1]")
    _require(cfg.SOLVER.WARMUP_EPOCHS >= 0, "SOLVER.WARMUP_EPOCHS", "must be >= 0")
    if cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs":
        _require(
            len(cfg.SOLVER.STEPS) == len(cfg.SOLVER.LRS) and len(cfg.SOLVER.LRS) > 0,
            "SOLVER.STEPS",
            "needs as many entries as SOLVER.LRS (at least one) for steps_with_relative_lrs",
        )
    for key, width in (("MVIT.DIM_MUL", 2), ("MVIT.HEAD_MUL", 2), ("MVIT.POOL_Q_STRIDE", 4), ("MVIT.POOL_KV_STRIDE", 4)):
        _check_block_lists(cfg, key, width)
    for block in cfg.MVIT.REMOVE_Q_POOL_BLOCKS:
        _require(0 <= block < cfg.MVIT.DEPTH, "MVIT.REMOVE_Q_POOL_BLOCKS", f"block {block} outside the depth")
    for width in cfg.MVIT.CONV_STEM_CHANNELS:
        _require(isinstance(width, int) and width > 0, "MVIT.CONV_STEM_CHANNELS",
                 f"needs positive integer widths, got {list(cfg.MVIT.CONV_STEM_CHANNELS)}")
    for key in ("MVIT.PATCH_KERNEL", "MVIT.PATCH_STRIDE", "MVIT.PATCH_PADDING"):
        _require(len(_get(cfg, key)) == 3, key, f"needs 3 values (T, H, W), got {list(_get(cfg, key))}")
    if cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE is not None:
        _require(len(cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE) == 3, "MVIT.POOL_KV_STRIDE_ADAPTIVE", "needs 3 values")
    _require(
        not (cfg.TRAIN.MIXED_PRECISION and cfg.NUM_GPUS == 0 and cfg.TRAIN.MIXED_PRECISION_DTYPE == "float16"),
        "TRAIN.MIXED_PRECISION_DTYPE",
        "float16 autocast needs a GPU; use bfloat16 on the CPU",
    )
    return cfg
