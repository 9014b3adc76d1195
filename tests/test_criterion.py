import math

import pytest
import torch
import torch.nn.functional as F

from slowfast_bmvit.config import get_cfg
from slowfast_bmvit.models.box_ops import box_cxcywh_to_xyxy, paired_generalized_box_iou
from slowfast_bmvit.models.criterion import BipartiteMatchingLoss, build_criterion
from slowfast_bmvit.models.matcher import HungarianMatcher

NUM_CLASSES = 3


def _cfg(**bmvit):
    cfg = get_cfg()
    cfg.MODEL.NUM_CLASSES = NUM_CLASSES
    for key, value in bmvit.items():
        cfg.BMVIT[key] = value
    return cfg


def _outputs(batch=1, tokens=4, seed=0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    boxes = torch.cat([0.2 + 0.6 * torch.rand(batch, tokens, 2, generator=generator),
                       0.1 + 0.3 * torch.rand(batch, tokens, 2, generator=generator)], -1)
    outputs = {
        "pred_boxes": boxes,
        "pred_actor": torch.randn(batch, tokens, 2, generator=generator),
        "pred_classes": torch.randn(batch, tokens, NUM_CLASSES, generator=generator),
    }
    return {key: value.requires_grad_(requires_grad) for key, value in outputs.items()}


def _target(boxes, labels, actor):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.float32).reshape(-1, NUM_CLASSES),
            "actor": torch.tensor(actor, dtype=torch.bool)}


def _no_persons():
    return _target([], [], [])


def test_losses_equal_the_hand_computed_terms():
    outputs = _outputs()
    token = 2  # the target is this token's own box, nudged: the match is unambiguous
    gt_box = outputs["pred_boxes"][0, token] + torch.tensor([0.01, -0.02, 0.03, 0.0])
    target = _target(gt_box.tolist(), [[1, 0, 1]], [True])
    losses = build_criterion(_cfg())(outputs, [target])

    actor_target = torch.tensor([0, 0, 1, 0])
    weights = torch.tensor([0.1, 0.1, 1.0, 0.1])
    ce = F.cross_entropy(outputs["pred_actor"][0], actor_target, reduction="none")
    assert losses["loss_actor"].item() == pytest.approx(((weights * ce).sum() / weights.sum()).item(), rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(5 * 0.06, rel=1e-4)
    giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(outputs["pred_boxes"][0, token]), box_cxcywh_to_xyxy(gt_box))
    assert losses["loss_giou"].item() == pytest.approx(2 * (1 - giou.item()), rel=1e-5)
    logits = outputs["pred_classes"][0, token]
    bce = F.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0, 1]))
    assert losses["loss_class"].item() == pytest.approx(bce.item(), rel=1e-5)
    total = sum(losses[k] for k in ("loss_actor", "loss_bbox", "loss_giou", "loss_class"))
    assert losses["loss"].item() == pytest.approx(total.item())


def test_single_label_loss_is_cross_entropy_on_the_argmax():
    outputs = _outputs()
    target = _target(outputs["pred_boxes"][0, 1].tolist(), [[0, 0, 1]], [True])
    losses = build_criterion(_cfg(CLASS_LOSS="ce"))(outputs, [target])
    expected = F.cross_entropy(outputs["pred_classes"][0, 1], torch.tensor(2))
    assert losses["loss_class"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_weights_come_from_the_config():
    outputs = _outputs()
    target = _target([0.5, 0.5, 0.2, 0.2], [[1, 0, 0]], [True])
    base = build_criterion(_cfg())(outputs, [target])
    scaled = build_criterion(_cfg(LOSS_BBOX=10.0, LOSS_CLASS=3.0))(outputs, [target])
    assert scaled["loss_bbox"].item() == pytest.approx(2 * base["loss_bbox"].item())
    assert scaled["loss_class"].item() == pytest.approx(3 * base["loss_class"].item())
    assert scaled["loss_giou"].item() == pytest.approx(base["loss_giou"].item())


def test_box_and_class_losses_are_normalised_by_the_number_of_actors():
    outputs = _outputs(batch=1)
    target = _target([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]], [[1, 0, 0], [0, 1, 1]], [True, True])
    single = build_criterion(_cfg())(outputs, [target])
    doubled = build_criterion(_cfg())({k: torch.cat([v, v]) for k, v in outputs.items()}, [target, target])
    for key in single:
        assert doubled[key].item() == pytest.approx(single[key].item(), rel=1e-5), key


def test_count_is_averaged_over_distributed_workers(monkeypatch):
    outputs = _outputs()
    target = _target([0.5, 0.5, 0.2, 0.2], [[1, 0, 0]], [True])
    alone = build_criterion(_cfg())(outputs, [target])
    # Another worker of two saw 3 actors: the normaliser becomes (1 + 3) / 2 = 2.
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda tensor: tensor.add_(3))
    shared = build_criterion(_cfg())(outputs, [target])
    assert shared["loss_bbox"].item() == pytest.approx(alone["loss_bbox"].item() / 2)
    assert shared["loss_class"].item() == pytest.approx(alone["loss_class"].item() / 2)
    assert shared["loss_actor"].item() == pytest.approx(alone["loss_actor"].item())


