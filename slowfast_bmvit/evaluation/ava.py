"""AVA v2.2 frame-mAP@0.5IOU: the official (ActivityNet / PySlowFast) protocol, vectorised with numpy.

Protocol (see docs/EVALUATION.md):
- rows whose action id is not in the label map are dropped (counted); excluded image keys are removed;
- per image key and class, detection boxes with x1 >= x2 or y1 >= y2 are removed; each detection takes the
  ground-truth box of its class with the highest IoU (first on ties) over ALL ground-truth boxes of that class in
  the image; IoU >= 0.5 and that box not yet taken -> TP, otherwise FP (no fallback to the second best);
- per class: (score, TP) of all images, sorted by descending score, VOC all-point AP; a class with ground truth
  and no detection has AP 0; mAP = mean over the label-map classes with ground truth.
Protocols:
- ``pyslowfast`` (default, what PySlowFast-based papers report): no cap; detections on keys without ground truth
  are false positives (2-column ground-truth rows are accepted and change nothing).  Within an image, detections
  are matched in input (file) order, exactly as the official PySlowFast code does; it equals descending-score
  order whenever the input is score-sorted per image.
- ``activitynet`` (the challenge script, ActivityNet ``Evaluation/get_ava_performance.py``): the 50 highest-scoring
  rows per image over all classes are kept (a new row displaces the kept minimum only if its score is strictly
  higher), per-image detections are matched in descending score order (ties in input order), detections on images
  the ground-truth file does not list are ignored.  The listed images are all keys of the file, taken before the
  label-map filter and including its 2-column ``video_id,timestamp`` rows: detections on an image whose ground
  truth has only actions outside the label map (or none) are false positives.
Ties between equal scores across images are ordered like the official code (numpy's default argsort, reversed,
over detections concatenated per class in order of first appearance of their image), so results match it exactly.

Use :func:`evaluate_ava` on :class:`AvaRows` (in memory), :class:`AvaEvaluator` from a training loop, or the CLI::

    python -m slowfast_bmvit.evaluation.ava --labelmap L --groundtruth G --detections D \
        [--exclusions E] [--protocol pyslowfast|activitynet] [--json OUT]
"""

from __future__ import annotations

import argparse
import heapq
import logging
import sys
from typing import Iterable, Mapping, Sequence

import numpy as np

from slowfast_bmvit.evaluation.ap import precision_recall, voc_ap
from slowfast_bmvit.evaluation.ava_io import (
    AvaRows,
    read_detections_csv,
    read_exclusions,
    read_groundtruth_csv,
    read_labelmap,
)
from slowfast_bmvit.evaluation.matching import first_claims, max_iou_match
from slowfast_bmvit.evaluation.result_json import run_evaluator_cli

logger = logging.getLogger(__name__)

__all__ = [
    "PROTOCOLS",
    "AVA_V22_LABEL_TYPES",
    "evaluate_ava",
    "evaluate_ava_files",
    "detections_from_predictions",
    "AvaEvaluator",
    "format_result",
    "main",
]

PROTOCOLS = ("pyslowfast", "activitynet")
ACTIVITYNET_MAX_ROWS_PER_IMAGE = 50
GROUPS = ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION")


def _ava_v22_label_type(class_id: int) -> str | None:
    """label_type of an AVA v2.2 action id, from ava_action_list_v2.2.pbtxt (ids 1-14, 15-63, 64-80)."""
    if 1 <= class_id <= 14:
        return "PERSON_MOVEMENT"
    if 15 <= class_id <= 63:
        return "OBJECT_MANIPULATION"
    if 64 <= class_id <= 80:
        return "PERSON_INTERACTION"
    return None


AVA_V22_LABEL_TYPES: dict[int, str] = {i: _ava_v22_label_type(i) for i in range(1, 81)}


# ------------------------------------------------------------------------------------------------------------ keys
def _image_keys(parts: Sequence[tuple[np.ndarray, np.ndarray]],
                excluded: Iterable[tuple[str, int]]) -> tuple[list[np.ndarray], np.ndarray]:
    """Integer image keys for each (video [N], sec [N]) part (same (video, sec) -> same int) and those of
    ``excluded``."""
    import pandas as pd

    video = np.concatenate([v for v, _ in parts]) if parts else np.empty(0, object)
    sec = np.concatenate([s for _, s in parts]).astype(np.int64) if parts else np.empty(0, np.int64)
    vcode, vuniq = pd.factorize(video)
    scode, suniq = pd.factorize(sec)
    key = vcode.astype(np.int64) * max(len(suniq), 1) + scode
    vlookup = {v: i for i, v in enumerate(vuniq)}
    slookup = {int(s): i for i, s in enumerate(suniq)}
    ex = [vlookup[v] * max(len(suniq), 1) + slookup[int(s)] for v, s in excluded if v in vlookup and int(s) in slookup]
    splits = np.cumsum([len(v) for v, _ in parts])[:-1]
    return np.split(key, splits), np.asarray(ex, dtype=np.int64)


