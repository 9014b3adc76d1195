"""The trained weights a test or an inference tool runs on: which file, and the proof that it fills the model.

Two callers, one rule: every tensor of the model must come from the file, never from random initialisation.
- `load_test_checkpoint` (the final test, tools/run_net.py; tools/diagnose_bmvit.py) takes TEST.CHECKPOINT_FILE_PATH,
  else the newest checkpoint of OUTPUT_DIR, else TRAIN.CHECKPOINT_FILE_PATH, and records what it tested
  (`TestedCheckpoint`: file, epoch, sha256) for test_results.json; TEST.ALLOW_RANDOM_WEIGHTS turns its refusals
  into warnings.
- `load_trained_checkpoint` (tools/demo_net.py, export_model.py, visualize_tokens.py) takes TEST.CHECKPOINT_FILE_PATH,
  else the newest checkpoint of OUTPUT_DIR (never a pre-training file), and also compares the config the file was
  trained under with the current one (`check_trained_config`), since these tools have no metric that would show a
  mismatch.
Both find files with engine/checkpoint.py's discovery and read them through models/checkpoint_loading.py; resuming
training is engine/checkpoint.py's.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch
import yaml
from fvcore.common.config import CfgNode

from slowfast_bmvit.config import BACKBONES, backbone_name, config_value
from slowfast_bmvit.models import unwrap_model
from slowfast_bmvit.models.checkpoint_loading import CheckpointError, LoadReport, load_checkpoint, read_checkpoint_file
from slowfast_bmvit.models.vit import position_grid

from .checkpoint import get_checkpoint_dir, get_last_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class TestedCheckpoint:
    """The checkpoint a test ran on, as test_results.json records it.

    path: the file (None only when TEST.ALLOW_RANDOM_WEIGHTS let a test run without one).
    epoch: completed training epochs of the weights (the E of checkpoint_epoch_E.pyth: the file's 0-based "epoch"
        + 1); None when the file records no epoch (e.g. a plain state dict).
    sha256: hex digest of the file's bytes, to tell two files of the same name apart.
    """

    path: str | None
    epoch: int | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "epoch": self.epoch, "sha256": self.sha256}


def file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _test_checkpoint_path(cfg) -> str | None:
    """TEST.CHECKPOINT_FILE_PATH, else the newest complete checkpoint in OUTPUT_DIR, else
    TRAIN.CHECKPOINT_FILE_PATH, else None. No fallback to older files of OUTPUT_DIR: a test result must come from
    the checkpoint it claims."""
    if cfg.TEST.CHECKPOINT_FILE_PATH:
        return cfg.TEST.CHECKPOINT_FILE_PATH
    return get_last_checkpoint(cfg.OUTPUT_DIR) or cfg.TRAIN.CHECKPOINT_FILE_PATH or None


def _unfilled_tensors(report: LoadReport) -> list[str]:
    """What would stay random or unused after a load: the model tensors the file lacks and the file tensors the
    model had no place for, a phrase each (empty when the file filled the model exactly)."""
    problems = []
    if report.missing:
        more = f" (+{len(report.missing) - 5} more)" if len(report.missing) > 5 else ""
        problems.append(f"{len(report.missing)} model tensor(s) not in the file: {', '.join(report.missing[:5])}{more}")
    if report.skipped:
        more = f" (+{len(report.skipped) - 5} more)" if len(report.skipped) > 5 else ""
        shown = ", ".join(f"{key} ({reason})" for key, reason in report.skipped[:5])
        problems.append(f"{len(report.skipped)} file tensor(s) not loaded: {shown}{more}")
    return problems


def load_test_checkpoint(cfg, model: torch.nn.Module) -> TestedCheckpoint:
    """Load the weights to test: TEST.CHECKPOINT_FILE_PATH, else the newest complete checkpoint in OUTPUT_DIR,
    else TRAIN.CHECKPOINT_FILE_PATH. Every model tensor must come from the file: a model tensor the file lacks
    (e.g. the detection heads of a K400 classifier file), a file tensor the model has no place for (a deeper
    model's blocks, a head of another class count) or no file at all would test random weights, and is an error
    unless TEST.ALLOW_RANDOM_WEIGHTS (then a warning names them). Relative-position tables of another input size
    are resized, as in fine-tuning.

    Returns:
        the TestedCheckpoint (file, epoch, sha256) for test_results.json.
    Raises:
        CheckpointError: no checkpoint, an unreadable file, or one that does not fill the whole model; the message
            names the file and the tensors (never silently another file).
    """
    path = _test_checkpoint_path(cfg)
    if path is None:
        message = (f"no checkpoint to test: TEST.CHECKPOINT_FILE_PATH and TRAIN.CHECKPOINT_FILE_PATH are empty and "
                   f"{get_checkpoint_dir(cfg.OUTPUT_DIR)} holds no checkpoint")
        if not cfg.TEST.ALLOW_RANDOM_WEIGHTS:
            raise CheckpointError(f"{message}; set TEST.ALLOW_RANDOM_WEIGHTS True to test random weights")
        logger.warning("%s: testing randomly initialised weights (TEST.ALLOW_RANDOM_WEIGHTS)", message)
        return TestedCheckpoint(path=None)
    report = load_checkpoint(path, unwrap_model(model))
    problems = _unfilled_tensors(report)
    if problems:
        message = f"{path}: does not fit {type(unwrap_model(model)).__name__} exactly; " + "; ".join(problems)
        if not cfg.TEST.ALLOW_RANDOM_WEIGHTS:
            raise CheckpointError(f"{message}. Testing it would use random weights; set TEST.ALLOW_RANDOM_WEIGHTS "
                                  f"True to test anyway")
        logger.warning("%s; the model tensors not in the file keep their random initial values "
                       "(TEST.ALLOW_RANDOM_WEIGHTS)", message)
    tested = TestedCheckpoint(path=path, epoch=None if report.epoch is None else report.epoch + 1,
                              sha256=file_sha256(path))
    logger.info("testing %s (epoch %s, sha256 %s)", path, tested.epoch, tested.sha256)
    return tested


# The trained config against the current one. Every key of the model groups (MODEL, MVIT, VIT, HIERA, BMVIT,
# DETECTION) is in one of three classes (tests/test_checkpoint.py fails on a key that is in none):
# - architecture: decides what the trained weights compute. A checkpoint trained under other values loads (many such
#   keys change no tensor shape) and then computes something else, so inference tools refuse the mismatch. Compared
#   for the parts the configured model has (`architecture_keys`): its backbone's group, and its own keys.
# - input (INPUT_KEYS): what the model was trained to see; other values run, with a warning.
# - not compared (NOT_COMPARED, and the keys config/validation.py refuses unless at their default): training only,
#   initialisation, implementation choices that give the same numbers, and inference settings chosen at run time.


def _each(group: str, names: str) -> tuple[str, ...]:
    return tuple(f"{group}.{name}" for name in names.split())


# Keys every model is built from.
COMMON_ARCHITECTURE_KEYS = ("MODEL.MODEL_NAME", "MODEL.NUM_CLASSES")
# Each backbone's own keys, compared for the backbone in use (config.backbone_name). VIT.POS_EMBED_GRID is compared as
# the grid it resolves to (DERIVED_KEYS): the fixed sinusoid table is not in the checkpoint. For a backbone the user
# registers without an entry here nothing backbone-specific is compared (check_trained_config warns); an entry with
# its config group's architecture keys makes the comparison cover it.
BACKBONE_ARCHITECTURE_KEYS: dict[str, tuple[str, ...]] = {
    "MViT": _each("MVIT", "CLS_EMBED_ON PATCH_KERNEL PATCH_STRIDE PATCH_PADDING CONV_STEM_CHANNELS EMBED_DIM "
                          "NUM_HEADS MLP_RATIO QKV_BIAS DEPTH DIM_MUL HEAD_MUL POOL_KV_STRIDE POOL_KV_STRIDE_ADAPTIVE "
                          "POOL_Q_STRIDE POOL_KVQ_KERNEL USE_ABS_POS REL_POS_SPATIAL REL_POS_TEMPORAL RESIDUAL_POOLING "
                          "DIM_MUL_IN_ATT REMOVE_Q_POOL_BLOCKS"),
    "ViT": _each("VIT", "PATCH_SIZE EMBED_DIM DEPTH NUM_HEADS MLP_RATIO POS_EMBED POS_EMBED_GRID CONV_STEM_CHANNELS"),
    "Hiera": _each("HIERA", "EMBED_DIM NUM_HEADS STAGES Q_POOL Q_STRIDE MASK_UNIT_SIZE MASK_UNIT_ATTN DIM_MUL HEAD_MUL "
                            "PATCH_KERNEL PATCH_STRIDE PATCH_PADDING MLP_RATIO SEP_POS_EMBED"),
}
# The keys of the model around the backbone, by MODEL.MODEL_NAME (a backbone's name: its classifier).
MODEL_ARCHITECTURE_KEYS: dict[str, tuple[str, ...]] = {
    "BMViT": _each("BMVIT", "BACKBONE PROJ_DIM HEAD_LAYERS CLASS_HEAD CROSS_ATTENTION_HEADS TOKEN_ARRANGEMENT "
                            "BOX_REFERENCE CLASS_LOSS"),
    "MViTRoI": ("BMVIT.BACKBONE", *_each("DETECTION", "ROI_XFORM_RESOLUTION SPATIAL_SCALE_FACTOR ALIGNED")),
    **{name: ("MODEL.HEAD_ACT",) for name in BACKBONES},
}
# Keys whose value stands for a quantity derived from other keys, compared as the model resolves it:
# VIT.POS_EMBED_GRID [] is the token grid of the training clip (DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE).
DERIVED_KEYS: dict[str, Callable[[Any], Any]] = {"VIT.POS_EMBED_GRID": lambda config: list(position_grid(config))}
# Input keys a trained model expects as it was trained; other values run, with a warning.
INPUT_KEYS = ("DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TEST_CROP_SIZE", "DATA.RESIZE_MODE", "DATA.MEAN",
              "DATA.STD", "AVA.BGR")
# Model-group keys that do not change what trained weights compute.
NOT_COMPARED: dict[str, str] = {
    **dict.fromkeys(("MODEL.DROPOUT_RATE", "MVIT.DROPPATH_RATE", "MVIT.DROPOUT_RATE", "VIT.DROPPATH_RATE",
                     "HIERA.DROPPATH_RATE", "BMVIT.CLASS_DROPOUT"), "dropout and stochastic depth: training only"),
    **dict.fromkeys(_each("BMVIT", "COST_ACTOR COST_BBOX COST_GIOU COST_CLASS COST_CENTRE LOSS_ACTOR NO_ACTOR_WEIGHT "
                                   "LOSS_BBOX LOSS_GIOU LOSS_CLASS AUX_DENSE_WEIGHT AUX_DENSE_REGION "
                                   "BOX_LOSS_ON_NON_ACTORS"), "matching and losses: training only"),
    "MVIT.ZERO_DECAY_POS_CLS": "weight decay: training only",
    **dict.fromkeys(("MVIT.REL_POS_ZERO_INIT", "MVIT.HEAD_INIT_SCALE", "HIERA.HEAD_INIT_SCALE"), "initialisation"),
    **dict.fromkeys(("MVIT.ATTN_IMPL", "MODEL.ACT_CHECKPOINT", "MODEL.COMPILE"),
                    "how the same numbers are computed (up to rounding)"),
    **dict.fromkeys(_each("BMVIT", "ACTOR_THRESH TOP_K NMS_IOU SCORE_RULE"),
                    "post-processing of the triplets, chosen when the model runs"),
    "MODEL.ARCH": "informational; the model is MODEL.MODEL_NAME",
    "DETECTION.ENABLE": "the task of the training and test loops",
    **dict.fromkeys(("MVIT.MODE", "MVIT.PATCH_2D", "MVIT.USE_FIXED_SINCOS_POS"),
                    "one value only: any other is refused when the config is validated or the model built"),
}


def architecture_keys(cfg) -> tuple[str, ...]:
    """The keys compared with a trained checkpoint's config for the model `cfg` configures: COMMON_ARCHITECTURE_KEYS,
    the model's own (MODEL_ARCHITECTURE_KEYS) and its backbone's (BACKBONE_ARCHITECTURE_KEYS)."""
    return (COMMON_ARCHITECTURE_KEYS + MODEL_ARCHITECTURE_KEYS.get(cfg.MODEL.MODEL_NAME, ())
            + BACKBONE_ARCHITECTURE_KEYS.get(backbone_name(cfg), ()))


_MISSING = object()


def _normalised(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalised(item) for item in value]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _derived(key: str, config) -> Any:
    """DERIVED_KEYS[key] of a config (a CfgNode); _MISSING when the config lacks what it needs."""
    try:
        return DERIVED_KEYS[key](config)
    except (AttributeError, KeyError, TypeError, ValueError):
        return _MISSING


def check_trained_config(cfg, path: str, saved_yaml: str) -> None:
    """Compare cfg with the config a checkpoint was trained under (its "cfg" YAML).

    Raises:
        CheckpointError: naming the file and the first `architecture_keys` that differ.
    A differing INPUT_KEYS value is logged as a warning. A key the stored config lacks (an older version) is not
    compared.
    """
    try:
        saved = yaml.safe_load(saved_yaml)
    except yaml.YAMLError:
        logger.warning("%s: its stored config is not readable YAML; not compared with the current config", path)
        return
    if not isinstance(saved, dict):
        return
    try:
        saved_node = CfgNode(saved)  # for DERIVED_KEYS, which read it as the models read a config
    except (AssertionError, TypeError, ValueError):
        saved_node = None  # a value CfgNode does not hold: DERIVED_KEYS are compared as written

    def differences(keys):
        found = []
        for key in keys:
            then = config_value(saved, key, _MISSING)
            if then is _MISSING:
                continue
            now = config_value(cfg, key, _MISSING)
            if key in DERIVED_KEYS:
                then_value, now_value = _derived(key, saved_node), _derived(key, cfg)
                if then_value is not _MISSING and now_value is not _MISSING:
                    if _normalised(then_value) != _normalised(now_value):
                        found.append(f"{key} {then} = {then_value} (config: {now} = {now_value}; {key} "
                                     f"{then_value} keeps the trained one)")
                    continue
            if _normalised(then) != _normalised(now):
                found.append(f"{key} {then} (config: {now})")
        return found

    backbone = backbone_name(cfg)
    if backbone not in BACKBONE_ARCHITECTURE_KEYS:
        logger.warning("%s: backbone %s has no entry in BACKBONE_ARCHITECTURE_KEYS (engine/trained_checkpoint.py); "
                       "its own config keys are not compared with the ones the checkpoint was trained under",
                       path, backbone)
    architecture = differences(architecture_keys(cfg))
    if architecture:
        raise CheckpointError(f"{path}: trained with another model config: {'; '.join(architecture[:3])}"
                              + (f" (+{len(architecture) - 3} more)" if len(architecture) > 3 else ""))
    inputs = differences(INPUT_KEYS)
    if inputs:
        logger.warning("%s was trained with other input settings: %s", path, "; ".join(inputs))


def load_trained_checkpoint(cfg, model: torch.nn.Module) -> str:
    """Load a trained model for inference tools (demo, export, token figures); returns the path.

    The checkpoint is TEST.CHECKPOINT_FILE_PATH, else the newest complete one in OUTPUT_DIR/checkpoints; a
    pre-training checkpoint (TRAIN.CHECKPOINT_FILE_PATH) is never used, nor random weights. Every tensor of the
    model must come from the file, and its stored config must agree on the `architecture_keys`.

    Raises:
        CheckpointError: one line naming the file (or the places searched when there is none).
    """
    path = cfg.TEST.CHECKPOINT_FILE_PATH or get_last_checkpoint(cfg.OUTPUT_DIR)
    if not path:
        raise CheckpointError(
            f"no trained checkpoint: TEST.CHECKPOINT_FILE_PATH is empty and {get_checkpoint_dir(cfg.OUTPUT_DIR)} "
            f"holds none; train first (tools/run_net.py with this config) or set TEST.CHECKPOINT_FILE_PATH")
    checkpoint = read_checkpoint_file(path)
    if isinstance(checkpoint.get("cfg"), str):
        check_trained_config(cfg, path, checkpoint["cfg"])
    report = load_checkpoint(checkpoint, unwrap_model(model), source=path)
    problems = _unfilled_tensors(report)
    if report.resized:
        problems += [f"{len(report.resized)} tensor(s) resized: {', '.join(name for name, _, _ in report.resized[:5])}"]
    if problems:
        raise CheckpointError(f"{path}: does not fit {type(unwrap_model(model)).__name__} exactly; "
                              + "; ".join(problems) + "; another config?")
    return path
