"""Two-stage detection head: classify given person boxes by RoIAlign on the backbone's token grid.

This is PySlowFast's `ResNetRoIHead` as its MViT detection model uses it (one pathway): tokens [B, C, T', H', W']
-> mean over time -> RoIAlign (sampling_ratio 0) -> max over the RoIAlign bins -> dropout -> Linear(C, classes).
One deliberate difference: upstream's head applies its activation (sigmoid for AVA) in `forward`, in train and eval
mode alike, and trains with BCELoss on probabilities; this head's `forward` always returns logits, so training can
use the numerically stable `binary_cross_entropy_with_logits` (the same loss), and `probabilities` gives the
sigmoid scores that evaluation reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .roi_align import roi_align


class RoIHead(nn.Module):
    """Per-box multi-label classifier over a spatio-temporal feature map.

    Args:
        dim_in: C, channels of the token grid.
        num_classes: number of (independent, multi-label) classes.
        resolution: RoIAlign output size (DETECTION.ROI_XFORM_RESOLUTION); the max-pool then covers all of it.
        spatial_scale: feature cells per input pixel, 1 / the backbone's output stride (1/32 for MViTv2-S).
        aligned: RoIAlign's pixel-centre shift (DETECTION.ALIGNED).
        dropout_rate: dropout before the projection (MODEL.DROPOUT_RATE); 0 disables it.
    """

    def __init__(
        self,
        dim_in: int,
        num_classes: int,
        resolution: int = 7,
        spatial_scale: float = 1.0 / 32,
        aligned: bool = True,
        dropout_rate: float = 0.0,
    ):
        super().__init__()
        self.resolution = resolution
        self.spatial_scale = spatial_scale
        self.aligned = aligned
        self.dropout = nn.Dropout(dropout_rate) if dropout_rate > 0.0 else nn.Identity()
        self.projection = nn.Linear(dim_in, num_classes)

    def forward(self, tokens: Tensor, boxes: Tensor) -> Tensor:
        """Classify boxes.

        Args:
            tokens: [B, C, T', H', W'] backbone features.
            boxes: [R, 5] rows (batch index, x1, y1, x2, y2), corners in input pixels.
        Returns:
            [R, num_classes] logits, in train and eval mode.
        """
        if tokens.dim() != 5:
            raise ValueError(f"RoIHead expects tokens [B, C, T, H, W], got shape {tuple(tokens.shape)}")
        frame_features = tokens.mean(dim=2)  # [B, C, H', W']
        pooled = roi_align(
            frame_features, boxes, self.resolution, self.spatial_scale, sampling_ratio=0, aligned=self.aligned
        )  # [R, C, res, res]
        # Upstream's MaxPool2d(kernel=resolution, stride=1) on a resolution x resolution map is this global max.
        per_box = pooled.amax(dim=(-2, -1))  # [R, C]
        return self.projection(self.dropout(per_box))

    @staticmethod
    def probabilities(logits: Tensor) -> Tensor:
        """[R, num_classes] logits -> independent per-class probabilities (sigmoid), what AVA evaluation reads."""
        return torch.sigmoid(logits)
