"""Keyframe drawings: detection / ground-truth boxes and BMViT's token confidence and token-box maps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from matplotlib import colormaps

from slowfast_bmvit.visualization.boxes import (
    DETECTION_COLOR,
    GROUND_TRUTH_COLOR,
    box_pixels,
    cxcywh_to_xyxy,
    draw_detections,
    save_png,
)
from slowfast_bmvit.visualization.token_maps import (
    NEGATIVE_TOKEN_COLOR,
    POSITIVE_TOKEN_COLOR,
    confidence_map,
    token_boxes_map,
    token_figure,
)

NAMES = ["stand", "sit", "talk to", "watch"]


def black(height=200, width=300):
    return np.zeros((height, width, 3), dtype=np.uint8)


def colored(canvas, color):
    return np.all(canvas == np.array(color, dtype=np.uint8), axis=-1)


# ------------------------------------------------------------------------------------------------------- boxes


def test_box_pixels_cover_the_continuous_span_and_clip():
    assert box_pixels((0.2, 0.3, 0.6, 0.9), 200, 300) == (60, 60, 179, 179)
    assert box_pixels((-0.5, -0.1, 1.5, 2.0), 200, 300) == (0, 0, 299, 199)


def test_detection_outline_is_drawn_on_the_box_edges_only():
    image = black()
    scores = np.array([[0.9, 0.1, 0.6, 0.05]])
    out = draw_detections(image, np.array([[0.2, 0.3, 0.6, 0.9]]), scores, NAMES)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not image.any()  # the input is left untouched
    left, top, right, bottom = 60, 60, 179, 179
    for y, x in [(120, left), (120, right), (bottom, 120)]:
        assert tuple(out[y, x]) == DETECTION_COLOR
    assert not out[top + 2 : bottom - 1, left + 2 : right - 1].any()  # inside the box: untouched
    assert not out[:, right + 2 :].any()  # right of the box: untouched


def label_pixels(out, top, left, right):
    """Coloured pixels of the label patch stacked above a box whose top edge is at row `top`."""
    return colored(out[:top, left : right + 1], DETECTION_COLOR).sum()


def test_labels_list_the_top_classes_above_the_box():
    box = np.array([[0.2, 0.5, 0.6, 0.9]])  # top edge at row 100
    scores = np.array([[0.9, 0.1, 0.6, 0.05]])
    one = draw_detections(black(), box, scores, NAMES, top_k=1)
    two = draw_detections(black(), box, scores, NAMES, top_k=2)
    none = draw_detections(black(), box, scores, NAMES, top_k=2, score_thresh=0.95)
    assert label_pixels(none, 100, 60, 179) == 0
    assert 0 < label_pixels(one, 100, 60, 179) < label_pixels(two, 100, 60, 179)
    # White text is written on the patch.
    assert (one[:100] == 255).all(axis=-1).any()
    # Only the threshold removes a class: "talk to" (0.6) is kept at 0.5, dropped at 0.7.
    assert label_pixels(draw_detections(black(), box, scores, NAMES, top_k=2, score_thresh=0.5), 100, 60, 179) == \
        label_pixels(two, 100, 60, 179)
    assert label_pixels(draw_detections(black(), box, scores, NAMES, top_k=2, score_thresh=0.7), 100, 60, 179) == \
        label_pixels(one, 100, 60, 179)


def test_ground_truth_is_drawn_in_its_own_colour_with_its_classes_below():
    gt_box = np.array([[0.5, 0.1, 0.9, 0.5]])  # pixels x 150..269, y 20..99
    gt_labels = np.array([[0, 1, 0, 1]])
    out = draw_detections(black(), np.zeros((0, 4)), np.zeros((0, 4)), NAMES, gt_boxes=gt_box, gt_labels=gt_labels)
    assert tuple(out[60, 150]) == GROUND_TRUTH_COLOR and tuple(out[99, 200]) == GROUND_TRUTH_COLOR
    assert not colored(out, DETECTION_COLOR).any()
    assert colored(out[100:], GROUND_TRUTH_COLOR).sum() > 50  # the label patch under the box
    assert not out[:20].any()  # nothing above the ground-truth box


def test_box_at_the_image_border_is_clipped_and_its_label_stays_inside():
    out = draw_detections(black(), np.array([[-0.2, 0.0, 0.5, 0.4]]), np.array([[0.1, 0.8, 0.0, 0.0]]), NAMES)
    assert tuple(out[40, 0]) == DETECTION_COLOR  # left edge on column 0
    assert colored(out[:80, :150], DETECTION_COLOR).sum() > colored(out[:80, :150], DETECTION_COLOR)[:, 0].sum()


def test_inconsistent_scores_and_names_are_rejected():
    with pytest.raises(ValueError, match="class_names"):
        draw_detections(black(), np.array([[0, 0, 1, 1]]), np.array([[0.5, 0.5]]), NAMES)
    with pytest.raises(ValueError, match="uint8 RGB"):
        draw_detections(np.zeros((10, 10)), np.zeros((0, 4)), np.zeros((0, 4)), NAMES)


def test_save_png_round_trips_the_rgb_pixels(tmp_path):
    image = black(20, 30)
    image[5, 7] = (255, 0, 0)  # pure red in RGB
    path = save_png(image, tmp_path / "sub" / "frame.png")
    read_back = cv2.imread(str(path))  # BGR
    assert read_back.shape == (20, 30, 3)
    assert tuple(read_back[5, 7]) == (0, 0, 255)
    with pytest.raises(ValueError, match="PNG"):
        save_png(image, tmp_path / "frame.jpg")


def test_cxcywh_to_xyxy():
    np.testing.assert_allclose(cxcywh_to_xyxy(np.array([[0.5, 0.4, 0.2, 0.6]])), [[0.4, 0.1, 0.6, 0.7]])


# -------------------------------------------------------------------------------------------------- token maps


def jet(value):
    return tuple(int(round(c * 255)) for c in colormaps["jet"](value)[:3])


def test_confidence_map_colours_each_token_block_by_its_probability():
    grid = np.zeros((4, 4))
    grid[1, 2] = 1.0
    grid[3, 0] = 0.5
    image = np.full((64, 64, 3), 100, dtype=np.uint8)
    out = confidence_map(image, grid, alpha=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    # Token (i, j) covers rows 16i..16i+15 and columns 16j..16j+15.
    assert tuple(out[16, 32]) == tuple(out[31, 47]) == jet(1.0)
    assert tuple(out[15, 32]) == jet(0.0) and tuple(out[16, 48]) == jet(0.0)
    assert tuple(out[56, 8]) == jet(0.5)
    np.testing.assert_array_equal(confidence_map(image, grid, alpha=0.0), image)
    half = confidence_map(image, grid, alpha=0.5)
    expected = np.rint(0.5 * 100 + 0.5 * np.array(jet(1.0), dtype=float))
    np.testing.assert_allclose(half[20, 40], expected, atol=1)


def test_confidence_map_covers_frames_the_grid_does_not_divide():
    grid = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    out = confidence_map(np.zeros((50, 70, 3), np.uint8), grid, alpha=1.0)
    assert out.shape == (50, 70, 3)
    assert tuple(out[0, 0]) == jet(0.0) and tuple(out[-1, -1]) == jet(1.0)


def test_token_boxes_positive_ones_are_yellow_and_on_top():
    image = black(100, 100)
    boxes = np.array(
        [
            [[0.1, 0.1, 0.4, 0.4], [0.1, 0.1, 0.6, 0.6]],  # token (0, 1) shares its top-left corner with (0, 0)
            [[0.5, 0.5, 0.9, 0.9], [0.7, 0.2, 0.95, 0.3]],
        ]
    )
    probs = np.array([[0.9, 0.1], [0.2, 0.5]])
    out = token_boxes_map(image, boxes, probs, threshold=0.3)
    assert tuple(out[25, 10]) == POSITIVE_TOKEN_COLOR  # token (0, 0), left edge
    assert tuple(out[10, 10]) == POSITIVE_TOKEN_COLOR  # shared corner: the positive box wins
    assert tuple(out[50, 10]) == NEGATIVE_TOKEN_COLOR  # token (0, 1), left edge below the shared part
    assert tuple(out[70, 89]) == NEGATIVE_TOKEN_COLOR  # token (1, 0), right edge
    assert tuple(out[25, 70]) == POSITIVE_TOKEN_COLOR  # token (1, 1), left edge
    assert not out[80:, :40].any()
    # The threshold is strict: p = 0.5 is not above 0.5.
    assert tuple(token_boxes_map(image, boxes, probs, threshold=0.5)[25, 70]) == NEGATIVE_TOKEN_COLOR
    # Flat [h * w, 4] boxes in row-major order give the same drawing.
    np.testing.assert_array_equal(token_boxes_map(image, boxes.reshape(4, 4), probs, 0.3), out)


def test_token_figure_stacks_the_two_panels():
    image = np.full((48, 64, 3), 30, dtype=np.uint8)
    probs = np.array([[0.1, 0.8], [0.4, 0.2]])
    boxes = np.tile(np.array([0.2, 0.2, 0.7, 0.8]), (4, 1))
    out = token_figure(image, boxes, probs, threshold=0.3)
    assert out.shape == (96, 64, 3)
    np.testing.assert_array_equal(out[:48], confidence_map(image, probs))
    np.testing.assert_array_equal(out[48:], token_boxes_map(image, boxes, probs, 0.3))


def test_token_maps_reject_logits_and_mismatched_boxes():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        confidence_map(black(), np.array([[2.0, -1.0]]))
    with pytest.raises(ValueError, match="3 token boxes"):
        token_boxes_map(black(), np.zeros((3, 4)), np.zeros((2, 2)), 0.3)
