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
  (MODEL.ACT_CHECKPOINT);
- an optional convolutional stem (MVIT.CONV_STEM_CHANNELS, models/common.py's PatchEmbed).

Construction follows torchvision's video MViT: `block_specs(cfg)` turns the MVIT keys into one `BlockSpec` per block
and each `MultiScaleBlock(spec)` builds itself from it.

Only MViTv2's form is built. Upstream's other variants (MViTv1's max/avg pooling, pooling before the projection,
separate position embeddings and stem norm; separate q/k/v layers, LayerScale, mean-pooled classification) are
refused when the config is validated: config/validation.py owns the checks of the MVIT keys, and this module trusts
a validated config (tools validate before they build a model). Its own checks (`_check_input_form`): image input
(MVIT.PATCH_2D) and fixed sin-cos positions (MVIT.USE_FIXED_SINCOS_POS) are refused here, where the input form is
decided.
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from slowfast_bmvit.config import ConfigError

from .attention import BlockSpec, Grid, MultiScaleBlock
from .build import MODEL_REGISTRY
from .common import STEM_STRIDE, PatchEmbed, init_truncated_normal, round_width, single_clip

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------- block table


def _per_block(depth: int, entries, value) -> list:
    """[value(entry) at index entry[0] for each entry, None elsewhere]: a per-block list from [[block, ...], ...]."""
    table = [None] * depth
    for entry in entries:
        table[int(entry[0])] = value(entry)
    return table


def _widths_and_heads(cfg) -> list[tuple[int, int, int]]:
    """(dim, dim_out, num_heads) per block: DIM_MUL / HEAD_MUL multiply the width / head count at the listed blocks,
    the width rounded to a multiple of the head count; the change happens at the listed block with DIM_MUL_IN_ATT,
    else in the block before it (its MLP), as upstream."""
    mvit = cfg.MVIT
    depth = mvit.DEPTH
    dim_mul = [1.0] * (depth + 1)
    head_mul = [1.0] * (depth + 1)
    for index, mul in mvit.DIM_MUL:
        dim_mul[int(index)] = float(mul)
    for index, mul in mvit.HEAD_MUL:
        head_mul[int(index)] = float(mul)
    widths = []
    dim, num_heads = mvit.EMBED_DIM, mvit.NUM_HEADS
    for index in range(depth):
        num_heads = round_width(num_heads, head_mul[index])
        # Upstream's divisor multiplies the (already multiplied) head count once more; kept for identical widths.
        at = index if mvit.DIM_MUL_IN_ATT else index + 1
        dim_out = round_width(dim, dim_mul[at], divisor=round_width(num_heads, head_mul[at]))
        widths.append((dim, dim_out, num_heads))
        dim = dim_out
    return widths


def _default_kernel(stride: list[int]) -> list[int]:
    return [s + 1 if s > 1 else s for s in stride]


def _pooling_kernel(cfg, stride: list[int]) -> list[int]:
    """POOL_KVQ_KERNEL when set, else stride + 1 along each strided axis."""
    kernel = cfg.MVIT.POOL_KVQ_KERNEL
    return [int(k) for k in kernel] if kernel is not None else _default_kernel(stride)


def _q_pooling(cfg) -> tuple[list[list[int]], list[list[int]]]:
    """(kernel_q, stride_q) per block ([] for none): POOL_Q_STRIDE, with the strides of REMOVE_Q_POOL_BLOCKS set to
    1 (their kernels, hence their convolutions, stay)."""
    mvit = cfg.MVIT
    strides = _per_block(mvit.DEPTH, mvit.POOL_Q_STRIDE, lambda entry: [int(s) for s in entry[1:]])
    kernels = [_pooling_kernel(cfg, stride) if stride is not None else [] for stride in strides]
    strides = [stride or [] for stride in strides]
    for index in mvit.REMOVE_Q_POOL_BLOCKS:
        if strides[index]:
            strides[index] = [1] * len(strides[index])
    return kernels, strides


def _kv_pooling(cfg, stride_q: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """(kernel_kv, stride_kv) per block ([] for none): POOL_KV_STRIDE, or with POOL_KV_STRIDE_ADAPTIVE a stride that
    starts at the given one and is divided by each block's (effective) q stride as blocks go."""
    mvit = cfg.MVIT
    entries = [list(entry) for entry in mvit.POOL_KV_STRIDE]
    if mvit.POOL_KV_STRIDE_ADAPTIVE is not None:
        current = [int(s) for s in mvit.POOL_KV_STRIDE_ADAPTIVE]
        entries = []
        for index in range(mvit.DEPTH):
            if stride_q[index]:
                current = [max(c // s, 1) for c, s in zip(current, stride_q[index])]
            entries.append([index] + current)
    strides = _per_block(mvit.DEPTH, entries, lambda entry: [int(s) for s in entry[1:]])
    kernels = [_pooling_kernel(cfg, stride) if stride is not None else [] for stride in strides]
    return kernels, [stride or [] for stride in strides]


def _input_grids(cfg, stride_q: list[list[int]]) -> list[Grid]:
    """The configured token grid entering each block: the patch grid, divided by each q stride on the way."""
    size = list(config_patch_grid(cfg))
    grids = []
    for stride in stride_q:
        grids.append((size[0], size[1], size[2]))
        if stride:
            size = [n // s for n, s in zip(size, stride)]
    return grids


def block_specs(cfg) -> list[BlockSpec]:
    """One BlockSpec per block, following upstream's rules: widths and heads (`_widths_and_heads`), q pooling
    (`_q_pooling`), k/v pooling (`_kv_pooling`), the configured input grid (`_input_grids`) and stochastic depth
    rising linearly to DROPPATH_RATE; the options all blocks share come from the other MVIT keys."""
    mvit = cfg.MVIT
    kernel_q, stride_q = _q_pooling(cfg)
    kernel_kv, stride_kv = _kv_pooling(cfg, stride_q)
    grids = _input_grids(cfg, stride_q)
    drop_rates = torch.linspace(0, mvit.DROPPATH_RATE, mvit.DEPTH).tolist()
    return [
        BlockSpec(
            dim=dim,
            dim_out=dim_out,
            num_heads=num_heads,
            input_size=grids[index],
            kernel_q=tuple(kernel_q[index]),
            stride_q=tuple(stride_q[index]),
            kernel_kv=tuple(kernel_kv[index]),
            stride_kv=tuple(stride_kv[index]),
            drop_path=drop_rates[index],
            mlp_ratio=mvit.MLP_RATIO,
            qkv_bias=mvit.QKV_BIAS,
            drop_rate=mvit.DROPOUT_RATE,
            has_cls_embed=mvit.CLS_EMBED_ON,
            rel_pos_spatial=mvit.REL_POS_SPATIAL,
            rel_pos_temporal=mvit.REL_POS_TEMPORAL,
            rel_pos_zero_init=mvit.REL_POS_ZERO_INIT,
            residual_pooling=mvit.RESIDUAL_POOLING,
            dim_mul_in_att=mvit.DIM_MUL_IN_ATT,
            attn_impl=mvit.ATTN_IMPL,
        )
        for index, (dim, dim_out, num_heads) in enumerate(_widths_and_heads(cfg))
    ]


def config_patch_grid(cfg) -> Grid:
    """Token grid of the configured training clip: (NUM_FRAMES, TRAIN_CROP_SIZE, TRAIN_CROP_SIZE) // PATCH_STRIDE,
    the stride including the convolutional stem's (MVIT.CONV_STEM_CHANNELS) when there is one."""
    num_stem = len(cfg.MVIT.CONV_STEM_CHANNELS)
    stride = [p * s**num_stem for p, s in zip(cfg.MVIT.PATCH_STRIDE, STEM_STRIDE)]
    crop = cfg.DATA.TRAIN_CROP_SIZE
    return (cfg.DATA.NUM_FRAMES // stride[0], crop // stride[1], crop // stride[2])


def _check_input_form(cfg) -> None:
    if cfg.MVIT.PATCH_2D:
        raise ConfigError("MVIT.PATCH_2D: image (2-D patch) input is not supported by this video MViT")
    if cfg.MVIT.USE_FIXED_SINCOS_POS:
        raise ConfigError("MVIT.USE_FIXED_SINCOS_POS: fixed sin-cos position embeddings are not supported")


# ---------------------------------------------------------------------------------------------- model


class TransformerBasicHead(nn.Module):
    """Dropout -> Linear (`projection`); the activation (softmax / sigmoid) only in eval mode, as upstream."""

    def __init__(self, dim_in: int, num_classes: int, dropout_rate: float = 0.0, act_func: str = "softmax"):
        super().__init__()
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0.0 else None
        self.projection = nn.Linear(dim_in, num_classes)
        self.act = {"softmax": nn.Softmax(dim=1), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[act_func]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout is not None:
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
        _check_input_form(cfg)
        mvit = cfg.MVIT
        self.zero_decay_pos_cls = mvit.ZERO_DECAY_POS_CLS
        self.act_checkpoint = cfg.MODEL.ACT_CHECKPOINT
        self.patch_dims = config_patch_grid(cfg)
        embed_dim = mvit.EMBED_DIM

        self.patch_embed = PatchEmbed(
            cfg.DATA.INPUT_CHANNEL_NUM[0], embed_dim, tuple(mvit.PATCH_KERNEL), tuple(mvit.PATCH_STRIDE),
            tuple(mvit.PATCH_PADDING), tuple(int(c) for c in mvit.CONV_STEM_CHANNELS),
        )
        # The class token [1, 1, C] (MVIT.CLS_EMBED_ON) and the absolute position embedding [1, N, C] over the
        # configured patch grid, the class token's first (MVIT.USE_ABS_POS); None when off.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if mvit.CLS_EMBED_ON else None
        self.pos_embed: nn.Parameter | None = None
        if mvit.USE_ABS_POS:
            tokens = self.patch_dims[0] * self.patch_dims[1] * self.patch_dims[2] + (1 if mvit.CLS_EMBED_ON else 0)
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, embed_dim))
        self.pos_drop = nn.Dropout(mvit.DROPOUT_RATE) if mvit.DROPOUT_RATE > 0.0 else nn.Identity()

        self.specs = block_specs(cfg)
        self.blocks = nn.ModuleList(MultiScaleBlock(spec) for spec in self.specs)
        self.out_dim = self.specs[-1].dim_out
        self.norm = nn.LayerNorm(self.out_dim, eps=1e-6)
        self.head: TransformerBasicHead | None = None
        if with_head:
            self.head = TransformerBasicHead(
                self.out_dim, cfg.MODEL.NUM_CLASSES, cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT
            )
        init_truncated_normal(self, (self.pos_embed, self.cls_token), self.head, mvit.HEAD_INIT_SCALE)

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

    def checkpoint_shape_hint(self, name: str, checkpoint_shape: tuple[int, ...],
                              model_shape: tuple[int, ...]) -> str | None:
        """For the checkpoint loader's error message: what sizes an absolute position table of another length."""
        if name == "pos_embed" and checkpoint_shape[-1] == model_shape[-1]:
            return ("an absolute position table of another token grid, not resized as it loads: MVIT.USE_ABS_POS has "
                    "one row per token of the training clip, DATA.NUM_FRAMES x DATA.TRAIN_CROP_SIZE^2 over "
                    "MVIT.PATCH_STRIDE, plus one for the class token with MVIT.CLS_EMBED_ON")
        return None

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
        pos = self.pos_embed
        if tuple(thw) == tuple(self.patch_dims):
            return pos
        has_cls = self.cls_token is not None
        cls_pos, grid_pos = (pos[:, :1], pos[:, 1:]) if has_cls else (None, pos)
        grid = grid_pos.reshape(1, *self.patch_dims, -1).permute(0, 4, 1, 2, 3)
        grid_pos = F.interpolate(grid, size=tuple(thw), mode="trilinear").flatten(2).transpose(1, 2)
        return torch.cat((cls_pos, grid_pos), dim=1) if has_cls else grid_pos

    def _tokens(self, x: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, Grid]:
        """Patch embedding and all blocks: tokens [B, N, out_dim] before the final norm, and their grid."""
        x, thw = self.patch_embed(single_clip(x, "MViT"))
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        if self.pos_embed is not None:
            x = x + self._abs_pos_embed(thw)
        x = self.pos_drop(x)
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
        if self.cls_token is not None:
            cls, x = x[:, 0], x[:, 1:]
        tokens = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], t, h, w)
        return tokens, cls

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Clip classification from the normalised class token (the mean of the normalised tokens without one):
        [B, NUM_CLASSES] logits (train) or MODEL.HEAD_ACT probabilities (eval)."""
        if self.head is None:
            raise RuntimeError("MViT was built with with_head=False; call forward_features")
        x = self.norm(self._tokens(x)[0])
        return self.head(x[:, 0] if self.cls_token is not None else x.mean(1))
