"""What BMViT's output tokens say about one clip (the supplement's Fig. 3): p(actor) and the box of every token of
one slot of the arranged grid, and the last block's attention of the positive tokens over the key grid.

One forward pass with the last attention module captured (models/attention_capture.py: the explicit formulation,
same numbers as the fused path); the test-time flip average is not applied (its two views attend differently).
A positive token is one with p(actor) > the threshold. For an arrangement whose box tokens are backbone slices
(all, center, center_tpool, two_halves) a token's attention row is that of its backbone token as the query; for a
time-averaged one (all_tpool) it is the mean of the rows of the tokens averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from slowfast_bmvit.evaluation.iou import cxcywh_to_xyxy
from slowfast_bmvit.models.attention_capture import capture_attention, last_attention_module
from slowfast_bmvit.models.token_selection import box_token_times


@dataclass
class TokenInspection:
    """One slot of the arranged token grid of one clip.

    slot: the temporal slot shown; actor_prob: [H', W'] p(actor) of its tokens; boxes: [H', W', 4] their boxes,
    (x1, y1, x2, y2) fractions of the clip; positive: flat indices (h * W' + w) of the shown positive tokens,
    highest p(actor) first; attention: [P, kt, kh, kw] each positive token's last-block attention over the key
    grid (averaged over heads); cls_attention: [P] its weight on the class token (0 without one), so that
    attention[i].sum() + cls_attention[i] == 1; key_times: the clip frames (indices into the clip) at the centre
    of each of the kt key slices.
    """

    slot: int
    actor_prob: np.ndarray
    boxes: np.ndarray
    positive: np.ndarray
    attention: np.ndarray
    cls_attention: np.ndarray
    key_times: list[int]


@torch.no_grad()
def inspect_tokens(model: nn.Module, clip: torch.Tensor, actor_thresh: float, slot: int | None = None,
                   max_tokens: int = 0) -> TokenInspection:
    """Inspect a BMViT on one clip [1, 3, T, H, W] (normalised, on the model's device).

    Args:
        actor_thresh: tokens with p(actor) above it are positive (BMVIT.ACTOR_THRESH).
        slot: the arranged slot to show; None takes the central one (S // 2).
        max_tokens: keep at most this many positive tokens, highest p(actor) first (0: all).
    """
    if clip.ndim != 5 or clip.shape[0] != 1:
        raise ValueError(f"expected one clip [1, 3, T, H, W], got shape {tuple(clip.shape)}")
    model.eval()
    attention_module = last_attention_module(model.backbone)
    with capture_attention(attention_module) as captured:
        outputs = model(clip)
    slots, height, width = model.token_grid(tuple(clip.shape[2:]))
    slot = slots // 2 if slot is None else slot
    if not 0 <= slot < slots:
        raise ValueError(f"slot {slot} outside the {slots} temporal slots of the arranged tokens")
    actor = outputs["pred_actor"][0].float().softmax(-1)[:, 1].reshape(slots, height, width)[slot].cpu().numpy()
    boxes = cxcywh_to_xyxy(outputs["pred_boxes"][0].float().cpu().numpy()).reshape(slots, height, width, 4)[slot]
    flat = actor.reshape(-1)
    positive = np.flatnonzero(flat > actor_thresh)
    positive = positive[np.argsort(-flat[positive], kind="stable")]
    if max_tokens > 0:
        positive = positive[:max_tokens]

    (qt, qh, qw), (kt, kh, kw) = captured.grids
    if (qh, qw) != (height, width):
        raise ValueError(f"the last block's query grid {qh}x{qw} is not the output grid {height}x{width}")
    weights = captured.weights[0].float().mean(0).cpu().numpy()  # [Nq, Nk], heads averaged
    has_cls = weights.shape[1] == 1 + kt * kh * kw
    first = 1 if has_cls else 0
    times = box_token_times(model.arrangement, qt)[slot]
    maps, cls_weights = [], []
    for index in positive:
        rows = [first + t * qh * qw + index for t in times]
        row = weights[rows].mean(0)
        maps.append(row[first:].reshape(kt, kh, kw))
        cls_weights.append(row[0] if has_cls else 0.0)
    frames = clip.shape[2]
    return TokenInspection(
        slot=slot, actor_prob=actor, boxes=boxes, positive=positive,
        attention=np.array(maps, dtype=np.float64).reshape(len(positive), kt, kh, kw),
        cls_attention=np.array(cls_weights, dtype=np.float64),
        key_times=[min(frames - 1, int((j + 0.5) * frames / kt)) for j in range(kt)],
    )