def _first_appearance_rank(key: np.ndarray) -> np.ndarray:
    """[N] rank of each row's key in order of first appearance (0 for the first key met)."""
    import pandas as pd

    codes, _ = pd.factorize(key)
    return codes.astype(np.int64)


# ------------------------------------------------------------------------------------------------------ the 50-row cap
def _cap_rows_per_image(key: np.ndarray, score: np.ndarray, action: np.ndarray, boxes: np.ndarray,
                        cap: int) -> np.ndarray:
    """[N] bool: rows the ActivityNet reader keeps, at most ``cap`` per image key (rows in file order;
    key, score, action [N], boxes [N, 4] (x1, y1, x2, y2)).

    The reader pushes (score, action, y1, x1, y2, x2) tuples on a per-image min-heap and replaces the heap minimum
    only by a strictly higher score.  Without a score tie at the cap boundary that keeps exactly the top ``cap``
    scores; images with such a tie are replayed with heapq to keep exactly the same rows.
    """
    n = len(key)
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    order = np.lexsort((np.arange(n), -score, key))
    skey = key[order]
    starts = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]])
    counts = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, counts)
    keep[order[rank >= cap]] = False
    # a tie at the boundary: the cap-th and (cap+1)-th best rows of an image have the same score
    over = np.flatnonzero(counts > cap)
    tie = over[score[order[starts[over] + cap - 1]] == score[order[starts[over] + cap]]]
    for g in tie:
        members = np.sort(order[starts[g]:starts[g] + counts[g]])  # file order
        heap: list[tuple] = []
        for i in members.tolist():
            x1, y1, x2, y2 = boxes[i].tolist()
            item = (float(score[i]), int(action[i]), y1, x1, y2, x2, i)
            if len(heap) < cap:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)
        keep[members] = False
        keep[[item[-1] for item in heap]] = True
    return keep


# ------------------------------------------------------------------------------------------------ input checks
# A box coordinate further than this outside [0, 1] is not normalised (e.g. pixels).
NORMALISED_TOLERANCE = 0.01


def _invalid(boxes: np.ndarray) -> np.ndarray:
    """[N] bool: boxes [N, 4] (x1, y1, x2, y2) with x1 >= x2 or y1 >= y2."""
    return ~((boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3]))


def _not_normalised(boxes: np.ndarray) -> np.ndarray:
    """[N] bool: boxes [N, 4] with a coordinate outside [0, 1] by more than NORMALISED_TOLERANCE."""
    return ((boxes < -NORMALISED_TOLERANCE) | (boxes > 1 + NORMALISED_TOLERANCE)).any(axis=1)


def _example_keys(rows: AvaRows, indices: np.ndarray, limit: int = 2) -> str:
    """'video,0902', ... of the first distinct image keys of ``rows`` at ``indices``."""
    keys = dict.fromkeys(zip(rows.video[indices[:1000]].tolist(), rows.sec[indices[:1000]].tolist()))
    return ", ".join(f"{video},{int(sec):04d}" for video, sec in list(keys)[:limit])


