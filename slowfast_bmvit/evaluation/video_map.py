"""Video-mAP for UCF101-24 / JHMDB51-21 on ACT-format ground truth (ACT convention by default).

Detected tubes: ``tubes`` {video: {label: [(array [T, 6] of (frame, x1, y1, x2, y2, score), tube_score), ...]}}
for videos of the evaluated split (others are ignored with a logged count).  Ground truth: see frame_map.py.

Per video and class the tubes first go through 3D NMS (``nms_thresh`` 0.3 on ST-IoU, by tube score; None skips
it).  Per class, tubes by descending score (ties in input order) take the remaining ground-truth tube of their
video with max ST-IoU; >= threshold -> TP and that tube is removed (``act``), else FP.  ``voc``: no +1 in the
per-frame IoU, matched tubes flagged instead of removed, VOC all-point AP.  AP: the ACT trapezoid (see ap.py);
mAP over all classes.  With ground-truth tubes as detections UCF101-24 scores about 0.98, not 1: the 3D NMS
suppresses one tube of each same-class pair overlapping by more than 0.3 (expected, as in ACT).
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from slowfast_bmvit.evaluation.frame_map import ap_from_tp, check_convention, split_videos
from slowfast_bmvit.evaluation.tubes import nms3d, tube_iou

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_THRESHOLDS", "video_ap", "video_ap_thresholds"]

DEFAULT_THRESHOLDS = (0.2, 0.5, 0.75)
COCO_STYLE = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, ..., 0.95


class _Prepared:
    """Per class: detected tubes (score-sorted) with their ST-IoU to each ground-truth tube of their video."""

    def __init__(self, gt: Mapping, tubes: Mapping, convention: str, split: int, videos: Sequence[str] | None,
                 nms_thresh: float | None) -> None:
        plus_one = check_convention(convention)
        self.convention = convention
        self.labels = list(gt["labels"])
        videos = split_videos(gt, split, videos)
        wanted = set(videos)
        unknown = [v for v in tubes if v not in wanted]
        if unknown:
            logger.warning("ignoring tubes of %d video(s) not in the evaluated split, e.g. %s", len(unknown),
                           unknown[0])
        bad_labels = sum(len(found) for video in videos for label, found in tubes.get(video, {}).items()
                         if not (isinstance(label, (int, np.integer)) and 0 <= label < len(self.labels)))
        if bad_labels:
            logger.warning("ignoring %d tube(s) with a label outside 0..%d", bad_labels, len(self.labels) - 1)
        self.num_gt = np.zeros(len(self.labels), dtype=np.int64)
        # per class: list of (score, video, [n_gt] ST-IoUs)
        self.dets: list[list[tuple[float, str, np.ndarray]]] = [[] for _ in self.labels]
        for video in videos:
            gt_tubes = gt["gttubes"].get(video, {})
            for label in range(len(self.labels)):
                gts = [np.asarray(t, dtype=np.float64) for t in gt_tubes.get(label, [])]
                self.num_gt[label] += len(gts)
                found = [(np.asarray(t, dtype=np.float64), float(s)) for t, s in tubes.get(video, {}).get(label, [])]
                keep = nms3d(found, nms_thresh, plus_one) if nms_thresh is not None else range(len(found))
                for i in keep:
                    ious = np.array([tube_iou(g, found[i][0], plus_one) for g in gts])
                    self.dets[label].append((found[i][1], video, ious))
        for label in range(len(self.labels)):
            self.dets[label].sort(key=lambda d: -d[0])  # stable: ties keep video / NMS order

    def evaluate(self, iou_thresh: float, return_curves: bool = False) -> dict:
        per_class: dict[str, float] = {}
        curves: dict[str, dict[str, np.ndarray]] = {}
        for label, name in enumerate(self.labels):
            free: dict[str, np.ndarray] = {}
            tp = np.zeros(len(self.dets[label]), dtype=bool)
            for i, (_, video, ious) in enumerate(self.dets[label]):
                if len(ious) == 0:
                    continue
                avail = free.setdefault(video, np.ones(len(ious), dtype=bool))
                if self.convention == "act":  # best among the tubes not matched yet
                    masked = np.where(avail, ious, -np.inf)
                    best = int(np.argmax(masked))
                    if avail[best] and masked[best] >= iou_thresh:
                        tp[i] = True
                        avail[best] = False
                else:  # voc: best among all; a matched one makes this a FP
                    best = int(np.argmax(ious))
                    if ious[best] >= iou_thresh and avail[best]:
                        tp[i] = True
                        avail[best] = False
            ap, precision, recall = ap_from_tp(tp, int(self.num_gt[label]), self.convention)
            per_class[name] = ap
            if return_curves:
                curves[name] = {"precision": precision, "recall": recall}
        result = {"per_class": per_class, "mAP": float(np.mean(list(per_class.values()))) if per_class else 0.0,
                  "num_gt": {n: int(c) for n, c in zip(self.labels, self.num_gt)}, "iou_threshold": iou_thresh,
                  "convention": self.convention}
        if return_curves:
            result["curves"] = curves
        return result


def video_ap(gt: Mapping, tubes: Mapping, iou_thresh: float = 0.5, convention: str = "act", split: int = 1,
             videos: Sequence[str] | None = None, nms_thresh: float | None = 0.3,
             return_curves: bool = False) -> dict:
    """Video-mAP at one ST-IoU threshold: ``{"per_class": {name: AP}, "mAP": float, "num_gt": {name: int}}``."""
    return _Prepared(gt, tubes, convention, split, videos, nms_thresh).evaluate(iou_thresh, return_curves)


def video_ap_thresholds(gt: Mapping, tubes: Mapping, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                        convention: str = "act", split: int = 1, videos: Sequence[str] | None = None,
                        nms_thresh: float | None = 0.3) -> dict:
    """Video-mAP at each threshold and averaged over 0.50:0.05:0.95 (NMS and ST-IoUs computed once).

    Returns {"0.2": mAP, "0.5": mAP, "0.75": mAP, "0.5:0.95": mean mAP, "per_threshold": {"0.2": full result,...}}.
    """
    prepared = _Prepared(gt, tubes, convention, split, videos, nms_thresh)
    full = {f"{t:g}": prepared.evaluate(t) for t in sorted(set(thresholds) | set(COCO_STYLE))}
    out: dict = {f"{t:g}": full[f"{t:g}"]["mAP"] for t in thresholds}
    out["0.5:0.95"] = float(np.mean([full[f"{t:g}"]["mAP"] for t in COCO_STYLE]))
    out["per_threshold"] = {k: v for k, v in full.items() if float(k) in thresholds}
    return out
