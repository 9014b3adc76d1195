"""Model size and compute: parameter count and fvcore GFLOPs (one multiply-add = one flop, as PySlowFast reports).

fvcore counts convolutions, linears, matmuls, einsums and norms from a JIT trace, but not
`aten::scaled_dot_product_attention`; `count_gflops` registers a handler that counts its two matmuls, so the fused
attention costs what upstream's explicit `q @ k^T` and `attn @ v` cost. The trace runs MViT attention with its
additive-mask formulation ("sdpa"): the "folded" one pads the head dims with relative-position channels, extra work
of the implementation that is not the model's arithmetic (nor what papers and MFU count).
"""

from __future__ import annotations

import logging
import warnings
from numbers import Number
from typing import Any, Sequence

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

from slowfast_bmvit.models.attention import attention_impl

logger = logging.getLogger(__name__)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> Number:
    """fvcore handle for `aten::scaled_dot_product_attention(q, k, v, ...)`.

    q [..., Nq, d], k [..., Nk, d], v [..., Nk, dv]: q k^T costs prod(...) * Nq * Nk * d multiply-adds and the
    weighted sum of v prod(...) * Nq * Nk * dv. Softmax, scale and mask are elementwise and not counted (fvcore
    does not count them in the explicit formulation either).
    """
    q_shape, k_shape, v_shape = (get_shape(value) for value in inputs[:3])
    batch = 1
    for size in q_shape[:-2]:
        batch *= size
    n_q, d = q_shape[-2], q_shape[-1]
    n_k, d_v = k_shape[-2], v_shape[-1]
    return batch * n_q * n_k * (d + d_v)


class _TupleOutput(nn.Module):
    """Wraps a model so that the JIT trace sees a tuple of tensors, whatever the model returns."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs: Any) -> tuple[torch.Tensor, ...]:
        return tuple(_flatten_tensors(self.model(*inputs)))


def _flatten_tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for key in sorted(output) for t in _flatten_tensors(output[key])]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _flatten_tensors(item)]
    return []


class _UnpaddedAttentionAnalysis(FlopCountAnalysis):
    """FlopCountAnalysis whose trace runs MViT attention in its additive-mask form (see the module docstring)."""

    def _analyze(self):
        with attention_impl(self._model, "sdpa"):
            return super()._analyze()


def flop_analysis(model: nn.Module, inputs: Sequence[Any]) -> FlopCountAnalysis:
    """An fvcore FlopCountAnalysis of `model(*inputs)` with the SDPA handle, warnings about uncounted
    elementwise ops silenced. Works for models returning a tensor, a tuple/list or a dict of tensors."""
    analysis = _UnpaddedAttentionAnalysis(_TupleOutput(model), tuple(inputs))
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis


def count_gflops(model: nn.Module, inputs: Sequence[Any]) -> float:
    """Giga multiply-adds of one forward pass of `model(*inputs)` in eval mode, without gradients.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # fvcore traces with torch.jit, which newer torch releases flag as deprecated on every call.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
            total = flop_analysis(model, inputs).total()
    finally:
        model.train(was_training)
    return total / 1e9


def example_inputs(model: nn.Module, cfg, crop_size: int, num_boxes: int = 1,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """The inputs of one clip [1, C, DATA.NUM_FRAMES, crop_size, crop_size] (zeros) for `model`; a model that reads
    person boxes (`uses_input_boxes`, the two-stage baseline) also gets `num_boxes` boxes [R, 5] (batch index, x1,
    y1, x2, y2 in input pixels) spread over the frame."""
    clip = torch.zeros(1, cfg.DATA.INPUT_CHANNEL_NUM[0], cfg.DATA.NUM_FRAMES, crop_size, crop_size, device=device)
    if not getattr(model, "uses_input_boxes", False):
        return (clip,)
    corners = torch.linspace(0, crop_size / 2, num_boxes, device=device)
    boxes = torch.stack([torch.zeros_like(corners), corners, corners, corners + crop_size / 2,
                         corners + crop_size / 2], dim=1)
    return (clip, boxes)


def log_model_info(model: nn.Module, cfg, crop_size: int) -> tuple[int, float | None]:
    """Log the parameter count and GFLOPs of one clip at `crop_size` (LOG_MODEL_INFO); returns both.

    Counting traces the model with torch.jit; a model the tracer cannot follow gets a warning and GFLOPs None
    rather than stopping the run.
    """
    params = count_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    device = next(model.parameters()).device
    try:
        gflops: float | None = count_gflops(model, example_inputs(model, cfg, crop_size, device=device))
    except Exception as err:  # noqa: BLE001 - an informational count must not end a training run
        logger.warning("GFLOPs not counted (%s: %s)", type(err).__name__, " ".join(str(err).split())[:200])
        gflops = None
    clip = f"{cfg.DATA.NUM_FRAMES}x{crop_size}x{crop_size}"
    logger.info("model %s: %s parameters (%s trainable), %s GFLOPs per %s clip", type(model).__name__,
                f"{params:,}", f"{trainable:,}", "?" if gflops is None else f"{gflops:.3f}", clip)
    return params, gflops