def _input_problems(groundtruth: AvaRows, detections: AvaRows, gt_rows: np.ndarray, det_rows: np.ndarray,
                    no_gt_rows: np.ndarray, on_gt_image: np.ndarray, protocol: str, counts: dict) -> str | None:
    """Warn, with counts, about rows that cannot count as they should; return why nothing can match, or None.

    gt_rows / det_rows: the ground-truth / detection rows the protocol evaluates (label-map classes, not excluded,
    within the ActivityNet cap); no_gt_rows: detection rows on images the ground-truth file does not list;
    on_gt_image [len(det_rows)]: the row's image has ground truth of a label-map class.
    """
    gt_boxes, det_boxes = groundtruth.boxes[gt_rows], detections.boxes[det_rows]
    gt_invalid, det_invalid = _invalid(gt_boxes), _invalid(det_boxes)
    gt_outside, det_outside = _not_normalised(gt_boxes), _not_normalised(det_boxes)
    counts["gt_invalid_box"] = int(gt_invalid.sum())
    counts["gt_not_normalised"] = int(gt_outside.sum())
    counts["det_not_normalised"] = int(det_outside.sum())
    unit = f"outside [0, 1] by more than {NORMALISED_TOLERANCE} (AVA boxes are normalised by the frame size)"
    if counts["gt_invalid_box"]:
        logger.warning("%s: %d ground-truth row(s) with x1 >= x2 or y1 >= y2 (e.g. %s); kept, as in the official "
                       "code: they can never be matched and count as missed", groundtruth.source,
                       counts["gt_invalid_box"], _example_keys(groundtruth, gt_rows[gt_invalid]))
    if counts["det_invalid_box"]:
        logger.warning("%s: %d of %d detection row(s) with x1 >= x2 or y1 >= y2 are removed (e.g. %s)",
                       detections.source, counts["det_invalid_box"], len(det_rows),
                       _example_keys(detections, det_rows[det_invalid]))
    for rows, indices, outside, what in ((groundtruth, gt_rows, gt_outside, "ground-truth"),
                                         (detections, det_rows, det_outside, "detection")):
        if outside.any():
            logger.warning("%s: %d of %d %s row(s) have a box coordinate %s (e.g. %s)", rows.source,
                           int(outside.sum()), len(indices), what, unit, _example_keys(rows, indices[outside]))
    if len(no_gt_rows):
        fate = ("ignored (activitynet protocol)" if protocol == "activitynet"
                else "false positives (pyslowfast protocol)")
        logger.warning("%s: %d detection row(s) on images the ground truth does not list are %s (e.g. %s)",
                       detections.source, len(no_gt_rows), fate, _example_keys(detections, no_gt_rows))

    if len(gt_rows) == 0:
        return f"{groundtruth.source}: no ground-truth row of a label-map class (after exclusions)"
    if gt_outside.all():
        return f"{groundtruth.source}: every ground-truth box has a coordinate {unit}: pixel coordinates?"
    if len(det_rows) == 0:
        return f"{detections.source}: no detection row of a label-map class (after exclusions)"
    if det_invalid.all():
        return f"{detections.source}: all {len(det_rows)} detection boxes have x1 >= x2 or y1 >= y2"
    if det_outside.all():
        return f"{detections.source}: every detection box has a coordinate {unit}: pixel coordinates?"
    if not on_gt_image.any():
        return (f"{detections.source}: none of the {len(det_rows)} detection rows is on an image with ground truth "
                f"of a label-map class (detections on e.g. {_example_keys(detections, det_rows)}; ground truth on "
                f"e.g. {_example_keys(groundtruth, gt_rows)}): a video id or timestamp mismatch?")
    return None


