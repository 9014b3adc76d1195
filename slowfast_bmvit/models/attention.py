"""Multiscale attention (MViTv2): pooled q/k/v, decomposed relative positions, residual pooling.

Numerically this is PySlowFast's `MultiScaleAttention` / `MultiScaleBlock` in their MViTv2 form (one qkv linear,
then q/k/v pooled by depthwise Conv3d + LayerNorm; same parameters, same state_dict keys, same relative-position
semantics; upstream's other variants are refused by config/validation.py), with two differences that do not change
any number:
- the relative-position tables are interpolated to whatever token grid arrives (upstream fixes the input size), and
  their gather indices are cached per (q size, k size, device);
- the attention itself has four interchangeable implementations (MVIT.ATTN_IMPL), equal up to rounding:
  "explicit"  upstream's matmul formulation (`explicit_attention`), the checking reference;
  "sdpa"      `scaled_dot_product_attention` with the decomposed relative-position terms as an additive mask
              (`sdpa_bias_attention`); a mask rules out the flash kernels;
  "folded"    the relative-position terms folded into the dot product (`folded_attention`): each query carries its
              [T'+H'+W'] relative-position logits as extra channels and each key the matching one-hot position
              codes, so a mask-free (flash-eligible) kernel computes q.k + rel terms exactly;
  "auto"      the fastest of these on the device the input lives on (`AUTO_ATTN_IMPL`, measured in
              benchmarks/results/speed.md).

Modules: `MultiScaleBlock(spec)` and its `MultiScaleAttention(spec)` are built from one `BlockSpec` (the block's
shape, from `mvit.block_specs`, and the MVIT options all blocks share), as torchvision's MViT builds its blocks from
an MSBlockConfig. Optional parts are attributes that are None when absent (`pool_q`, `rel_pos_t`, `proj`, ...).

Token layout everywhere: [B, N, C] with N = (1 if a class token else 0) + T*H*W, the class token first and the
grid in (t, h, w) raster order.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import DropPath, Mlp

Grid = tuple[int, int, int]


def pool_tokens(
    x: torch.Tensor, pool: nn.Module | None, thw: Grid, has_cls: bool, norm: nn.Module | None = None
) -> tuple[torch.Tensor, Grid]:
    """Pool the token grid of `x` with a 3-D op; the class token bypasses the pooling but not the norm.

    Args:
        x: [B, heads, N, C] or [B, N, C] tokens over the grid `thw` (plus the class token first if `has_cls`).
        pool: a module on [B*heads, C, T, H, W] (the attention's depthwise Conv3d, the skip path's MaxPool3d), or
            None for the identity.
        norm: applied to all tokens after pooling (the LayerNorm(C) after a pooling Conv3d).
    Returns:
        pooled tokens with the input's rank, and the pooled grid (T', H', W').
    """
    if pool is None:
        return x, thw
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(1)
    if has_cls:
        cls_tok, x = x[:, :, :1], x[:, :, 1:]
    batch, heads, _, channels = x.shape
    grid = x.reshape(batch * heads, *thw, channels)
    if x.device.type == "cpu":
        if _channels_last_is_safe(pool, x):
            # Dense in channels-last order ([B*heads, T, H, W, C] in memory, one copy): oneDNN's depthwise Conv3d
            # and torch's MaxPool3d run several times faster on it than on NCDHW, with the same numbers (the BMViT
            # forward 1.13x, a training step 1.12x: benchmarks/results/pooling_layout.md), and the pooled grid
            # comes back channels-last, so that the tokens below are a view.
            grid = grid.contiguous().permute(0, 4, 1, 2, 3)
        else:
            grid = grid.permute(0, 4, 1, 2, 3).contiguous()
    else:
        grid = grid.permute(0, 4, 1, 2, 3)
    grid = pool(grid)
    new_thw = (grid.shape[2], grid.shape[3], grid.shape[4])
    x = grid.flatten(2).transpose(1, 2).reshape(batch, heads, -1, channels)
    if has_cls:
        x = torch.cat((cls_tok, x), dim=2)
    if norm is not None:
        x = norm(x)
    if squeeze:
        x = x.squeeze(1)
    return x, new_thw


def _channels_last_is_safe(pool: nn.Module, x: torch.Tensor) -> bool:
    """Whether `pool` may take a channels-last grid on the CPU: always, except a convolution that will compute a
    weight gradient in reduced precision. torch 2.13's CPU depthwise Conv3d gets the bfloat16 weight gradient wrong
    for a channels-last input (reading uninitialised memory: off by the gradient's own size, inf or NaN after other
    work); an NCDHW-contiguous input takes the correct kernel."""
    if not isinstance(pool, nn.Conv3d) or not (torch.is_grad_enabled() and pool.weight.requires_grad):
        return True
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return dtype in (torch.float32, torch.float64)


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """A relative-position table [L, C] linearly interpolated to [length, C] (align_corners=False, as upstream),
    computed in float32 and returned in the table's dtype; the table itself when L == length.

    The one resize of these tables: at run time for a token grid other than the configured one (`rel_pos_terms`), and
    when a checkpoint made for another grid loads (models/checkpoint_loading.py).
    """
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.float().t().unsqueeze(0), size=length, mode="linear", align_corners=False)
    return resized[0].t().to(table.dtype)


def _cached_constant(fn):
    """lru_cache for a function that builds a constant tensor from hashable arguments.

    The tensor is made outside inference mode: one cached during a `torch.inference_mode` forward could not take part
    in a later training step. Under torch.compile the plain function is traced (the graph holds the constant).
    """
    cached = functools.lru_cache(maxsize=512)(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        if torch.compiler.is_compiling():
            return fn(*args)
        with torch.inference_mode(False):
            return cached(*args)

    wrapper.cache_clear = cached.cache_clear
    return wrapper


@_cached_constant
def _rel_pos_index(q_size: int, k_size: int, device: torch.device) -> torch.Tensor:
    """Row of the (2*max(q,k)-1)-long table for every (query, key) pair: [q_size, k_size] int64.

    A query at i and a key at j sit at i*q_ratio and j*k_ratio on the finer of the two grids; the distance is
    shifted to be non-negative. Computed in float32 and truncated, exactly as upstream.
    """
    q_ratio = max(k_size / q_size, 1.0)
    k_ratio = max(q_size / k_size, 1.0)
    dist = torch.arange(q_size, dtype=torch.float32)[:, None] * q_ratio
    dist = dist - torch.arange(k_size, dtype=torch.float32)[None, :] * k_ratio
    dist = dist + (k_size - 1) * k_ratio
    return dist.long().to(device)


def _axis_table(table: torch.Tensor, q_size: int, k_size: int) -> torch.Tensor:
    """[q_size, k_size, C]: the embedding of each (query, key) distance along one axis."""
    table = resize_rel_pos(table, 2 * max(q_size, k_size) - 1)
    return table[_rel_pos_index(q_size, k_size, table.device)]


def rel_pos_terms(
    q: torch.Tensor,
    q_thw: Grid,
    k_thw: Grid,
    rel_pos_t: torch.Tensor | None,
    rel_pos_h: torch.Tensor | None,
    rel_pos_w: torch.Tensor | None,
) -> list[torch.Tensor]:
    """Each query's decomposed relative-position logits, one tensor per axis present (t, then h, then w).

    Args:
        q: [B, heads, qt*qh*qw, C] pooled queries WITHOUT the class token and WITHOUT the 1/sqrt(C) scale.
        q_thw, k_thw: query and key grids.
        rel_pos_*: [L, C] tables (None to leave that axis out), interpolated to 2*max(q, k)-1 rows when needed.
    Returns:
        [B, heads, qt*qh*qw, kt], [..., kh], [..., kw]: entry [.., i, j] is q_i . R(axis distance of query i to key
        coordinate j along that axis). The logit of (query i, key (a, b, c)) is term_t[i, a] + term_h[i, b] +
        term_w[i, c].
    """
    (qt, qh, qw), (kt, kh, kw) = q_thw, k_thw
    batch, heads, _, channels = q.shape
    r_q = q.reshape(batch, heads, qt, qh, qw, channels)
    terms = []
    if rel_pos_t is not None:
        terms.append(torch.einsum("bythwc,tkc->bythwk", r_q, _axis_table(rel_pos_t, qt, kt)).flatten(2, 4))
    if rel_pos_h is not None:
        terms.append(torch.einsum("bythwc,hkc->bythwk", r_q, _axis_table(rel_pos_h, qh, kh)).flatten(2, 4))
    if rel_pos_w is not None:
        terms.append(torch.einsum("bythwc,wkc->bythwk", r_q, _axis_table(rel_pos_w, qw, kw)).flatten(2, 4))
    return terms


def rel_pos_bias(q: torch.Tensor, q_thw: Grid, k_thw: Grid, *tables: torch.Tensor | None) -> torch.Tensor | None:
    """Decomposed relative-position logits: term_t + term_h + term_w, broadcast over the key grid.

    Args: as `rel_pos_terms`, `tables` being its (rel_pos_t, rel_pos_h, rel_pos_w).
    Returns:
        [B, heads, qt, qh, qw, kt, kh, kw] bias to add to the grid-to-grid attention logits, or None.
    """
    (qt, qh, qw), (kt, kh, kw) = q_thw, k_thw
    batch, heads = q.shape[:2]
    terms = iter(rel_pos_terms(q, q_thw, k_thw, *tables))
    bias = None
    # Which of t / h / w is present decides where each term broadcasts.
    for table, view in zip(tables, ((kt, 1, 1), (1, kh, 1), (1, 1, kw))):
        if table is None:
            continue
        term = next(terms).reshape(batch, heads, qt, qh, qw, *view)
        bias = term if bias is None else bias + term
    if bias is None:
        return None
    return bias.expand(batch, heads, qt, qh, qw, kt, kh, kw)


# ---------------------------------------------------------------------------------------------- attention kernels
#
# All four take q [B, heads, Nq, d], k [B, heads, Nk, d], v [B, heads, Nk, dv] (Nq = s + query grid, Nk = s + key
# grid, the class token first when s = 1) and return [B, heads, Nq, dv]; the relative-position terms act on the
# grid-to-grid block only, the class token's row and column get none.

# MVIT.ATTN_IMPL "auto": the implementation used on each device type. CPU: "folded" gave the BMViT MViTv2-S
# forward at 16x256 1.28-1.34x the throughput of "explicit" and 1.07-1.11x that of "sdpa", and trains 1.19-1.36x as
# fast with 22-23% less peak memory (benchmarks/results/speed.md). CUDA: "folded" is the only one of the three that
# the flash kernel accepts (no mask; q, k and v of one head dim, a multiple of 8); benchmarks/gpu_check.sh times it
# against "sdpa" (the memory-efficient kernel, which takes the mask).
AUTO_ATTN_IMPL = {"cpu": "folded", "cuda": "folded"}
ATTN_IMPLS = ("auto", "folded", "sdpa", "explicit")


@contextlib.contextmanager
def attention_impl(model: nn.Module, impl: str) -> Iterator[None]:
    """Run every MultiScaleAttention inside `model` with `impl` for the duration of the block (same weights), then
    restore each module's own setting. Used to count FLOPs on the unpadded formulation and to compare
    implementations side by side."""
    if impl not in ATTN_IMPLS:
        raise ValueError(f"attention implementation must be one of {', '.join(ATTN_IMPLS)}, got {impl!r}")
    modules = [m for m in model.modules() if isinstance(m, MultiScaleAttention)]
    saved = [m.attn_impl for m in modules]
    for module in modules:
        module.attn_impl = impl
    try:
        yield
    finally:
        for module, value in zip(modules, saved):
            module.attn_impl = value


def attention_weights(
    q: torch.Tensor, k: torch.Tensor, scale: float, bias: torch.Tensor | None, s: int
) -> torch.Tensor:
    """softmax(q k^T * scale + bias) [B, heads, Nq, Nk], upstream's way: logits by matmul, the [B, heads, qt, qh,
    qw, kt, kh, kw] `bias` added on the grid block, softmax in float32; returned in q's dtype."""
    attn = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        grid_block = attn[:, :, s:, s:]
        attn[:, :, s:, s:] = (grid_block.reshape(bias.shape) + bias.to(attn.dtype)).reshape(grid_block.shape)
    return attn.float().softmax(dim=-1).to(q.dtype)


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias: torch.Tensor | None, s: int
) -> torch.Tensor:
    """The checking reference: `attention_weights(q, k, scale, bias, s) @ v`."""
    return attention_weights(q, k, scale, bias, s).to(v.dtype) @ v


