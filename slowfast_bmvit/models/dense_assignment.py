"""Dense assignment of tokens to actors, for the auxiliary dense loss term (BMVIT.AUX_DENSE_WEIGHT; not in the paper).

The bipartite matching gives each actor exactly one token. The auxiliary term adds a second, one-to-many
assignment in the manner of FCOS's centre sampling: every token whose cell centre lies in the central region of an
actor's box is assigned that actor, and the criterion (`criterion.py`, `loss_dense`) gives it the actor's box and
class losses. The actor target stays one-to-one, so inference still fires one token per person; the backbone and
the box and class heads see more supervised tokens per clip.

Boxes are (cx, cy, w, h) fractions of the clip; token centres (x, y) are BMViT's "token_centres" output. The
central region of a box is its centre +- region x (w/2, h/2) (BMVIT.AUX_DENSE_REGION; 1.0 is the whole box). A
token inside several regions goes to the smallest box (FCOS's rule), so each token has at most one actor.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dense_assignment(token_centres: Tensor, boxes: Tensor, region: float) -> tuple[Tensor, Tensor]:
    """(token_index [k], person_index [k]): the tokens whose centre lies in a person's central region.

    token_centres: [N, 2] (x, y); boxes: [n, 4] (cx, cy, w, h), fractions of the clip; region: the central
    region's half-size as a fraction of the box's half-size.
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


def dense_targets(token_centres: Tensor, targets: list[dict[str, Tensor]],
                  region: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (clip, token) pair of the batch that lies in an actor's central region, with that actor's target.

    Args:
        token_centres: [N, 2] (x, y) cell centres of the tokens, shared by the clips.
        targets: B dicts {"boxes" [n, 4] cxcywh, "labels" [n, C], "actor" [n] bool}; non-actor persons are skipped.
        region: BMVIT.AUX_DENSE_REGION.
    Returns:
        (clip_index [k], token_index [k], boxes [k, 4], labels [k, C]) on the device of `token_centres`; boxes and
        labels are float32.

    Each clip's actor boxes and labels are selected by mask and its tokens by value (nonzero): the host waits for
    the device three times per clip with actors, twice per clip without.
    """
    centres = token_centres.float()
    clips, tokens, boxes, labels = [], [], [], []
    for b, target in enumerate(targets):
        actor = target["actor"].bool()
        actor_boxes = target["boxes"][actor].float().to(centres.device)
        token_index, person_index = dense_assignment(centres, actor_boxes, region)
        clips.append(torch.full_like(token_index, b))
        tokens.append(token_index)
        boxes.append(actor_boxes[person_index])
        labels.append(target["labels"][actor].float().to(centres.device)[person_index])
    return torch.cat(clips), torch.cat(tokens), torch.cat(boxes), torch.cat(labels)
