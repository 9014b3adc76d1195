"""The two-stage baseline: a backbone (MViT, or ViT: BMVIT.BACKBONE) whose token grid is pooled on given person
boxes (RoIAlign).

Person boxes come from outside the model (AVA's released detector boxes at test, ground truth in training), which
is what "two-stage" refers to; BMViT (bmvit.py) predicts the boxes itself. Both share the backbone, its config keys
and its K400 checkpoints, so the two can be compared from the same starting point.
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor, nn

from slowfast_bmvit.config import ConfigError

from .build import MODEL_REGISTRY, build_backbone
from .roi_head import RoIHead

logger = logging.getLogger(__name__)

# Probe sizes for reading the stride off `output_grid`: their difference (2^10 * 3^3 * 5 * 7 pixels) is a multiple of
# every stride built from factors 2 (up to 1024), 3 (up to 27), 5 and 7, so the grid grows by exactly diff / stride.
_STRIDE_PROBE_SIZES = (967_680, 2 * 967_680)


def backbone_output_stride(backbone: nn.Module, num_frames: int) -> int:
    """Input pixels per output token along H and W (32 for MViTv2-S; 16 with MVIT.REMOVE_Q_POOL_BLOCKS [14]).

    Read off the backbone's own `output_grid((T, H, W))` as the growth of the token grid between two large input
    sizes, so it follows the patch stride and every query-pooling stride the backbone actually applies (including
    removed ones) without restating those rules. Raises ConfigError when H and W strides differ or are fractional.
    """
    small, large = _STRIDE_PROBE_SIZES
    _, small_h, small_w = backbone.output_grid((num_frames, small, small))
    _, large_h, large_w = backbone.output_grid((num_frames, large, large))
    stride_h = (large - small) / (large_h - small_h)
    stride_w = (large - small) / (large_w - small_w)
    if stride_h != stride_w or not stride_h.is_integer():
        raise ConfigError(
            f"MVIT.PATCH_STRIDE / MVIT.POOL_Q_STRIDE: the two-stage head needs one integer spatial stride, "
            f"got {stride_h} (H) and {stride_w} (W)"
        )
    return int(stride_h)


@MODEL_REGISTRY.register()
class MViTRoI(nn.Module):
    """MViTv2 + RoI head (PySlowFast's MViT with DETECTION.ENABLE), the baseline BMViT is compared against.

    clip [B, 3, T, H, W] -> `backbone.forward_features` tokens [B, C, T', H', W'] -> RoIHead on boxes [R, 5]
    -> [R, NUM_CLASSES] logits.

    Args:
        cfg: reads BMVIT.BACKBONE and its MVIT / VIT keys (backbone), MODEL.NUM_CLASSES, MODEL.DROPOUT_RATE,
            MVIT.HEAD_INIT_SCALE, DETECTION.ROI_XFORM_RESOLUTION, DETECTION.ALIGNED and DETECTION.SPATIAL_SCALE_FACTOR.
        backbone: an already-built backbone to use instead of BMVIT.BACKBONE's (`build_backbone`; must provide
            `forward_features`, `out_dim`, `output_grid((T, H, W))` and `no_weight_decay()`).

    The RoI spatial scale is 1 / the backbone's actual output stride (`backbone_output_stride`): 32 for MViTv2-S,
    16 when MVIT.REMOVE_Q_POOL_BLOCKS removes the last query pooling. DETECTION.SPATIAL_SCALE_FACTOR states the
    expected stride (upstream reads the scale from it, and its default 16 is wrong for MViTv2-S); when it
    disagrees with the backbone, the backbone's stride is used and a warning names both.

    Parameters: `backbone.*` (the backbone's own names: K400 checkpoints load with prefix `backbone.`) and
    `head.projection.{weight,bias}` (upstream's name of the detection classifier).
    """

    # Prefix of the backbone's parameters in this model's state_dict (where a classifier checkpoint loads).
    backbone_prefix = "backbone."
    # The engine feeds this model the batch's person boxes (engine/task.py).
    uses_input_boxes = True

    def __init__(self, cfg, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else build_backbone(cfg)
        stride = backbone_output_stride(self.backbone, cfg.DATA.NUM_FRAMES)
        if cfg.DETECTION.SPATIAL_SCALE_FACTOR != stride:
            logger.warning(
                "DETECTION.SPATIAL_SCALE_FACTOR is %s but the backbone's output stride is %d (patch stride x "
                "query-pooling strides): RoIAlign uses 1/%d",
                cfg.DETECTION.SPATIAL_SCALE_FACTOR, stride, stride,
            )
        self.head = RoIHead(
            self.backbone.out_dim,
            cfg.MODEL.NUM_CLASSES,
            resolution=cfg.DETECTION.ROI_XFORM_RESOLUTION,
            spatial_scale=1.0 / stride,
            aligned=cfg.DETECTION.ALIGNED,
            dropout_rate=cfg.MODEL.DROPOUT_RATE,
        )
        self._init_head(cfg.MVIT.HEAD_INIT_SCALE)

    def _init_head(self, init_scale: float) -> None:
        """Upstream MViT's initialisation of its head: trunc_normal(.02) weight, 0.02 bias, both x HEAD_INIT_SCALE."""
        nn.init.trunc_normal_(self.head.projection.weight, std=0.02)
        nn.init.constant_(self.head.projection.bias, 0.02)
        with torch.no_grad():
            self.head.projection.weight.mul_(init_scale)
            self.head.projection.bias.mul_(init_scale)

    def no_weight_decay(self) -> set[str]:
        """The backbone's no-weight-decay parameter names, with this model's prefix."""
        return {self.backbone_prefix + name for name in self.backbone.no_weight_decay()}

    def forward(self, x: Tensor | Sequence[Tensor], boxes: Tensor) -> Tensor:
        """Classify the given boxes.

        Args:
            x: clip [B, 3, T, H, W] or a one-element list of it.
            boxes: [R, 5] rows (batch index, x1, y1, x2, y2), corners in pixels of the input clip
                (`batch["boxes"]` of detection_collate).
        Returns:
            [R, NUM_CLASSES] logits in train and eval mode (upstream returns sigmoid probabilities; see
            `predict`). Train with `binary_cross_entropy_with_logits` against `batch["labels"]`.
        """
        if isinstance(x, (list, tuple)):
            if len(x) != 1:
                raise ValueError(f"MViTRoI has one pathway; got a list of {len(x)} inputs")
            x = x[0]
        tokens, _ = self.backbone.forward_features(x)
        return self.head(tokens, boxes)

    def predict(self, x: Tensor | Sequence[Tensor], boxes: Tensor) -> Tensor:
        """[R, NUM_CLASSES] per-class probabilities (sigmoid of `forward`), the scores AVA evaluation reads."""
        return self.head.probabilities(self(x, boxes))