def sdpa_bias_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, bias: torch.Tensor | None, s: int
) -> torch.Tensor:
    """scaled_dot_product_attention with the grid-to-grid `bias` (zero-padded for the class token) as its mask."""
    mask = None
    if bias is not None:
        batch, heads = bias.shape[:2]
        mask = bias.reshape(batch, heads, q.shape[2] - s, k.shape[2] - s)
        mask = F.pad(mask, (s, 0, s, 0)).to(q.dtype)
    return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask, scale=scale)


@_cached_constant
def position_codes(k_thw: Grid, axes: tuple[bool, bool, bool], s: int, width: int, device: torch.device,
                   dtype: torch.dtype) -> torch.Tensor:
    """[s + kt*kh*kw, width] one-hot codes of each key's (t, h, w) coordinates along the present `axes`.

    Columns: kt for t (if present), then kh for h, then kw for w, then zeros up to `width`; the class-token row
    (s = 1) is all zeros. Dotted with a query's `rel_pos_terms` laid out the same way, a key's code picks that key's
    three relative-position logits.
    """
    kt, kh, kw = k_thw
    coords = torch.stack(torch.meshgrid(torch.arange(kt), torch.arange(kh), torch.arange(kw), indexing="ij"), -1)
    coords = coords.reshape(-1, 3)
    codes = torch.zeros(s + coords.shape[0], width, dtype=torch.int64)
    column = 0
    for axis, size in enumerate(k_thw):
        if axes[axis]:
            codes[s:, column:column + size] = F.one_hot(coords[:, axis], size)
            column += size
    return codes.to(device=device, dtype=dtype)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def folded_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    terms: list[torch.Tensor],
    k_thw: Grid,
    axes: tuple[bool, bool, bool],
    s: int,
) -> torch.Tensor:
    """softmax(q k^T * scale + rel terms) v by one mask-free scaled_dot_product_attention call.

    With R = sum of the present key-grid sizes (kt + kh + kw) and the head dim d padded to D = d + R rounded up to
    a multiple of 8: queries become [q * scale, term_t, term_h, term_w, 0...] (the class token's row zero beyond q)
    and keys [k, one-hot t, one-hot h, one-hot w, 0...] (`position_codes`), so that q'.k' = scale q.k + term_t[a] +
    term_h[b] + term_w[c] for the key at (a, b, c), the same logits as the explicit path; the kernel then runs with
    scale 1.

    Args:
        terms: `rel_pos_terms` of the grid queries (each [B, heads, Nq - s, k_axis]); empty for no relative positions.
        axes: which of (t, h, w) the terms cover, in that order.
    v is zero-padded to D as well: the flash kernels (CUDA and CPU alike) want one head dim for q, k and v, and fall
    back to the unfused math kernel otherwise. The output keeps v's own dim.
    """
    # Build the extended operands in the dtype the kernel will run in (under autocast q arrives in float32 from the
    # pooling LayerNorm; concatenating in float32 and letting autocast cast would cost an extra pass).
    device_type = q.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else q.dtype
    batch, heads, _, head_dim = q.shape
    value_dim = v.shape[-1]
    if terms:
        rel = torch.cat(terms, dim=-1).to(dtype)
        extra = _round_up(head_dim + rel.shape[-1], 8) - head_dim
        rel = F.pad(rel, (0, extra - rel.shape[-1], s, 0))
    else:
        # Built directly rather than padded from zero width, which F.pad refuses in torch 2.4.
        extra = _round_up(head_dim, 8) - head_dim
        rel = q.new_zeros(batch, heads, q.shape[2], extra, dtype=dtype)
    q_ext = torch.cat(((q * scale).to(dtype), rel), dim=-1)
    codes = position_codes(tuple(k_thw), axes, s, extra, k.device, dtype)
    k_ext = torch.cat((k.to(dtype), codes.expand(batch, heads, -1, -1)), dim=-1)
    v = v.to(dtype)
    if value_dim != head_dim + extra:
        v = F.pad(v, (0, head_dim + extra - value_dim))
    out = F.scaled_dot_product_attention(q_ext, k_ext, v, scale=1.0)
    return out[..., :value_dim] if out.shape[-1] != value_dim else out


