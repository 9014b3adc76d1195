import math

import pytest
import torch

from slowfast_bmvit.config import get_cfg
from slowfast_bmvit.models.postprocess import clip_to_frame, postprocess_detections, postprocess_from_cfg


def _logit_pair(p):
    """Actor logits whose softmax gives p(actor) = p."""
    return [0.0, math.log(p / (1 - p))]


def _outputs():
    actor = torch.tensor([[_logit_pair(p) for p in (0.2, 0.9, 0.6, 0.95)], [_logit_pair(p) for p in (0.1,) * 4]])
    boxes = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.2, 0.3, 0.2, 0.2], [0.9, 0.9, 0.4, 0.4], [0.5, 0.4, 0.2, 0.6]])
    classes = torch.tensor([[0.0, 2.0, -2.0], [1.0, -1.0, 0.5], [3.0, 0.0, 0.0], [-3.0, 1.0, 2.0]])
    return {"pred_boxes": boxes.expand(2, 4, 4), "pred_actor": actor, "pred_classes": classes.expand(2, 4, 3)}


def test_threshold_keeps_confident_tokens_sorted_by_actor_score():
    detections = postprocess_detections(_outputs(), None, actor_thresh=0.5)
    assert detections[0]["token_index"].tolist() == [3, 1, 2]
    assert detections[0]["actor_scores"].tolist() == pytest.approx([0.95, 0.9, 0.6])
    assert detections[1]["boxes"].shape == (0, 4) and detections[1]["class_scores"].shape == (0, 3)
    assert detections[1]["actor_scores"].shape == (0,)
    top = postprocess_detections(_outputs(), None, actor_thresh=0.5, top_k=2)
    assert top[0]["token_index"].tolist() == [3, 1]


def test_nms_drops_overlapping_lower_scored_tokens_before_top_k():
    # Token 3 (p 0.95, box x 0.4-0.6, y 0.1-0.7) and token 0 (p 0.2, x 0.25-0.75, y 0.25-0.75) overlap at IoU
    # 0.09 / 0.28 = 0.32; tokens 1 and 2 overlap nothing.
    order = {
        nms: postprocess_detections(_outputs(), None, 0.15, nms_iou=nms)[0]["token_index"].tolist()
        for nms in (0.0, 0.3, 0.33)
    }
    assert order == {0.0: [3, 1, 2, 0], 0.3: [3, 1, 2], 0.33: [3, 1, 2, 0]}
    suppressed_first = postprocess_detections(_outputs(), None, 0.15, top_k=4, nms_iou=0.3)[0]
    assert suppressed_first["token_index"].tolist() == [3, 1, 2]
    assert suppressed_first["boxes"].shape == (3, 4) and suppressed_first["class_scores"].shape == (3, 3)


def test_boxes_are_corners_clamped_and_mapped_to_the_original_frame():
    meta = [{"crop_box": (0.2, 0.1, 0.6, 0.9)}, {"crop_box": (0.0, 0.0, 1.0, 1.0)}]
    detections = postprocess_detections(_outputs(), meta, actor_thresh=0.15)
    by_token = dict(zip(detections[0]["token_index"].tolist(), detections[0]["boxes"].tolist()))
    # token 0: clip box (0.25, 0.25, 0.75, 0.75) -> x 0.2 + 0.4 u, y 0.1 + 0.8 v
    assert by_token[0] == pytest.approx([0.3, 0.3, 0.5, 0.7])
    # token 2: clip box (0.7, 0.7, 1.1, 1.1) is clamped to the clip before mapping
    assert by_token[2] == pytest.approx([0.48, 0.66, 0.6, 0.9])


def test_score_rules_and_class_activations():
    outputs = _outputs()
    p_actor, class_logits = 0.9, outputs["pred_classes"][0, 1]
    rows = {
        rule: postprocess_detections(outputs, None, 0.5, score_rule=rule)[0]["class_scores"][1]
        for rule in ("class_x_actor", "class")
    }
    assert torch.allclose(rows["class"], class_logits.sigmoid())
    assert torch.allclose(rows["class_x_actor"], class_logits.sigmoid() * p_actor)
    softmax_row = postprocess_detections(outputs, None, 0.5, class_activation="softmax")[0]["class_scores"][1]
    assert softmax_row.sum().item() == pytest.approx(p_actor)


def test_from_cfg_uses_the_bmvit_keys():
    cfg = get_cfg()
    cfg.BMVIT.ACTOR_THRESH, cfg.BMVIT.TOP_K, cfg.BMVIT.SCORE_RULE, cfg.BMVIT.CLASS_LOSS = 0.5, 1, "class", "ce"
    (first, _) = postprocess_from_cfg(_outputs(), None, cfg)
    assert first["token_index"].tolist() == [3]
    assert first["class_scores"].sum().item() == pytest.approx(1.0)
    cfg.BMVIT.ACTOR_THRESH, cfg.BMVIT.TOP_K, cfg.BMVIT.NMS_IOU = 0.15, 0, 0.3
    assert postprocess_from_cfg(_outputs(), None, cfg)[0]["token_index"].tolist() == [3, 1, 2]


def test_errors_are_clear():
    with pytest.raises(ValueError, match="score_rule"):
        postprocess_detections(_outputs(), None, 0.5, score_rule="max")
    with pytest.raises(KeyError, match="crop_box"):
        postprocess_detections(_outputs(), [{}, {}], 0.5)
    with pytest.raises(ValueError, match="2 clips"):
        postprocess_detections(_outputs(), [{"crop_box": (0, 0, 1, 1)}], 0.5)


def test_clip_to_frame_is_affine():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.25, 0.75, 0.5]])
    mapped = clip_to_frame(boxes, torch.tensor([0.1, 0.2, 0.5, 0.6]))
    assert mapped.tolist()[0] == pytest.approx([0.1, 0.2, 0.5, 0.6])
    assert mapped.tolist()[1] == pytest.approx([0.3, 0.3, 0.4, 0.4])
