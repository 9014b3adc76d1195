"""Validation of a merged config: every check names the offending key in its message.

This module is the one owner of every check that the config alone decides: the allowed values of each key
(CHOICES), value ranges and list shapes, the relations between keys, and the refusal of PySlowFast keys or values
this package does not build (REFUSED_UNLESS_DEFAULT, REFUSED_VALUES), for every group, the model groups (MODEL, MVIT,
VIT, HIERA, BMVIT) included, and DATA.NUM_FRAMES against the temporal patch stride of the backbone in use
(`backbone_name`) when it is one of the BACKBONES this package ships. Every tool calls `assert_and_infer_cfg` before
it builds anything, and the models trust a validated config. What needs a quantity a model derives stays with that
model: the position grid left by ViT's patch stride and stem (models/vit.py), Hiera's token grid, mask units and head
widths against its stage schedule (models/hiera.py), the BMViT cross-attention head count against the backbone's
width (models/bmvit.py), MODEL.MODEL_NAME and BMVIT.BACKBONE against the registry (models/build.py: any registered
model with `forward_features` may be the backbone, a user's own included); and models/mvit.py refuses the two MVIT
keys that would change the kind of input it takes (PATCH_2D: images; USE_FIXED_SINCOS_POS) when it is built.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from fvcore.common.config import CfgNode

from .defaults import get_cfg
from .errors import ConfigError

# The backbones this package ships (BMVIT.BACKBONE for BMViT and the two-stage MViTRoI, or MODEL.MODEL_NAME for
# their classifiers), each with the key of its patch embedding's stride (T, H, W) (ViT's is its tubelet size). A
# convolutional stem (MVIT / VIT.CONV_STEM_CHANNELS) strides only H and W. BMVIT.BACKBONE may also name a backbone
# the user registers: models/build.py's build_backbone decides, and the frame-count checks here are skipped for it
# (its builder checks what it needs); an entry here gives it those checks.
BACKBONE_PATCH_STRIDE_KEYS: dict[str, str] = {"MViT": "MVIT.PATCH_STRIDE", "ViT": "VIT.PATCH_SIZE",
                                              "Hiera": "HIERA.PATCH_STRIDE"}
BACKBONES: tuple[str, ...] = tuple(BACKBONE_PATCH_STRIDE_KEYS)

# Allowed values of the string-valued keys that select behaviour.
CHOICES: dict[str, tuple[str, ...]] = {
    "MODEL.HEAD_ACT": ("softmax", "sigmoid", "none"),
    "MVIT.MODE": ("conv",),
    "MVIT.ATTN_IMPL": ("auto", "folded", "sdpa", "explicit"),
    "BMVIT.TOKEN_ARRANGEMENT": ("all", "center", "center_tpool", "two_halves", "all_tpool"),
    "BMVIT.BOX_REFERENCE": ("token_grid", "none"),
    "BMVIT.CLASS_HEAD": ("mlp", "cross_attention"),
    "VIT.POS_EMBED": ("sincos", "learned"),
    "BMVIT.CLASS_LOSS": ("bce", "ce"),
    "BMVIT.SCORE_RULE": ("class_x_actor", "class"),
    "SOLVER.OPTIMIZING_METHOD": ("sgd", "adam", "adamw"),
    "SOLVER.LR_POLICY": ("cosine", "steps_with_relative_lrs", "constant"),
    "TRAIN.MIXED_PRECISION_DTYPE": ("bfloat16", "float16"),
    "DATA.RESIZE_MODE": ("square", "short_side"),
    "DATA.ON_BAD_FRAME": ("error", "skip"),
    "AVA.EVAL_PROTOCOL": ("pyslowfast", "activitynet"),
    "ACT.SOURCE": ("frames", "videos"),
}


def _each(group: str, names: str, reason: str) -> dict[str, str]:
    return {f"{group}.{name}": reason for name in names.split()}


# PySlowFast keys that configs may carry for compatibility but whose other values this package does not offer: a
# value other than the default stops with one line naming the key and what to use instead. Each entry says why.
_CLASSIFICATION = "upstream's classification recipe; this package trains and tests detection"
# Upstream MViT variants no shipped config uses: each would be a branch of the model without a reference to test it
# against (the installed PySlowFast has no MViT); the MViTv2 configs leave them at their defaults.
_MVIT_VARIANT = "an upstream MViT variant that no MViTv2 config uses and the model here does not build"
REFUSED_UNLESS_DEFAULT: dict[str, str] = {
    **_each("AUG", "ENABLE NUM_SAMPLE COLOR_JITTER AA_TYPE INTERPOLATION RE_PROB RE_MODE RE_COUNT RE_SPLIT",
            f"RandAugment and random erasing are {_CLASSIFICATION}; detection augments with DATA.RANDOM_FLIP, "
            f"DATA.TRAIN_JITTER_SCALES and AVA.TRAIN_USE_COLOR_AUGMENTATION"),
    **_each("MIXUP", "ENABLE ALPHA CUTMIX_ALPHA PROB SWITCH_PROB LABEL_SMOOTH_VALUE",
            f"MixUp and CutMix are {_CLASSIFICATION}"),
    **_each("BN", "USE_PRECISE_STATS NUM_BATCHES_PRECISE",
            "precise BN statistics are not recomputed; only the optional MVIT.CONV_STEM_CHANNELS stem has BatchNorm"),
    **_each("BN", "NORM_TYPE NUM_SPLITS NUM_SYNC_DEVICES GLOBAL_SYNC",
            "the optional convolutional stem uses plain BatchNorm3d"),
    "MULTIGRID.BN_BASE_SIZE": "sub-batch BatchNorm under multigrid is not offered",
    **_each("DATA", "PATH_TO_DATA_DIR PATH_LABEL_SEPARATOR PATH_PREFIX",
            "Kinetics-style list files are not read; AVA uses the AVA.* paths, UCF101-24 / JHMDB the ACT.* paths, "
            "SynthAVA SYNTH.ROOT"),
    **_each("DATA", "MULTI_LABEL ENSEMBLE_METHOD USE_OFFSET_SAMPLING TRAIN_JITTER_SCALES_RELATIVE "
                    "TRAIN_JITTER_ASPECT_RELATIVE", _CLASSIFICATION),
    **_each("TEST", "NUM_ENSEMBLE_VIEWS NUM_SPATIAL_CROPS",
            "multi-view testing is " + _CLASSIFICATION + "; each keyframe is tested on one clip (TEST.FLIP_AVERAGE "
            "adds its mirror image)"),
    "MODEL.LOSS_FUNC": "detection losses are BMVIT.CLASS_LOSS (BMViT) and sigmoid BCE (the two-stage MViTRoI)",
    "MODEL.DROPCONNECT_RATE": "stochastic depth is MVIT.DROPPATH_RATE",
    **_each("MODEL", "SINGLE_PATHWAY_ARCH MULTI_PATHWAY_ARCH", "every model here takes one pathway"),
    "DATA.TARGET_FPS": "AVA frames are 30 fps (tools/prepare_ava.py) and ACT videos are read frame by frame",
    "DATA.DECODING_BACKEND": "videos are decoded with PyAV",
    "DATA.REVERSE_INPUT_CHANNEL": "use AVA.BGR to feed BGR channels",
    "AVA.TEST_FORCE_FLIP": "use TEST.FLIP_AVERAGE, which averages each clip with its mirror image",
    "AVA.IMG_PROC_BACKEND": "frames are decoded with OpenCV",
    "TRAIN.CHECKPOINT_TYPE": "only PyTorch checkpoints load; Caffe2 files do not",
    "TEST.CHECKPOINT_TYPE": "only PyTorch checkpoints load; Caffe2 files do not",
    "TRAIN.CHECKPOINT_INFLATE": "2-D to 3-D weight inflation is not offered; start from a video checkpoint",
    "TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN": "the checkpoint loader finds the key prefix (e.g. module., backbone.) itself",
    "SOLVER.STEP_SIZE": "the LR policies are cosine, steps_with_relative_lrs and constant (SOLVER.STEPS sets them)",
    "MVIT.NORM": "MViT's norms are LayerNorm",
    **_each("MVIT", "LAYER_SCALE_INIT_VALUE USE_MEAN_POOLING POOL_FIRST SEPARATE_QKV SEP_POS_EMBED NORM_STEM",
            _MVIT_VARIANT),
}

# Keys refused only at some values: key -> (refused values, reason).
REFUSED_VALUES: dict[str, tuple[tuple[Any, ...], str]] = {
    "MODEL.ARCH": (("slowfast",), "two-pathway (SlowFast) input is not offered; the model is MODEL.MODEL_NAME"),
    "MVIT.MODE": (("max", "avg"), "MViTv2 pools q, k and v with depthwise convolutions (conv); " + _MVIT_VARIANT),
}


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


def _check_stem_widths(cfg: CfgNode, key: str) -> None:
    widths = list(_get(cfg, key))
    _require(all(isinstance(w, int) and w > 0 for w in widths), key, f"needs positive integer widths, got {widths}")


def _check_lengths(cfg: CfgNode, keys: Iterable[str], length: int, what: str) -> None:
    for key in keys:
        _require(len(_get(cfg, key)) == length, key, f"needs {length} values ({what}), got {list(_get(cfg, key))}")


def _check_mvit(cfg: CfgNode) -> None:
    """The MVIT keys (their choices and refusals are in CHOICES and the REFUSED lists)."""
    for key, width in (("MVIT.DIM_MUL", 2), ("MVIT.HEAD_MUL", 2), ("MVIT.POOL_Q_STRIDE", 4),
                       ("MVIT.POOL_KV_STRIDE", 4)):
        _check_block_lists(cfg, key, width)
    for block in cfg.MVIT.REMOVE_Q_POOL_BLOCKS:
        _require(0 <= block < cfg.MVIT.DEPTH, "MVIT.REMOVE_Q_POOL_BLOCKS",
                 f"block {block} outside 0..{cfg.MVIT.DEPTH - 1}")
    _check_stem_widths(cfg, "MVIT.CONV_STEM_CHANNELS")
    _check_lengths(cfg, ("MVIT.PATCH_KERNEL", "MVIT.PATCH_STRIDE", "MVIT.PATCH_PADDING"), 3, "T, H, W")
    if cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE is not None:
        _check_lengths(cfg, ("MVIT.POOL_KV_STRIDE_ADAPTIVE",), 3, "T, H, W")


def _check_vit(cfg: CfgNode) -> None:
    """The VIT keys (models/vit.py checks that the patch stride leaves a position grid)."""
    vit = cfg.VIT
    _require(len(vit.PATCH_SIZE) == 3 and all(int(p) >= 1 for p in vit.PATCH_SIZE), "VIT.PATCH_SIZE",
             f"needs 3 positive values (T, H, W), got {list(vit.PATCH_SIZE)}")
    _check_positive(cfg, ("VIT.EMBED_DIM", "VIT.DEPTH", "VIT.NUM_HEADS", "VIT.MLP_RATIO"))
    _require(vit.EMBED_DIM % vit.NUM_HEADS == 0, "VIT.NUM_HEADS",
             f"{vit.NUM_HEADS} does not divide VIT.EMBED_DIM {vit.EMBED_DIM}")
    _require(0.0 <= vit.DROPPATH_RATE < 1.0, "VIT.DROPPATH_RATE", f"must be in [0, 1), got {vit.DROPPATH_RATE}")
    grid = list(vit.POS_EMBED_GRID)
    _require(len(grid) in (0, 3) and all(int(n) >= 1 for n in grid), "VIT.POS_EMBED_GRID",
             f"needs [] or 3 positive sizes (T', H', W'), got {grid}")
    _check_stem_widths(cfg, "VIT.CONV_STEM_CHANNELS")


def _check_hiera(cfg: CfgNode) -> None:
    """The HIERA keys on their own (models/hiera.py checks them against the stage schedule and token grid)."""
    hiera = cfg.HIERA
    stages = list(hiera.STAGES)
    _require(len(stages) > 0 and min(stages) >= 1, "HIERA.STAGES",
             f"needs at least one stage of at least one block, got {stages}")
    _require(0 <= hiera.Q_POOL < len(stages), "HIERA.Q_POOL",
             f"{hiera.Q_POOL} is outside 0..{len(stages) - 1} (len(HIERA.STAGES) - 1)")
    _require(len(hiera.MASK_UNIT_ATTN) == len(stages), "HIERA.MASK_UNIT_ATTN",
             f"needs one entry per stage ({len(stages)}), got {list(hiera.MASK_UNIT_ATTN)}")
    _require(hiera.Q_POOL == 0 or hiera.DIM_MUL != 1.0, "HIERA.DIM_MUL",
             "query pooling (HIERA.Q_POOL > 0) needs a stage width change (DIM_MUL != 1)")
    _check_lengths(cfg, [f"HIERA.{name}" for name in ("Q_STRIDE", "MASK_UNIT_SIZE", "PATCH_KERNEL", "PATCH_STRIDE",
                                                      "PATCH_PADDING")], 3, "T, H, W")


def backbone_name(cfg: Any) -> str:
    """The backbone the configured model runs: MODEL.MODEL_NAME when that is a backbone (a classifier: the backbone
    with its head), else BMVIT.BACKBONE. `cfg` is a CfgNode or a plain dict of the same groups."""
    model_name = _get(cfg, "MODEL.MODEL_NAME")
    return model_name if model_name in BACKBONES else _get(cfg, "BMVIT.BACKBONE")


def _check_temporal_tokens(cfg: CfgNode) -> None:
    """DATA.NUM_FRAMES against the temporal patch stride of the backbone in use: at least one temporal token, and
    the two that BMVIT.TOKEN_ARRANGEMENT two_halves splits into halves. Skipped for a backbone without an entry in
    BACKBONE_PATCH_STRIDE_KEYS (a user's own)."""
    stride_key = BACKBONE_PATCH_STRIDE_KEYS.get(backbone_name(cfg))
    if stride_key is None:
        return
    stride = int(_get(cfg, stride_key)[0])
    frames = cfg.DATA.NUM_FRAMES
    _require(frames >= stride, "DATA.NUM_FRAMES",
             f"{frames} frame(s) give no temporal token with {stride_key}[0] = {stride}; use at least {stride}")
    if cfg.BMVIT.TOKEN_ARRANGEMENT == "two_halves":
        _require(frames // stride >= 2, "DATA.NUM_FRAMES",
                 f"{frames} frame(s) give {frames // stride} temporal token(s) with {stride_key}[0] = {stride}; "
                 f"BMVIT.TOKEN_ARRANGEMENT two_halves needs 2 (at least {2 * stride} frames)")


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(_same(a, b) for a, b in zip(value, default))
    return value == default


def _check_refused(cfg: CfgNode) -> None:
    defaults = get_cfg()
    for key, reason in REFUSED_UNLESS_DEFAULT.items():
        value, default = _get(cfg, key), _get(defaults, key)
        _require(_same(value, default), key,
                 f"{value!r} is not supported by slowfast_bmvit ({reason}); remove the key or set {default!r}")
    for key, (refused, reason) in REFUSED_VALUES.items():
        value = _get(cfg, key)
        _require(value not in refused, key, f"{value!r} is not supported by slowfast_bmvit ({reason})")


def assert_and_infer_cfg(cfg: CfgNode) -> CfgNode:
    """Check value ranges and choices, then freeze nothing and return `cfg` (validated in place).

    Raises:
        ConfigError: one line naming the first offending key.
    """
    _check_refused(cfg)  # first: a refused value gets its reason rather than the list of choices
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
            "BMVIT.HEAD_LAYERS",
            "BMVIT.CROSS_ATTENTION_HEADS",
            "SOLVER.MAX_EPOCH",
        ),
    )
    _require(cfg.SOLVER.BASE_LR > 0, "SOLVER.BASE_LR", f"must be > 0, got {cfg.SOLVER.BASE_LR}")
    for key in ("SOLVER.WARMUP_START_LR", "SOLVER.COSINE_END_LR", "SOLVER.WEIGHT_DECAY"):
        _require(_get(cfg, key) >= 0, key, f"must be >= 0, got {_get(cfg, key)}")
    _require(all(lr >= 0 for lr in cfg.SOLVER.LRS), "SOLVER.LRS", f"must be >= 0, got {list(cfg.SOLVER.LRS)}")
    for key in ("SOLVER.CLIP_GRAD_VAL", "SOLVER.CLIP_GRAD_L2NORM"):
        value = _get(cfg, key)
        _require(value is None or value >= 0, key, f"must be >= 0 (None or 0: off), got {value}")
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
    _require(cfg.BMVIT.PROJ_DIM >= 0, "BMVIT.PROJ_DIM", f"must be >= 0 (0: no projection), got {cfg.BMVIT.PROJ_DIM}")
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
    _check_mvit(cfg)
    _check_vit(cfg)
    _check_hiera(cfg)
    _check_temporal_tokens(cfg)
    _require(
        not (cfg.TRAIN.MIXED_PRECISION and cfg.NUM_GPUS == 0 and cfg.TRAIN.MIXED_PRECISION_DTYPE == "float16"),
        "TRAIN.MIXED_PRECISION_DTYPE",
        "float16 autocast needs a GPU; use bfloat16 on the CPU",
    )
    _check_positive(cfg, ("DEMO.STRIDE", "DEMO.TOP_K_ACTIONS"))
    for key in ("DEMO.ACTION_SCORE_THRESH", "DEMO.TRACK_IOU"):
        _require(0.0 <= _get(cfg, key) <= 1.0, key, f"must be in [0, 1], got {_get(cfg, key)}")
    _require(cfg.DEMO.TRACK_MAX_GAP >= 0, "DEMO.TRACK_MAX_GAP", f"must be >= 0, got {cfg.DEMO.TRACK_MAX_GAP}")
    _require(cfg.DEMO.FOLDER_FPS > 0, "DEMO.FOLDER_FPS", f"must be > 0, got {cfg.DEMO.FOLDER_FPS}")
    _require(0 <= cfg.DEMO.VIDEO_CRF <= 51, "DEMO.VIDEO_CRF", f"must be in 0..51 (libx264), got {cfg.DEMO.VIDEO_CRF}")
    return cfg


def check_devices(cfg: CfgNode) -> None:
    """Refuse NUM_GPUS > 0 on a machine without CUDA, or with fewer CUDA devices than NUM_GPUS processes.

    Separate from `assert_and_infer_cfg` (which validates a config wherever it is read, e.g. to count a model's
    FLOPs): called before a job starts processes (tools/run_net.py, engine.distributed.launch_job).

    Raises:
        ConfigError: one line naming NUM_GPUS.
    """
    if cfg.NUM_GPUS <= 0:
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"NUM_GPUS: {cfg.NUM_GPUS}, but CUDA is not available here (torch {torch.__version__}); "
                          f"set NUM_GPUS 0 to run on the CPU")
    available = torch.cuda.device_count()
    if cfg.NUM_GPUS > available:
        raise ConfigError(f"NUM_GPUS: {cfg.NUM_GPUS}, but this machine has {available} CUDA device(s)")
