"""Hungarian matcher: assigns each ground-truth person of a clip to one distinct output token.

There are more tokens (N, e.g. 256 or 2048) than persons, so every person gets a token and the rest of the tokens
are unmatched (their target is "no actor"). The cost of giving person j to token i is

    C[i, j] = w_actor * (-p_i(actor state of j)) + w_L1 * |b_i - b_j|_1 + w_giou * (-GIoU(b_i, b_j))
              + w_class * (-mean over j's positive classes of p_i(class)) + w_centre * |r_i - c_j|_1

where the actor state of an actor is "actor" and of an annotated non-actor person (matched only when the loss puts
box losses on non-actors) is "no actor", so the cost always rewards the prediction the loss will ask for; the class
term is 0 for non-actors (they have no labels). Boxes are (cx, cy, w, h) fractions of the clip; L1 is on those four
numbers, GIoU on the corresponding corners. The optional centre term (not in the paper) measures the L1 distance
from token i's cell centre r_i (BMViT's "token_centres" output) to person j's box centre c_j: it keeps the
assignment on the tokens around each person from the first step, where the learned terms are still noise, so the
actor head learns a local, stable target. One `scipy.optimize.linear_sum_assignment` per clip with persons, after one
device-to-host copy for the whole batch.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from .heads import check_class_activation, class_activation, class_probabilities


class HungarianMatcher(nn.Module):
    """Optimal one-to-one assignment of ground-truth persons to tokens, clip by clip.

    Args:
        cost_actor, cost_bbox, cost_giou, cost_class, cost_centre: weights of the cost terms (BMVIT.COST_*);
            cost_class 0 and cost_centre 0 skip those terms.
        class_activation: "sigmoid" (multi-label) or "softmax" (single-label) for p(class) in the class term.
        match_non_actors: also match annotated non-actor persons (targets' "actor" False); otherwise only actors are
            matched and non-actor persons are left out (their region's tokens are simply unmatched).
    """

    def __init__(self, cost_actor: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0, cost_class: float = 0.0,
                 class_activation: str = "sigmoid", match_non_actors: bool = False, cost_centre: float = 0.0):
        super().__init__()
        self.cost_actor = cost_actor
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.cost_class = cost_class
        self.class_activation = check_class_activation(class_activation)
        self.cost_centre = cost_centre
        self.match_non_actors = match_non_actors

    def cost_matrix(
        self, boxes: Tensor, actor_logits: Tensor, class_logits: Tensor, target: dict[str, Tensor],
        token_centres: Tensor | None = None,
    ) -> Tensor:
        """Cost [N, n] of one clip: boxes [N, 4], actor_logits [N, 2], class_logits [N, C] (and token_centres
        [N, 2] (x, y) for the centre term) against its n persons."""
        actor_prob = actor_logits.float().softmax(-1)  # [N, 2]
        target_boxes = target["boxes"].float()
        cost = self.cost_actor * -actor_prob[:, target["actor"].long()]  # [N, n]: p(the person's actor state)
        cost = cost + self.cost_bbox * torch.cdist(boxes.float(), target_boxes, p=1)
        giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes.float()), box_cxcywh_to_xyxy(target_boxes))
        cost = cost - self.cost_giou * giou
        if self.cost_class:
            class_prob = class_probabilities(class_logits.float(), self.class_activation)
            labels = target["labels"].float() * target["actor"][:, None]
            label_mean = labels / labels.sum(-1, keepdim=True).clamp(min=1)
            cost = cost - self.cost_class * class_prob @ label_mean.T
        if self.cost_centre:
            if token_centres is None:
                raise ValueError("BMVIT.COST_CENTRE needs the model's 'token_centres' output (BMViT gives it)")
            cost = cost + self.cost_centre * torch.cdist(token_centres.float(), target_boxes[:, :2], p=1)
        return cost

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """Match each clip's persons to tokens.

        Args:
            outputs: "pred_boxes" [B, N, 4] (cx, cy, w, h), "pred_actor" [B, N, 2] logits, "pred_classes" [B, N, C]
                and, for the centre term, "token_centres" [N, 2].
            targets: B dicts with "boxes" [n_b, 4] (cx, cy, w, h), "labels" [n_b, C], "actor" [n_b] bool.
        Returns:
            B pairs (token_index [m_b], person_index [m_b]) of int64 CPU tensors: token token_index[k] is assigned
            person person_index[k] (an index into the clip's n_b persons); m_b = number of matchable persons.
        Raises:
            ValueError: a clip has more matchable persons than tokens, or the predictions are not finite.

        The device is read once: the costs of every clip against all its persons and the persons' actor flags go to
        the host in one copy; choosing the matchable persons and the assignment itself happen there (numpy, scipy).
        """
        num_tokens = outputs["pred_boxes"].shape[1]
        sizes = [len(target["boxes"]) for target in targets]
        costs = [
            self.cost_matrix(outputs["pred_boxes"][b], outputs["pred_actor"][b], outputs["pred_classes"][b], target,
                             outputs.get("token_centres"))
            for b, target in enumerate(targets) if sizes[b]
        ]
        if costs:
            flags = torch.cat([target["actor"] for target in targets]).to(costs[0].dtype)
            host = torch.cat([torch.cat(costs, dim=1), flags[None]]).cpu().numpy()  # [N + 1, total persons]
        else:
            host = np.zeros((num_tokens + 1, 0), dtype=np.float32)
        all_costs, all_actor = host[:-1], host[-1] > 0.5
        matches, offset = [], 0
        for b, size in enumerate(sizes):
            cost, actor = all_costs[:, offset:offset + size], all_actor[offset:offset + size]
            offset += size
            persons = np.arange(size) if self.match_non_actors else np.flatnonzero(actor)
            if len(persons) > num_tokens:
                raise ValueError(
                    f"clip {b} has {len(persons)} ground-truth persons to match but the model has only {num_tokens} "
                    "tokens; use a token arrangement with more tokens (BMVIT.TOKEN_ARRANGEMENT) or a larger input"
                )
            if len(persons) == 0:
                empty = torch.empty(0, dtype=torch.int64)
                matches.append((empty, empty))
                continue
            cost = cost[:, persons]
            if not np.isfinite(cost).all():
                raise ValueError("the matching cost has NaN or inf entries: the model's predictions are not finite")
            token_index, subset_index = linear_sum_assignment(cost)
            matches.append((torch.as_tensor(token_index, dtype=torch.int64),
                            torch.as_tensor(persons[subset_index], dtype=torch.int64)))
        return matches


def build_matcher(cfg) -> HungarianMatcher:
    """The matcher of the BMVIT config group: the COST_* weights, BOX_LOSS_ON_NON_ACTORS (match annotated non-actor
    persons too) and CLASS_LOSS's class activation."""
    bm = cfg.BMVIT
    return HungarianMatcher(bm.COST_ACTOR, bm.COST_BBOX, bm.COST_GIOU, bm.COST_CLASS, class_activation(cfg),
                            bm.BOX_LOSS_ON_NON_ACTORS, bm.COST_CENTRE)