# ---------------------------------------------------------------------------------------------- modules


@dataclass(frozen=True)
class BlockSpec:
    """Everything one MultiScaleBlock is built from: its own shape (derived per block by `mvit.block_specs`) and the
    MVIT options all blocks share. Kernels and strides are (T, H, W); an empty one means no pooling."""

    dim: int  # token channels in
    dim_out: int  # token channels out
    num_heads: int
    input_size: Grid  # the configured token grid entering the block (sizes the relative-position tables)
    kernel_q: tuple[int, ...] = ()
    stride_q: tuple[int, ...] = ()
    kernel_kv: tuple[int, ...] = ()
    stride_kv: tuple[int, ...] = ()
    drop_path: float = 0.0  # stochastic depth rate of both residual branches
    # Shared by every block (MVIT.MLP_RATIO, QKV_BIAS, DROPOUT_RATE, CLS_EMBED_ON, REL_POS_*, RESIDUAL_POOLING,
    # DIM_MUL_IN_ATT, ATTN_IMPL):
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    drop_rate: float = 0.0  # dropout after the attention projection and after each MLP linear
    has_cls_embed: bool = True
    rel_pos_spatial: bool = False
    rel_pos_temporal: bool = False
    rel_pos_zero_init: bool = False
    residual_pooling: bool = False  # add the pooled query to the attention output (MViTv2)
    dim_mul_in_att: bool = False  # the channel change happens in the attention (qkv projects to dim_out)
    attn_impl: str = "auto"

    @property
    def attention_dim(self) -> int:
        """Channels the attention runs at (and the MLP's input): dim_out with DIM_MUL_IN_ATT, else dim."""
        return self.dim_out if self.dim_mul_in_att else self.dim


