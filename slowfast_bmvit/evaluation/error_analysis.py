"""Where a set-prediction detector loses AVA mAP: localisation, ranking of its own tokens, or classification.

The AVA metric mixes three things; this module separates them per ground-truth actor (a person with at least one
evaluated action), from the raw per-token outputs of one clip and the kept detections of the same clip:

- recall: does any kept detection overlap the actor at IoU >= 0.5?
- the matched token: the token the training matcher assigns to the actor. Its IoU says how well the box head
  regresses where the loss trains it.
- the top token: among the tokens whose box overlaps the actor (IoU > 0.1), the one with the highest p(actor),
  i.e. the one the score ranks first at test. When it is not the matched token, the actor head fires on a
  neighbour whose box the loss never trained, and its IoU is usually worse.
- classification given the box: the class probabilities of the actor's best-IoU kept detection, scored by
  average precision over all actors per class (the mAP an oracle localiser would let the class head reach).
A class-agnostic person AP (kept detections scored by p(actor), the official AVA matching) completes the picture.

Boxes here are (cx, cy, w, h) normalised to the clip unless named xyxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .ava import evaluate_ava
from .ava_io import AvaRows
from .iou import cxcywh_to_xyxy, iou_matrix

# Tokens whose box overlaps an actor at least this much compete for its top token.
OVERLAP_FOR_RANKING = 0.1


@dataclass
class ActorRecord:
    """The analysis of one ground-truth actor of one clip (IoUs are NaN when there is nothing to measure)."""

    matched_iou: float
    top_iou: float
    top_is_matched: bool
    best_kept_iou: float
    labels: np.ndarray  # [C] multi-hot
    best_kept_class_scores: np.ndarray  # [C] class probabilities of the best-IoU kept detection (zeros if none)


def analyze_clip(token_boxes: np.ndarray, actor_prob: np.ndarray, kept: Sequence[int], class_prob: np.ndarray,
                 gt_boxes: np.ndarray, gt_actor: np.ndarray, gt_labels: np.ndarray,
                 matches: Sequence[tuple[int, int]]) -> list[ActorRecord]:
    """Per-actor records of one clip.

    token_boxes [N, 4] and actor_prob [N]: every token's box and p(actor); class_prob [N, C]: class probabilities;
    kept: indices of the tokens kept as detections (after the threshold and top-k); gt_boxes [M, 4], gt_actor [M]
    bool, gt_labels [M, C]; matches: (token, person) pairs of the training matcher.
    """
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if len(gt_boxes) == 0:
        return []
    iou = iou_matrix(cxcywh_to_xyxy(gt_boxes), cxcywh_to_xyxy(token_boxes))  # [M, N]
    matched_token = {int(person): int(token) for token, person in matches}
    kept = np.asarray(kept, dtype=np.int64)
    records = []
    for person in np.flatnonzero(np.asarray(gt_actor, dtype=bool)):
        token = matched_token.get(int(person))
        overlapping = np.flatnonzero(iou[person] > OVERLAP_FOR_RANKING)
        top = int(overlapping[np.argmax(actor_prob[overlapping])]) if len(overlapping) else None
        if len(kept):
            best = int(kept[np.argmax(iou[person, kept])])
            best_iou, best_scores = float(iou[person, best]), np.asarray(class_prob[best], dtype=np.float64)
        else:
            best_iou, best_scores = 0.0, np.zeros(np.shape(class_prob)[-1])
        records.append(ActorRecord(
            matched_iou=float(iou[person, token]) if token is not None else float("nan"),
            top_iou=float(iou[person, top]) if top is not None else 0.0,
            top_is_matched=top is not None and top == token,
            best_kept_iou=best_iou,
            labels=np.asarray(gt_labels[person], dtype=np.float64),
            best_kept_class_scores=best_scores,
        ))
    return records


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Non-interpolated AP of one ranking: the mean precision at each positive (NaN without positives)."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = labels[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def class_agnostic_ap(detections: Sequence[tuple[str, int, np.ndarray, float]],
                      actors: Sequence[tuple[str, int, np.ndarray]], iou_thresh: float = 0.5) -> float:
    """Person AP with the AVA matching: detections (video, sec, box xyxy, p(actor)), actors (video, sec, box xyxy)."""
    def rows(items, scores):
        if not items:
            return AvaRows.empty()
        return AvaRows(np.array([i[0] for i in items], dtype=object), np.array([i[1] for i in items], np.int64),
                       np.array([i[2] for i in items], np.float64).reshape(-1, 4), np.ones(len(items), np.int64),
                       np.asarray(scores, np.float64))
    result = evaluate_ava([{"id": 1, "name": "person"}], rows(actors, np.ones(len(actors))),
                          rows(detections, [d[3] for d in detections]), iou_thresh=iou_thresh)
    return float(result["mAP"])


def summarize(records: Sequence[ActorRecord], class_ids: Sequence[int], class_names: Sequence[str]) -> dict:
    """The per-actor numbers aggregated: medians, rates and the classification-given-box AP per class."""
    if not records:
        raise ValueError("no ground-truth actor to analyse")
    matched = np.array([r.matched_iou for r in records])
    top = np.array([r.top_iou for r in records])
    best = np.array([r.best_kept_iou for r in records])
    labels = np.stack([r.labels for r in records])
    scores = np.stack([r.best_kept_class_scores for r in records])
    columns = np.asarray(class_ids, dtype=np.int64) - 1
    per_class = {name: average_precision(scores[:, c], labels[:, c]) for name, c in zip(class_names, columns)}
    evaluated = [ap for ap in per_class.values() if not np.isnan(ap)]
    measured = matched[np.isfinite(matched)]
    return {
        "actors": len(records),
        "recall_at_0.5": float(np.mean(best >= 0.5)),
        "best_kept_iou_mean": float(np.mean(best)),
        "matched_iou_median": float(np.median(measured)) if len(measured) else float("nan"),
        "matched_iou_at_0.5": float(np.mean(measured >= 0.5)) if len(measured) else float("nan"),
        "top_iou_median": float(np.median(top)),
        "top_iou_at_0.5": float(np.mean(top >= 0.5)),
        "top_is_matched": float(np.mean([r.top_is_matched for r in records])),
        "class_ap_given_box": per_class,
        "class_map_given_box": float(np.mean(evaluated)) if evaluated else float("nan"),
    }