@pytest.mark.parametrize("on_non_actors", [False, True])
@pytest.mark.parametrize("class_loss", ["bce", "ce"])
def test_loss_is_finite_and_connected_without_actors(on_non_actors, class_loss):
    outputs = _outputs(batch=2, requires_grad=True)
    only_non_actors = _target([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.2, 0.3]], [[0, 0, 0], [0, 0, 0]], [False, False])
    criterion = build_criterion(_cfg(BOX_LOSS_ON_NON_ACTORS=on_non_actors, CLASS_LOSS=class_loss))
    losses = criterion(outputs, [_no_persons(), only_non_actors])
    assert all(math.isfinite(value.item()) for value in losses.values())
    assert losses["loss_class"].item() == 0.0
    assert (losses["loss_bbox"].item() > 0) == on_non_actors
    losses["loss"].backward()
    # Every output gets a gradient tensor (zeros where nothing was matched), as DDP without unused-parameter
    # detection needs; the actor logits always learn "no actor".
    assert all(value.grad is not None for value in outputs.values())
    assert outputs["pred_actor"].grad.abs().sum() > 0
    assert outputs["pred_classes"].grad.abs().sum() == 0


def test_non_actor_persons_get_box_losses_and_the_no_actor_target():
    outputs = _outputs(tokens=5, seed=3)
    target = _target([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.3]], [[1, 0, 0], [0, 0, 0]], [True, False])
    outputs["pred_boxes"][0, 1] = target["boxes"][0] + torch.tensor([0.01, 0.0, 0.0, 0.02])  # the actor's token
    outputs["pred_boxes"][0, 3] = target["boxes"][1] + torch.tensor([0.0, -0.03, 0.0, 0.0])  # the non-actor's
    default = build_criterion(_cfg())
    with_boxes = build_criterion(_cfg(BOX_LOSS_ON_NON_ACTORS=True))
    assert [t.tolist() for t in default.matcher(outputs, [target])[0]] == [[1], [0]]
    assert [t.tolist() for t in with_boxes.matcher(outputs, [target])[0]] == [[1, 3], [0, 1]]
    plain, extended = default(outputs, [target]), with_boxes(outputs, [target])
    assert plain["loss_bbox"].item() == pytest.approx(5 * 0.03, rel=1e-4)
    assert extended["loss_bbox"].item() == pytest.approx(5 * (0.03 + 0.03) / 2, rel=1e-4)
    assert extended["loss_class"].item() == pytest.approx(plain["loss_class"].item(), rel=1e-6)
    # The non-actor's token has the target "no actor", exactly like an unmatched token.
    assert extended["loss_actor"].item() == pytest.approx(plain["loss_actor"].item(), rel=1e-6)


def test_matcher_and_loss_must_agree_on_non_actors():
    with pytest.raises(ValueError, match="non-actors"):
        BipartiteMatchingLoss(HungarianMatcher(match_non_actors=True), {"actor": 1, "bbox": 1, "giou": 1, "class": 1})


def test_dense_assignment_takes_the_tokens_in_the_central_region_and_the_smallest_box():
    from slowfast_bmvit.models.criterion import dense_assignment

    # A 3 x 3 grid of token centres at 1/6, 1/2, 5/6.
    centres = torch.tensor([[(j + 0.5) / 3, (i + 0.5) / 3] for i in range(3) for j in range(3)])
    tall = [0.5, 0.5, 0.2, 0.9]  # covers the middle column (tokens 1, 4, 7)
    small = [0.5, 0.8, 0.2, 0.2]  # around token 7 only
    tokens, persons = dense_assignment(centres, torch.tensor([tall, small]), region=1.0)
    assert dict(zip(tokens.tolist(), persons.tolist())) == {1: 0, 4: 0, 7: 1}  # token 7: the smaller box wins
    tokens, persons = dense_assignment(centres, torch.tensor([tall]), region=0.5)
    assert tokens.tolist() == [4]  # the central half (+-0.225 in y) holds only the middle token
    empty = dense_assignment(centres, torch.zeros(0, 4), region=1.0)
    assert empty[0].numel() == 0 and empty[1].numel() == 0


def test_dense_term_equals_the_hand_computed_sum_and_reaches_unmatched_tokens():
    centres = torch.tensor([[(j + 0.5) / 2, 0.5] for j in range(2)])  # two tokens side by side
    outputs = _outputs(tokens=2, requires_grad=True)
    outputs["token_centres"] = centres
    person = [0.5, 0.5, 0.9, 0.6]  # covers both token centres
    target = _target(person, [[0, 1, 0]], [True])
    criterion = build_criterion(_cfg(AUX_DENSE_WEIGHT=0.5, AUX_DENSE_REGION=1.0))
    losses = criterion(outputs, [target])
    gt = torch.tensor([person])
    expected = 0.0
    for token in range(2):
        box = outputs["pred_boxes"][0, token:token + 1]
        giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(box), box_cxcywh_to_xyxy(gt))
        bce = F.binary_cross_entropy_with_logits(outputs["pred_classes"][0, token], torch.tensor([0.0, 1, 0]))
        expected += 5 * (box - gt).abs().sum() + 2 * (1 - giou.sum()) + bce
    assert losses["loss_dense"].item() == pytest.approx(0.5 * expected.item() / 2, rel=1e-5)
    assert losses["loss"].item() == pytest.approx(sum(v.item() for k, v in losses.items() if k != "loss"), rel=1e-6)
    # Only one token is matched, yet the dense term trains both tokens' boxes and classes.
    losses["loss_dense"].backward()
    assert (outputs["pred_boxes"].grad[0].abs().sum(-1) > 0).all()
    assert (outputs["pred_classes"].grad[0].abs().sum(-1) > 0).all()
    assert "loss_dense" not in build_criterion(_cfg())(outputs, [target])
    del outputs["token_centres"]
    with pytest.raises(ValueError, match="token_centres"):
        criterion(outputs, [target])
