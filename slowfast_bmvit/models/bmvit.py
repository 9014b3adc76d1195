"""BMViT: a video transformer whose output tokens are themselves the detection queries.

clip [B, 3, T, H, W] -> backbone tokens [B, C, T', H', W'] -> token arrangement (box/actor tokens and class tokens,
N each, one-to-one) -> 1x1x1 projection to BMVIT.PROJ_DIM -> box, actor and class MLP heads -> N triplets per clip.
With BMVIT.CLASS_HEAD cross_attention (the supplement's ViT-B pipeline) the whole grid is projected first and each
class token attends to all of it before the class MLP.
Training matches the triplets to the ground-truth actors (matcher.py, criterion.py); inference keeps the triplets
whose p(actor) passes a threshold (postprocess.py).

The projection is applied after the arrangement: it is linear, so it commutes with slicing and time averaging and the
result equals projecting the whole grid first (the paper's order) at a fraction of the cost for the sliced arrangements.

The BMVIT keys are checked where the config is validated (config/validation.py: TOKEN_ARRANGEMENT, BOX_REFERENCE and
CLASS_HEAD among their choices, PROJ_DIM and CROSS_ATTENTION_HEADS in range); this module checks only what needs the
backbone's output width: that CROSS_ATTENTION_HEADS divides the width the class head runs at.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from slowfast_bmvit.config import ConfigError

from .build import MODEL_REGISTRY, build_backbone
from .heads import TripletHeads
from .token_selection import arrange_tokens, arranged_grid, reference_points


@MODEL_REGISTRY.register()
class BMViT(nn.Module):
    """Single-stage action localisation with bipartite matching (Ntinou et al., CVPR 2024).

    Args:
        cfg: the config; reads MODEL.NUM_CLASSES and the BMVIT group. The backbone is
            `MODEL_REGISTRY[BMVIT.BACKBONE](cfg, with_head=False)` (the MVIT or VIT keys configure it).
        backbone: an already-built backbone to use instead (must provide `forward_features(x) -> (tokens
            [B, C, T', H', W'], cls or None)`, `out_dim`, `output_grid((T, H, W))` and `no_weight_decay()`).

    Its parameters are `backbone.*` (the backbone's own names, so K400 checkpoints load with the prefix
    `backbone.`), `projection.*` (none with BMVIT.PROJ_DIM 0) and `heads.{box,actor,classes}.*`, plus
    `heads.class_attention.*` with the cross-attention class head.
    """

    # Prefix of the backbone's parameters in this model's state_dict (where a classifier checkpoint loads).
    backbone_prefix = "backbone."

    def __init__(self, cfg, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else build_backbone(cfg)
        self.arrangement = cfg.BMVIT.TOKEN_ARRANGEMENT
        self.use_box_reference = cfg.BMVIT.BOX_REFERENCE == "token_grid"
        if cfg.BMVIT.PROJ_DIM:
            self.projection = nn.Linear(self.backbone.out_dim, cfg.BMVIT.PROJ_DIM)
            head_dim = cfg.BMVIT.PROJ_DIM
        else:
            self.projection = nn.Identity()
            head_dim = self.backbone.out_dim
        heads = cfg.BMVIT.CROSS_ATTENTION_HEADS
        if cfg.BMVIT.CLASS_HEAD == "cross_attention" and head_dim % heads:
            raise ConfigError(f"BMVIT.CROSS_ATTENTION_HEADS: {heads} does not divide the head width {head_dim}")
        self.heads = TripletHeads(
            head_dim, cfg.MODEL.NUM_CLASSES, cfg.BMVIT.HEAD_LAYERS, cfg.BMVIT.CLASS_DROPOUT, cfg.BMVIT.CLASS_HEAD,
            heads,
        )

    def token_grid(self, input_thw: Sequence[int]) -> tuple[int, int, int]:
        """(S, H', W') of the N = S * H' * W' output triplets for an input clip of (T, H, W) frames x pixels.

        `pred_*[b].reshape(S, H', W', -1)` puts each triplet at its token's place (e.g. for confidence maps).
        """
        return arranged_grid(self.arrangement, tuple(self.backbone.output_grid(tuple(input_thw))))

    def no_weight_decay(self) -> set[str]:
        """The backbone's no-weight-decay parameter names, with this model's prefix."""
        return {self.backbone_prefix + name for name in self.backbone.no_weight_decay()}

    def forward(self, x: Tensor | Sequence[Tensor]) -> dict[str, Tensor]:
        """x: clip [B, 3, T, H, W] or a one-element list of it.

        Returns:
            pred_boxes:   [B, N, 4] (cx, cy, w, h) as fractions of the clip, in (0, 1), float32.
            pred_actor:   [B, N, 2] logits, index 1 = actor.
            pred_classes: [B, N, C] logits (sigmoid for BMVIT.CLASS_LOSS bce, softmax for ce).
            token_centres: [N, 2] (x, y) centre of each triplet's token cell, fractions of the clip (the matcher's
                optional centre cost reads it).
        with N = S * H' * W' tokens laid out as `token_grid((T, H, W))`.
        """
        if isinstance(x, (list, tuple)):
            if len(x) != 1:
                raise ValueError(f"BMViT has one pathway; got a list of {len(x)} inputs")
            x = x[0]
        tokens, _ = self.backbone.forward_features(x)
        context = None
        if self.heads.needs_context:
            # The class head reads every token: project the whole grid once, then arrange it.
            tokens = self.projection(tokens.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
            context = tokens.flatten(2).transpose(1, 2)
            arranged = arrange_tokens(tokens, self.arrangement)
            box_tokens, class_tokens = arranged.box_tokens, arranged.class_tokens
        else:
            arranged = arrange_tokens(tokens, self.arrangement)
            box_tokens = self.projection(arranged.box_tokens)
            shared = arranged.class_tokens is arranged.box_tokens
            class_tokens = box_tokens if shared else self.projection(arranged.class_tokens)
        centres = reference_points(arranged.grid, device=x.device)
        boxes, actor_logits, class_logits = self.heads(box_tokens, class_tokens,
                                                       centres if self.use_box_reference else None, context)
        return {"pred_boxes": boxes, "pred_actor": actor_logits, "pred_classes": class_logits,
                "token_centres": centres}
