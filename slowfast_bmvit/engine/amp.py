"""Device and mixed-precision policy shared by training and inference: the one place that opens autocast.

Training, validation and the test run under `autocast_context` (TRAIN.MIXED_PRECISION's dtype, else float32); the
demo on a video runs under `demo_autocast` (bfloat16 on a GPU whatever TRAIN.MIXED_PRECISION says, float32 on the
CPU).
"""

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


def demo_autocast(device: torch.device):
    """bfloat16 autocast on a CUDA device whatever TRAIN.MIXED_PRECISION says, else a no-op (float32 on the CPU).

    The demo favours GPU throughput on long videos; bfloat16 keeps float32's range, and the post-processing reads
    the outputs in float32.
    """
    if device.type != "cuda":
        return nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