# ------------------------------------------------------------------------------------------------------ evaluation
def evaluate_ava(categories: Sequence[Mapping], groundtruth: AvaRows, detections: AvaRows,
                 excluded_keys: Iterable[tuple[str, int]] = (), *, protocol: str = "pyslowfast",
                 iou_thresh: float = 0.5, label_types: Mapping[int, str] | None = None,
                 return_curves: bool = False) -> dict:
    """AVA frame-mAP of ``detections`` against ``groundtruth`` (both :class:`AvaRows`, any order).

    categories: label map entries ``{"id", "name"[, "label_type"]}`` (see ``read_labelmap``); only these ids count.
    excluded_keys: image keys ``(video_id, second)`` removed from both sides.
    label_types: id -> group for the group mAPs; default: the categories' ``label_type`` or, when absent, the
    AVA v2.2 groups (ids 1-14 / 15-63 / 64-80).
    Returns a JSON-friendly dict: ``mAP`` (float, NaN when no class has ground truth), ``per_class`` {name: AP} and
    ``per_class_id`` {id: AP} for classes with ground truth, ``groups`` {label_type: mAP}, ``num_gt`` {name: int},
    ``classes_without_gt``, ``counts`` (rows dropped / excluded / invalid / capped / ignored / not normalised),
    ``nothing_can_match`` (why no detection can be a true positive, e.g. every box invalid, no detection on a
    ground-truth image, pixel coordinates; None when some can), ``protocol``, ``iou_threshold``; with
    ``return_curves`` also ``curves`` {name: {"precision": [K], "recall": [K]}} (arrays).
    Inputs that make part of the metric meaningless are logged as warnings with counts; evaluate_ava never raises
    for them (a model early in training may emit such boxes); the CLI fails on ``nothing_can_match`` and the
    engine logs it.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown AVA protocol {protocol!r} (expected one of {PROTOCOLS})")
    if not categories:
        raise ValueError("the label map has no classes")
    class_ids = np.array(sorted(int(c["id"]) for c in categories), dtype=np.int64)
    names = {int(c["id"]): str(c["name"]) for c in categories}
    counts: dict[str, int] = {"gt_rows": len(groundtruth), "det_rows": len(detections)}

    empty_images = sorted(groundtruth.empty_images)
    (gt_key, det_key, empty_key), excluded = _image_keys(
        [(groundtruth.video, groundtruth.sec), (detections.video, detections.sec),
         (np.array([v for v, _ in empty_images], dtype=object), np.array([t for _, t in empty_images], np.int64))],
        excluded_keys)
    # every image the ground-truth file lists, before the label-map filter (the challenge script's included keys)
    gt_images = np.union1d(gt_key, empty_key)
    # only numeric columns from here on: copying the object column of millions of video ids is slow
    gt_rows = np.flatnonzero(np.isin(groundtruth.action, class_ids))
    det_rows = np.flatnonzero(np.isin(detections.action, class_ids))
    counts["gt_not_in_labelmap"] = len(groundtruth) - len(gt_rows)
    counts["det_not_in_labelmap"] = len(detections) - len(det_rows)
    for rows, name in ((groundtruth, "gt_not_in_labelmap"), (detections, "det_not_in_labelmap")):
        if counts[name]:
            logger.warning("%s: dropped %d row(s) whose action id is not in the label map", rows.source,
                           counts[name])
    gt_key, gt_boxes, gt_action = gt_key[gt_rows], groundtruth.boxes[gt_rows], groundtruth.action[gt_rows]
    det_key, det_boxes = det_key[det_rows], detections.boxes[det_rows]
    det_action, det_score = detections.action[det_rows], detections.score[det_rows]
    # images are visited in order of first appearance among the label-map rows, like the official reader
    det_rank = _first_appearance_rank(det_key)

    det_keep = np.ones(len(det_rows), dtype=bool)
    if protocol == "activitynet":
        det_keep = _cap_rows_per_image(det_key, det_score, det_action, det_boxes, ACTIVITYNET_MAX_ROWS_PER_IMAGE)
        counts["det_over_cap"] = int((~det_keep).sum())
    gt_keep = ~np.isin(gt_key, excluded)
    excl = np.isin(det_key, excluded) & det_keep
    counts["gt_excluded"] = int((~gt_keep).sum())
    counts["det_excluded"] = int(excl.sum())
    det_keep &= ~excl
    considered = det_keep.copy()  # detection rows the protocol looks at
    # rows on images the ground-truth file does not list: the challenge script ignores them, PySlowFast counts them
    # as false positives
    no_gt = ~np.isin(det_key, gt_images) & det_keep
    counts["det_no_gt_key"] = int(no_gt.sum())
    if protocol == "activitynet":
        det_keep &= ~no_gt
    x1, y1, x2, y2 = det_boxes.T
    invalid = ~((x1 < x2) & (y1 < y2)) & det_keep
    counts["det_invalid_box"] = int(invalid.sum())
    det_keep &= ~invalid
    problems = _input_problems(groundtruth, detections, gt_rows[gt_keep], det_rows[considered],
                               det_rows[no_gt], np.isin(det_key[considered], gt_key[gt_keep]), protocol, counts)

    gt_key, gt_boxes, gt_action = gt_key[gt_keep], gt_boxes[gt_keep], gt_action[gt_keep]
    keep = np.flatnonzero(det_keep)
    det_key, det_boxes, det_action, det_score, det_rank = (
        det_key[keep], det_boxes[keep], det_action[keep], det_score[keep], det_rank[keep])

    num_classes = len(class_ids)
    gt_cls = np.searchsorted(class_ids, gt_action)
    det_cls = np.searchsorted(class_ids, det_action)
    best_gt, best_iou = max_iou_match(det_key * num_classes + det_cls, det_boxes, gt_key * num_classes + gt_cls,
                                      gt_boxes)
    n_det = len(det_key)
    if protocol == "pyslowfast":
        process_order = np.arange(n_det)
    else:
        process_order = np.lexsort((np.arange(n_det), -det_score))
    tp = first_claims(best_gt, best_iou >= iou_thresh, process_order)

    position = np.empty(n_det, dtype=np.int64)
    position[process_order] = np.arange(n_det)
    order = np.lexsort((position, det_rank, det_cls))
    sorted_cls = det_cls[order]
    bounds = np.searchsorted(sorted_cls, np.arange(num_classes + 1))
    num_gt = np.bincount(gt_cls, minlength=num_classes)

    per_class_id: dict[int, float] = {}
    curves: dict[str, dict[str, np.ndarray]] = {}
    for c in range(num_classes):
        if num_gt[c] == 0:
            continue
        sl = order[bounds[c]:bounds[c + 1]]
        scores = np.ascontiguousarray(det_score[sl])
        ranked = np.argsort(scores)[::-1]  # the official tie order (unstable sort, reversed)
        precision, recall = precision_recall(tp[sl][ranked], int(num_gt[c]))
        per_class_id[int(class_ids[c])] = voc_ap(precision, recall)
        if return_curves:
            curves[names[int(class_ids[c])]] = {"precision": precision, "recall": recall}

    m_ap = float(np.mean(list(per_class_id.values()))) if per_class_id else float("nan")
    if not per_class_id:
        logger.warning("no label-map class has ground truth: mAP is NaN")
    types = _label_types(categories, label_types)
    groups: dict[str, float] = {}
    for group in sorted({t for t in types.values() if t}, key=lambda g: (GROUPS + (g,)).index(g)):
        aps = [ap for cid, ap in per_class_id.items() if types.get(cid) == group]
        if aps:
            groups[group] = float(np.mean(aps))

    result = {
        "protocol": protocol,
        "iou_threshold": iou_thresh,
        "mAP": m_ap,
        "per_class": {names[cid]: ap for cid, ap in per_class_id.items()},
        "per_class_id": per_class_id,
        "groups": groups,
        "num_gt": {names[int(class_ids[c])]: int(num_gt[c]) for c in range(num_classes) if num_gt[c] > 0},
        "classes_without_gt": [names[int(class_ids[c])] for c in range(num_classes) if num_gt[c] == 0],
        "counts": counts,
        "nothing_can_match": problems,
    }
    if return_curves:
        result["curves"] = curves
    return result


def _label_types(categories: Sequence[Mapping], label_types: Mapping[int, str] | None) -> dict[int, str]:
    if label_types is not None:
        return {int(k): v for k, v in label_types.items()}
    if any("label_type" in c for c in categories):
        return {int(c["id"]): c["label_type"] for c in categories if "label_type" in c}
    return {int(c["id"]): AVA_V22_LABEL_TYPES.get(int(c["id"])) for c in categories}


def evaluate_ava_files(labelmap: str, groundtruth: str, detections: str, exclusions: str | None = None, *,
                       protocol: str = "pyslowfast", iou_thresh: float = 0.5, return_curves: bool = False) -> dict:
    """:func:`evaluate_ava` on AVA files (label map pbtxt, ground-truth CSV, detection CSV, exclusions CSV)."""
    categories, class_ids = read_labelmap(labelmap)
    gt = read_groundtruth_csv(groundtruth)
    det = read_detections_csv(detections)
    return evaluate_ava(categories, gt, det, read_exclusions(exclusions), protocol=protocol,
                        iou_thresh=iou_thresh, return_curves=return_curves)


# ------------------------------------------------------------------------------------------- model outputs -> rows
def detections_from_predictions(video: Sequence[str], sec: Sequence[int], boxes: np.ndarray,
                                class_probs: np.ndarray, class_ids: Sequence[int],
                                actor_prob: np.ndarray | None = None) -> AvaRows:
    """Detection rows for every kept actor box x every evaluated class (box-major, like PySlowFast).

    video [B] str, sec [B] int: the image key of each box; boxes [B, 4] (x1, y1, x2, y2) normalised to the original
    frame; class_probs [B, C] probabilities; class_ids [C] the AVA action id of each column; actor_prob [B]
    optional p(actor), multiplied into every class score.  Returns B*C rows.
    """
    probs = np.asarray(class_probs, dtype=np.float64)
    num_boxes, num_cls = probs.shape
    if len(class_ids) != num_cls:
        raise ValueError(f"class_probs has {num_cls} columns but {len(class_ids)} class ids were given")
    if actor_prob is not None:
        probs = probs * np.asarray(actor_prob, dtype=np.float64).reshape(-1, 1)
    rep = np.repeat(np.arange(num_boxes), num_cls)
    return AvaRows(np.asarray(video, dtype=object)[rep], np.asarray(sec, dtype=np.int64)[rep],
                   np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[rep],
                   np.tile(np.asarray(class_ids, dtype=np.int64), num_boxes), probs.reshape(-1))


class AvaEvaluator:
    """Accumulates model outputs batch by batch and evaluates them against fixed ground truth.

    >>> ev = AvaEvaluator(categories, gt_rows, excluded_keys)
    >>> ev.add(video, sec, boxes, class_probs, class_ids)   # per batch, shapes as in detections_from_predictions
    >>> ev.evaluate()["mAP"]
    """

    def __init__(self, categories: Sequence[Mapping], groundtruth: AvaRows,
                 excluded_keys: Iterable[tuple[str, int]] = (), protocol: str = "pyslowfast",
                 iou_thresh: float = 0.5) -> None:
        self.categories = list(categories)
        self.groundtruth = groundtruth
        self.excluded_keys = set(excluded_keys)
        self.protocol = protocol
        self.iou_thresh = iou_thresh
        self._parts: list[AvaRows] = []

    def add(self, video: Sequence[str], sec: Sequence[int], boxes: np.ndarray, class_probs: np.ndarray,
            class_ids: Sequence[int], actor_prob: np.ndarray | None = None) -> None:
        self._parts.append(detections_from_predictions(video, sec, boxes, class_probs, class_ids, actor_prob))

    def reset(self) -> None:
        self._parts.clear()

    def detections(self) -> AvaRows:
        """All rows added so far, in insertion order."""
        if not self._parts:
            return AvaRows.empty()
        return AvaRows(*(np.concatenate([getattr(p, f) for p in self._parts])
                         for f in ("video", "sec", "boxes", "action", "score")))

    def evaluate(self, **kwargs) -> dict:
        return evaluate_ava(self.categories, self.groundtruth, self.detections(), self.excluded_keys,
                            protocol=self.protocol, iou_thresh=self.iou_thresh, **kwargs)


# ------------------------------------------------------------------------------------------------------ CLI
def format_result(result: Mapping, categories: Sequence[Mapping]) -> list[str]:
    """Report lines: one per class with ground truth (label-map order), the group mAPs, last ``mAP@0.5IOU: <repr>``."""
    thr = f"{result['iou_threshold']:g}"
    lines = [f"AP@{thr}IOU/{c['id']}/{c['name']}: {result['per_class_id'][int(c['id'])]!r}"
             for c in categories if int(c["id"]) in result["per_class_id"]]
    lines += [f"mAP@{thr}IOU/{group}: {value!r}" for group, value in result["groups"].items()]
    lines.append(f"mAP@{thr}IOU: {result['mAP']!r}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slowfast_bmvit.evaluation.ava",
                                     description="AVA v2.2 frame-mAP@0.5IOU (official protocol).")
    parser.add_argument("--labelmap", required=True, help="label map pbtxt (60-class or 80-class style)")
    parser.add_argument("--groundtruth", required=True, help="ground-truth CSV")
    parser.add_argument("--detections", required=True, help="detection CSV (score in the last column)")
    parser.add_argument("--exclusions", default=None, help="excluded timestamps CSV (video_id,timestamp)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="pyslowfast",
                        help="pyslowfast: no cap, keys without GT are FP (default); "
                             "activitynet: top-50 rows per image, keys without GT ignored")
    parser.add_argument("--iou", type=_iou_threshold, default=0.5, help="IoU threshold in (0, 1] (default 0.5)")

    def evaluate(args: argparse.Namespace) -> tuple[list[str], dict]:
        categories, _ = read_labelmap(args.labelmap)
        result = evaluate_ava(categories, read_groundtruth_csv(args.groundtruth),
                              read_detections_csv(args.detections), read_exclusions(args.exclusions),
                              protocol=args.protocol, iou_thresh=args.iou)
        if result["nothing_can_match"]:
            raise ValueError(f"no detection can match, the mAP would be meaningless: {result['nothing_can_match']}")
        return format_result(result, categories), result

    return run_evaluator_cli(parser, argv, evaluate)


def _iou_threshold(text: str) -> float:
    """argparse type of --iou: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1]")
    return value


if __name__ == "__main__":
    sys.exit(main())
