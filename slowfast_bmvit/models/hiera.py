"""Hiera video backbone and classifier (Ryali et al., ICML 2023), built from the HIERA.* keys.

`Hiera(cfg)` is the video Hiera of FAIR's `hiera-transformer` package: the same parameters under the same
state_dict keys, the same initialisation and the same numbers, so its K400 fine-tuned checkpoints (and the encoder
part of its MAE pre-training checkpoints) load key for key. `Hiera(cfg, with_head=False)` drops `head.*` and is
read through `forward_features`, as BMViT reads MViT.

Architecture (Hiera-L at 16x224: 3x7x7 / 2x4x4 patch embedding -> 144 x 8x56x56 tokens; four stages of (2, 6, 36,
4) blocks; each new stage doubles the width and the heads and, for the first HIERA.Q_POOL stages, max-pools the
queries and the skip path 1x2x2):
- tokens are kept in "unrolled" order rather than raster order (`unroll`): every token's position along an axis is
  written as digits in the bases of the successive query strides, and tokens are sorted by their finest digit first.
  A 1x2x2 max pooling is then a max over the first quarter-blocks of the sequence, and the tokens of one mask unit
  (1x8x8 for video) are those with the same index modulo the number of units;
- stages 1-2 attend within mask units, stages 3-4 globally; the first block of a stage keeps the previous stage's
  kind of attention (the official schedule);
- separate spatial (H'*W') and temporal (T') absolute position embeddings (HIERA.SEP_POS_EMBED), no relative ones,
  no class token.

Differences from the official package (none changes a number at its input size):
- any input grid that the strides divide is accepted: position embeddings are interpolated at run time (linear over
  T, bicubic over H x W: `common.resize_position_table`) when the patch grid differs from the configured one, and a
  checkpoint trained at another size is resized the same way when it loads (`resize_checkpoint_tensor`: 224 px ->
  256 px);
- `forward_features` returns the last stage in raster order ([B, C, T', H', W'], after the final norm) also when
  HIERA.Q_POOL leaves strides unconsumed (BMViT's Q_POOL 2: 16x16 tokens at 256 px), where the official forward
  returns unrolled tokens;
- activation checkpointing per block (MODEL.ACT_CHECKPOINT).
Not included: the MAE masking path (mask tokens, multi-scale fusion heads and decoder are pre-training only).

The HIERA keys are checked on their own where the config is validated (config/validation.py); this module checks
them against what it derives: HIERA.MASK_UNIT_SIZE against the unroll schedule, the training clip's token grid
against the strides, mask-unit attention against the pooled unit size, and the head count against each stage width.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from slowfast_bmvit.config import ConfigError

from .build import MODEL_REGISTRY
from .common import DropPath, Mlp, PatchEmbed, init_truncated_normal, resize_position_table, single_clip
from .mvit import TransformerBasicHead

Grid = tuple[int, ...]


# ---------------------------------------------------------------------------------------------- token order


def _digit_layout(grid: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """Shapes for moving between raster order and the unrolled order of `strides` (s_1 applied first).

    Along each axis a position p is written p = ((c * s_k + o_k) * s_(k-1) + ... ) * s_1 + o_1: the coarse position
    c (on the grid divided by every stride) and one digit o_j < s_j per stride. Raster order sorts by (c, o_k, ...,
    o_1) axis after axis; unrolled order sorts by o_1 over all axes, then o_2, ..., o_k, then c.

    Returns:
        raster_shape: the axes (per grid axis: c, o_k, ..., o_1) that a raster-ordered [N] splits into.
        order: the permutation of those axes that gives unrolled order.
    """
    dims, k = len(grid), len(strides)
    raster_shape: list[int] = []
    for axis in range(dims):
        coarse = grid[axis] // math.prod(s[axis] for s in strides)
        raster_shape += [coarse] + [s[axis] for s in reversed(strides)]
    # Digit j of an axis (j = 0: c, j = 1: o_k, ..., j = k: o_1) sits at axis * (k + 1) + j in raster_shape.
    order = [axis * (k + 1) + j for j in range(k, -1, -1) for axis in range(dims)]
    return raster_shape, order


def unroll(x: torch.Tensor, grid: Sequence[int], strides: Sequence[Sequence[int]]) -> torch.Tensor:
    """[B, N, C] tokens in raster order over `grid` -> the same tokens in the unrolled order of `strides`."""
    batch, tokens, channels = x.shape
    raster_shape, order = _digit_layout(grid, strides)
    x = x.reshape(batch, *raster_shape, channels)
    x = x.permute(0, *(1 + a for a in order), len(raster_shape) + 1)
    return x.reshape(batch, tokens, channels)


def reroll(x: torch.Tensor, grid: Sequence[int], strides: Sequence[Sequence[int]]) -> torch.Tensor:
    """Inverse of `unroll`: [B, N, C] in the unrolled order of `strides` over `grid` -> raster order."""
    batch, tokens, channels = x.shape
    raster_shape, order = _digit_layout(grid, strides)
    x = x.reshape(batch, *(raster_shape[a] for a in order), channels)
    inverse = sorted(range(len(order)), key=order.__getitem__)
    x = x.permute(0, *(1 + a for a in inverse), len(order) + 1)
    return x.reshape(batch, tokens, channels)


def pool_leading(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Max over the `stride` leading blocks of the sequence: [B, N, C] -> [B, N / stride, C].

    In unrolled order the leading blocks hold the finest stride digit, so this is a max pooling of the grid with
    that stride (identity for stride 1).
    """
    if stride == 1:
        return x
    return x.reshape(x.shape[0], stride, -1, x.shape[-1]).amax(dim=1)


