"""Token arrangements: which backbone tokens the box/actor heads and the class head read ("divide and conquer").

The backbone gives a grid [B, C, T, H, W]. An arrangement builds two token sets of equal size N in one-to-one order:
box tokens (read by the box and actor heads) and class tokens (read by the class head); token n of both sets forms
the n-th triplet. Both sets are laid out as a grid (S, H, W) flattened row-major, so token n sits in spatial cell
n % (H*W) and in temporal slot n // (H*W). With T = 8, H = W = 16 (MViTv2-S, 16x256x256):

| arrangement    | box / actor tokens                        | class tokens                               |    N |
|----------------|-------------------------------------------|--------------------------------------------|------|
| `all`          | every token                               | the same tokens                            | 2048 |
| `center`       | central slice t = T // 2                  | the same tokens                            |  256 |
| `center_tpool` | central slice t = T // 2                  | every position averaged over time          |  256 |
| `all_tpool`    | every position averaged over time         | the same tokens                            |  256 |
| `two_halves`   | slices T // 2 - 1 and T // 2              | first half and second half, each averaged  |  512 |

`two_halves` splits time at T // 2: the first half [0, T//2) pairs with slice T//2 - 1, the second half [T//2, T)
with slice T//2 (for T = 8: slices 3, 4 and halves 0-3, 4-7). The central slice T // 2 is the one whose receptive
field is centred on the key frame for MViT's (3, 7, 7) / (2, 4, 4) patch embedding of 16 frames (token t covers frames
2t - 1 .. 2t + 1; the key frame is frame 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

ARRANGEMENTS = ("all", "center", "center_tpool", "all_tpool", "two_halves")


@dataclass(frozen=True)
class ArrangedTokens:
    """Tokens for the three heads, in one-to-one order.

    box_tokens:   [B, N, C] read by the box and actor heads.
    class_tokens: [B, N, C] read by the class head; the very same tensor object as `box_tokens` when the arrangement
                  shares them (`all`, `center`, `all_tpool`), so callers can skip duplicate work.
    grid:         (S, H, W) with N = S * H * W; token n is at temporal slot n // (H*W), spatial cell n % (H*W).
    """

    box_tokens: Tensor
    class_tokens: Tensor
    grid: tuple[int, int, int]


def _flatten(grid: Tensor) -> Tensor:
    """[B, C, S, H, W] -> [B, S*H*W, C], row-major over (S, H, W)."""
    return grid.flatten(2).transpose(1, 2)


def _time_slots(arrangement: str, time: int) -> tuple[list[range], list[range]]:
    """The rule of each arrangement, for a backbone grid of `time` temporal tokens: the backbone time indices of each
    temporal slot of the box / actor tokens and of the class tokens (a slot of one index is that time slice, a slot
    of several is their average). The table of the module docstring; both are the same list object when the
    arrangement shares its tokens (`all`, `center`, `all_tpool`). A name of ARRANGEMENTS without a rule here is a
    ValueError naming it, never another arrangement's rule."""
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"BMVIT.TOKEN_ARRANGEMENT: unknown arrangement {arrangement!r} "
                         f"(known: {', '.join(ARRANGEMENTS)})")
    if arrangement == "two_halves" and time < 2:
        raise ValueError(f"BMVIT.TOKEN_ARRANGEMENT two_halves needs >= 2 temporal tokens, the backbone gave {time}")
    center = time // 2
    central, pooled = [range(center, center + 1)], [range(time)]
    if arrangement == "all":
        every = [range(t, t + 1) for t in range(time)]
        return every, every
    if arrangement == "center":
        return central, central
    if arrangement == "center_tpool":
        return central, pooled
    if arrangement == "all_tpool":
        return pooled, pooled
    if arrangement == "two_halves":
        return [range(center - 1, center), range(center, center + 1)], [range(center), range(center, time)]
    raise ValueError(f"BMVIT.TOKEN_ARRANGEMENT: arrangement {arrangement!r} is in ARRANGEMENTS but has no rule in "
                     f"models/token_selection.py's _time_slots")


def _gather(tokens: Tensor, slots: list[range]) -> Tensor:
    """The grid [B, C, len(slots), H, W] of `slots` (see `_time_slots`) from tokens [B, C, T, H, W]; consecutive
    single slices stay one view of `tokens`."""
    starts = [slot.start for slot in slots]
    if all(len(slot) == 1 for slot in slots) and starts == list(range(starts[0], starts[0] + len(slots))):
        return tokens[:, :, slots[0].start : slots[-1].stop]
    parts = [tokens[:, :, slot.start : slot.stop] for slot in slots]
    parts = [part if part.shape[2] == 1 else part.mean(dim=2, keepdim=True) for part in parts]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def _select(tokens: Tensor, arrangement: str) -> tuple[Tensor, Tensor]:
    """The box and class token grids [B, C, S, H, W] (the same object when the arrangement shares them)."""
    box_slots, class_slots = _time_slots(arrangement, tokens.shape[2])
    box_grid = _gather(tokens, box_slots)
    return box_grid, box_grid if class_slots is box_slots else _gather(tokens, class_slots)


def arrange_tokens(tokens: Tensor, arrangement: str) -> ArrangedTokens:
    """Arrange a backbone grid [B, C, T, H, W] for the heads (see the module docstring for the arrangements)."""
    if tokens.dim() != 5:
        raise ValueError(f"expected backbone tokens [B, C, T, H, W], got shape {tuple(tokens.shape)}")
    box_grid, class_grid = _select(tokens, arrangement)
    box_tokens = _flatten(box_grid)
    class_tokens = box_tokens if class_grid is box_grid else _flatten(class_grid)
    slots, height, width = box_grid.shape[2:]
    return ArrangedTokens(box_tokens, class_tokens, (slots, height, width))


def arranged_grid(arrangement: str, backbone_grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """(S, H, W) of the arranged tokens for a backbone grid (T, H, W), without running anything."""
    time, height, width = backbone_grid
    return len(_time_slots(arrangement, time)[0]), height, width


def reference_points(grid: tuple[int, int, int], device=None, dtype=torch.float32) -> Tensor:
    """Centre (x, y) of each arranged token's spatial cell, as fractions of the clip: [S*H*W, 2].

    The cell (i, j) of an H x W grid has centre ((j + 0.5) / W, (i + 0.5) / H); every temporal slot repeats the
    spatial layout.
    """
    slots, height, width = grid
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    cells = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(height * width, 2)
    return cells.repeat(slots, 1)


def box_token_times(arrangement: str, time: int) -> list[list[int]]:
    """For each temporal slot of the arranged box / actor tokens, the backbone time indices its tokens come from
    (one index for a slice, all of them for a time average), for a backbone grid of `time` temporal tokens."""
    return [list(slot) for slot in _time_slots(arrangement, time)[0]]
