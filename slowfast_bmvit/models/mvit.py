"""MViTv2 video backbone and classifier, built from the PySlowFast MVIT.* keys.

`MViT(cfg)` is PySlowFast's MViT classifier: the same parameters under the same state_dict keys, the same
initialisation and the same numbers, so upstream `.pyth` checkpoints and YAML files work unchanged.
`MViT(cfg, with_head=False)` is the same network without `head.*`, for detection models that read the token grid
through `forward_features`. Differences from upstream (none changes a number at upstream's input size):
- any input grid is accepted: relative-position tables (and absolute position embeddings) are interpolated at run
  time, which multigrid training and the 256-pixel BMViT input need;
- MVIT.REMOVE_Q_POOL_BLOCKS removes the query pooling of the listed blocks (BMViT: [14], keeping a 16x16 output at
  256 px). It acts as if POOL_Q_STRIDE listed stride (1, 1, 1) for those blocks: the q grid and the skip path keep
  their size, the 3x3x3 q conv stays (so checkpoints load), and with POOL_KV_STRIDE_ADAPTIVE the k/v strides of
  the following blocks stay as they were before that block (MViTv2-S at 256 px: blocks 14-15 attend from a
  8x16x16 query grid to a 8x8x8 key grid);
- attention through scaled_dot_product_attention, by default with the relative-position terms folded into the dot
  product so that flash kernels apply (MVIT.ATTN_IMPL, models/attention.py), and activation checkpointing
  (MODEL.ACT_CHECKPOINT).
Not supported (ConfigError): MVIT.PATCH_2D (image input), MVIT.USE_FIXED_SINCOS_POS, upstream's reversible MViT.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from slowfast_bmvit.config import ConfigError

from .attention import Grid, MultiScaleBlock
from .build import MODEL_REGISTRY
from .common import STEM_STRIDE, PatchEmbed, round_width

logger = logging.getLogger(__name__)

_HEAD_ACTIVATIONS = ("softmax", "sigmoid", "none")


@dataclass(frozen=True)
class BlockSpec:
    """Shape of one MultiScaleBlock, derived from the MVIT.* keys (see `block_specs`)."""

    dim: int
    dim_out: int
    num_heads: int
    input_size: Grid  # the configured token grid entering the block (sizes the relative-position tables)
    kernel_q: tuple[int, ...]
    stride_q: tuple[int, ...]
    kernel_kv: tuple[int, ...]
    stride_kv: tuple[int, ...]
    drop_path: float


def _default_kernel(stride: list[int]) -> list[int]:
    return [s + 1 if s > 1 else s for s in stride]


def block_specs(cfg) -> list[BlockSpec]:
    """Per-block dims, heads, pooling kernels and strides, following upstream's rules.

    DIM_MUL / HEAD_MUL multiply the width / head count at the listed blocks; POOL_Q_STRIDE sets q strides
    (kernel POOL_KVQ_KERNEL, else stride+1); POOL_KV_STRIDE_ADAPTIVE starts at the given k/v stride and divides it
    by each q stride as blocks go (overriding POOL_KV_STRIDE); REMOVE_Q_POOL_BLOCKS sets the listed q strides to 1
    before anything is derived from them.
    """
    mvit = cfg.MVIT
    depth = mvit.DEPTH
    dim_mul = [1.0] * (depth + 1)
    head_mul = [1.0] * (depth + 1)
    for index, mul in mvit.DIM_MUL:
        dim_mul[int(index)] = float(mul)
    for index, mul in mvit.HEAD_MUL:
        head_mul[int(index)] = float(mul)

    kvq_kernel = list(mvit.POOL_KVQ_KERNEL) if mvit.POOL_KVQ_KERNEL is not None else None
    stride_q: list[list[int]] = [[] for _ in range(depth)]
    kernel_q: list[list[int]] = [[] for _ in range(depth)]
    for entry in mvit.POOL_Q_STRIDE:
        index, stride = int(entry[0]), [int(s) for s in entry[1:]]
        stride_q[index] = stride
        kernel_q[index] = kvq_kernel if kvq_kernel is not None else _default_kernel(stride)
    for index in mvit.REMOVE_Q_POOL_BLOCKS:
        if stride_q[index]:
            stride_q[index] = [1] * len(stride_q[index])

    kv_entries = [list(entry) for entry in mvit.POOL_KV_STRIDE]
    if mvit.POOL_KV_STRIDE_ADAPTIVE is not None:
        current = [int(s) for s in mvit.POOL_KV_STRIDE_ADAPTIVE]
        kv_entries = []
        for index in range(depth):
            if stride_q[index]:
                current = [max(c // s, 1) for c, s in zip(current, stride_q[index])]
            kv_entries.append([index] + current)
    stride_kv: list[list[int]] = [[] for _ in range(depth)]
    kernel_kv: list[list[int]] = [[] for _ in range(depth)]
    for entry in kv_entries:
        index, stride = int(entry[0]), [int(s) for s in entry[1:]]
        stride_kv[index] = stride
        kernel_kv[index] = kvq_kernel if kvq_kernel is not None else _default_kernel(stride)

    drop_rates = torch.linspace(0, mvit.DROPPATH_RATE, depth).tolist()
    size: list[int] = list(config_patch_grid(cfg))
    embed_dim, num_heads = mvit.EMBED_DIM, mvit.NUM_HEADS
    specs = []
    for index in range(depth):
        num_heads = round_width(num_heads, head_mul[index])
        # Upstream's divisor multiplies the (already multiplied) head count once more; kept for identical widths.
        if mvit.DIM_MUL_IN_ATT:
            dim_out = round_width(embed_dim, dim_mul[index], divisor=round_width(num_heads, head_mul[index]))
        else:
            dim_out = round_width(embed_dim, dim_mul[index + 1], divisor=round_width(num_heads, head_mul[index + 1]))
        specs.append(
            BlockSpec(
                dim=embed_dim,
                dim_out=dim_out,
                num_heads=num_heads,
                input_size=(size[0], size[1], size[2]),
                kernel_q=tuple(kernel_q[index]),
                stride_q=tuple(stride_q[index]),
                kernel_kv=tuple(kernel_kv[index]),
                stride_kv=tuple(stride_kv[index]),
                drop_path=drop_rates[index],
            )
        )
        if stride_q[index]:
            size = [n // s for n, s in zip(size, stride_q[index])]
        embed_dim = dim_out
    return specs


def config_patch_grid(cfg) -> Grid:
    """Token grid of the configured training clip: (NUM_FRAMES, TRAIN_CROP_SIZE, TRAIN_CROP_SIZE) // PATCH_STRIDE,
    the stride including the convolutional stem's (MVIT.CONV_STEM_CHANNELS) when there is one."""
    num_stem = len(cfg.MVIT.CONV_STEM_CHANNELS)
    stride = [p * s**num_stem for p, s in zip(cfg.MVIT.PATCH_STRIDE, STEM_STRIDE)]
    crop = cfg.DATA.TRAIN_CROP_SIZE
    return (cfg.DATA.NUM_FRAMES // stride[0], crop // stride[1], crop // stride[2])


def _check_supported(cfg) -> None:
    if cfg.MVIT.PATCH_2D:
        raise ConfigError("MVIT.PATCH_2D: image (2-D patch) input is not supported by this video MViT")
    if cfg.MVIT.USE_FIXED_SINCOS_POS:
        raise ConfigError("MVIT.USE_FIXED_SINCOS_POS: fixed sin-cos position embeddings are not supported")
    if cfg.MVIT.NORM != "layernorm":
        raise ConfigError(f"MVIT.NORM: {cfg.MVIT.NORM!r} is not supported (only 'layernorm')")
    if cfg.MVIT.MODE not in ("conv", "max", "avg"):
        raise ConfigError(f"MVIT.MODE: {cfg.MVIT.MODE!r} is not one of conv, max, avg")
    if cfg.MODEL.HEAD_ACT not in _HEAD_ACTIVATIONS:
        raise ConfigError(f"MODEL.HEAD_ACT: {cfg.MODEL.HEAD_ACT!r} is not one of {', '.join(_HEAD_ACTIVATIONS)}")
    for index in cfg.MVIT.REMOVE_Q_POOL_BLOCKS:
        if not 0 <= index < cfg.MVIT.DEPTH:
            raise ConfigError(f"MVIT.REMOVE_Q_POOL_BLOCKS: block {index} outside 0..{cfg.MVIT.DEPTH - 1}")


class TransformerBasicHead(nn.Module):
    """Dropout -> Linear (`projection`); the activation (softmax / sigmoid) only in eval mode, as upstream."""

    def __init__(self, dim_in: int, num_classes: int, dropout_rate: float = 0.0, act_func: str = "softmax"):
        super().__init__()
        if dropout_rate > 0.0:
            self.dropout = nn.Dropout(dropout_rate)
        self.projection = nn.Linear(dim_in, num_classes)
        self.act = {"softmax": nn.Softmax(dim=1), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[act_func]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        x = self.projection(x)
        return x if self.training else self.act(x)


@MODEL_REGISTRY.register()
class MViT(nn.Module):
    """MViTv2 (Li et al., CVPR 2022) for video, key-for-key PySlowFast's `MViT`.

    Input: a clip [B, 3, T, H, W] (or PySlowFast's one-element list of it); any T, H, W the patch embedding and
    the pooling strides accept.
    `forward` -> [B, NUM_CLASSES]: logits in train mode; in eval mode MODEL.HEAD_ACT (softmax) is applied, exactly
    as upstream, so evaluation code receives probabilities.
    `forward_features` -> (tokens [B, out_dim, T', H', W'], cls [B, out_dim] or None), both after the final norm.
    """

    def __init__(self, cfg, with_head: bool = True):
        super().__init__()
        _check_supported(cfg)
        mvit = cfg.MVIT
        self.zero_decay_pos_cls = mvit.ZERO_DECAY_POS_CLS
        self.cls_embed_on = mvit.CLS_EMBED_ON
        self.use_abs_pos = mvit.USE_ABS_POS
        self.sep_pos_embed = mvit.SEP_POS_EMBED
        self.use_mean_pooling = mvit.USE_MEAN_POOLING
        self.act_checkpoint = cfg.MODEL.ACT_CHECKPOINT
        self.patch_dims = config_patch_grid(cfg)
        embed_dim = mvit.EMBED_DIM

        self.patch_embed = PatchEmbed(
            cfg.DATA.INPUT_CHANNEL_NUM[0], embed_dim, tuple(mvit.PATCH_KERNEL), tuple(mvit.PATCH_STRIDE),
            tuple(mvit.PATCH_PADDING), tuple(int(c) for c in mvit.CONV_STEM_CHANNELS),
        )
        if self.cls_embed_on:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        num_patches = self.patch_dims[0] * self.patch_dims[1] * self.patch_dims[2]
        if self.use_abs_pos:
            if self.sep_pos_embed:
                spatial = self.patch_dims[1] * self.patch_dims[2]
                self.pos_embed_spatial = nn.Parameter(torch.zeros(1, spatial, embed_dim))
                self.pos_embed_temporal = nn.Parameter(torch.zeros(1, self.patch_dims[0], embed_dim))
                if self.cls_embed_on:
                    self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, embed_dim))
            else:
                tokens = num_patches + (1 if self.cls_embed_on else 0)
                self.pos_embed = nn.Parameter(torch.zeros(1, tokens, embed_dim))
        self.pos_drop = nn.Dropout(mvit.DROPOUT_RATE) if mvit.DROPOUT_RATE > 0.0 else nn.Identity()
        self.norm_stem = nn.LayerNorm(embed_dim, eps=1e-6) if mvit.NORM_STEM else None

        self.specs = block_specs(cfg)
        self.blocks = nn.ModuleList(
            MultiScaleBlock(
                dim=spec.dim,
                dim_out=spec.dim_out,
                num_heads=spec.num_heads,
                input_size=spec.input_size,
                mlp_ratio=mvit.MLP_RATIO,
                qkv_bias=mvit.QKV_BIAS,
                drop_rate=mvit.DROPOUT_RATE,
                drop_path=spec.drop_path,
                layer_scale_init_value=mvit.LAYER_SCALE_INIT_VALUE,
                kernel_q=spec.kernel_q,
                kernel_kv=spec.kernel_kv,
                stride_q=spec.stride_q,
                stride_kv=spec.stride_kv,
                mode=mvit.MODE,
                has_cls_embed=self.cls_embed_on,
                pool_first=mvit.POOL_FIRST,
                rel_pos_spatial=mvit.REL_POS_SPATIAL,
                rel_pos_temporal=mvit.REL_POS_TEMPORAL,
                rel_pos_zero_init=mvit.REL_POS_ZERO_INIT,
                residual_pooling=mvit.RESIDUAL_POOLING,
                dim_mul_in_att=mvit.DIM_MUL_IN_ATT,
                separate_qkv=mvit.SEPARATE_QKV,
                attn_impl=mvit.ATTN_IMPL,
            )
            for spec in self.specs
        )
        self.out_dim = self.specs[-1].dim_out
        self.norm = nn.LayerNorm(self.out_dim, eps=1e-6)
        if with_head:
            self.head = TransformerBasicHead(
                self.out_dim, cfg.MODEL.NUM_CLASSES, cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT
            )
        self._init_parameters(mvit.HEAD_INIT_SCALE)

    def _init_parameters(self, head_init_scale: float) -> None:
        """Upstream's init: trunc_normal(.02) weights, 0.02 (not zero) Linear and LayerNorm biases."""
        for name in ("pos_embed", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class", "cls_token"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=0.02)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear) and module.bias is not None:
                    nn.init.constant_(module.bias, 0.02)
            elif isinstance(module, nn.LayerNorm):
                nn.init.constant_(module.bias, 0.02)
                nn.init.constant_(module.weight, 1.0)
        if hasattr(self, "head"):
            with torch.no_grad():
                self.head.projection.weight.mul_(head_init_scale)
                self.head.projection.bias.mul_(head_init_scale)

    # ------------------------------------------------------------------ geometry and optimiser helpers

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def output_grid(self, thw: tuple[int, int, int]) -> Grid:
        """Token grid (T', H', W') that `forward_features` returns for a clip of T x H x W frames/pixels."""
        size = list(self.patch_embed.output_grid(thw))
        for spec, block in zip(self.specs, self.blocks):
            if block.attn.pool_q is not None:
                size = [(n + 2 * (k // 2) - k) // s + 1 for n, k, s in zip(size, spec.kernel_q, spec.stride_q)]
        return (size[0], size[1], size[2])

    def no_weight_decay(self) -> set[str]:
        """Full parameter names (relative to this module) that get zero weight decay under MVIT.ZERO_DECAY_POS_CLS:
        the class token, absolute position embeddings and relative-position tables, as upstream."""
        if not self.zero_decay_pos_cls:
            return set()
        pattern = re.compile(r"(^cls_token$|^pos_embed|\.rel_pos_[thw]$)")
        return {name for name, _ in self.named_parameters() if pattern.search(name)}

    def layer_id(self, name: str) -> int:
        """Layer index for layer-wise lr decay: 0 for cls/pos/patch_embed, i+1 for blocks.i, depth+1 otherwise
        (final norm, head). `name` is relative to this module."""
        match = re.match(r"blocks\.(\d+)\.", name)
        if match:
            return int(match.group(1)) + 1
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            return 0
        return self.depth + 1

    # ------------------------------------------------------------------ forward

    def _abs_pos_embed(self, thw: Grid) -> torch.Tensor:
        """[1, N, C] absolute position embedding, trilinearly resized to `thw` when it differs (as upstream)."""
        if self.sep_pos_embed:
            t, h, w = self.patch_dims
            pos = self.pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(
                self.pos_embed_temporal, h * w, dim=1
            )
            if self.cls_embed_on:
                pos = torch.cat((self.pos_embed_class, pos), dim=1)
        else:
            pos = self.pos_embed
        if self.cls_embed_on:
            cls_pos, pos = pos[:, :1], pos[:, 1:]
        if tuple(thw) != tuple(self.patch_dims):
            grid = pos.reshape(1, *self.patch_dims, -1).permute(0, 4, 1, 2, 3)
            grid = F.interpolate(grid, size=tuple(thw), mode="trilinear")
            pos = grid.flatten(2).transpose(1, 2)
        if self.cls_embed_on:
            pos = torch.cat((cls_pos, pos), dim=1)
        return pos

    def _tokens(self, x: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, Grid]:
        """Patch embedding and all blocks: tokens [B, N, out_dim] before the final norm, and their grid."""
        if isinstance(x, (list, tuple)):
            if len(x) != 1:
                raise ValueError(f"MViT takes one pathway; got a list of {len(x)} tensors")
            x = x[0]
        if x.ndim != 5:
            raise ValueError(f"MViT expects a clip [B, C, T, H, W]; got shape {tuple(x.shape)}")
        x, thw = self.patch_embed(x)
        if self.cls_embed_on:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        if self.use_abs_pos:
            x = x + self._abs_pos_embed(thw)
        x = self.pos_drop(x)
        if self.norm_stem is not None:
            x = self.norm_stem(x)
        use_checkpoint = self.act_checkpoint and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if use_checkpoint:
                x, thw = checkpoint(block, x, thw, use_reentrant=False)
            else:
                x, thw = block(x, thw)
        return x, thw

    def forward_features(self, x: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Backbone output for detection heads.

        Returns:
            tokens: [B, out_dim, T', H', W'] after the final LayerNorm, class token removed.
            cls: [B, out_dim] the normalised class token, or None without MVIT.CLS_EMBED_ON.
        """
        x, (t, h, w) = self._tokens(x)
        x = self.norm(x)
        cls = None
        if self.cls_embed_on:
            cls, x = x[:, 0], x[:, 1:]
        tokens = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], t, h, w)
        return tokens, cls

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Clip classification: [B, NUM_CLASSES] logits (train) or MODEL.HEAD_ACT probabilities (eval)."""
        if not hasattr(self, "head"):
            raise RuntimeError("MViT was built with with_head=False; call forward_features")
        x, _ = self._tokens(x)
        if self.use_mean_pooling:
            if self.cls_embed_on:
                x = x[:, 1:]
            x = self.norm(x.mean(1))
        elif self.cls_embed_on:
            x = self.norm(x)[:, 0]
        else:
            x = self.norm(x).mean(1)
        return self.head(x)