# ---------------------------------------------------------------------------------------------- blocks


class MaskUnitAttention(nn.Module):
    """Multi-head attention within mask units (or over all tokens), with optional max pooling of the queries.

    Input and output tokens are in unrolled order: window w holds the tokens whose index is w modulo the number of
    windows, which in that order are the tokens of one mask unit.

    Args:
        dim, dim_out: input and output widths (qkv projects to dim_out).
        heads: attention heads.
        q_stride: flattened query pooling stride (4 for 1x2x2; 1: no pooling).
        window_size: flattened mask-unit size after this block's pooling (tokens per unit per query).
        use_mask_unit_attn: attend within mask units (True) or over all tokens (False).
    """

    def __init__(self, dim: int, dim_out: int, heads: int, q_stride: int = 1, window_size: int = 0,
                 use_mask_unit_attn: bool = False):
        super().__init__()
        if dim_out % heads:
            raise ConfigError(f"HIERA.NUM_HEADS: width {dim_out} is not divisible by {heads} heads")
        self.dim_out = dim_out
        self.heads = heads
        self.head_dim = dim_out // heads
        self.q_stride = q_stride
        self.window_size = window_size
        self.use_mask_unit_attn = use_mask_unit_attn
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, dim] -> [B, N / q_stride, dim_out]."""
        batch, tokens, _ = x.shape
        windows = tokens // (self.q_stride * self.window_size) if self.use_mask_unit_attn else 1
        # [B, N / windows, windows, 3, heads, head_dim] -> 3 x [B, heads, windows, N / windows, head_dim]
        qkv = self.qkv(x).reshape(batch, tokens // windows, windows, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(3, 0, 4, 2, 1, 5).unbind(0)
        if self.q_stride > 1:
            q = q.reshape(batch, self.heads, windows, self.q_stride, -1, self.head_dim).amax(dim=3)
        x = F.scaled_dot_product_attention(q, k, v)
        # [B, heads, windows, Nq, head_dim] -> [B, Nq * windows, dim_out] (window index innermost again)
        x = x.permute(0, 3, 2, 1, 4).reshape(batch, -1, self.dim_out)
        return self.proj(x)


class HieraBlock(nn.Module):
    """Pre-norm block: attention (with query pooling) then MLP, each residual with drop path.

    At a stage change (dim != dim_out) the skip path is `proj(norm1(x))`, max-pooled with the query stride.
    """

    def __init__(self, dim: int, dim_out: int, heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 q_stride: int = 1, window_size: int = 0, use_mask_unit_attn: bool = False):
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MaskUnitAttention(dim, dim_out, heads, q_stride, window_size, use_mask_unit_attn)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio), dim_out)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, dim] in unrolled order -> [B, N / q_stride, dim_out]."""
        x_norm = self.norm1(x)
        if self.dim != self.dim_out:
            x = pool_leading(self.proj(x_norm), self.attn.q_stride)
        x = x + self.drop_path(self.attn(x_norm))
        return x + self.drop_path(self.mlp(self.norm2(x)))


