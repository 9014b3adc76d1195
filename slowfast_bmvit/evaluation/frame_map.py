"""Frame-mAP for UCF101-24 / JHMDB51-21 on ACT-format ground truth (ACT convention by default).

Ground truth ``gt`` (ACT pickle format): ``labels`` [C] class names; ``test_videos`` one list of video names per
split (split 1-based); ``nframes``; ``resolution``; ``gttubes`` {video: {label: [array [T, 5] of (frame 1-based,
x1, y1, x2, y2) in pixels]}}.
Detections: array [N, 8] of (video_index into the split's test videos, frame 1-based, label 0-based, score,
x1, y1, x2, y2) in pixels.

Conventions:
- ``act`` (default): IoU with the +1 pixel convention; per class, detections by descending score (ties in input
  order) take the remaining ground-truth box of max IoU at their (video, frame); IoU >= threshold -> TP and that
  box is removed, else FP; the PR curve starts at (recall 0, precision 1); AP = trapezoid area.
- ``voc``: IoU without +1; the max-IoU box is taken among all boxes of the key, a box already matched makes the
  detection a FP (flagged, not removed); AP = VOC all-point interpolation.
mAP = mean over all classes; a class without detections has AP 0 (and so has one without ground truth).
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from slowfast_bmvit.evaluation.ap import act_ap, precision_recall, voc_ap
from slowfast_bmvit.evaluation.matching import greedy_match

logger = logging.getLogger(__name__)

__all__ = ["CONVENTIONS", "split_videos", "gt_frame_table", "frame_ap", "ap_from_tp"]

CONVENTIONS = ("act", "voc")


def split_videos(gt: Mapping, split: int = 1, videos: Sequence[str] | None = None) -> list[str]:
    """The test video list of ``split`` (1-based; UCF101-24 has split 1 only, JHMDB 1-3), or ``videos`` if given."""
    if videos is not None:
        return list(videos)
    lists = gt["test_videos"]
    if isinstance(lists, Mapping):
        if split not in lists:
            raise ValueError(f"split {split} not in the ground truth (splits: {sorted(lists)})")
        return list(lists[split])
    if not 1 <= split <= len(lists):
        raise ValueError(f"split {split} not in the ground truth (it has {len(lists)} split(s), 1-based)")
    return list(lists[split - 1])


def check_convention(convention: str) -> bool:
    """True for the +1 pixel IoU convention (``act``); raises for an unknown convention."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r} (expected one of {CONVENTIONS})")
    return convention == "act"


def ap_from_tp(tp: np.ndarray, num_gt: int, convention: str) -> tuple[float, np.ndarray, np.ndarray]:
    """(AP, precision [N], recall [N]) of score-sorted TP flags; AP 0 without ground truth."""
    precision, recall = precision_recall(tp, num_gt)
    if num_gt == 0:
        return 0.0, precision, recall
    return (act_ap if convention == "act" else voc_ap)(precision, recall), precision, recall


def gt_frame_table(gt: Mapping, videos: Sequence[str]) -> np.ndarray:
    """All ground-truth boxes of ``videos`` as [G, 7] float64 rows (video index, label, frame, x1, y1, x2, y2),
    in video, label and tube order."""
    parts = []
    for iv, video in enumerate(videos):
        for label, tubes in gt["gttubes"].get(video, {}).items():
            for tube in tubes:
                tube = np.asarray(tube, dtype=np.float64).reshape(-1, 5)
                parts.append(np.column_stack([np.full(len(tube), iv), np.full(len(tube), label), tube]))
    return np.concatenate(parts) if parts else np.zeros((0, 7))


def frame_ap(gt: Mapping, detections: np.ndarray, iou_thresh: float = 0.5, convention: str = "act",
             split: int = 1, videos: Sequence[str] | None = None, return_curves: bool = False) -> dict:
    """Frame-mAP of detections [N, 8] against ACT ground truth ``gt`` (see the module docstring).

    Returns ``{"per_class": {name: AP}, "mAP": float, "num_gt": {name: int}}`` (fractions in [0, 1]), plus
    ``curves`` {name: {"precision", "recall"}} with ``return_curves``.
    """
    plus_one = check_convention(convention)
    videos = split_videos(gt, split, videos)
    dets = np.asarray(detections, dtype=np.float64).reshape(-1, 8)
    vidx = dets[:, 0]
    bad = (vidx < 0) | (vidx >= len(videos)) | (vidx != np.round(vidx))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} detection(s) with a video index outside 0..{len(videos) - 1}, "
                         f"e.g. row {int(np.flatnonzero(bad)[0])}: {dets[bad][0].tolist()}")
    labels = dets[:, 2]
    unknown = (labels < 0) | (labels >= len(gt["labels"])) | (labels != np.round(labels))
    if unknown.any():
        logger.warning("ignoring %d detection(s) with a label outside 0..%d", int(unknown.sum()),
                       len(gt["labels"]) - 1)
    table = gt_frame_table(gt, videos)
    # (video, frame) -> one int64 key
    span = int(max(table[:, 2].max(initial=0), dets[:, 1].max(initial=0))) + 1
    per_class: dict[str, float] = {}
    num_gt_out: dict[str, int] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    for label, name in enumerate(gt["labels"]):
        g = table[table[:, 1] == label]
        d = dets[dets[:, 2] == label]
        d = d[np.argsort(-d[:, 3], kind="stable")]
        tp = greedy_match(d[:, 0].astype(np.int64) * span + d[:, 1].astype(np.int64), d[:, 4:8],
                          g[:, 0].astype(np.int64) * span + g[:, 2].astype(np.int64), g[:, 3:7], iou_thresh,
                          rule="remove" if plus_one else "flag", plus_one=plus_one)
        ap, precision, recall = ap_from_tp(tp, len(g), convention)
        per_class[name] = ap
        num_gt_out[name] = len(g)
        if return_curves:
            curves[name] = {"precision": precision, "recall": recall}
    result = {"per_class": per_class, "mAP": float(np.mean(list(per_class.values()))) if per_class else 0.0,
              "num_gt": num_gt_out, "iou_threshold": iou_thresh, "convention": convention}
    if return_curves:
        result["curves"] = curves
    return result
