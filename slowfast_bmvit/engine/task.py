"""What the loops ask of a detection model: a loss for a batch, and per-clip detections.

Two model families share the loops:
- set-prediction models (BMViT): `model(inputs)` returns triplets; the bipartite matching loss trains them (its
  unweighted terms and how many tokens fire against how many actors there are go to the training log) and
  `postprocess_from_cfg` keeps the tokens with p(actor) above BMVIT.ACTOR_THRESH (TEST.FLIP_AVERAGE first
  averages each clip's triplets with those of its mirror image);
- RoI models (the two-stage baseline, any model with `uses_input_boxes = True`): `model(inputs, boxes)` returns
  per-box logits [R, C]; sigmoid binary cross-entropy against the multi-hot labels trains them, and at test each
  given person box becomes a detection with the class probabilities as scores (TEST.FLIP_AVERAGE: averaged with
  those of the mirrored clip and box).
A detection is a dict {"boxes": [k, 4] (x1, y1, x2, y2) in original-frame fractions, "class_scores": [k, C]
row scores, "actor_scores": [k]} plus the clip's "meta".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.models import unwrap_model
from slowfast_bmvit.models.criterion import build_criterion
from slowfast_bmvit.models.flip_average import flip_averaged_box_probabilities, test_time_outputs
from slowfast_bmvit.models.postprocess import postprocess_from_cfg


def uses_input_boxes(model: nn.Module) -> bool:
    return bool(getattr(unwrap_model(model), "uses_input_boxes", False))


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The tensors of a collated batch on `device` (targets included); meta stays on the host."""
    moved = {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
             for key, value in batch.items()}
    moved["targets"] = [{key: value.to(device, non_blocking=True) for key, value in target.items()}
                        for target in batch["targets"]]
    return moved


class DetectionTask:
    """Loss and inference of one model under one config."""

    def __init__(self, cfg, model: nn.Module):
        if not cfg.DETECTION.ENABLE:
            raise ConfigError("DETECTION.ENABLE: the training and test loops are detection loops; set it True "
                              "(upstream's clip classification training is not offered)")
        self.cfg = cfg
        self.roi_model = uses_input_boxes(model)
        self.criterion = None if self.roi_model else build_criterion(cfg)

    def to(self, device: torch.device) -> "DetectionTask":
        if self.criterion is not None:
            self.criterion.to(device)
        return self

    def losses(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms and their weighted total under "loss" (the one to minimise), 0-dim tensors on the
        model's device. A set-prediction model's dict also holds values for the training log, detached: each loss
        term unweighted ("<term>_unscaled") and the criterion's cardinality statistics ("tokens_above_thresh",
        "actors_per_clip", "cardinality_error"); the trainer reads them with the losses, in the step's one read."""
        if self.roi_model:
            logits = model(batch["inputs"], batch["boxes"])
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"])
            return {"loss_class": loss, "loss": loss}
        terms = self.criterion.terms(model(batch["inputs"]), batch["targets"])
        return {**self.criterion.weigh(terms), **self.criterion.logged_values(terms)}

    @torch.no_grad()
    def detections(self, model: nn.Module, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-clip detections in original-frame coordinates, tensors moved to the CPU."""
        if self.roi_model:
            if self.cfg.TEST.FLIP_AVERAGE:
                probabilities = flip_averaged_box_probabilities(model, batch["inputs"], batch["boxes"]).cpu()
            else:
                probabilities = model(batch["inputs"], batch["boxes"]).float().sigmoid().cpu()
            ori_boxes = batch["ori_boxes"].cpu()
            clips = []
            for index, meta in enumerate(batch["meta"]):
                rows = ori_boxes[:, 0] == index
                clips.append({
                    "boxes": ori_boxes[rows, 1:],
                    "class_scores": probabilities[rows],
                    "actor_scores": torch.ones(int(rows.sum())),
                    "meta": meta,
                })
            return clips
        outputs = test_time_outputs(unwrap_model(model), batch["inputs"], self.cfg)
        clips = postprocess_from_cfg(outputs, batch["meta"], self.cfg)
        return [{"boxes": clip["boxes"].cpu(), "class_scores": clip["class_scores"].cpu(),
                 "actor_scores": clip["actor_scores"].cpu(), "meta": meta}
                for clip, meta in zip(clips, batch["meta"])]