# ---------------------------------------------------------------------------------------------- positions


def _square_side(count: int) -> int | None:
    side = math.isqrt(count)
    return side if side * side == count else None


# ---------------------------------------------------------------------------------------------- model


def _ints(values) -> list[int]:
    return [int(v) for v in values]


@MODEL_REGISTRY.register()
class Hiera(nn.Module):
    """Video Hiera, key-for-key the official `hiera-transformer` model (e.g. its `hiera_large_16x224`).

    Input: a clip [B, 3, T, H, W] (or PySlowFast's one-element list of it) whose patch grid the unroll strides
    (HIERA.Q_STRIDE to the power len(STAGES) - 1) divide.
    `forward` -> [B, NUM_CLASSES]: mean of the last-stage tokens -> norm -> head; logits in train mode,
    MODEL.HEAD_ACT (softmax) applied in eval mode, as the official head.
    `forward_features` -> (tokens [B, out_dim, T', H', W'] in raster order after the final norm, None).

    State dict: `patch_embed.proj`, `pos_embed_spatial` + `pos_embed_temporal` (or `pos_embed`), `blocks.{i}.norm1`,
    `.attn.qkv`, `.attn.proj`, `.norm2`, `.mlp.fc1`, `.mlp.fc2`, `.proj` (first block of a wider stage), `norm`,
    `head.projection`.
    """

    def __init__(self, cfg, with_head: bool = True):
        super().__init__()
        hiera = cfg.HIERA
        stages = _ints(hiera.STAGES)
        self.q_pool = int(hiera.Q_POOL)
        self.q_stride = tuple(_ints(hiera.Q_STRIDE))
        mask_unit_size = _ints(hiera.MASK_UNIT_SIZE)
        mask_unit_attn = [bool(v) for v in hiera.MASK_UNIT_ATTN]
        dim_mul, head_mul = float(hiera.DIM_MUL), float(hiera.HEAD_MUL)
        embed_dim, num_heads = int(hiera.EMBED_DIM), int(hiera.NUM_HEADS)
        self.sep_pos_embed = bool(hiera.SEP_POS_EMBED)
        self.act_checkpoint = cfg.MODEL.ACT_CHECKPOINT

        # One unroll step per stage change, whether or not that stage pools (as the official model).
        self.unroll_strides = [self.q_stride] * (len(stages) - 1)
        units = [1, 1, 1]
        valid_units = [tuple(units)]
        for stride in self.unroll_strides:
            units = [u * s for u, s in zip(units, stride)]
            valid_units.append(tuple(units))
        if tuple(mask_unit_size) not in valid_units:
            raise ConfigError(
                f"HIERA.MASK_UNIT_SIZE: {mask_unit_size} must be a product of the first HIERA.Q_STRIDE steps "
                f"(one of {', '.join(str(list(u)) for u in valid_units)})"
            )

        self.patch_embed = PatchEmbed(cfg.DATA.INPUT_CHANNEL_NUM[0], embed_dim, tuple(_ints(hiera.PATCH_KERNEL)),
                                      tuple(_ints(hiera.PATCH_STRIDE)), tuple(_ints(hiera.PATCH_PADDING)))
        crop = cfg.DATA.TRAIN_CROP_SIZE
        self.token_grid = self.patch_embed.output_grid((cfg.DATA.NUM_FRAMES, crop, crop))
        problem = self._grid_problem(self.token_grid)
        if problem:
            raise ConfigError(f"DATA.TRAIN_CROP_SIZE / DATA.NUM_FRAMES: {problem}")
        t, h, w = self.token_grid
        if self.sep_pos_embed:
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, embed_dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, embed_dim))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, t * h * w, embed_dim))

        stage_starts = {sum(stages[:i]) for i in range(1, len(stages))}
        pool_blocks = {sum(stages[:i]) for i in range(1, self.q_pool + 1)}
        flat_q_stride = math.prod(self.q_stride)
        window_size = math.prod(mask_unit_size)
        depth = sum(stages)
        drop_rates = torch.linspace(0, float(hiera.DROPPATH_RATE), depth).tolist()
        blocks, stage, dim = [], 0, embed_dim
        for index in range(depth):
            dim_out = dim
            use_mask_unit_attn = mask_unit_attn[stage]  # a stage's first block keeps the previous stage's kind
            if index in stage_starts:
                dim_out = int(dim * dim_mul)
                num_heads = int(num_heads * head_mul)
                stage += 1
                if index in pool_blocks:
                    window_size //= flat_q_stride
            if use_mask_unit_attn and window_size < 1:
                raise ConfigError(f"HIERA.MASK_UNIT_ATTN: block {index} attends within mask units that the query "
                                  f"pooling has shrunk below one token (HIERA.MASK_UNIT_SIZE {mask_unit_size})")
            blocks.append(HieraBlock(
                dim, dim_out, num_heads, float(hiera.MLP_RATIO), drop_rates[index],
                q_stride=flat_q_stride if index in pool_blocks else 1, window_size=window_size,
                use_mask_unit_attn=use_mask_unit_attn,
            ))
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = dim
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head: TransformerBasicHead | None = None
        if with_head:
            self.head = TransformerBasicHead(dim, cfg.MODEL.NUM_CLASSES, cfg.MODEL.DROPOUT_RATE, cfg.MODEL.HEAD_ACT)
        # The official init (PySlowFast's MViT init): trunc_normal(.02) positions and weights, 0.02 biases.
        positions = (self.pos_embed_spatial, self.pos_embed_temporal) if self.sep_pos_embed else (self.pos_embed,)
        init_truncated_normal(self, positions, self.head, float(hiera.HEAD_INIT_SCALE))

    # ------------------------------------------------------------------ geometry and optimiser helpers

    def _grid_problem(self, grid: Grid) -> str | None:
        """Why the unroll cannot lay out a patch grid (every unroll stride must divide it, as in the official
        model), or None."""
        total = [math.prod(s[axis] for s in self.unroll_strides) for axis in range(3)]
        if any(n % d for n, d in zip(grid, total)):
            return (f"a {'x'.join(map(str, grid))} patch grid is not divisible by {'x'.join(map(str, total))} "
                    f"(HIERA.Q_STRIDE to the power {len(self.unroll_strides)})")
        return None

    def output_grid(self, thw: Sequence[int]) -> Grid:
        """Token grid (T', H', W') that `forward_features` returns for a clip of T x H x W frames/pixels."""
        grid = self.patch_embed.output_grid(tuple(thw))
        factor = [s**self.q_pool for s in self.q_stride]
        return tuple(n // f for n, f in zip(grid, factor))

    def no_weight_decay(self) -> set[str]:
        """The absolute position embeddings (the official model's list)."""
        if self.sep_pos_embed:
            return {"pos_embed_spatial", "pos_embed_temporal"}
        return {"pos_embed"}

    def _pos_embed(self, grid: Grid) -> torch.Tensor:
        """[1, T*H*W, C] position embedding of the patch grid `grid`, resized when it is not the configured one."""
        t, h, w = self.token_grid
        if self.sep_pos_embed:
            spatial, temporal = self.pos_embed_spatial, self.pos_embed_temporal
            if tuple(grid) != tuple(self.token_grid):
                spatial = resize_position_table(spatial[0], (1, h, w), (1, grid[1], grid[2]))[None]
                temporal = resize_position_table(temporal[0], (t, 1, 1), (grid[0], 1, 1))[None]
            return spatial.repeat(1, grid[0], 1) + temporal.repeat_interleave(grid[1] * grid[2], dim=1)
        pos = self.pos_embed
        if tuple(grid) != tuple(self.token_grid):
            pos = resize_position_table(pos[0], self.token_grid, grid)[None]
        return pos

    def resize_checkpoint_tensor(self, name: str, value: torch.Tensor, shape: Sequence[int]) -> torch.Tensor | None:
        """A position embedding of a checkpoint trained at another input size, resized to this model's grid.

        Called by `checkpoint_loading.load_checkpoint` for a tensor whose shape differs from this model's. A
        spatial table of a square grid (56x56 at 224 px) is resized bicubically, a temporal one linearly, a joint
        one (HIERA.SEP_POS_EMBED False) spatially when it has this model's T' and a square H' x W'. None for any
        other tensor (the loader then reports the mismatch).
        """
        if value.ndim != 3 or value.shape[0] != 1 or value.shape[-1] != shape[-1]:
            return None
        count = value.shape[1]
        t, h, w = self.token_grid
        if name == "pos_embed_spatial" and self.sep_pos_embed:
            side = _square_side(count)
            if side is None:
                return None
            source, target = (1, side, side), (1, h, w)
        elif name == "pos_embed_temporal" and self.sep_pos_embed:
            source, target = (count, 1, 1), (t, 1, 1)
        elif name == "pos_embed" and not self.sep_pos_embed:
            side = _square_side(count // t) if count % t == 0 else None
            if side is None:
                return None
            source, target = (t, side, side), (t, h, w)
        else:
            return None
        return resize_position_table(value[0], source, target)[None].contiguous()

    def checkpoint_shape_hint(self, name: str, checkpoint_shape: tuple[int, ...],
                              model_shape: tuple[int, ...]) -> str | None:
        """For the checkpoint loader's error message: why a position table of another size did not resize."""
        if name in ("pos_embed", "pos_embed_spatial") and checkpoint_shape[-1] == model_shape[-1]:
            return ("a position table of another token grid that does not resize: the tables follow DATA.NUM_FRAMES "
                    "and DATA.TRAIN_CROP_SIZE over HIERA.PATCH_STRIDE and resize as they load from a square spatial "
                    "grid only; a joint table, HIERA.SEP_POS_EMBED False, only with the same number of frames")
        return None

    # ------------------------------------------------------------------ forward

    def _tokens(self, x: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, Grid]:
        """Patch embedding, positions, unroll and all blocks: [B, N', out_dim] before the final norm, in the
        unrolled order of the strides that the query pooling left unused, and the patch grid."""
        x = single_clip(x, "Hiera")
        clip_shape = tuple(x.shape)
        x, grid = self.patch_embed(x)
        problem = self._grid_problem(grid)
        if problem:
            raise ValueError(f"Hiera: input clip {clip_shape}: {problem}")
        x = x + self._pos_embed(grid)
        x = unroll(x, grid, self.unroll_strides)
        use_checkpoint = self.act_checkpoint and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        return x, grid

    def forward_features(self, x: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, None]:
        """Backbone output for detection heads.

        Returns:
            tokens: [B, out_dim, T', H', W'] after the final LayerNorm, in raster order (T', H', W' =
                `output_grid`: the patch grid divided by HIERA.Q_STRIDE ** HIERA.Q_POOL).
            None: Hiera has no class token.
        """
        x, grid = self._tokens(x)
        x = self.norm(x)
        out_grid = tuple(n // s**self.q_pool for n, s in zip(grid, self.q_stride))
        x = reroll(x, out_grid, self.unroll_strides[self.q_pool:])
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *out_grid), None

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Clip classification: [B, NUM_CLASSES] logits (train) or MODEL.HEAD_ACT probabilities (eval)."""
        if self.head is None:
            raise RuntimeError("Hiera was built with with_head=False; call forward_features")
        x, _ = self._tokens(x)
        return self.head(self.norm(x.mean(dim=1)))
