"""Greedy detection-to-ground-truth matching within groups (an image and class, a video frame and class), vectorised.

Two rules:
- flag (AVA / VOC): a detection takes the ground truth of max IoU among ALL of its group (first on ties); IoU >=
  threshold and that ground truth not yet taken by an earlier detection -> TP; otherwise FP.  With a fixed argmax
  this is "the first candidate per ground truth", so no sequential loop is needed.
- remove (ACT): a TP's ground truth leaves the pool, later detections choose among the rest.  Identical to flag for
  groups with one ground truth; groups with more are replayed sequentially (they are few).
Groups are int64 ids; "earlier" means earlier in the given processing order.
"""

from __future__ import annotations

import numpy as np

from slowfast_bmvit.evaluation.iou import iou_pairs

__all__ = ["max_iou_match", "first_claims", "greedy_match"]


def _group_pairs(det_group: np.ndarray, gt_group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (detection, ground truth) pair sharing a group, detection-major, ground truths in input order.

    Returns pair_det [P], pair_gt [P] (row indices) and n [D] (pairs per detection; pairs of detection i start at
    cumsum(n)[i] - n[i]).
    """
    num_det = len(det_group)
    if num_det == 0 or len(gt_group) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(num_det, np.int64)
    gt_order = np.argsort(gt_group, kind="stable")
    groups, starts, counts = np.unique(gt_group[gt_order], return_index=True, return_counts=True)
    pos = np.minimum(np.searchsorted(groups, det_group), len(groups) - 1)
    n = np.where(groups[pos] == det_group, counts[pos], 0)
    total = int(n.sum())
    offsets = np.cumsum(n) - n
    pair_det = np.repeat(np.arange(num_det), n)
    pair_gt = gt_order[np.repeat(starts[pos], n) + (np.arange(total) - np.repeat(offsets, n))]
    return pair_det, pair_gt, n


def max_iou_match(det_group: np.ndarray, det_boxes: np.ndarray, gt_group: np.ndarray, gt_boxes: np.ndarray,
                  plus_one: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the ground-truth row of its group with max IoU.

    det_group [D], gt_group [G] int64; boxes [*, 4] (x1, y1, x2, y2).
    Returns best_gt [D] int64 (row into the ground truth, -1 when the group has none) and best_iou [D] float64
    (-inf when none).  Ties go to the first ground-truth row in input order; a NaN IoU wins like numpy's argmax
    (the first NaN) and then fails every threshold.
    """
    best_gt = np.full(len(det_group), -1, dtype=np.int64)
    best_iou = np.full(len(det_group), -np.inf)
    pair_det, pair_gt, n = _group_pairs(det_group, gt_group)
    if len(pair_det) == 0:
        return best_gt, best_iou
    iou = iou_pairs(det_boxes[pair_det], gt_boxes[pair_gt], plus_one=plus_one)
    has = np.flatnonzero(n > 0)
    seg_max = np.maximum.reduceat(iou, (np.cumsum(n) - n)[has])
    hit = np.flatnonzero((iou == np.repeat(seg_max, n[has])) | np.isnan(iou))
    first = hit[np.r_[True, pair_det[hit][1:] != pair_det[hit][:-1]]]
    best_gt[pair_det[first]] = pair_gt[first]
    best_iou[has] = seg_max
    return best_gt, best_iou


def first_claims(best_gt: np.ndarray, candidate: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """[D] bool TP flags under the flag rule: a candidate is a TP iff no candidate earlier in ``order``
    (a permutation of range(D); default input order) claimed the same ground truth."""
    order = np.arange(len(best_gt)) if order is None else order
    ordered = order[candidate[order]]
    _, first = np.unique(best_gt[ordered], return_index=True)
    tp = np.zeros(len(best_gt), dtype=bool)
    tp[ordered[first]] = True
    return tp


def greedy_match(det_group: np.ndarray, det_boxes: np.ndarray, gt_group: np.ndarray, gt_boxes: np.ndarray,
                 iou_thresh: float, rule: str, plus_one: bool = False) -> np.ndarray:
    """[D] bool TP flags for detections processed in input order (sort them by score first) under ``rule``
    "flag" or "remove" (see the module docstring)."""
    if rule not in ("flag", "remove"):
        raise ValueError(f"unknown matching rule {rule!r}")
    best_gt, best_iou = max_iou_match(det_group, det_boxes, gt_group, gt_boxes, plus_one)
    tp = first_claims(best_gt, best_iou >= iou_thresh)
    if rule == "flag" or len(gt_group) == 0:
        return tp
    groups, counts = np.unique(gt_group, return_counts=True)
    replay = np.isin(det_group, groups[counts > 1])
    if not replay.any():
        return tp
    # sequential replay of the detections whose group has several ground truths, in processing order
    pair_det, pair_gt, n = _group_pairs(det_group[replay], gt_group)
    iou = iou_pairs(det_boxes[replay][pair_det], gt_boxes[pair_gt], plus_one=plus_one).tolist()
    gt_ids = pair_gt.tolist()
    taken: set[int] = set()
    flags = []
    start = 0
    for count in n.tolist():
        best, best_value = -1, -np.inf
        for j in range(start, start + count):
            if gt_ids[j] not in taken and iou[j] > best_value:
                best, best_value = gt_ids[j], iou[j]
        hit = best_value >= iou_thresh
        if hit:
            taken.add(best)
        flags.append(hit)
        start += count
    tp[np.flatnonzero(replay)] = flags
    return tp
