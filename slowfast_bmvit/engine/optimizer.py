"""Optimizer construction: parameter groups (weight decay, layer-wise LR decay, head LR multiplier) and set_lr.

Every trainable parameter lands in exactly one group, keyed by (weight decay, lr_scale):

- weight decay is 0 for names listed by the model's `no_weight_decay()`, and, with SOLVER.ZERO_WD_1D_PARAM, for
  parameters with at most one dimension or named `*.bias` (upstream's rule); parameters of BatchNorm layers get
  BN.WEIGHT_DECAY (upstream keeps them in their own group); everything else gets SOLVER.WEIGHT_DECAY.
- lr_scale = SOLVER.LAYER_DECAY ** (L - layer_id) x (SOLVER.HEAD_LR_MULT for head parameters), where layer ids
  follow PySlowFast (0 for cls token / position embeddings / patch embedding, i + 1 for `blocks.i`, L for the rest,
  e.g. the final norm and the heads, so that the top of the network keeps the full rate). VideoMAE's fine-tuning
  uses the same rule for its ViT (`get_num_layer_for_vit`), so MViT and ViT backbones share it.
- frozen parameters (requires_grad False) are left out entirely.

`set_lr(optimizer, lr)` writes lr x lr_scale into every group, so the LR policy only ever deals with one number.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable, Iterable

import torch
from torch import nn

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.models import unwrap_model

from .lr_policy import get_base_lr

logger = logging.getLogger(__name__)

# Prefix of the backbone parameters in detection models (BMViT, the two-stage baseline); the rest are heads.
BACKBONE_PREFIX = "backbone."

_BLOCK_NAME = re.compile(r"^(?:backbone\.)?blocks\.(\d+)\.")
_EMBEDDING_NAMES = ("cls_token", "pos_embed", "patch_embed")


def _name_matches(name: str, pattern: str) -> bool:
    """True when `pattern` is `name` or a run of whole dot-separated components of it.

    `no_weight_decay()` may list full names ("backbone.cls_token") or upstream-style bare names ("rel_pos_h",
    which must match "blocks.3.attn.rel_pos_h"). Upstream tests plain substrings; whole components avoid
    zeroing, say, "cls_token_proj.weight" because "cls_token" is listed.
    """
    return f".{pattern}." in f".{name}."


def _block_layer_id(name: str) -> int | None:
    """i + 1 for parameters of `blocks.i` (optionally under `backbone.`), else None."""
    match = _BLOCK_NAME.match(name)
    return int(match.group(1)) + 1 if match else None


def _fallback_layer_id(name: str) -> int | None:
    """PySlowFast's rule read off the name (after an optional `backbone.` prefix): 0 for cls/pos/patch_embed,
    i + 1 for `blocks.i`, None for "the rest" (resolved to the top layer by the caller)."""
    block_id = _block_layer_id(name)
    if block_id is not None:
        return block_id
    if name.removeprefix(BACKBONE_PREFIX).startswith(_EMBEDDING_NAMES):
        return 0
    return None


def _layer_id_function(model: nn.Module) -> Callable[[str], int | None]:
    """How to find the layer id of a parameter name (relative to `model`); None means "top layer".

    Preference: the model's own `layer_id(name)`; else its backbone's `layer_id` for `backbone.*` names (heads are
    top layer); else the name-based fallback `_fallback_layer_id`.
    """
    if callable(getattr(model, "layer_id", None)):
        return model.layer_id
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module) and callable(getattr(backbone, "layer_id", None)):

        def backbone_layer_id(name: str) -> int | None:
            if name.startswith(BACKBONE_PREFIX):
                return backbone.layer_id(name[len(BACKBONE_PREFIX):])
            return None

        return backbone_layer_id
    return _fallback_layer_id


def _layer_scales(model: nn.Module, names: Iterable[str], decay: float) -> dict[str, float]:
    """SOLVER.LAYER_DECAY ** (top - layer_id) for each parameter name.

    top = max(every known layer id, 1 + the highest `blocks.<i>` id): the final norm and the heads, whichever
    function named them, share the top layer and keep the full rate. All parameters count, frozen ones included,
    so freezing part of the model does not shift the scales.
    """
    names = list(names)
    layer_id = _layer_id_function(model)
    ids = {name: layer_id(name) for name in names}
    block_ids = [i for i in map(_block_layer_id, names) if i is not None]
    top = max([i for i in ids.values() if i is not None] + [max(block_ids, default=0) + 1])
    return {name: decay ** (top - (top if i is None else i)) for name, i in ids.items()}


def _is_detection_model(model: nn.Module) -> bool:
    return isinstance(getattr(model, "backbone", None), nn.Module)


def get_param_groups(model: nn.Module, cfg) -> list[dict[str, Any]]:
    """Parameter groups for `torch.optim`, in first-appearance order of `model.named_parameters()`.

    Returns:
        A list of dicts with "params" (tensors), "param_names" (their names, without a DDP "module." prefix),
        "weight_decay" and "lr_scale". Frozen parameters are absent.
    """
    model = unwrap_model(model)
    named = list(model.named_parameters())
    no_decay_names = set(model.no_weight_decay()) if callable(getattr(model, "no_weight_decay", None)) else set()
    norm_param_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase) for p in m.parameters(False)
    }

    decay = cfg.SOLVER.LAYER_DECAY
    if decay != 1.0:
        scales = _layer_scales(model, [name for name, _ in named], decay)
    else:
        scales = {name: 1.0 for name, _ in named}
    head_mult = cfg.SOLVER.HEAD_LR_MULT
    if head_mult != 1.0 and not _is_detection_model(model):
        logger.warning(
            "SOLVER.HEAD_LR_MULT=%s ignored: %s has no `backbone` submodule to tell heads from backbone",
            head_mult,
            type(model).__name__,
        )
        head_mult = 1.0

    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in named:
        if not param.requires_grad:
            continue
        if id(param) in norm_param_ids:
            weight_decay = cfg.BN.WEIGHT_DECAY
        elif any(_name_matches(name, pattern) for pattern in no_decay_names):
            weight_decay = 0.0
        elif cfg.SOLVER.ZERO_WD_1D_PARAM and (param.ndim <= 1 or name.endswith(".bias")):
            weight_decay = 0.0
        else:
            weight_decay = cfg.SOLVER.WEIGHT_DECAY
        lr_scale = scales[name]
        if head_mult != 1.0 and not name.startswith(BACKBONE_PREFIX):
            lr_scale *= head_mult
        group = groups.setdefault(
            (weight_decay, lr_scale),
            {"params": [], "param_names": [], "weight_decay": weight_decay, "lr_scale": lr_scale},
        )
        group["params"].append(param)
        group["param_names"].append(name)
    if not groups:
        raise ConfigError(f"the model {type(model).__name__} has no trainable parameters (all requires_grad False)")
    return list(groups.values())


def construct_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW (SOLVER.OPTIMIZING_METHOD) over `get_param_groups(model, cfg)`.

    Each group starts at the base LR x its "lr_scale"; the trainer then calls `set_lr` every iteration.
    SGD uses SOLVER.MOMENTUM, DAMPENING, NESTEROV; Adam and AdamW use SOLVER.BETAS and eps 1e-8.
    """
    groups = get_param_groups(model, cfg)
    base_lr = get_base_lr(cfg)
    for group in groups:
        logger.info(
            "param group: lr_scale %.4g, weight_decay %.3g, %d tensors (%s%s)",
            group["lr_scale"],
            group["weight_decay"],
            len(group["params"]),
            ", ".join(group["param_names"][:3]),
            ", ..." if len(group["param_names"]) > 3 else "",
        )
    optim_groups = [
        {
            "params": group["params"],
            "weight_decay": group["weight_decay"],
            "lr_scale": group["lr_scale"],
            "lr": base_lr * group["lr_scale"],
        }
        for group in groups
    ]
    method = cfg.SOLVER.OPTIMIZING_METHOD
    solver = cfg.SOLVER
    if method == "sgd":
        if solver.NESTEROV and (solver.MOMENTUM <= 0 or solver.DAMPENING != 0):
            raise ConfigError("SOLVER.NESTEROV: Nesterov momentum needs SOLVER.MOMENTUM > 0 and SOLVER.DAMPENING 0")
        return torch.optim.SGD(
            optim_groups,
            lr=base_lr,
            momentum=solver.MOMENTUM,
            dampening=solver.DAMPENING,
            nesterov=solver.NESTEROV,
            weight_decay=solver.WEIGHT_DECAY,
        )
    if method in ("adam", "adamw"):
        if len(solver.BETAS) != 2:
            raise ConfigError(f"SOLVER.BETAS: needs two values (beta1, beta2), got {list(solver.BETAS)}")
        optimizer_class = torch.optim.Adam if method == "adam" else torch.optim.AdamW
        return optimizer_class(
            optim_groups, lr=base_lr, betas=tuple(solver.BETAS), eps=1e-8, weight_decay=solver.WEIGHT_DECAY
        )
    raise ConfigError(f"SOLVER.OPTIMIZING_METHOD: {method!r} is not one of sgd, adam, adamw")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to `lr` x its "lr_scale" (1 for groups without one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