def _pooling(
    kernel: Sequence[int], stride: Sequence[int], channels: int
) -> tuple[nn.Conv3d | None, nn.LayerNorm | None]:
    """The depthwise Conv3d that pools one of q / k / v per head, and the LayerNorm after it; (None, None) when the
    pooling is the identity (no kernel, or kernel and stride all ones)."""
    if len(kernel) == 0 or (math.prod(kernel) == 1 and math.prod(stride) == 1):
        return None, None
    padding = [k // 2 for k in kernel]
    conv = nn.Conv3d(channels, channels, kernel, stride=stride, padding=padding, groups=channels, bias=False)
    return conv, nn.LayerNorm(channels, eps=1e-6)


class MultiScaleAttention(nn.Module):
    """Pooling attention: q, k, v projected per head, pooled over the token grid, then attended.

    Built from a BlockSpec: it runs at `spec.attention_dim` channels with `spec.num_heads` heads; the relative-position
    tables are sized for `spec.input_size` (any grid works at run time).
    forward(x [B, N, spec.dim], thw) -> (out [B, Nq, attention_dim], q grid). Nq follows the q pooling stride.
    """

    def __init__(self, spec: BlockSpec):
        super().__init__()
        if spec.attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {', '.join(ATTN_IMPLS)}, got {spec.attn_impl!r}")
        self.num_heads = spec.num_heads
        self.dim_out = spec.attention_dim
        head_dim = self.dim_out // spec.num_heads
        self.scale = head_dim**-0.5
        self.has_cls_embed = spec.has_cls_embed
        self.residual_pooling = spec.residual_pooling
        self.attn_impl = spec.attn_impl
        # When True (models/attention_capture.py sets it), forward takes the explicit path and keeps its softmax
        # weights [B, heads, Nq, Nk] in `captured_weights` and the (query, key) grids in `attention_grids`; the
        # default path stays fused.
        self.capture_weights = False
        self.captured_weights: torch.Tensor | None = None
        self.attention_grids: tuple[Grid, Grid] | None = None

        self.qkv = nn.Linear(spec.dim, self.dim_out * 3, bias=spec.qkv_bias)
        self.proj = nn.Linear(self.dim_out, self.dim_out)
        self.proj_drop = nn.Dropout(spec.drop_rate) if spec.drop_rate > 0.0 else nn.Identity()
        self.pool_q, self.norm_q = _pooling(spec.kernel_q, spec.stride_q, head_dim)
        self.pool_k, self.norm_k = _pooling(spec.kernel_kv, spec.stride_kv, head_dim)
        self.pool_v, self.norm_v = _pooling(spec.kernel_kv, spec.stride_kv, head_dim)

        # Decomposed relative-position tables [rows, head_dim], None for an axis without them. Rows for the
        # configured grid, as upstream (which uses the H stride for both H and W).
        def pooled(size: int, stride: Sequence[int], axis: int) -> int:
            return size // stride[axis] if len(stride) > 0 else size

        self.rel_pos_h: nn.Parameter | None = None
        self.rel_pos_w: nn.Parameter | None = None
        self.rel_pos_t: nn.Parameter | None = None
        if spec.rel_pos_spatial:
            _, height, width = spec.input_size
            rows_h = 2 * max(pooled(height, spec.stride_q, 1), pooled(height, spec.stride_kv, 1)) - 1
            rows_w = 2 * max(pooled(width, spec.stride_q, 1), pooled(width, spec.stride_kv, 1)) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(rows_h, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(rows_w, head_dim))
            if not spec.rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_h, std=0.02)
                nn.init.trunc_normal_(self.rel_pos_w, std=0.02)
        if spec.rel_pos_temporal:
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * spec.input_size[0] - 1, head_dim))
            if not spec.rel_pos_zero_init:
                nn.init.trunc_normal_(self.rel_pos_t, std=0.02)

    def _qkv(self, x: torch.Tensor, thw: Grid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Grid, Grid]:
        """Projected and pooled q, k, v: each [B, heads, N_*, head_dim], with the q and k grids."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, q_thw = pool_tokens(qkv[0], self.pool_q, thw, self.has_cls_embed, self.norm_q)
        k, k_thw = pool_tokens(qkv[1], self.pool_k, thw, self.has_cls_embed, self.norm_k)
        v, _ = pool_tokens(qkv[2], self.pool_v, thw, self.has_cls_embed, self.norm_v)
        return q, k, v, q_thw, k_thw

    def resolved_impl(self, device: torch.device, impl: str | None = None) -> str:
        """The implementation `impl` (default: this module's) stands for on `device`: "auto" resolved by device
        type, to "sdpa" where nothing was measured."""
        impl = self.attn_impl if impl is None else impl
        return AUTO_ATTN_IMPL.get(device.type, "sdpa") if impl == "auto" else impl

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_thw: Grid, k_thw: Grid,
               impl: str | None = None) -> torch.Tensor:
        """Attention of pooled q [B, heads, Nq, d] over k, v [B, heads, Nk, d] with the relative-position terms:
        [B, heads, Nq, d], by `impl` (default: this module's, "auto" resolved for q's device)."""
        impl = self.resolved_impl(q.device, impl)
        s = 1 if self.has_cls_embed else 0
        tables = (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)
        if self.capture_weights:
            # Asked for the weights (models/attention_capture.py): the explicit formulation, which forms them.
            weights = attention_weights(q, k, self.scale, rel_pos_bias(q[:, :, s:], q_thw, k_thw, *tables), s)
            self.captured_weights, self.attention_grids = weights.detach(), (q_thw, k_thw)
            return weights.to(v.dtype) @ v
        if impl == "folded":
            terms = rel_pos_terms(q[:, :, s:], q_thw, k_thw, *tables)
            axes = (tables[0] is not None, tables[1] is not None, tables[2] is not None)
            return folded_attention(q, k, v, self.scale, terms, k_thw, axes, s)
        bias = rel_pos_bias(q[:, :, s:], q_thw, k_thw, *tables)
        if impl == "sdpa":
            return sdpa_bias_attention(q, k, v, self.scale, bias, s)
        return explicit_attention(q, k, v, self.scale, bias, s)

    def forward(self, x: torch.Tensor, thw: Grid) -> tuple[torch.Tensor, Grid]:
        batch = x.shape[0]
        q, k, v, q_thw, k_thw = self._qkv(x, thw)
        out = self.attend(q, k, v, q_thw, k_thw)
        s = 1 if self.has_cls_embed else 0
        if self.residual_pooling:
            # The pooled (normalised, unscaled) query joins the output of every grid token, not the class token.
            out = out + (F.pad(q[:, :, s:], (0, 0, s, 0)) if s else q)
        # contiguous + view (not reshape, the same copy or none): exported graphs (ONNX) decompose the fused kernel
        # into ops whose output strides differ from the kernel's, where reshape's traced view would be invalid.
        out = out.transpose(1, 2).contiguous().view(batch, -1, self.dim_out)
        return self.proj_drop(self.proj(out)), q_thw


class MultiScaleBlock(nn.Module):
    """One MViTv2 block: pooling attention and an MLP, each residual, with the skip path pooled like the query.

    forward(x [B, N, spec.dim], thw) -> (x [B, Nq, spec.dim_out], q grid).
    With `spec.dim_mul_in_att` the channel change happens in the attention (qkv projects to dim_out, the skip path is
    `proj(norm1(x))`); otherwise in the MLP (skip path `proj(norm2(x))`), as upstream.
    """

    def __init__(self, spec: BlockSpec):
        super().__init__()
        self.dim_mul_in_att = spec.dim_mul_in_att
        self.has_cls_embed = spec.has_cls_embed
        att_dim = spec.attention_dim
        self.norm1 = nn.LayerNorm(spec.dim, eps=1e-6)
        self.attn = MultiScaleAttention(spec)
        self.drop_path = DropPath(spec.drop_path) if spec.drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(att_dim, eps=1e-6)
        self.mlp = Mlp(att_dim, int(att_dim * spec.mlp_ratio), spec.dim_out, drop_rate=spec.drop_rate)
        # The skip path's channel change (None when the width stays).
        self.proj = nn.Linear(spec.dim, spec.dim_out) if spec.dim != spec.dim_out else None
        # The skip path follows the query's stride with a max-pool of kernel stride+1 (None where the stride is 1).
        self.pool_skip: nn.MaxPool3d | None = None
        if len(spec.stride_q) > 0 and math.prod(spec.stride_q) > 1:
            kernel_skip = [s + 1 if s > 1 else s for s in spec.stride_q]
            self.pool_skip = nn.MaxPool3d(kernel_skip, spec.stride_q, [k // 2 for k in kernel_skip], ceil_mode=False)

    def forward(self, x: torch.Tensor, thw: Grid) -> tuple[torch.Tensor, Grid]:
        x_norm = self.norm1(x)
        x_block, thw_new = self.attn(x_norm, thw)
        if self.proj is not None and self.dim_mul_in_att:
            x = self.proj(x_norm)
        x_res, _ = pool_tokens(x, self.pool_skip, thw, self.has_cls_embed)
        x = x_res + self.drop_path(x_block)
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        if self.proj is not None and not self.dim_mul_in_att:
            x = self.proj(x_norm)
        return x + self.drop_path(x_mlp), thw_new
