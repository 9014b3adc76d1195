"""Box intersection-over-union, in the two conventions the evaluators use.

Boxes are (x1, y1, x2, y2).
- ``plus_one=False`` (AVA, VOC-style on normalised coordinates): area = (x2 - x1) * (y2 - y1); no epsilon.
  The arithmetic is ordered like the official AVA code ((area1 + area2) - intersection), so IoU values, and
  therefore threshold decisions, are bit-identical to it.
- ``plus_one=True`` (ACT, pixel coordinates with inclusive corners): area = (x2 - x1 + 1) * (y2 - y1 + 1),
  overlap width = max(0, min(x2 + 1) - max(x1)).
"""

from __future__ import annotations

import numpy as np

__all__ = ["iou_pairs", "iou_matrix", "cxcywh_to_xyxy"]


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """[..., 4] (cx, cy, w, h) -> [..., 4] (x1, y1, x2, y2), e.g. for BMViT's `pred_boxes`."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def iou_pairs(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """Element-wise IoU of a[i] with b[i]: a, b [N, 4] (or broadcastable) -> [N] float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    one = 1.0 if plus_one else 0.0
    if plus_one:
        width = np.maximum(0.0, np.minimum(a[..., 2] + one, b[..., 2] + one) - np.maximum(a[..., 0], b[..., 0]))
        height = np.maximum(0.0, np.minimum(a[..., 3] + one, b[..., 3] + one) - np.maximum(a[..., 1], b[..., 1]))
    else:
        width = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]))
        height = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]))
    inter = height * width
    area_a = (a[..., 3] - a[..., 1] + one) * (a[..., 2] - a[..., 0] + one)
    area_b = (b[..., 3] - b[..., 1] + one) * (b[..., 2] - b[..., 0] + one)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / ((area_a + area_b) - inter)


def iou_matrix(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """Pairwise IoU: a [N, 4], b [M, 4] -> [N, M] float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return iou_pairs(a[:, None, :], b[None, :, :], plus_one=plus_one)
