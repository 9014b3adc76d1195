"""Model registry and construction.

Models are registered by class name (`@MODEL_REGISTRY.register()`) and built from `cfg.MODEL.MODEL_NAME`.
A registered model is constructed as `Model(cfg)` and takes a clip tensor [B, 3, T, H, W] or PySlowFast's
one-element pathway list of it.
"""

from __future__ import annotations

import torch
from fvcore.common.registry import Registry

from slowfast_bmvit.config import ConfigError

MODEL_REGISTRY = Registry("MODEL")
MODEL_REGISTRY.__doc__ = """Registry of video models, built with `obj(cfg)`; see `build_model`."""


def get_model_class(name: str) -> type:
    """The registered model class called `name`, or a ConfigError naming MODEL.MODEL_NAME."""
    try:
        return MODEL_REGISTRY.get(name)
    except KeyError:
        known = ", ".join(sorted(name for name, _ in MODEL_REGISTRY))
        raise ConfigError(f"MODEL.MODEL_NAME: {name!r} is not a registered model (known: {known})") from None


def build_backbone(cfg) -> torch.nn.Module:
    """The head-less backbone of the detection models: `MODEL_REGISTRY[BMVIT.BACKBONE](cfg, with_head=False)`.

    A backbone is any registered model with `forward_features`: the shipped ones (config/validation.py's BACKBONES)
    and any the user registers. Any other name, a registered detector included, is a ConfigError listing the
    backbones.
    """
    backbones = sorted(name for name, cls in MODEL_REGISTRY if hasattr(cls, "forward_features"))
    if cfg.BMVIT.BACKBONE not in backbones:
        raise ConfigError(f"BMVIT.BACKBONE: {cfg.BMVIT.BACKBONE!r} is not a backbone "
                          f"(backbones: {', '.join(backbones)})")
    return MODEL_REGISTRY.get(cfg.BMVIT.BACKBONE)(cfg, with_head=False)


def build_model(cfg, gpu_id: int | None = None) -> torch.nn.Module:
    """Construct `cfg.MODEL.MODEL_NAME` and place it on its device.

    TRAIN.FREEZE_BACKBONE stops gradients to `model.backbone`. NUM_GPUS = 0 keeps the model on the CPU. With NUM_GPUS > 0 it moves to `cuda:<gpu_id>` (default: the current
    device). MODEL.COMPILE compiles it with torch.compile, in place. When torch.distributed is initialised with more
    than one process it is then wrapped in DistributedDataParallel, as in PySlowFast.
    """
    model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg)
    if cfg.TRAIN.FREEZE_BACKBONE:
        # Before any DDP wrapping: DDP only tracks parameters that require gradients when it is built.
        backbone = getattr(model, "backbone", None)
        if backbone is None:
            raise ConfigError(f"TRAIN.FREEZE_BACKBONE: {cfg.MODEL.MODEL_NAME} has no separate backbone to freeze")
        backbone.requires_grad_(False)
    if cfg.NUM_GPUS > 0:
        if not torch.cuda.is_available():
            raise ConfigError(f"NUM_GPUS: {cfg.NUM_GPUS} requested but CUDA is not available (use NUM_GPUS 0)")
        device = torch.cuda.current_device() if gpu_id is None else gpu_id
        model = model.cuda(device=device)
    if cfg.MODEL.COMPILE:
        # In place (nn.Module.compile): parameter names, checkpoints and attributes such as `model.backbone` stay.
        model.compile()
    if cfg.NUM_GPUS > 0:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                model = torch.nn.parallel.DistributedDataParallel(
                    model, device_ids=[device], output_device=device, find_unused_parameters=False
                )
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_world_size() > 1:
            model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    return model


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model under `build_model`'s wrappers: DistributedDataParallel / DataParallel (`.module`) and a
    torch.compile wrapper (`._orig_mod`), whose parameter and state_dict names carry no wrapper prefix."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model
