"""Precision-recall curves and average precision (VOC all-point and ACT trapezoid).

All functions take detections already sorted by descending score: ``tp`` [N] bool, True for a true positive.
"""

from __future__ import annotations

import numpy as np

__all__ = ["precision_recall", "voc_ap", "act_ap", "average_precision"]


def precision_recall(tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative precision and recall after each detection: tp [N] bool (score-sorted) -> ([N], [N]) float64.

    precision = TP / (TP + FP), recall = TP / num_gt (recall is all zeros when num_gt == 0).
    """
    tp = np.asarray(tp, dtype=bool).reshape(-1)
    cum_tp = np.cumsum(tp.astype(np.int64))
    cum_fp = np.cumsum((~tp).astype(np.int64))
    precision = cum_tp.astype(np.float64) / (cum_tp + cum_fp)
    recall = cum_tp.astype(np.float64) / num_gt if num_gt > 0 else np.zeros(len(tp))
    return precision, recall


def voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC all-point interpolated AP (the AVA / PASCAL definition).

    Recall is padded with 0 and 1, precision with 0 and 0; precision is made non-increasing from the right;
    AP = sum over indices i where recall changes of (r[i] - r[i-1]) * p[i]. Empty input gives 0.
    """
    if len(precision) == 0:
        return 0.0
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[idx] - r[idx - 1]) * p[idx]))


def act_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """ACT AP: trapezoid area under the raw PR curve, which starts at (recall 0, precision 1).

    AP = sum_i (r_i - r_{i-1}) * (p_i + p_{i-1}) / 2 over the points [(0, 1), (r_1, p_1), ...]; no interpolation.
    """
    r = np.concatenate([[0.0], np.asarray(recall, np.float64)])
    p = np.concatenate([[1.0], np.asarray(precision, np.float64)])
    return float(np.sum((r[1:] - r[:-1]) * (p[1:] + p[:-1]) * 0.5))


def average_precision(tp: np.ndarray, num_gt: int, convention: str = "act") -> float:
    """AP of score-sorted TP flags under ``convention`` "act" (trapezoid) or "voc" (all-point interpolation)."""
    precision, recall = precision_recall(tp, num_gt)
    if convention == "act":
        return act_ap(precision, recall)
    if convention == "voc":
        return voc_ap(precision, recall)
    raise ValueError(f"unknown AP convention {convention!r} (expected 'act' or 'voc')")
