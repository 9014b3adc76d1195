"""The bipartite matching (Hungarian) loss of BMViT, written as DETR's SetCriterion.

The matcher (`matcher.py`) assigns each ground-truth person to one token; then each loss has its method:

- `loss_actor`: 2-way cross-entropy over ALL tokens; target "actor" for tokens matched to an actor, "no actor" for
  every other token; each "no actor" term weighted by BMVIT.NO_ACTOR_WEIGHT and the sum divided by the sum of the
  weights (DETR's eos_coef weighted mean);
- `loss_boxes`: L1 on (cx, cy, w, h) ("loss_bbox") and 1 - GIoU ("loss_giou") on the matched tokens, summed and
  divided by the number of matched persons;
- `loss_classes`: on the tokens matched to actors, divided by the number of actors A; "bce" = sigmoid binary
  cross-entropy averaged over the C classes (multi-label AVA), "ce" = softmax cross-entropy against the argmax of
  the one-hot label row (UCF101-24, JHMDB);
- `loss_dense` (BMVIT.AUX_DENSE_WEIGHT > 0, not in the paper): each token that `dense_assignment.py` places in an
  actor's central region also gets that actor's box and class losses, with the main loss weights, averaged over
  such (token, actor) pairs. The actor target is untouched, so inference still fires one token per person;
- `cardinality` (logged, not a loss; DETR's cardinality error): per clip, the tokens with p(actor) above
  BMVIT.ACTOR_THRESH against the ground-truth actors.

Counts (actors, matched persons, dense pairs) are summed over distributed workers in one collective, divided by
their number and kept at least 1 (as DETR does for num_boxes). Whom the box losses reach is the matcher's choice:
with BMVIT.BOX_LOSS_ON_NON_ACTORS it also matches annotated non-actor persons, whose tokens then get the box losses
and keep the actor target "no actor" (weighted like every other "no actor" token) and no class loss.
Every term stays connected to its head even when the batch has no actor (a zero with gradients), so distributed
training without `find_unused_parameters` works on actor-free batches.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box_ops import box_cxcywh_to_xyxy, paired_generalized_box_iou
from .dense_assignment import dense_targets
from .matcher import HungarianMatcher, build_matcher

CLASS_LOSSES = ("bce", "ce")


class TokenTargets(NamedTuple):
    """Ground truth given to k tokens: token `token_index[i]` of clip `clip_index[i]` learns `boxes[i]` [4]
    (cx, cy, w, h) and `labels[i]` [C] (multi-hot); `actor[i]` is False for a matched non-actor person (box losses
    only). All on the model's device."""

    clip_index: Tensor
    token_index: Tensor
    boxes: Tensor
    labels: Tensor
    actor: Tensor


def _mean_over_workers(counts: Tensor) -> Tensor:
    """Counts [k] summed over distributed workers (one collective) and divided by their number, at least 1. Stays
    on the device: dividing by it needs no host round trip."""
    counts = counts.detach().float()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(counts)
        counts = counts / torch.distributed.get_world_size()
    return counts.clamp(min=1.0)


def _to_device(indices: Tensor, device: torch.device) -> Tensor:
    """Host indices on `device`; to a GPU asynchronously, through pinned memory."""
    if device.type == "cuda":
        return indices.pin_memory().to(device, non_blocking=True)
    return indices.to(device)


