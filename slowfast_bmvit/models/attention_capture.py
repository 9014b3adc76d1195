"""Reading a block's attention weights, only when asked for (e.g. the supplement's Fig. 3 attention maps).

    with capture_attention(last_attention_module(model)) as captured:
        outputs = model(clip)
    weights = captured.weights  # [B, heads, Nq, Nk], each row sums to 1

Inside the block, that attention module runs the explicit (matmul) formulation, which gives the same numbers as the
fused scaled_dot_product_attention (attention.py), and keeps its softmax weights; every other module, and the same
module outside the block, keeps the fused path. Token order of Nq and Nk: the class token first (when the backbone
has one), then the query / key grid in (t, h, w) raster order; the query grid is the block's output grid and the
key grid may be pooled (`key_grid`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .attention import MultiScaleAttention


class CapturedAttention:
    """What the last forward pass through a captured module produced: `weights` [B, heads, Nq, Nk] and `grids`
    ((qt, qh, qw), (kt, kh, kw)) of the query and key tokens; None before it."""

    def __init__(self, module: MultiScaleAttention):
        self._module: MultiScaleAttention | None = module
        self._kept: tuple = (None, None)

    @property
    def weights(self) -> torch.Tensor | None:
        return self._module.captured_weights if self._module is not None else self._kept[0]

    @property
    def grids(self):
        return self._module.attention_grids if self._module is not None else self._kept[1]

    def _release(self) -> None:
        self._kept = (self._module.captured_weights, self._module.attention_grids)
        self._module = None


def last_attention_module(model: nn.Module) -> MultiScaleAttention:
    """The attention of the model's last transformer block (ValueError when it has none)."""
    modules = [module for module in model.modules() if isinstance(module, MultiScaleAttention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} has no MultiScaleAttention module")
    return modules[-1]


@contextmanager
def capture_attention(module: MultiScaleAttention) -> Iterator[CapturedAttention]:
    """Keep `module`'s attention weights of the forward passes run inside the block (the last one wins)."""
    module.capture_weights, module.captured_weights, module.attention_grids = True, None, None
    captured = CapturedAttention(module)
    try:
        yield captured
    finally:
        captured._release()
        module.capture_weights, module.captured_weights, module.attention_grids = False, None, None
