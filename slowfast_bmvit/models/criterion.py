"""The bipartite matching (Hungarian) loss of BMViT.

After the matcher assigns ground-truth persons to tokens, with A = number of ground-truth actors in the batch
(summed over distributed workers, divided by their number, at least 1):

- actor: 2-way cross-entropy over ALL tokens; target "actor" for tokens matched to an actor, "no actor" for every
  other token; each "no actor" term weighted by BMVIT.NO_ACTOR_WEIGHT and the sum divided by the sum of the weights
  (DETR's eos_coef weighted mean);
- bbox (L1 on cx, cy, w, h) and giou (1 - GIoU): on the matched tokens, summed and divided by the number of boxes
  with a box loss (A, plus the matched non-actor persons with BMVIT.BOX_LOSS_ON_NON_ACTORS);
- class: on the tokens matched to actors, divided by A; "bce" = sigmoid binary cross-entropy averaged over the C
  classes (multi-label AVA), "ce" = softmax cross-entropy against the argmax of the one-hot label row (UCF101-24,
  JHMDB).

Optional auxiliary dense term (BMVIT.AUX_DENSE_WEIGHT > 0, not in the paper): each token whose cell centre lies in
the central region of an actor's box (`dense_assignment`) also gets that actor's box and class losses, averaged over
such (token, actor) pairs and weighted like the main terms, times AUX_DENSE_WEIGHT. The actor target is untouched,
so inference still fires one token per person.

With BOX_LOSS_ON_NON_ACTORS, annotated non-actor persons are matched too: their tokens get the actor target "no
actor" (weighted like every other "no actor" token) and the box losses, but no class loss.
Every term stays connected to its head even when the batch has no actor (a zero with gradients), so distributed
training without `find_unused_parameters` works on actor-free batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box_ops import box_cxcywh_to_xyxy, paired_generalized_box_iou
from .matcher import HungarianMatcher
from .postprocess import class_activation


def dense_assignment(token_centres: Tensor, boxes: Tensor, region: float) -> tuple[Tensor, Tensor]:
    """(token_index [k], person_index [k]): tokens whose centre lies in a person's central region.

    token_centres: [N, 2] (x, y); boxes: [n, 4] (cx, cy, w, h), fractions of the clip; region: the central region of
    a box is its centre +- region x (w/2, h/2). A token inside several regions goes to the smallest box (FCOS's
    rule), so each token has at most one person.
    """
    if len(boxes) == 0:
        empty = torch.empty(0, dtype=torch.int64, device=token_centres.device)
        return empty, empty
    offset = (token_centres[:, None, :] - boxes[None, :, :2]).abs()  # [N, n, 2]
    inside = (offset <= region * boxes[None, :, 2:] / 2).all(-1)  # [N, n]
    area = (boxes[:, 2] * boxes[:, 3])[None].expand_as(inside)
    area = torch.where(inside, area, torch.full_like(area, float("inf")))
    smallest = area.argmin(dim=1)
    token_index = torch.nonzero(inside.any(dim=1), as_tuple=False).flatten()
    return token_index, smallest[token_index]


def _box_loss_sums(predicted: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(sum of L1 over the 4 coordinates, sum of 1 - GIoU) over paired boxes [k, 4] (cx, cy, w, h)."""
    giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(target))
    return F.l1_loss(predicted, target, reduction="sum"), (1 - giou).sum()


def _average_count_over_workers(count: Tensor) -> Tensor:
    """A 0-dim count averaged over distributed workers (as DETR does for num_boxes), at least 1. Stays on the
    device: dividing by it needs no host round trip."""
    total = count.detach().float()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        total = total / torch.distributed.get_world_size()
    return total.clamp(min=1.0)


def _to_device(indices: Tensor, device: torch.device) -> Tensor:
    """Host indices on `device`; to a GPU asynchronously, through pinned memory."""
    if device.type == "cuda":
        return indices.pin_memory().to(device, non_blocking=True)
    return indices.to(device)


