"""Plain video ViT (VideoMAE's ViT-B and smaller), built from the VIT.* keys.

`ViT(cfg)` is VideoMAE's fine-tuning classifier (Tong et al., NeurIPS 2022): a tubelet embedding (Conv3d, kernel =
stride = VIT.PATCH_SIZE), a fixed sinusoidal position table added to the tokens, VIT.DEPTH pre-norm blocks of global
self-attention + MLP, mean pooling, a LayerNorm and a linear classifier. `ViT(cfg, with_head=False)` is the same
network without `head.*`, for BMViT and the two-stage model, which read the normalised token grid through
`forward_features`. The state_dict keys are VideoMAE's fine-tuned ones except that its `fc_norm` is called `norm`
here (one final LayerNorm serves the pooled vector and the token grid); models/checkpoint_loading.py maps VideoMAE's
fine-tuned and pre-training checkpoints onto them (docs/backbones/vit.md has the key table).

Positions at other input sizes: VideoMAE's table is one-dimensional over the T' x H' x W' tokens of the grid it was
made for (8x14x14 for 16 frames at 224 px). Here the table is made (or, when learned, stored) for VIT.POS_EMBED_GRID
and, for any other token grid, laid out as [T', H', W', C] and resized: linearly along time, bicubically in space
(`common.resize_position_table`, shared with Hiera), so a token keeps the position of the same place in the frame. A
longer 1-D table (what VideoMAE does when fine-tuning at another size) would give the token at row 1, column 0 of an
18-wide grid the position of row 1, column 4 of the 14-wide grid it was trained with.

Attention runs through scaled_dot_product_attention; MODEL.ACT_CHECKPOINT recomputes block activations in the
backward pass.

The VIT keys are checked where the config is validated (config/validation.py); this module checks only that the
patch stride leaves a position grid (`position_grid`), which needs the convolutional stem's stride.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from slowfast_bmvit.config import ConfigError

from .build import MODEL_REGISTRY
from .common import STEM_STRIDE, DropPath, Mlp, PatchEmbed, resize_position_table, single_clip

Grid = tuple[int, int, int]


def sinusoid_position_table(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's fixed table [num_positions, dim] (float32): position p, channel j -> sin (even j) or cos (odd j)
    of p / 10000^(2 * (j // 2) / dim). Computed in float64 and rounded once, as VideoMAE's numpy code does."""
    positions = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponents = 2 * (torch.arange(dim) // 2).to(torch.float64) / dim
    angles = positions / torch.pow(10000.0, exponents)[None, :]
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


class Attention(nn.Module):
    """VideoMAE's multi-head self-attention: one bias-free `qkv` Linear plus separate `q_bias` and `v_bias` (the key
    has no bias), scaled_dot_product_attention, output Linear `proj`. Tokens [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(attn(norm1(x))), then x + DropPath(mlp(norm2(x))); LayerNorm eps
    1e-6, GELU MLP of `mlp_ratio` x dim hidden units. Tokens [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def patch_stride(cfg) -> tuple[int, int, int]:
    """Input frames / pixels per token along (T, H, W): VIT.PATCH_SIZE times the stride of the convolutional stem."""
    num_stem = len(cfg.VIT.CONV_STEM_CHANNELS)
    return tuple(int(p) * s**num_stem for p, s in zip(cfg.VIT.PATCH_SIZE, STEM_STRIDE))


def position_grid(cfg) -> Grid:
    """The token grid the position table is made for: VIT.POS_EMBED_GRID, or when empty the grid of the training
    clip (DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE^2) divided by the patch stride."""
    if len(cfg.VIT.POS_EMBED_GRID):
        return tuple(int(n) for n in cfg.VIT.POS_EMBED_GRID)
    stride = patch_stride(cfg)
    crop = cfg.DATA.TRAIN_CROP_SIZE
    return (cfg.DATA.NUM_FRAMES // stride[0], crop // stride[1], crop // stride[2])


@MODEL_REGISTRY.register()
class ViT(nn.Module):
    """VideoMAE-style video ViT.

    Input: a clip [B, 3, T, H, W] (or PySlowFast's one-element list of it) with T, H, W multiples of the patch
    stride (`patch_stride`); any such size (positions are resized, see the module docstring).
    `forward` -> [B, NUM_CLASSES]: logits in train mode, MODEL.HEAD_ACT applied in eval mode (as MViT).
    `forward_features` -> (tokens [B, out_dim, T', H', W'] after the final LayerNorm, None).

    Reads VIT.* (every key), MODEL.ACT_CHECKPOINT, DATA.INPUT_CHANNEL_NUM, DATA.NUM_FRAMES / TRAIN_CROP_SIZE (the
    default position grid) and, with the head, MODEL.NUM_CLASSES, MODEL.DROPOUT_RATE and MODEL.HEAD_ACT.
    """

    def __init__(self, cfg, with_head: bool = True):
        super().__init__()
        vit = cfg.VIT
        dim = vit.EMBED_DIM
        self.out_dim = dim
        self.act_checkpoint = cfg.MODEL.ACT_CHECKPOINT
        patch = tuple(int(p) for p in vit.PATCH_SIZE)
        self.patch_embed = PatchEmbed(cfg.DATA.INPUT_CHANNEL_NUM[0], dim, patch, patch, (0, 0, 0),
                                      tuple(int(c) for c in vit.CONV_STEM_CHANNELS))
        self.pos_grid = position_grid(cfg)
        if min(self.pos_grid) < 1:  # the one check that needs the patch stride; config/validation.py owns the rest
            raise ConfigError(f"VIT.PATCH_SIZE: {list(vit.PATCH_SIZE)} is larger than the training clip "
                              f"({cfg.DATA.NUM_FRAMES} x {cfg.DATA.TRAIN_CROP_SIZE}^2)")
        num_positions = math.prod(self.pos_grid)
        self.learned_pos = vit.POS_EMBED == "learned"
        if self.learned_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, num_positions, dim))
        else:
            # Not a parameter and not saved: VideoMAE's checkpoints do not hold the fixed table either.
            self.register_buffer("pos_embed", sinusoid_position_table(num_positions, dim)[None], persistent=False)
        drop_rates = torch.linspace(0, vit.DROPPATH_RATE, vit.DEPTH).tolist()
        self.blocks = nn.ModuleList(Block(dim, vit.NUM_HEADS, vit.MLP_RATIO, rate) for rate in drop_rates)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head: nn.Linear | None = None
        if with_head:
            self.head_dropout = nn.Dropout(cfg.MODEL.DROPOUT_RATE) if cfg.MODEL.DROPOUT_RATE > 0 else nn.Identity()
            self.head = nn.Linear(dim, cfg.MODEL.NUM_CLASSES)
            self.head_act = {"softmax": nn.Softmax(dim=1), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[
                cfg.MODEL.HEAD_ACT]
        self._init_parameters()

    def _init_parameters(self) -> None:
        """VideoMAE's init: trunc_normal(.02) Linear weights and learned positions, zero Linear biases, LayerNorm
        (1, 0); the patch projection keeps PyTorch's Conv3d default."""
        if self.learned_pos:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ geometry and optimiser helpers

    def output_grid(self, thw: tuple[int, int, int]) -> Grid:
        """Token grid (T', H', W') that `forward_features` returns for a clip of T x H x W frames/pixels."""
        return self.patch_embed.output_grid(tuple(thw))

    def no_weight_decay(self) -> set[str]:
        """The learned position table, as VideoMAE (its fixed table is not a parameter)."""
        return {"pos_embed"} if self.learned_pos else set()

    def checkpoint_shape_hint(self, name: str, checkpoint_shape: tuple[int, ...],
                              model_shape: tuple[int, ...]) -> str | None:
        """For the checkpoint loader's error message: what sizes a learned position table of another length."""
        if name == "pos_embed" and checkpoint_shape[-1] == model_shape[-1]:
            return "a position table made for another token grid: set VIT.POS_EMBED_GRID to the checkpoint's"
        return None

    def position_embedding(self, grid: Grid) -> torch.Tensor:
        """[1, T'*H'*W', C] positions for a token grid (the table resized when `grid` is not VIT.POS_EMBED_GRID)."""
        return resize_position_table(self.pos_embed[0], self.pos_grid, grid)[None]

    # ------------------------------------------------------------------ forward

    def _tokens(self, x: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, Grid]:
        """Patch embedding, positions and all blocks: tokens [B, N, C] before the final norm, and their grid."""
        x, grid = self.patch_embed(single_clip(x, "ViT"))
        x = x + self.position_embedding(grid).to(x.dtype)
        use_checkpoint = self.act_checkpoint and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        return x, grid

    def forward_features(self, x: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, None]:
        """Backbone output for detection heads: (tokens [B, out_dim, T', H', W'] after the final LayerNorm, None:
        no class token)."""
        x, (t, h, w) = self._tokens(x)
        x = self.norm(x)
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], t, h, w), None

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """Clip classification as VideoMAE: mean of the tokens -> norm -> dropout -> head; [B, NUM_CLASSES] logits
        (train) or MODEL.HEAD_ACT probabilities (eval)."""
        if self.head is None:
            raise RuntimeError("ViT was built with with_head=False; call forward_features")
        x, _ = self._tokens(x)
        logits = self.head(self.head_dropout(self.norm(x.mean(1))))
        return logits if self.training else self.head_act(logits)
