import itertools
import math

import pytest
import torch

from slowfast_bmvit.models.matcher import HungarianMatcher


def _random_boxes(generator, count):
    """[count, 4] (cx, cy, w, h) with sizes in [0.05, 0.45]."""
    centres = torch.rand(count, 2, generator=generator)
    return torch.cat([centres, 0.05 + 0.4 * torch.rand(count, 2, generator=generator)], 1)


def _random_clip(generator, num_tokens, num_persons, num_classes=3, actor_fraction=1.0):
    outputs = {
        "pred_boxes": _random_boxes(generator, num_tokens)[None],
        "pred_actor": torch.randn(1, num_tokens, 2, generator=generator),
        "pred_classes": torch.randn(1, num_tokens, num_classes, generator=generator),
        "token_centres": torch.rand(num_tokens, 2, generator=generator),
    }
    gt = _random_boxes(generator, num_persons)
    labels = (torch.rand(num_persons, num_classes, generator=generator) < 0.5).float()
    actor = torch.rand(num_persons, generator=generator) < actor_fraction
    return outputs, {"boxes": gt, "labels": labels, "actor": actor}


def _pair_cost(matcher, outputs, target, token, person):
    """The documented cost of one (token, person) pair, written out term by term with Python arithmetic."""
    cx, cy, w, h = outputs["pred_boxes"][0, token].tolist()
    gx, gy, gw, gh = target["boxes"][person].tolist()
    l1 = abs(cx - gx) + abs(cy - gy) + abs(w - gw) + abs(h - gh)
    a = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    g = (gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2)
    inter = max(0.0, min(a[2], g[2]) - max(a[0], g[0])) * max(0.0, min(a[3], g[3]) - max(a[1], g[1]))
    union = w * h + gw * gh - inter
    enclosing = (max(a[2], g[2]) - min(a[0], g[0])) * (max(a[3], g[3]) - min(a[1], g[1]))
    giou = inter / union - (enclosing - union) / enclosing
    logits = outputs["pred_actor"][0, token].tolist()
    p_actor = math.exp(logits[1]) / (math.exp(logits[0]) + math.exp(logits[1]))
    is_actor = bool(target["actor"][person])
    cost = matcher.cost_actor * -(p_actor if is_actor else 1 - p_actor)
    cost += matcher.cost_bbox * l1 - matcher.cost_giou * giou
    labels = target["labels"][person].tolist()
    if matcher.cost_class and is_actor and sum(labels) > 0:
        probs = [1 / (1 + math.exp(-z)) for z in outputs["pred_classes"][0, token].tolist()]
        cost -= matcher.cost_class * sum(p for p, y in zip(probs, labels) if y) / sum(labels)
    if matcher.cost_centre:
        rx, ry = outputs["token_centres"][token].tolist()
        cost += matcher.cost_centre * (abs(rx - gx) + abs(ry - gy))
    return cost


def _brute_force_minimum(matcher, outputs, target, persons):
    num_tokens = outputs["pred_boxes"].shape[1]
    best = math.inf
    for tokens in itertools.permutations(range(num_tokens), len(persons)):
        best = min(best, sum(_pair_cost(matcher, outputs, target, t, p) for t, p in zip(tokens, persons)))
    return 0.0 if not persons else best


@pytest.mark.parametrize("match_non_actors,cost_class,cost_centre", [(False, 0.0, 0.0), (True, 1.5, 0.0),
                                                                      (False, 0.0, 3.0)])
