"""From BMViT's triplets to per-clip detections: threshold on p(actor), optional NMS, optional top-k.

BMViT's one-to-one matching trains a single token per person, so the paper uses no NMS (BMVIT.NMS_IOU 0, the
default); the option is there for small from-scratch models whose neighbouring tokens still fire together.

Predicted boxes are fractions of the clip; `meta["crop_box"]` = (x0, y0, x1, y1) says where the clip lies in the
original frame (normalised), so a clip coordinate u maps to x0 + u * (x1 - x0) (likewise y). The score of a
(box, class) row is p(class) * p(actor) ("class_x_actor", the default) or p(class) ("class").
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from .box_ops import box_cxcywh_to_xyxy, greedy_nms
from .heads import check_class_activation, class_activation, class_probabilities

SCORE_RULES = ("class_x_actor", "class")


def clip_to_frame(boxes: Tensor, crop_box: Sequence[float] | Tensor) -> Tensor:
    """xyxy boxes [k, 4] in clip fractions -> original-frame fractions, given the clip's crop_box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = torch.as_tensor(crop_box, dtype=boxes.dtype, device=boxes.device).unbind(-1)
    scale = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    offset = torch.stack([x0, y0, x0, y0])
    return boxes * scale + offset


@torch.no_grad()
def postprocess_detections(
    outputs: dict[str, Tensor],
    meta: Sequence[dict[str, Any]] | None,
    actor_thresh: float,
    top_k: int = 0,
    score_rule: str = "class_x_actor",
    class_activation: str = "sigmoid",
    nms_iou: float = 0.0,
) -> list[dict[str, Tensor]]:
    """Detections of each clip in the batch.

    Args:
        outputs: BMViT's "pred_boxes" [B, N, 4] cxcywh (clip fractions), "pred_actor" [B, N, 2], "pred_classes"
            [B, N, C] logits.
        meta: B per-clip dicts with "crop_box" (x0, y0, x1, y1); None when the clip is the whole frame.
        actor_thresh: keep tokens with p(actor) > actor_thresh (BMVIT.ACTOR_THRESH).
        top_k: then keep at most this many, highest p(actor) first; 0 keeps all (BMVIT.TOP_K).
        nms_iou: before top_k, drop a token whose box has IoU above this with a higher-p(actor) kept token's box
            (BMVIT.NMS_IOU); 0 turns NMS off.
        score_rule: "class_x_actor" or "class" (BMVIT.SCORE_RULE).
        class_activation: "sigmoid" for multi-label heads (BMVIT.CLASS_LOSS bce), "softmax" for single-label (ce).
    Returns:
        B dicts, detections sorted by p(actor), descending:
            boxes [k, 4] xyxy in original-frame fractions, clamped to the clip region;
            actor_scores [k] p(actor); class_scores [k, C] row scores after the score rule;
            token_index [k] int64 index of the token (triplet) each detection came from.
    """
    if score_rule not in SCORE_RULES:
        raise ValueError(f"score_rule must be one of {', '.join(SCORE_RULES)}, got {score_rule!r}")
    check_class_activation(class_activation)
    boxes_all = outputs["pred_boxes"].float()
    actor_all = outputs["pred_actor"].float().softmax(-1)[..., 1]
    class_all = class_probabilities(outputs["pred_classes"].float(), class_activation)
    if meta is not None and len(meta) != len(boxes_all):
        raise ValueError(f"got {len(meta)} meta dicts for {len(boxes_all)} clips")

    detections = []
    for b in range(len(boxes_all)):
        actor_scores = actor_all[b]
        keep = torch.nonzero(actor_scores > actor_thresh, as_tuple=False).flatten()
        keep = keep[actor_scores[keep].argsort(descending=True, stable=True)]
        boxes = box_cxcywh_to_xyxy(boxes_all[b, keep]).clamp(0.0, 1.0)
        if nms_iou > 0:
            survivors = greedy_nms(boxes, nms_iou)
            keep, boxes = keep[survivors], boxes[survivors]
        if top_k > 0:
            keep, boxes = keep[:top_k], boxes[:top_k]
        if meta is not None:
            if "crop_box" not in meta[b]:
                raise KeyError(f"meta of clip {b} has no 'crop_box' (x0, y0, x1, y1); pass meta=None for whole frames")
            boxes = clip_to_frame(boxes, meta[b]["crop_box"])
        class_scores = class_all[b, keep]
        if score_rule == "class_x_actor":
            class_scores = class_scores * actor_scores[keep, None]
        detections.append(
            {"boxes": boxes, "actor_scores": actor_scores[keep], "class_scores": class_scores, "token_index": keep}
        )
    return detections


def postprocess_from_cfg(outputs: dict[str, Tensor], meta: Sequence[dict[str, Any]] | None, cfg):
    """`postprocess_detections` with BMVIT.ACTOR_THRESH, TOP_K, SCORE_RULE, NMS_IOU and the class activation of
    CLASS_LOSS."""
    bm = cfg.BMVIT
    return postprocess_detections(outputs, meta, bm.ACTOR_THRESH, bm.TOP_K, bm.SCORE_RULE, class_activation(cfg),
                                  bm.NMS_IOU)