class BipartiteMatchingLoss(nn.Module):
    """Matches, then returns {"loss_actor", "loss_bbox", "loss_giou", "loss_class", "loss"}: weighted terms and total.

    Args:
        matcher: the HungarianMatcher (its `match_non_actors` must equal `box_loss_on_non_actors`).
        weights: loss weights {"actor", "bbox", "giou", "class"} (BMVIT.LOSS_*).
        no_actor_weight: weight of "no actor" targets in the actor cross-entropy (BMVIT.NO_ACTOR_WEIGHT).
        class_loss: "bce" or "ce" (BMVIT.CLASS_LOSS).
        box_loss_on_non_actors: match annotated non-actor persons and give their tokens the box losses.
        aux_dense_weight, aux_dense_region: the auxiliary dense term's weight (0: off) and central-region size
            (BMVIT.AUX_DENSE_*); it needs the model's "token_centres" output.
    """

    def __init__(
        self,
        matcher: HungarianMatcher,
        weights: dict[str, float],
        no_actor_weight: float = 0.1,
        class_loss: str = "bce",
        box_loss_on_non_actors: bool = False,
        aux_dense_weight: float = 0.0,
        aux_dense_region: float = 0.5,
    ):
        super().__init__()
        if class_loss not in ("bce", "ce"):
            raise ValueError(f"BMVIT.CLASS_LOSS must be bce or ce, got {class_loss!r}")
        if matcher.match_non_actors != box_loss_on_non_actors:
            raise ValueError("the matcher must match non-actors exactly when the loss puts box losses on them")
        self.matcher = matcher
        self.weights = {name: float(weights[name]) for name in ("actor", "bbox", "giou", "class")}
        self.class_loss = class_loss
        self.box_loss_on_non_actors = box_loss_on_non_actors
        if aux_dense_weight < 0 or not 0 < aux_dense_region <= 1:
            raise ValueError(f"BMVIT.AUX_DENSE_WEIGHT must be >= 0 and AUX_DENSE_REGION in (0, 1], got "
                             f"{aux_dense_weight} and {aux_dense_region}")
        self.aux_dense_weight = float(aux_dense_weight)
        self.aux_dense_region = float(aux_dense_region)
        self.register_buffer("actor_class_weight", torch.tensor([no_actor_weight, 1.0]), persistent=False)

    @classmethod
    def from_cfg(cls, cfg) -> "BipartiteMatchingLoss":
        """Build the matcher and the loss from the BMVIT config group."""
        bm = cfg.BMVIT
        matcher = HungarianMatcher(
            cost_actor=bm.COST_ACTOR,
            cost_bbox=bm.COST_BBOX,
            cost_giou=bm.COST_GIOU,
            cost_class=bm.COST_CLASS,
            class_activation=class_activation(cfg),
            match_non_actors=bm.BOX_LOSS_ON_NON_ACTORS,
            cost_centre=bm.COST_CENTRE,
        )
        weights = {"actor": bm.LOSS_ACTOR, "bbox": bm.LOSS_BBOX, "giou": bm.LOSS_GIOU, "class": bm.LOSS_CLASS}
        return cls(matcher, weights, bm.NO_ACTOR_WEIGHT, bm.CLASS_LOSS, bm.BOX_LOSS_ON_NON_ACTORS,
                   bm.AUX_DENSE_WEIGHT, bm.AUX_DENSE_REGION)

    def _class_loss_per_actor(self, logits: Tensor, labels: Tensor) -> Tensor:
        """[k] class loss of k (token, actor) pairs: logits [k, C], labels [k, C] multi-hot."""
        if self.class_loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(-1)
        return F.cross_entropy(logits, labels.argmax(-1), reduction="none")

    def _dense_loss(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> Tensor:
        """The auxiliary dense term, unweighted by AUX_DENSE_WEIGHT (see the module docstring)."""
        if "token_centres" not in outputs:
            raise ValueError("BMVIT.AUX_DENSE_WEIGHT needs the model's 'token_centres' output (BMViT gives it)")
        pred_boxes, class_logits = outputs["pred_boxes"], outputs["pred_classes"]
        centres = outputs["token_centres"].float()
        clips, tokens, boxes, labels = [], [], [], []
        for b, target in enumerate(targets):
            actor = target["actor"].bool()
            actor_boxes = target["boxes"][actor].float().to(centres.device)
            token_index, person_index = dense_assignment(centres, actor_boxes, self.aux_dense_region)
            clips.append(torch.full_like(token_index, b))
            tokens.append(token_index)
            boxes.append(actor_boxes[person_index])
            labels.append(target["labels"][actor].float().to(centres.device)[person_index])
        clip_index, token_index = torch.cat(clips), torch.cat(tokens)
        num_pairs = _average_count_over_workers(torch.full((), float(len(token_index)), device=pred_boxes.device))
        predicted = pred_boxes[clip_index, token_index].float()
        target_boxes = torch.cat(boxes).to(predicted.device)
        l1, one_minus_giou = _box_loss_sums(predicted, target_boxes)
        per_pair = self._class_loss_per_actor(class_logits[clip_index, token_index].float(),
                                              torch.cat(labels).to(predicted.device))
        total = (self.weights["bbox"] * l1 + self.weights["giou"] * one_minus_giou
                 + self.weights["class"] * per_pair.sum())
        return total / num_pairs

    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """outputs: BMViT's dict ([B, N, ...] tensors); targets: B dicts {"boxes" [n, 4] cxcywh, "labels" [n, C],
        "actor" [n] bool} (the collate's `batch["targets"]`). Returns scalar tensors."""
        matches = self.matcher(outputs, targets)
        pred_boxes, actor_logits, class_logits = outputs["pred_boxes"], outputs["pred_actor"], outputs["pred_classes"]
        device = pred_boxes.device

        # Flat (clip, token) positions of the matched persons and the persons' rows in the batch's concatenated
        # targets: built on the host from the matching, sent to the device in one asynchronous copy.
        person_offsets = torch.tensor([0] + [len(t["boxes"]) for t in targets]).cumsum(0)
        index = torch.cat([torch.stack([torch.full_like(tokens, b), tokens, persons + person_offsets[b]])
                           for b, (tokens, persons) in enumerate(matches)], dim=1)
        clip_index, token_index, person_index = _to_device(index, device)
        matched = {key: torch.cat([t[key] for t in targets]).to(device)[person_index]
                   for key in ("boxes", "labels", "actor")}
        # Masks rather than boolean indexing, which would make the host wait for the device.
        is_actor = matched["actor"].bool()

        actor_target = torch.zeros(actor_logits.shape[:2], dtype=torch.int64, device=device)
        actor_target[clip_index, token_index] = is_actor.long()
        loss_actor = F.cross_entropy(
            actor_logits.float().flatten(0, 1), actor_target.flatten(), weight=self.actor_class_weight
        )

        num_actors = _average_count_over_workers(is_actor.sum())
        num_boxes = num_actors
        if self.box_loss_on_non_actors:
            num_boxes = _average_count_over_workers(torch.full((), float(len(person_index)), device=device))

        boxes = pred_boxes[clip_index, token_index].float()
        target_boxes = matched["boxes"].float()
        l1, one_minus_giou = _box_loss_sums(boxes, target_boxes)
        loss_bbox, loss_giou = l1 / num_boxes, one_minus_giou / num_boxes

        matched_class_logits = class_logits[clip_index, token_index].float()
        per_person = self._class_loss_per_actor(matched_class_logits, matched["labels"].float())
        loss_class = (per_person * is_actor.float()).sum() / num_actors

        losses = {
            "loss_actor": self.weights["actor"] * loss_actor,
            "loss_bbox": self.weights["bbox"] * loss_bbox,
            "loss_giou": self.weights["giou"] * loss_giou,
            "loss_class": self.weights["class"] * loss_class,
        }
        if self.aux_dense_weight:
            losses["loss_dense"] = self.aux_dense_weight * self._dense_loss(outputs, targets)
        losses["loss"] = sum(losses.values())
        return losses


def build_criterion(cfg) -> BipartiteMatchingLoss:
    """The BMViT training loss for `cfg` (`criterion = build_criterion(cfg)`)."""
    return BipartiteMatchingLoss.from_cfg(cfg)
