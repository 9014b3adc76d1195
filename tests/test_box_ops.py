import pytest
import torch

from slowfast_bmvit.models.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    greedy_nms,
    paired_generalized_box_iou,
)


def test_conversions_are_inverse_and_exact():
    cxcywh = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.2, 0.2]])
    xyxy = box_cxcywh_to_xyxy(cxcywh)
    assert torch.allclose(xyxy, torch.tensor([[0.4, 0.3, 0.6, 0.7], [0.0, 0.8, 0.2, 1.0]]))
    assert torch.allclose(box_xyxy_to_cxcywh(xyxy), cxcywh)
    assert box_cxcywh_to_xyxy(torch.zeros(2, 3, 4)).shape == (2, 3, 4)


def test_area_of_inverted_box_is_zero():
    assert box_area(torch.tensor([[0.0, 0.0, 0.5, 0.2], [0.5, 0.5, 0.4, 0.9]])).tolist() == pytest.approx([0.1, 0.0])


def test_iou_and_giou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [4.0, 0.0, 5.0, 1.0]])
    # overlap 1, union 7, enclosing 9; identical; disjoint: union 5, enclosing 5 x 2 = 10.
    assert box_iou(a, b)[0].tolist() == pytest.approx([1 / 7, 1.0, 0.0])
    assert generalized_box_iou(a, b)[0].tolist() == pytest.approx([1 / 7 - 2 / 9, 1.0, 0.0 - 5 / 10])


def test_paired_giou_equals_diagonal_of_pairwise():
    torch.manual_seed(0)
    a = box_cxcywh_to_xyxy(torch.rand(7, 4) * 0.5 + 0.1)
    b = box_cxcywh_to_xyxy(torch.rand(7, 4) * 0.5 + 0.1)
    assert torch.allclose(paired_generalized_box_iou(a, b), generalized_box_iou(a, b).diagonal())
    giou = generalized_box_iou(a, b)
    assert (giou <= 1).all() and (giou >= -1).all()


def test_degenerate_boxes_give_numbers_and_disjoint_boxes_give_gradients():
    point = torch.tensor([[0.3, 0.3, 0.3, 0.3]])
    assert torch.isfinite(generalized_box_iou(point, point)).all()
    pred = torch.tensor([[0.0, 0.0, 0.1, 0.1]], requires_grad=True)
    (1 - paired_generalized_box_iou(pred, torch.tensor([[0.5, 0.5, 0.6, 0.6]]))).sum().backward()
    assert pred.grad.abs().sum() > 0


def test_greedy_nms_keeps_boxes_that_only_suppressed_ones_overlap():
    # A-B and B-C overlap at IoU 1/3, A-C not at all: A suppresses B, so B cannot suppress C.
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 1.0], [2.0, 0.0, 4.0, 1.0]])
    assert greedy_nms(boxes, 0.3).tolist() == [0, 2]
    assert greedy_nms(boxes, 0.34).tolist() == [0, 1, 2]
    assert greedy_nms(boxes[:0], 0.5).tolist() == []


def test_greedy_nms_matches_a_pairwise_loop_on_random_boxes():
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(40, 2, 2, generator=generator)
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    kept = []
    for i in range(len(boxes)):
        if all(box_iou(boxes[i : i + 1], boxes[j : j + 1]).item() <= 0.4 for j in kept):
            kept.append(i)
    assert greedy_nms(boxes, 0.4).tolist() == kept
