"""The three per-token heads of BMViT: box, actor and class MLPs, and the cross-attention class head.

Each arranged token gives one triplet <box, actor logits, class logits>. The box head predicts (cx, cy, w, h) in
[0, 1] of the clip; with reference points (one per token, the centre of its grid cell) the centre is predicted
relative to the reference in logit space, as in Deformable DETR: cx = sigmoid(raw_cx + logit(ref_x)).
The class logits become probabilities by the activation that matches the class loss (`class_activation`): sigmoid
for the multi-label binary cross-entropy, softmax for the single-label cross-entropy; the matcher, the
post-processing, flip averaging and the exported graph all read them through `class_probabilities`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLASS_HEADS = ("mlp", "cross_attention")
CLASS_ACTIVATIONS = ("sigmoid", "softmax")


def class_activation(cfg) -> str:
    """How the class logits become probabilities: "sigmoid" for BMVIT.CLASS_LOSS bce (multi-label), "softmax" for
    ce (single-label)."""
    return "sigmoid" if cfg.BMVIT.CLASS_LOSS == "bce" else "softmax"


def check_class_activation(activation: str) -> str:
    """`activation` itself when it is one of CLASS_ACTIVATIONS; a ValueError naming it otherwise."""
    if activation not in CLASS_ACTIVATIONS:
        raise ValueError(f"class_activation must be sigmoid or softmax, got {activation!r}")
    return activation


def class_probabilities(logits: Tensor, activation: str) -> Tensor:
    """Class probabilities [..., C] of class logits [..., C]: independent sigmoids or a softmax over C."""
    if check_class_activation(activation) == "sigmoid":
        return logits.sigmoid()
    return logits.softmax(-1)


class MLP(nn.Module):
    """`num_layers` Linear layers with ReLU between them: in_dim -> hidden_dim x (num_layers - 1) -> out_dim.

    `dropout` is applied to the input of the last layer.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"an MLP needs at least one layer, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](self.dropout(x))


def decode_boxes(raw: Tensor, references: Tensor | None) -> Tensor:
    """Raw box outputs [..., N, 4] -> (cx, cy, w, h) in (0, 1).

    references: [N, 2] (x, y) cell centres in (0, 1), or None for absolute boxes (plain sigmoid).
    Computed in float32 (also under autocast): the logit offsets and the box losses need the precision.
    """
    raw = raw.float()
    if references is None:
        return raw.sigmoid()
    offset = torch.logit(references.float())
    centre = (raw[..., :2] + offset).sigmoid()
    return torch.cat([centre, raw[..., 2:].sigmoid()], dim=-1)


class CrossAttentionBlock(nn.Module):
    """Queries [B, N, D] attend to a context [B, M, D], then a 4x-wide MLP; both pre-norm with residuals:

        x = q + proj(MHA(norm_q(q), norm_kv(context)));  x = x + fc2(GELU(fc1(norm_mlp(x))))

    The supplement's Fig. 1b lists the ViT-B class head as MHCA(768), MLP(3072), MLP(768): this block is the first
    two (its norms and residuals, as in a transformer decoder layer, are this package's reading); the class MLP
    follows in `TripletHeads`. Attention through scaled_dot_product_attention; `num_heads` must divide D.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross-attention heads {num_heads} do not divide the width {dim}")
        self.num_heads = num_heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        # The MLP's layers are direct children rather than a common.Mlp: its checkpoint keys are
        # heads.class_attention.fc1.* / fc2.*, which an Mlp submodule would move one level down.
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, queries: Tensor, context: Tensor) -> Tensor:
        batch, num_queries, dim = queries.shape
        head_dim = dim // self.num_heads
        q = self.q(self.norm_q(queries)).reshape(batch, num_queries, self.num_heads, head_dim).transpose(1, 2)
        k, v = self.kv(self.norm_kv(context)).reshape(batch, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, num_queries, dim)
        x = queries + self.proj(attended)
        return x + self.fc2(F.gelu(self.fc1(self.norm_mlp(x))))


class TripletHeads(nn.Module):
    """Box, actor and class MLPs (hidden size = input size), applied token by token.

    The box head's last layer starts at zero (as in Deformable DETR), so every token first predicts its reference
    centre (or the clip centre without references) with w = h = 0.5; the actor and class heads use PyTorch's
    default initialisation. With `class_head="cross_attention"` a `CrossAttentionBlock` (`class_attention`) runs
    before the class MLP: each class token attends to the whole token grid passed as `context`.
    """

    def __init__(self, dim: int, num_classes: int, num_layers: int, class_dropout: float = 0.0,
                 class_head: str = "mlp", cross_attention_heads: int = 1):
        super().__init__()
        if class_head not in CLASS_HEADS:
            raise ValueError(f"class head {class_head!r} is not one of {', '.join(CLASS_HEADS)}")
        self.box = MLP(dim, dim, 4, num_layers)
        self.actor = MLP(dim, dim, 2, num_layers)
        self.class_attention: CrossAttentionBlock | None = None
        if class_head == "cross_attention":
            self.class_attention = CrossAttentionBlock(dim, cross_attention_heads)
        self.classes = MLP(dim, dim, num_classes, num_layers, dropout=class_dropout)
        nn.init.zeros_(self.box.layers[-1].weight)
        nn.init.zeros_(self.box.layers[-1].bias)

    @property
    def needs_context(self) -> bool:
        """True when `forward` needs the whole token grid (`context`) for the class head."""
        return self.class_attention is not None

    def forward(
        self, box_tokens: Tensor, class_tokens: Tensor, references: Tensor | None, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """box_tokens, class_tokens: [B, N, dim]; references: [N, 2] or None; context: [B, M, dim], every token
        of the grid (the cross-attention class head's keys and values; ignored by the MLP class head).

        Returns boxes [B, N, 4] (cx, cy, w, h) in (0, 1), actor logits [B, N, 2] (index 1 = actor) and class
        logits [B, N, num_classes].
        """
        boxes = decode_boxes(self.box(box_tokens), references)
        if self.needs_context:
            if context is None:
                raise ValueError("the cross_attention class head needs the token grid as `context`")
            class_tokens = self.class_attention(class_tokens, context)
        return boxes, self.actor(box_tokens), self.classes(class_tokens)
