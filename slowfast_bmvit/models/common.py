"""Small building blocks shared by the transformer backbones: stochastic depth, the MLP, the patch embedding, the
resizing of absolute position tables (`resize_position_table`), the input check (`single_clip`) and PySlowFast's
initialisation (`init_truncated_normal`).

Parameter names (`fc1`, `fc2`, `proj`) follow PySlowFast so that its checkpoints load key for key.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the whole residual branch of a random subset of samples, rescale the others.

    Args:
        x: [B, ...] the residual branch output.
        drop_prob: probability of dropping one sample's branch.
        training: identity when False.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(keep_prob)
    return x * mask / keep_prob


class DropPath(nn.Module):
    """Module form of `drop_path` (one rate per residual block)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    """Linear -> GELU -> Linear on the last dimension, with optional dropout after each linear."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, drop_rate: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


# Stride (T, H, W) of each convolutional-stem layer (MVIT.CONV_STEM_CHANNELS).
STEM_STRIDE = (1, 2, 2)


class PatchEmbed(nn.Module):
    """Cube embedding: a strided Conv3d turning a clip into a grid of tokens, optionally after a convolutional stem.

    forward: [B, C_in, T, H, W] -> (tokens [B, T'*H'*W', C_out] in (t, h, w) raster order, grid (T', H', W')).
    With `stem_channels` (MVIT.CONV_STEM_CHANNELS), Conv3d(3x3x3, stride (1, 2, 2), padding 1) + BatchNorm3d + ReLU
    layers of those widths come first and the projection is followed by a BatchNorm3d; without, the module is
    upstream's (`proj` only, same state_dict).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        kernel: tuple[int, int, int],
        stride: tuple[int, int, int],
        padding: tuple[int, int, int],
        stem_channels: tuple[int, ...] = (),
    ):
        super().__init__()
        layers: list[nn.Module] = []
        for width in stem_channels:
            layers += [nn.Conv3d(dim_in, width, 3, stride=STEM_STRIDE, padding=1, bias=False),
                       nn.BatchNorm3d(width), nn.ReLU(inplace=True)]
            dim_in = width
        self.stem = nn.Sequential(*layers) if layers else None
        self.proj = nn.Conv3d(dim_in, dim_out, kernel_size=kernel, stride=stride, padding=padding)
        self.norm = nn.BatchNorm3d(dim_out) if layers else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        if self.stem is not None:
            x = self.stem(x)
        x = self.proj(x)
        if self.norm is not None:
            x = self.norm(x)
        grid = (x.shape[2], x.shape[3], x.shape[4])
        return x.flatten(2).transpose(1, 2), grid

    def output_grid(self, thw: tuple[int, int, int]) -> tuple[int, int, int]:
        """Token grid (T', H', W') that `forward` gives for a T x H x W input, read off its convolutions."""
        convs = [m for m in (self.stem or []) if isinstance(m, nn.Conv3d)] + [self.proj]
        size = list(thw)
        for conv in convs:
            size = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, conv.kernel_size, conv.stride, conv.padding)]
        return (size[0], size[1], size[2])


def resize_position_table(
    table: torch.Tensor, source: tuple[int, int, int], target: tuple[int, int, int]
) -> torch.Tensor:
    """An absolute position table made for the token grid `source` (T, H, W), resized to the grid `target`.

    Args:
        table: [T*H*W, C], one row per token in raster order (t slowest, then h, then w; channels last), the layout
            of ViT's table and of Hiera's joint, spatial ((1, H, W)) and temporal ((T, 1, 1)) tables.
    Returns:
        [T'*H'*W', C] in the same layout and dtype: the rows laid out as [T, H, W, C], resized linearly along time
        when T differs, then bicubically over (H, W) when those differ (align_corners False, as DeiT, VideoMAE and
        MAE resize learned tables when fine-tuning at another size); an axis whose length does not change is left
        exactly as it is. `table` itself when the grids are equal.
    """
    source, target = tuple(source), tuple(target)
    if source == target:
        return table
    t, h, w = source
    if table.shape[0] != t * h * w:
        raise ValueError(f"position table has {table.shape[0]} rows, not the {t}x{h}x{w} of its grid")
    dim = table.shape[1]
    grid = table.reshape(t, h, w, dim).float()
    if t != target[0]:
        # [H*W, C, T] -> linear along T
        flat = grid.permute(1, 2, 3, 0).reshape(h * w, dim, t)
        flat = F.interpolate(flat, size=target[0], mode="linear", align_corners=False)
        grid = flat.reshape(h, w, dim, target[0]).permute(3, 0, 1, 2)
    if (h, w) != tuple(target[1:]):
        # [T', C, H, W] -> bicubic over (H, W)
        planes = F.interpolate(grid.permute(0, 3, 1, 2), size=target[1:], mode="bicubic", align_corners=False)
        grid = planes.permute(0, 2, 3, 1)
    return grid.reshape(-1, dim).to(table.dtype)


def round_width(width: float, multiplier: float, divisor: int = 1, min_width: int | None = None) -> int:
    """`width * multiplier` rounded to the nearest multiple of `divisor` (never below 90% of it), as PySlowFast."""
    if not multiplier:
        return int(width)
    width = width * multiplier
    min_width = min_width or divisor
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * width:
        rounded += divisor
    return int(rounded)


def single_clip(x: torch.Tensor | Sequence[torch.Tensor], model_name: str) -> torch.Tensor:
    """The clip [B, C, T, H, W] of a single-pathway backbone's input, which may also come as PySlowFast's
    one-element pathway list; a ValueError naming `model_name` otherwise."""
    if isinstance(x, (list, tuple)):
        if len(x) != 1:
            raise ValueError(f"{model_name} takes one pathway; got a list of {len(x)} tensors")
        x = x[0]
    if x.ndim != 5:
        raise ValueError(f"{model_name} expects a clip [B, C, T, H, W]; got shape {tuple(x.shape)}")
    return x


def init_truncated_normal(
    model: nn.Module,
    embeddings: Sequence[nn.Parameter | None],
    head: nn.Module | None = None,
    head_init_scale: float = 1.0,
) -> None:
    """PySlowFast's MViT initialisation (which the official Hiera shares), in place.

    trunc_normal(std .02) for `embeddings` (in the given order; None entries are skipped), then for every Linear and
    Conv3d weight in `model.modules()` order; Linear biases and LayerNorm biases 0.02 (not zero), LayerNorm weights 1;
    finally `head.projection` (weight and bias) scaled by `head_init_scale`. The order is part of the result: each
    draw consumes the global RNG.
    """
    for embedding in embeddings:
        if embedding is not None:
            nn.init.trunc_normal_(embedding, std=0.02)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv3d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.constant_(module.bias, 0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.constant_(module.bias, 0.02)
            nn.init.constant_(module.weight, 1.0)
    if head is not None:
        with torch.no_grad():
            head.projection.weight.mul_(head_init_scale)
            head.projection.bias.mul_(head_init_scale)
