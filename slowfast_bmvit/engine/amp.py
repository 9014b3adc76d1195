"""Device and mixed-precision policy shared by training and inference."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def device_of(cfg) -> torch.device:
    """The current CUDA device when NUM_GPUS > 0, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if cfg.NUM_GPUS > 0 else torch.device("cpu")


def autocast_context(cfg, device: torch.device):
    """bf16 or fp16 autocast under TRAIN.MIXED_PRECISION (TRAIN.MIXED_PRECISION_DTYPE), else a no-op."""
    if not cfg.TRAIN.MIXED_PRECISION:
        return nullcontext()
    dtype = torch.bfloat16 if cfg.TRAIN.MIXED_PRECISION_DTYPE == "bfloat16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
