import pytest
import torch

from slowfast_bmvit.models.token_selection import ARRANGEMENTS, arrange_tokens, arranged_grid, reference_points

AVA_GRID = (8, 16, 16)  # MViTv2-S without the last q pooling, 16x256x256 input
EXPECTED_N = {"all": 2048, "center": 256, "center_tpool": 256, "all_tpool": 256, "two_halves": 512}


def _grid_tensor(time=8, height=4, width=5, channels=3, batch=2):
    torch.manual_seed(0)
    return torch.randn(batch, channels, time, height, width)


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_token_counts_at_the_ava_grid(arrangement):
    slots, height, width = arranged_grid(arrangement, AVA_GRID)
    assert slots * height * width == EXPECTED_N[arrangement]
    arranged = arrange_tokens(torch.zeros(1, 4, *AVA_GRID), arrangement)
    assert arranged.box_tokens.shape == arranged.class_tokens.shape == (1, EXPECTED_N[arrangement], 4)
    assert arranged.grid == (slots, height, width)


def test_all_keeps_every_token_in_row_major_order():
    tokens = _grid_tensor()
    arranged = arrange_tokens(tokens, "all")
    t, i, j = 5, 2, 3
    assert torch.equal(arranged.box_tokens[:, (t * 4 + i) * 5 + j], tokens[:, :, t, i, j])
    assert arranged.class_tokens is arranged.box_tokens


def test_center_and_center_tpool():
    tokens = _grid_tensor()
    center = arrange_tokens(tokens, "center")
    assert torch.equal(center.box_tokens.reshape(2, 4, 5, 3), tokens[:, :, 4].permute(0, 2, 3, 1))
    assert center.class_tokens is center.box_tokens
    tpool = arrange_tokens(tokens, "center_tpool")
    assert torch.equal(tpool.box_tokens, center.box_tokens)
    assert torch.allclose(tpool.class_tokens.reshape(2, 4, 5, 3), tokens.mean(2).permute(0, 2, 3, 1))
    pooled = arrange_tokens(tokens, "all_tpool")
    assert torch.equal(pooled.box_tokens, tpool.class_tokens) and pooled.class_tokens is pooled.box_tokens


@pytest.mark.parametrize("time,box_slices,split", [(8, (3, 4), 4), (5, (1, 2), 2), (2, (0, 1), 1)])
def test_two_halves_pairs_each_central_slice_with_its_half(time, box_slices, split):
    tokens = _grid_tensor(time=time)
    arranged = arrange_tokens(tokens, "two_halves")
    per_cell = 4 * 5
    for slot, (box_slice, half) in enumerate(zip(box_slices, (slice(0, split), slice(split, time)))):
        rows = slice(slot * per_cell, (slot + 1) * per_cell)
        expected_box = tokens[:, :, box_slice].permute(0, 2, 3, 1)
        assert torch.equal(arranged.box_tokens[:, rows].reshape(2, 4, 5, 3), expected_box)
        expected_class = tokens[:, :, half].mean(2).permute(0, 2, 3, 1)
        assert torch.allclose(arranged.class_tokens[:, rows].reshape(2, 4, 5, 3), expected_class)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="two_halves needs >= 2"):
        arrange_tokens(torch.zeros(1, 2, 1, 3, 3), "two_halves")
    with pytest.raises(ValueError, match="unknown arrangement 'corners'"):
        arrange_tokens(torch.zeros(1, 2, 4, 3, 3), "corners")
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        arrange_tokens(torch.zeros(2, 3, 4), "all")


def test_an_arrangement_without_a_rule_is_an_error_naming_it(monkeypatch):
    """A name added to ARRANGEMENTS before its rule exists does not borrow another arrangement's rule."""
    from slowfast_bmvit.models import token_selection

    monkeypatch.setattr(token_selection, "ARRANGEMENTS", (*ARRANGEMENTS, "my_new"))
    message = r"^BMVIT.TOKEN_ARRANGEMENT: arrangement 'my_new' is in ARRANGEMENTS but has no rule"
    with pytest.raises(ValueError, match=message):
        arranged_grid("my_new", AVA_GRID)
    with pytest.raises(ValueError, match=message):
        arrange_tokens(_grid_tensor(), "my_new")


def test_reference_points_are_cell_centres_repeated_per_slot():
    points = reference_points((2, 2, 4))
    assert points.shape == (16, 2)
    # cell (i=1, j=2) of a 2x4 grid: x = 2.5 / 4, y = 1.5 / 2
    assert points[1 * 4 + 2].tolist() == pytest.approx([0.625, 0.75])
    assert torch.equal(points[:8], points[8:])
