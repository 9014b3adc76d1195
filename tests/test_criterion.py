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


def test_whom_the_box_losses_reach_is_the_matchers_choice():
    """BOX_LOSS_ON_NON_ACTORS is one fact, held by the matcher: a criterion around a matcher that matches
    non-actors gives them box losses, exactly as the config key does."""
    outputs = _outputs(tokens=5, seed=3)
    target = _target([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.3]], [[1, 0, 0], [0, 0, 0]], [True, False])
    weights = {"actor": 1.0, "bbox": 5.0, "giou": 2.0, "class": 1.0}
    for match_non_actors in (False, True):
        by_hand = BipartiteMatchingLoss(HungarianMatcher(match_non_actors=match_non_actors), weights)
        from_cfg = build_criterion(_cfg(BOX_LOSS_ON_NON_ACTORS=match_non_actors))
        assert from_cfg.matcher.match_non_actors == match_non_actors
        expected = from_cfg(outputs, [target])
        for key, value in by_hand(outputs, [target]).items():
            assert torch.equal(value, expected[key]), key
    assert expected["loss_bbox"] != build_criterion(_cfg())(outputs, [target])["loss_bbox"]


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


def test_each_loss_has_its_method_and_the_forward_weighs_the_unweighted_terms():
    outputs = _outputs(batch=2, tokens=6, seed=5)
    outputs["token_centres"] = torch.rand(6, 2, generator=torch.Generator().manual_seed(1))
    targets = [_target([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]], [[1, 0, 0], [0, 1, 1]], [True, False]),
               _target([0.5, 0.5, 0.6, 0.6], [[0, 0, 1]], [True])]
    criterion = build_criterion(_cfg(LOSS_BBOX=3.0, LOSS_CLASS=7.0, AUX_DENSE_WEIGHT=0.25, AUX_DENSE_REGION=1.0,
                                     BOX_LOSS_ON_NON_ACTORS=True))
    terms = criterion.terms(outputs, targets)
    weighted = criterion(outputs, targets)
    weights = {"loss_actor": 1.0, "loss_bbox": 3.0, "loss_giou": 2.0, "loss_class": 7.0, "loss_dense": 0.25}
    assert set(weighted) == set(weights) | {"loss"}
    for name, weight in weights.items():
        assert torch.equal(weighted[name], weight * terms[name]), name
    # The per-loss methods give the same unweighted terms on their own, from the matcher's pairs.
    matches = criterion.matcher(outputs, targets)
    matched = criterion._matched_targets(matches, targets, torch.device("cpu"))
    assert sorted(matched.actor.tolist()) == [False, True, True]  # every person matched, the non-actor too
    assert torch.equal(criterion.loss_actor(outputs, matched)["loss_actor"], terms["loss_actor"])
    boxes = criterion.loss_boxes(outputs, matched, torch.tensor(3.0))  # 3 matched persons
    assert torch.equal(boxes["loss_bbox"], terms["loss_bbox"]) and torch.equal(boxes["loss_giou"], terms["loss_giou"])
    classes = criterion.loss_classes(outputs, matched, torch.tensor(2.0))  # 2 actors
    assert torch.equal(classes["loss_class"], terms["loss_class"])
    logged = criterion.logged_values(terms)
    assert {name for name in logged if name.endswith("_unscaled")} == {f"{name}_unscaled" for name in weights}
    assert all(not value.requires_grad for value in logged.values())


def test_cardinality_counts_the_tokens_above_the_actor_threshold_against_the_actors():
    outputs = _outputs(batch=2, tokens=5)
    p_actor = torch.tensor([[0.9, 0.5, 0.31, 0.29, 0.0], [0.2, 0.1, 0.0, 0.0, 0.0]])
    logit = torch.logit(p_actor.clamp(1e-4, 1 - 1e-4))
    outputs["pred_actor"] = torch.stack([torch.zeros_like(logit), logit], dim=-1)  # softmax index 1 = p_actor
    targets = [_target([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.2]], [[1, 0, 0], [0, 1, 1]], [True, True]),
               _target([[0.5, 0.5, 0.6, 0.6], [0.2, 0.2, 0.1, 0.1]], [[0, 0, 1], [0, 0, 0]], [True, False])]
    terms = build_criterion(_cfg(ACTOR_THRESH=0.3)).terms(outputs, targets)
    # Clip 0: 3 tokens above 0.3 for 2 actors; clip 1: none for 1 actor (the non-actor person does not count).
    assert terms["tokens_above_thresh"].item() == pytest.approx(1.5)
    assert terms["actors_per_clip"].item() == pytest.approx(1.5)
    assert terms["cardinality_error"].item() == pytest.approx((1 + 1) / 2)
    loose = build_criterion(_cfg(ACTOR_THRESH=0.0, BOX_LOSS_ON_NON_ACTORS=True)).terms(outputs, targets)
    assert loose["tokens_above_thresh"].item() == pytest.approx(5.0)  # every token whose p(actor) is above 0
    assert loose["actors_per_clip"].item() == pytest.approx(1.5)  # matched non-actors are not actors


def test_the_counts_are_averaged_over_workers_in_one_collective(monkeypatch):
    outputs = _outputs(tokens=4)
    outputs["token_centres"] = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    target = _target([[0.3, 0.3, 0.4, 0.4], [0.7, 0.7, 0.2, 0.2]], [[1, 0, 0], [0, 0, 0]], [True, False])
    cfg = _cfg(BOX_LOSS_ON_NON_ACTORS=True, AUX_DENSE_WEIGHT=0.5, AUX_DENSE_REGION=1.0)
    alone = build_criterion(cfg)(outputs, [target])
    reduced = []

    def all_reduce(tensor):
        reduced.append(tensor.clone())
        return tensor.add_(torch.tensor([1.0, 3.0, 5.0]))  # the other worker: 1 actor, 3 matched persons, 5 pairs

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    shared = build_criterion(cfg)(outputs, [target])
    # One collective for (actors, matched persons, dense pairs): here 1 actor, 2 matched persons, 1 dense pair.
    assert len(reduced) == 1 and reduced[0].tolist() == [1.0, 2.0, 1.0]
    assert shared["loss_class"].item() == pytest.approx(alone["loss_class"].item() / ((1 + 1) / 2))
    assert shared["loss_bbox"].item() == pytest.approx(alone["loss_bbox"].item() * 2 / ((2 + 3) / 2))
    assert shared["loss_dense"].item() == pytest.approx(alone["loss_dense"].item() / ((1 + 5) / 2))
    assert shared["loss_actor"].item() == pytest.approx(alone["loss_actor"].item())