def test_matcher_equals_brute_force_on_random_problems(match_non_actors, cost_class, cost_centre):
    generator = torch.Generator().manual_seed(1 + int(match_non_actors) + int(cost_centre))
    matcher = HungarianMatcher(1.0, 5.0, 2.0, cost_class, match_non_actors=match_non_actors, cost_centre=cost_centre)
    num_problems, num_empty = 120, 0
    for _ in range(num_problems):
        num_tokens = int(torch.randint(1, 7, (1,), generator=generator))
        num_persons = int(torch.randint(0, min(num_tokens, 4) + 1, (1,), generator=generator))
        outputs, target = _random_clip(generator, num_tokens, num_persons, actor_fraction=0.7)
        persons = [i for i in range(num_persons) if match_non_actors or bool(target["actor"][i])]
        num_empty += not persons
        ((tokens, matched_persons),) = matcher(outputs, [target])
        assert sorted(matched_persons.tolist()) == persons
        assert len(set(tokens.tolist())) == len(tokens)
        pairs = zip(tokens.tolist(), matched_persons.tolist())
        found = sum(_pair_cost(matcher, outputs, target, t, p) for t, p in pairs)
        assert found == pytest.approx(_brute_force_minimum(matcher, outputs, target, persons), abs=1e-5)
    assert num_empty >= 5  # zero ground truth (or zero actors) was exercised


def test_matcher_handles_a_batch_with_varied_counts():
    generator = torch.Generator().manual_seed(3)
    clips = [_random_clip(generator, 5, n) for n in (2, 0, 5)]
    outputs = {key: torch.cat([o[key] for o, _ in clips]) for key in clips[0][0]}
    matches = HungarianMatcher()(outputs, [t for _, t in clips])
    assert [len(tokens) for tokens, _ in matches] == [2, 0, 5]
    assert all(tokens.dtype == torch.int64 and persons.dtype == torch.int64 for tokens, persons in matches)


def test_unambiguous_problem_matches_the_obvious_tokens():
    pred = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]])
    outputs = {"pred_boxes": pred[None], "pred_actor": torch.zeros(1, 3, 2), "pred_classes": torch.zeros(1, 3, 2)}
    target = {"boxes": pred[[2, 0]], "labels": torch.ones(2, 2), "actor": torch.tensor([True, True])}
    ((tokens, persons),) = HungarianMatcher()(outputs, [target])
    assert dict(zip(persons.tolist(), tokens.tolist())) == {0: 2, 1: 0}


def test_default_matcher_ignores_non_actor_persons():
    generator = torch.Generator().manual_seed(4)
    outputs, target = _random_clip(generator, 4, 3)
    target["actor"] = torch.tensor([False, True, False])
    ((tokens, persons),) = HungarianMatcher()(outputs, [target])
    assert persons.tolist() == [1] and len(tokens) == 1
    ((_, persons),) = HungarianMatcher(match_non_actors=True)(outputs, [target])
    assert sorted(persons.tolist()) == [0, 1, 2]


def test_more_persons_than_tokens_is_a_clear_error():
    generator = torch.Generator().manual_seed(5)
    outputs, target = _random_clip(generator, 2, 3)
    with pytest.raises(ValueError, match="3 ground-truth persons.*only 2 tokens"):
        HungarianMatcher()(outputs, [target])


def test_non_finite_predictions_are_named():
    generator = torch.Generator().manual_seed(6)
    outputs, target = _random_clip(generator, 3, 1)
    outputs["pred_actor"][0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        HungarianMatcher()(outputs, [target])


def test_centre_cost_keeps_a_person_on_the_token_around_its_centre():
    # Token 0 sits at the person's centre but predicts a poor box; token 1 predicts the box exactly from afar.
    person = torch.tensor([[0.25, 0.25, 0.2, 0.4]])
    outputs = {"pred_boxes": torch.tensor([[[0.3, 0.3, 0.3, 0.3], [0.25, 0.25, 0.2, 0.4]]]),
               "pred_actor": torch.zeros(1, 2, 2), "pred_classes": torch.zeros(1, 2, 2),
               "token_centres": torch.tensor([[0.25, 0.25], [0.75, 0.75]])}
    target = {"boxes": person, "labels": torch.ones(1, 2), "actor": torch.tensor([True])}
    assert HungarianMatcher()(outputs, [target])[0][0].tolist() == [1]  # the paper's cost follows the box
    assert HungarianMatcher(cost_centre=5.0)(outputs, [target])[0][0].tolist() == [0]
    del outputs["token_centres"]
    with pytest.raises(ValueError, match="token_centres"):
        HungarianMatcher(cost_centre=5.0)(outputs, [target])
