"""Small probes of how a piece of code runs: which SDPA kernel it dispatches to, and how often it waits on the device.

- `sdpa_kernels(fn)` runs `fn()` under the PyTorch profiler and names the scaled_dot_product_attention backends
  that ran ("flash", "efficient", "cudnn", "math", "flash_cpu"), so logs and benchmarks can say which one a model
  really used (a mask, mismatched head dims or an unsupported dtype silently falls back to "math").
- `HostSyncCounter` counts the tensor operations that make the host wait for the device on CUDA: device-to-host
  copies written `.cpu()`, tensor-to-Python conversions (`item`, `tolist`, `bool(t)`, `int(t)`, `float(t)`, ...),
  and ops whose output size depends on the values (`nonzero`, boolean-mask indexing, `unique`, ...). It sees the
  calls, not the device, so it also works on the CPU, where it counts the places that would wait on a GPU. Host-side
  work on an array already copied (numpy after `.cpu().numpy()`) is not counted, nor are host-to-device copies
  (asynchronous from pinned memory), nor torch.optim's reads of its host-side step counters. On CUDA,
  `torch.cuda.set_sync_debug_mode` is the ground truth.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode
from torch.profiler import ProfilerActivity, profile

# aten op -> short backend name.
_SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash_cpu",
}


def sdpa_kernels(fn: Callable[[], Any]) -> list[str]:
    """Sorted short names of the scaled_dot_product_attention backends that `fn()` dispatched to ([] for none)."""
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        fn()
    return sorted({_SDPA_OPS[event.key] for event in trace.key_averages() if event.key in _SDPA_OPS})


# Tensor methods and torch functions that wait for the device (see the module docstring).
_SYNCING = {
    torch.Tensor.cpu: "cpu",
    torch.Tensor.item: "item",
    torch.Tensor.tolist: "tolist",
    torch.Tensor.__bool__: "bool",
    torch.Tensor.__int__: "int",
    torch.Tensor.__float__: "float",
    torch.Tensor.__index__: "index",
    torch.Tensor.__format__: "format",
    torch.Tensor.nonzero: "nonzero",
    torch.nonzero: "nonzero",
    torch.Tensor.argwhere: "nonzero",
    torch.argwhere: "nonzero",
    torch.masked_select: "masked_select",
    torch.Tensor.masked_select: "masked_select",
    torch.unique: "unique",
    torch.Tensor.unique: "unique",
    torch.repeat_interleave: "repeat_interleave",
}


def _has_bool_mask(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(item, torch.Tensor) and item.dtype == torch.bool for item in items)


class HostSyncCounter(TorchFunctionMode):
    """Counts host-waiting tensor operations inside a `with` block; `counts` maps a kind to its number of calls.

        with HostSyncCounter() as syncs:
            train_step()
        assert syncs.total == 2, syncs.counts
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = _SYNCING.get(func)
        if kind == "repeat_interleave" and "output_size" in kwargs:
            kind = None  # the output size is given: no need to read the repeats
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and len(args) > 1 and _has_bool_mask(args[1]):
            kind = "bool_mask_index"
        if kind is not None and not _inside_torch_optim():
            self.counts[kind] += 1
        return func(*args, **kwargs)


def _inside_torch_optim() -> bool:
    """Called from torch.optim, whose step counters are host tensors unless the optimizer is `capturable` or
    `fused`: their `.item()` does not touch the device."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("torch.optim"):
            return True
        frame = frame.f_back
    return False
