"""Left-right flip averaging at test time (TEST.FLIP_AVERAGE).

A clip and its mirror image go through the model and the two predictions are averaged. A model trained with
random flips (DATA.RANDOM_FLIP) should be flip-equivariant, so the average is a two-view ensemble of one network at
twice the test cost; training is unaffected.

- Set-prediction models (BMViT, `flip_averaged_outputs`): the mirrored clip's triplets are mapped back onto the
  original token grid (token (s, h, w) of an S x H' x W' grid <-> token (s, h, W' - 1 - w), box centre x <-> 1 - x)
  and averaged token by token: box coordinates directly, p(actor) and the class probabilities as probabilities.
  The averages are returned as logits (log-probabilities for softmax heads, logit(p) for sigmoid heads), so that
  `postprocess_from_cfg` reads them exactly like a single forward pass's outputs.
- RoI models (the two-stage baseline, `flip_averaged_box_probabilities`): each given box is mirrored with the clip
  (x -> W - x in pixels) and its class probabilities are averaged over the two views.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .heads import check_class_activation, class_activation, class_probabilities

_PROBABILITY_FLOOR = 1e-6  # keeps logit(p) and log(p) finite for saturated probabilities


def mirror_triplets(outputs: dict[str, Tensor], grid: tuple[int, int, int]) -> dict[str, Tensor]:
    """The triplets of a mirrored clip, re-indexed and re-placed as the original clip's.

    Args:
        outputs: "pred_boxes" [B, N, 4] (cx, cy, w, h) clip fractions, "pred_actor" [B, N, 2], "pred_classes"
            [B, N, C]; other keys are left out.
        grid: (S, H', W') with N = S * H' * W', tokens in (s, h, w) row-major order (`BMViT.token_grid`).
    Returns:
        the same three keys, token (s, h, w) holding the input's token (s, h, W' - 1 - w) and boxes with cx -> 1 - cx.
    """
    slots, height, width = grid

    def flip_tokens(values: Tensor) -> Tensor:
        batch, tokens = values.shape[:2]
        if tokens != slots * height * width:
            raise ValueError(f"{tokens} triplets do not fill a {slots}x{height}x{width} token grid")
        return values.reshape(batch, slots, height, width, -1).flip(3).reshape(batch, tokens, -1)

    boxes = flip_tokens(outputs["pred_boxes"])
    boxes = torch.cat([1.0 - boxes[..., :1], boxes[..., 1:]], dim=-1)
    return {"pred_boxes": boxes, "pred_actor": flip_tokens(outputs["pred_actor"]),
            "pred_classes": flip_tokens(outputs["pred_classes"])}


@torch.no_grad()
def flip_averaged_outputs(model: nn.Module, inputs: Tensor, activation: str = "sigmoid") -> dict[str, Tensor]:
    """BMViT-style outputs for clips [B, 3, T, H, W], averaged over the clips and their left-right mirror images.

    Args:
        model: a set-prediction model with `token_grid((T, H, W))` (BMViT), unwrapped from DistributedDataParallel.
        inputs: the clips.
        activation: "sigmoid" (BMVIT.CLASS_LOSS bce) or "softmax" (ce): how class logits become probabilities.
    Returns:
        the model's output dict (float32) with pred_boxes, pred_actor and pred_classes replaced by the averages.
    """
    outputs = {key: value.float() for key, value in model(inputs).items()}
    averaged = mirror_averaged_probabilities(outputs, model(inputs.flip(-1)),
                                             model.token_grid(tuple(inputs.shape[2:])), activation)
    outputs["pred_boxes"] = averaged["pred_boxes"]
    outputs["pred_actor"] = averaged["actor_probs"].clamp(_PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR).log()
    class_probs = averaged["class_probs"].clamp(_PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
    outputs["pred_classes"] = torch.logit(class_probs) if activation == "sigmoid" else class_probs.log()
    return outputs


def mirror_averaged_probabilities(direct: dict[str, Tensor], mirrored: dict[str, Tensor],
                                  grid: tuple[int, int, int], activation: str = "sigmoid") -> dict[str, Tensor]:
    """The two views' triplets averaged token by token, as probabilities.

    Args:
        direct: the model's outputs for the clips; mirrored: for their mirror images (as the model returned them).
        grid: the token grid (S, H', W'); activation: "sigmoid" or "softmax" for the class logits.
    Returns:
        "pred_boxes" [B, N, 4] mean boxes, "actor_probs" [B, N, 2] mean softmax of the actor logits and
        "class_probs" [B, N, C] mean class probabilities (float32, not clamped).
    """
    check_class_activation(activation)
    flipped = mirror_triplets({key: value.float() for key, value in mirrored.items()}, grid)

    def mean_probability(to_probability, key: str) -> Tensor:
        return (to_probability(direct[key].float()) + to_probability(flipped[key])) / 2

    return {"pred_boxes": (direct["pred_boxes"].float() + flipped["pred_boxes"]) / 2,
            "actor_probs": mean_probability(lambda logits: logits.softmax(-1), "pred_actor"),
            "class_probs": mean_probability(lambda logits: class_probabilities(logits, activation), "pred_classes")}


@torch.no_grad()
def flip_averaged_box_probabilities(model: nn.Module, inputs: Tensor, boxes: Tensor) -> Tensor:
    """Class probabilities [R, C] of an RoI model for its boxes, averaged over the clips and their mirror images.

    Args:
        model: `model(inputs, boxes)` -> [R, C] logits (sigmoid heads), e.g. MViTRoI.
        inputs: clips [B, 3, T, H, W].
        boxes: [R, 5] rows (batch index, x1, y1, x2, y2), corners in pixels of the input clip.
    """
    width = inputs.shape[-1]
    mirrored = boxes.clone()
    mirrored[:, 1], mirrored[:, 3] = width - boxes[:, 3], width - boxes[:, 1]
    direct = model(inputs, boxes).float().sigmoid()
    return (direct + model(inputs.flip(-1), mirrored).float().sigmoid()) / 2


def test_time_outputs(model: nn.Module, inputs: Tensor, cfg) -> dict[str, Tensor]:
    """A set-prediction model's outputs as the test reads them: flip-averaged when TEST.FLIP_AVERAGE, else one pass.

    `model` is unwrapped from DistributedDataParallel; cfg.BMVIT.CLASS_LOSS gives the class activation.
    """
    if not cfg.TEST.FLIP_AVERAGE:
        return model(inputs)
    return flip_averaged_outputs(model, inputs, class_activation(cfg))
