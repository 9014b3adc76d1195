"""TEST.FLIP_AVERAGE: the mirrored clip's triplets (or boxes) land in the right place and are averaged as
probabilities."""

import pytest
import torch
from torch import nn

from slowfast_bmvit.models.flip_average import flip_averaged_box_probabilities, flip_averaged_outputs, mirror_triplets

GRID = (2, 2, 3)  # S, H', W'


class CellModel(nn.Module):
    """A flip-equivariant stand-in for BMViT: each token reads the mean of its own cell of the clip.

    Token (s, h, w) of a GRID covers temporal half s and spatial cell (h, w); its box is its cell with a size
    set by the cell's content, its actor and class logits are functions of that content. Mirroring the clip
    therefore mirrors the triplets exactly.
    """

    def token_grid(self, thw):
        return GRID

    def forward(self, clips):
        cells = nn.functional.adaptive_avg_pool3d(clips.mean(1, keepdim=True), GRID).flatten(1)  # [B, N]
        slots, height, width = GRID
        xs = ((torch.arange(width) + 0.5) / width).repeat(slots * height)
        ys = ((torch.arange(height) + 0.5) / height).repeat_interleave(width).repeat(slots)
        size = 0.1 + 0.05 * torch.sigmoid(cells)
        boxes = torch.stack([xs.expand_as(cells), ys.expand_as(cells), size, 2 * size], dim=-1)
        actor = torch.stack([torch.zeros_like(cells), cells], dim=-1)
        classes = torch.stack([cells, -2 * cells, cells ** 2], dim=-1)
        return {"pred_boxes": boxes, "pred_actor": actor, "pred_classes": classes}


class PositionModel(CellModel):
    """Not flip-equivariant: the actor logit is the token's column index, whatever the clip shows."""

    def forward(self, clips):
        outputs = super().forward(clips)
        columns = torch.arange(GRID[2], dtype=torch.float32).repeat(GRID[0] * GRID[1])
        outputs["pred_actor"] = torch.stack([torch.zeros_like(columns), columns], -1).expand(len(clips), -1, -1)
        return outputs


def _clips():
    return torch.randn(2, 3, 4, 8, 12, generator=torch.Generator().manual_seed(0))


def test_mirror_maps_columns_and_box_centres_and_is_an_involution():
    outputs = CellModel()(_clips())
    mirrored = mirror_triplets(outputs, GRID)
    index = lambda s, h, w: (s * GRID[1] + h) * GRID[2] + w  # noqa: E731
    for s, h, w in [(0, 0, 0), (1, 1, 2), (0, 1, 1)]:
        source = index(s, h, GRID[2] - 1 - w)
        assert torch.equal(mirrored["pred_actor"][:, index(s, h, w)], outputs["pred_actor"][:, source])
        assert torch.allclose(mirrored["pred_boxes"][:, index(s, h, w), 0], 1 - outputs["pred_boxes"][:, source, 0])
        assert torch.equal(mirrored["pred_boxes"][:, index(s, h, w), 1:], outputs["pred_boxes"][:, source, 1:])
    twice = mirror_triplets(mirrored, GRID)
    for key in ("pred_boxes", "pred_actor", "pred_classes"):
        assert torch.allclose(twice[key], outputs[key])
    with pytest.raises(ValueError, match="2x2x4 token grid"):
        mirror_triplets(outputs, (2, 2, 4))


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_an_equivariant_model_is_left_unchanged(activation):
    model, clips = CellModel(), _clips()
    direct = model(clips)
    averaged = flip_averaged_outputs(model, clips, activation)
    assert torch.allclose(averaged["pred_boxes"], direct["pred_boxes"], atol=1e-6)
    assert torch.allclose(averaged["pred_actor"].softmax(-1), direct["pred_actor"].softmax(-1), atol=1e-6)
    to_probability = torch.sigmoid if activation == "sigmoid" else (lambda logits: logits.softmax(-1))
    assert torch.allclose(to_probability(averaged["pred_classes"]), to_probability(direct["pred_classes"]),
                          atol=1e-5)


def test_probabilities_of_the_two_views_are_averaged():
    averaged = flip_averaged_outputs(PositionModel(), _clips())
    actor = averaged["pred_actor"].softmax(-1)[0, :GRID[2], 1]  # the first row of tokens, columns 0..2
    expected = (torch.sigmoid(torch.tensor([0.0, 1.0, 2.0])) + torch.sigmoid(torch.tensor([2.0, 1.0, 0.0]))) / 2
    assert torch.allclose(actor, expected, atol=1e-6)


class BoxMeanModel(nn.Module):
    """A flip-equivariant stand-in for an RoI model: each box's logits are the mean of the clip inside it."""

    def forward(self, clips, boxes):
        rows = []
        for index, x1, y1, x2, y2 in boxes.round().long().tolist():
            mean = clips[index, :, :, y1:y2, x1:x2].mean()
            rows.append(torch.stack([mean, -mean, 0.0 * mean]))
        return torch.stack(rows)


class BoxCornerModel(nn.Module):
    """Not flip-equivariant: a box's logit is its left edge in pixels, whatever the clip shows."""

    def forward(self, clips, boxes):
        return boxes[:, 1:2]


def test_roi_boxes_are_mirrored_with_the_clip():
    clips = _clips()  # width 12
    boxes = torch.tensor([[0, 1.0, 2.0, 5.0, 8.0], [1, 6.0, 0.0, 12.0, 4.0], [0, 0.0, 0.0, 12.0, 8.0]])
    direct = BoxMeanModel()(clips, boxes).sigmoid()
    averaged = flip_averaged_box_probabilities(BoxMeanModel(), clips, boxes)
    assert torch.allclose(averaged, direct, atol=1e-6)
    corners = flip_averaged_box_probabilities(BoxCornerModel(), clips, boxes)[:, 0]
    # left edges 1, 6, 0 -> mirrored left edges 12 - 5, 12 - 12, 12 - 12
    expected = (torch.sigmoid(torch.tensor([1.0, 6.0, 0.0])) + torch.sigmoid(torch.tensor([7.0, 0.0, 0.0]))) / 2
    assert torch.allclose(corners, expected)
    assert torch.equal(boxes[:, 1], torch.tensor([1.0, 6.0, 0.0]))  # the caller's boxes are left as they were
