"""The three per-token heads of BMViT: box, actor and class MLPs.

Each arranged token gives one triplet <box, actor logits, class logits>. The box head predicts (cx, cy, w, h) in
[0, 1] of the clip; with reference points (one per token, the centre of its grid cell) the centre is predicted
relative to the reference in logit space, as in Deformable DETR: cx = sigmoid(raw_cx + logit(ref_x)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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


class TripletHeads(nn.Module):
    """Box, actor and class MLPs (hidden size = input size), applied token by token.

    The box head's last layer starts at zero (as in Deformable DETR), so every token first predicts its reference
    centre (or the clip centre without references) with w = h = 0.5; the actor and class heads use PyTorch's
    default initialisation.
    """

    def __init__(self, dim: int, num_classes: int, num_layers: int, class_dropout: float = 0.0):
        super().__init__()
        self.box = MLP(dim, dim, 4, num_layers)
        self.actor = MLP(dim, dim, 2, num_layers)
        self.classes = MLP(dim, dim, num_classes, num_layers, dropout=class_dropout)
        nn.init.zeros_(self.box.layers[-1].weight)
        nn.init.zeros_(self.box.layers[-1].bias)

    def forward(
        self, box_tokens: Tensor, class_tokens: Tensor, references: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """box_tokens, class_tokens: [B, N, dim]; references: [N, 2] or None.

        Returns boxes [B, N, 4] (cx, cy, w, h) in (0, 1), actor logits [B, N, 2] (index 1 = actor) and class
        logits [B, N, num_classes].
        """
        boxes = decode_boxes(self.box(box_tokens), references)
        return boxes, self.actor(box_tokens), self.classes(class_tokens)
