"""Box conversions and (generalised) IoU in torch, differentiable.

Boxes are (cx, cy, w, h) or (x1, y1, x2, y2) in any common unit (here: fractions of the clip). `*_iou` functions are
pairwise ([N, 4] x [M, 4] -> [N, M]); `paired_*` functions compare row i with row i ([N, 4] x [N, 4] -> [N]).
Generalised IoU (Rezatofighi et al., CVPR 2019) is IoU - (|C| - |A u B|) / |C|, with C the smallest enclosing box;
it lies in [-1, 1] and still has a gradient when the boxes do not overlap.
"""

from __future__ import annotations

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """[..., 4] (x1, y1, x2, y2) -> [..., 4] (cx, cy, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """[..., 4] xyxy -> [...] area (0 for inverted boxes)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _safe_divide(numerator: Tensor, denominator: Tensor) -> Tensor:
    # Only degenerate pairs (both boxes of zero area) reach the clamp; for them IoU is defined as 0, not NaN.
    return numerator / denominator.clamp(min=torch.finfo(denominator.dtype).tiny)


def _iou_union_enclosing(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """IoU, union and enclosing-box area of broadcastable xyxy boxes [..., 4]."""
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    overlap = (bottom_right - top_left).clamp(min=0)
    intersection = overlap[..., 0] * overlap[..., 1]
    union = box_area(boxes1) + box_area(boxes2) - intersection
    enclosing_size = (
        torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])
    ).clamp(min=0)
    enclosing = enclosing_size[..., 0] * enclosing_size[..., 1]
    return _safe_divide(intersection, union), union, enclosing


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU of xyxy boxes: [N, 4], [M, 4] -> [N, M]."""
    iou, _, _ = _iou_union_enclosing(boxes1[:, None, :], boxes2[None, :, :])
    return iou


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise generalised IoU of xyxy boxes: [N, 4], [M, 4] -> [N, M], values in [-1, 1]."""
    return paired_generalized_box_iou(boxes1[:, None, :], boxes2[None, :, :])


def paired_generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalised IoU of corresponding xyxy boxes: [..., 4], [..., 4] (broadcastable) -> [...]."""
    iou, union, enclosing = _iou_union_enclosing(boxes1, boxes2)
    return iou - _safe_divide(enclosing - union, enclosing)


def greedy_nms(boxes: Tensor, iou_threshold: float) -> Tensor:
    """Indices of the boxes that survive greedy non-maximum suppression, in input order.

    Args:
        boxes: [k, 4] xyxy, already sorted by score, highest first.
        iou_threshold: a box is dropped when its IoU with an earlier kept box is above this.
    Returns:
        int64 [m] indices into `boxes`, ascending (so still sorted by score).
    The k here is a clip's tokens (tens to a few hundred), so the k x k IoU matrix and a Python loop over rows are
    cheap; written here because torchvision (whose `ops.nms` does the same) is optional.
    """
    iou = box_iou(boxes, boxes)
    positions = torch.arange(len(boxes), device=boxes.device)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    for i in range(len(boxes)):
        if not suppressed[i]:
            suppressed |= (positions > i) & (iou[i] > iou_threshold)
    return torch.nonzero(~suppressed, as_tuple=False).flatten()