class BipartiteMatchingLoss(nn.Module):
    """Matches, then computes the loss terms; `forward` returns {"loss_actor", "loss_bbox", "loss_giou",
    "loss_class"[, "loss_dense"], "loss"}: the weighted terms and their sum.

    Args:
        matcher: the HungarianMatcher; its `match_non_actors` decides whether non-actor persons get box losses.
        weights: loss weights {"actor", "bbox", "giou", "class"} (BMVIT.LOSS_*).
        no_actor_weight: weight of "no actor" targets in the actor cross-entropy (BMVIT.NO_ACTOR_WEIGHT).
        class_loss: "bce" or "ce" (BMVIT.CLASS_LOSS).
        aux_dense_weight, aux_dense_region: the auxiliary dense term's weight (0: off) and central-region size
            (BMVIT.AUX_DENSE_*); it needs the model's "token_centres" output.
        actor_thresh: p(actor) above which a token counts as a detection in `cardinality` (BMVIT.ACTOR_THRESH).
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        weights: dict[str, float],
        no_actor_weight: float = 0.1,
        class_loss: str = "bce",
        aux_dense_weight: float = 0.0,
        aux_dense_region: float = 0.5,
        actor_thresh: float = 0.3,
    ):
        super().__init__()
        if class_loss not in CLASS_LOSSES:
            raise ValueError(f"BMVIT.CLASS_LOSS must be bce or ce, got {class_loss!r}")
        if aux_dense_weight < 0 or not 0 < aux_dense_region <= 1:
            raise ValueError(f"BMVIT.AUX_DENSE_WEIGHT must be >= 0 and AUX_DENSE_REGION in (0, 1], got "
                             f"{aux_dense_weight} and {aux_dense_region}")
        self.matcher = matcher
        self.class_loss = class_loss
        self.aux_dense_region = float(aux_dense_region)
        self.actor_thresh = float(actor_thresh)
        # The weight of each loss term by name (DETR's weight_dict); the dense term is left out when it is off.
        self.weight_dict = {f"loss_{name}": float(weights[name]) for name in ("actor", "bbox", "giou", "class")}
        if aux_dense_weight:
            self.weight_dict["loss_dense"] = float(aux_dense_weight)
        self.register_buffer("actor_class_weight", torch.tensor([no_actor_weight, 1.0]), persistent=False)

    def loss_actor(self, outputs: dict[str, Tensor], matched: TokenTargets) -> dict[str, Tensor]:
        """Actor / no-actor cross-entropy over every token of every clip ("pred_actor" [B, N, 2]): target 1 on the
        tokens matched to actors, 0 elsewhere, the 0 targets weighted by NO_ACTOR_WEIGHT; the weighted mean."""
        logits = outputs["pred_actor"]
        target = torch.zeros(logits.shape[:2], dtype=torch.int64, device=logits.device)
        target[matched.clip_index, matched.token_index] = matched.actor.long()
        loss = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), weight=self.actor_class_weight)
        return {"loss_actor": loss}

    def loss_boxes(self, outputs: dict[str, Tensor], matched: TokenTargets, num_boxes: Tensor) -> dict[str, Tensor]:
        """L1 over (cx, cy, w, h) and 1 - GIoU of each matched token's box ("pred_boxes" [B, N, 4]) against its
        person's box, each summed over the matched persons and divided by `num_boxes`."""
        l1, one_minus_giou = self._box_loss_sums(outputs, matched)
        return {"loss_bbox": l1 / num_boxes, "loss_giou": one_minus_giou / num_boxes}

    def loss_classes(self, outputs: dict[str, Tensor], matched: TokenTargets, num_actors: Tensor) -> dict[str, Tensor]:
        """Class loss (CLASS_LOSS) of each token matched to an actor ("pred_classes" [B, N, C]) against the
        actor's labels, summed over the actors and divided by `num_actors`; matched non-actors add nothing."""
        return {"loss_class": self._class_loss_sum(outputs, matched) / num_actors}

    def loss_dense(self, outputs: dict[str, Tensor], pairs: TokenTargets, num_pairs: Tensor) -> dict[str, Tensor]:
        """The auxiliary dense term, before AUX_DENSE_WEIGHT: the box and class losses of every (token, actor)
        pair of the dense assignment, weighted by LOSS_BBOX, LOSS_GIOU and LOSS_CLASS, summed and divided by
        `num_pairs`."""
        l1, one_minus_giou = self._box_loss_sums(outputs, pairs)
        weight = self.weight_dict
        total = (weight["loss_bbox"] * l1 + weight["loss_giou"] * one_minus_giou
                 + weight["loss_class"] * self._class_loss_sum(outputs, pairs))
        return {"loss_dense": total / num_pairs}

    @torch.no_grad()
    def cardinality(self, outputs: dict[str, Tensor], matched: TokenTargets) -> dict[str, Tensor]:
        """Detection health, for the training log (no gradient): per clip, the tokens whose p(actor) is above
        ACTOR_THRESH (what the test keeps before NMS and TOP_K) and the ground-truth actors (all of them are
        matched); returns their means over the clips, "tokens_above_thresh" and "actors_per_clip", and the mean
        absolute difference, "cardinality_error" (DETR's name)."""
        actor_prob = outputs["pred_actor"].float().softmax(-1)[..., 1]  # [B, N]
        detected = (actor_prob > self.actor_thresh).sum(1).float()
        actors = torch.zeros_like(detected).index_add_(0, matched.clip_index, matched.actor.float())
        return {"tokens_above_thresh": detected.mean(), "actors_per_clip": actors.mean(),
                "cardinality_error": (detected - actors).abs().mean()}

    def _box_loss_sums(self, outputs: dict[str, Tensor], pairs: TokenTargets) -> tuple[Tensor, Tensor]:
        """(sum of L1 over the 4 coordinates, sum of 1 - GIoU) over the given (token, person) pairs."""
        predicted = outputs["pred_boxes"][pairs.clip_index, pairs.token_index].float()
        target = pairs.boxes.float()
        giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(target))
        return F.l1_loss(predicted, target, reduction="sum"), (1 - giou).sum()

    def _class_loss_sum(self, outputs: dict[str, Tensor], pairs: TokenTargets) -> Tensor:
        """Class loss summed over the pairs whose person is an actor (multiplied by the mask: boolean indexing
        would make the host wait for the device)."""
        logits = outputs["pred_classes"][pairs.clip_index, pairs.token_index].float()
        labels = pairs.labels.float()
        if self.class_loss == "bce":
            per_pair = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1)
        else:
            per_pair = F.cross_entropy(logits, labels.argmax(-1), reduction="none")
        return (per_pair * pairs.actor.float()).sum()

    def _matched_targets(self, matches: list[tuple[Tensor, Tensor]], targets: list[dict[str, Tensor]],
                         device: torch.device) -> TokenTargets:
        """The matcher's per-clip (token_index, person_index) pairs as one flat TokenTargets (DETR's
        `_get_src_permutation_idx` with the targets gathered): the indices are built on the host and sent to the
        device in one asynchronous copy."""
        person_offsets = torch.tensor([0] + [len(t["boxes"]) for t in targets]).cumsum(0)
        index = torch.cat([torch.stack([torch.full_like(tokens, b), tokens, persons + person_offsets[b]])
                           for b, (tokens, persons) in enumerate(matches)], dim=1)
        clip_index, token_index, person_index = _to_device(index, device)
        matched = {key: torch.cat([t[key] for t in targets]).to(device)[person_index]
                   for key in ("boxes", "labels", "actor")}
        return TokenTargets(clip_index, token_index, matched["boxes"], matched["labels"], matched["actor"].bool())

    def _dense_targets(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> TokenTargets:
        """The dense assignment's (token, actor) pairs as TokenTargets."""
        if "token_centres" not in outputs:
            raise ValueError("BMVIT.AUX_DENSE_WEIGHT needs the model's 'token_centres' output (BMViT gives it)")
        clip_index, token_index, boxes, labels = dense_targets(outputs["token_centres"], targets,
                                                               self.aux_dense_region)
        actor = torch.ones(len(clip_index), dtype=torch.bool, device=clip_index.device)
        return TokenTargets(clip_index, token_index, boxes, labels, actor)

    def terms(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The unweighted loss terms (the keys of `weight_dict`) and the `cardinality` statistics.

        outputs: BMViT's dict ([B, N, ...] tensors, and "token_centres" [N, 2] for the dense term); targets: B
        dicts {"boxes" [n, 4] cxcywh, "labels" [n, C], "actor" [n] bool} (the collate's `batch["targets"]`).
        """
        device = outputs["pred_boxes"].device
        matched = self._matched_targets(self.matcher(outputs, targets), targets, device)
        dense = self._dense_targets(outputs, targets) if "loss_dense" in self.weight_dict else None
        # The normalisers, in one collective: the actors (class loss), the matched persons (box losses: the actors,
        # plus the non-actors when the matcher matches them) and the dense pairs. Only the first is on the device.
        num_dense = len(dense.clip_index) if dense is not None else 0
        counts = [matched.actor.sum().float(), torch.full((), float(len(matched.clip_index)), device=device),
                  torch.full((), float(num_dense), device=device)]
        num_actors, num_boxes, num_pairs = _mean_over_workers(torch.stack(counts)).unbind()
        terms = {
            **self.loss_actor(outputs, matched),
            **self.loss_boxes(outputs, matched, num_boxes),
            **self.loss_classes(outputs, matched, num_actors),
        }
        if dense is not None:
            terms.update(self.loss_dense(outputs, dense, num_pairs))
        terms.update(self.cardinality(outputs, matched))
        return terms

    def weigh(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """The weighted loss terms of `terms` and their sum, "loss" (what training minimises)."""
        losses = {name: weight * terms[name] for name, weight in self.weight_dict.items()}
        losses["loss"] = sum(losses.values())
        return losses

    def logged_values(self, terms: dict[str, Tensor]) -> dict[str, Tensor]:
        """`terms` for the training log, detached: the loss terms unweighted as "<name>_unscaled" (DETR's names)
        and the cardinality statistics under their own names."""
        return {f"{name}_unscaled" if name in self.weight_dict else name: value.detach()
                for name, value in terms.items()}

    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The weighted loss terms and "loss" for a batch (see `terms` for the arguments); scalar tensors."""
        return self.weigh(self.terms(outputs, targets))


def build_criterion(cfg) -> BipartiteMatchingLoss:
    """The BMViT training loss (and its matcher, `build_matcher`) for the BMVIT config group."""
    bm = cfg.BMVIT
    weights = {"actor": bm.LOSS_ACTOR, "bbox": bm.LOSS_BBOX, "giou": bm.LOSS_GIOU, "class": bm.LOSS_CLASS}
    return BipartiteMatchingLoss(build_matcher(cfg), weights, bm.NO_ACTOR_WEIGHT, bm.CLASS_LOSS,
                                 bm.AUX_DENSE_WEIGHT, bm.AUX_DENSE_REGION, bm.ACTOR_THRESH)
