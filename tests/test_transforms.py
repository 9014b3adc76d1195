"""Box-aware clip transforms: boxes move exactly with the pixels (datasets/transforms.py)."""

import numpy as np
import pytest
import torch

from slowfast_bmvit.config import get_cfg
from slowfast_bmvit.datasets.transforms import (
    ClipGeometry,
    DetectionTransform,
    color_jitter,
    pca_lighting,
    short_side_center_geometry,
    short_side_random_geometry,
    square_geometry,
    to_normalized_tensor,
)


def _clip_with_rectangle(height, width, x1, y1, x2, y2, num_frames=2):
    """uint8 clip [T, H, W, 3], black with a white rectangle covering pixels [y1:y2, x1:x2]."""
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[:, y1:y2, x1:x2] = 255
    return frames


def _white_extent(frame):
    """Pixel-edge box (x1, y1, x2, y2) of the pixels brighter than half."""
    ys, xs = np.nonzero(frame[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def test_square_resize_keeps_normalised_boxes_and_moves_pixels_with_them():
    frames = _clip_with_rectangle(60, 120, 30, 15, 90, 45)
    box = np.array([[30 / 120, 15 / 60, 90 / 120, 45 / 60]])
    geometry = square_geometry(60, 120, 40)
    out = geometry.apply_to_frames(frames)
    boxes, visible = geometry.apply_to_boxes(box)
    assert out.shape == (2, 40, 40, 3)
    np.testing.assert_allclose(boxes, box)
    assert visible.tolist() == [True]
    # x scale 1/3 and y scale 2/3: the rectangle lands on pixels [10, 30) x [10, 30).
    np.testing.assert_allclose(_white_extent(out[0]), boxes[0] * 40, atol=1.0)
    assert geometry.crop_box == (0.0, 0.0, 1.0, 1.0)


def test_crop_without_resize_is_pixel_exact():
    frames = _clip_with_rectangle(100, 100, 20, 30, 60, 70)
    geometry = ClipGeometry(100, 100, x0=10, y0=20, x1=90, y1=100, out_height=80, out_width=80)
    out = geometry.apply_to_frames(frames)
    boxes, visible = geometry.apply_to_boxes(np.array([[0.2, 0.3, 0.6, 0.7]]))
    np.testing.assert_allclose(boxes[0], [10 / 80, 10 / 80, 50 / 80, 50 / 80])
    np.testing.assert_array_equal(_white_extent(out[0]), boxes[0] * 80)
    np.testing.assert_allclose(geometry.crop_box, (0.1, 0.2, 0.9, 1.0))
    assert visible.all()


def test_crop_then_integer_downscale_is_exact():
    frames = _clip_with_rectangle(200, 200, 40, 60, 120, 160)
    geometry = ClipGeometry(200, 200, x0=20, y0=40, x1=180, y1=200, out_height=80, out_width=80)
    out = geometry.apply_to_frames(frames)
    boxes, _ = geometry.apply_to_boxes(np.array([[0.2, 0.3, 0.6, 0.8]]))
    np.testing.assert_allclose(boxes[0] * 80, [10, 10, 50, 60])
    np.testing.assert_array_equal(_white_extent(out[0]), [10, 10, 50, 60])


def test_horizontal_flip_mirrors_boxes_and_pixels():
    frames = _clip_with_rectangle(50, 100, 10, 5, 30, 45)
    geometry = ClipGeometry(50, 100, 0, 0, 100, 50, 50, 100, flip=True)
    out = geometry.apply_to_frames(frames)
    boxes, _ = geometry.apply_to_boxes(np.array([[0.1, 0.1, 0.3, 0.9]]))
    np.testing.assert_allclose(boxes[0], [0.7, 0.1, 0.9, 0.9])
    np.testing.assert_array_equal(out, frames[:, :, ::-1])
    np.testing.assert_array_equal(_white_extent(out[0]), [70, 5, 90, 45])


def test_boxes_are_clipped_and_cropped_away_persons_flagged():
    geometry = ClipGeometry(100, 100, x0=50, y0=0, x1=100, y1=100, out_height=64, out_width=32)
    boxes, visible = geometry.apply_to_boxes(np.array([
        [0.4, 0.1, 0.6, 0.5],    # straddles the crop's left edge: clipped
        [0.0, 0.0, 0.3, 1.0],    # entirely left of the crop: cropped away
        [0.49, 0.2, 0.505, 0.4]  # keeps 0.5 source px = 0.32 output px: too thin, cropped away
    ]))
    np.testing.assert_allclose(boxes[0], [0.0, 0.1, 0.2, 0.5])
    assert visible.tolist() == [True, False, False]
    assert ((boxes >= 0) & (boxes <= 1)).all()


def test_short_side_center_crop_region():
    geometry = short_side_center_geometry(240, 320, short_side=256, crop_size=224)
    # 224 output pixels at scale 256/240 cover 210 source pixels, centred.
    assert (geometry.x0, geometry.y0, geometry.x1, geometry.y1) == (55, 15, 265, 225)
    np.testing.assert_allclose(geometry.crop_box, (55 / 320, 15 / 240, 265 / 320, 225 / 240))
    frames = _clip_with_rectangle(240, 320, 100, 50, 200, 200)
    out = geometry.apply_to_frames(frames)
    boxes, _ = geometry.apply_to_boxes(np.array([[100 / 320, 50 / 240, 200 / 320, 200 / 240]]))
    assert out.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(_white_extent(out[0]), boxes[0] * 224, atol=1.0)


@pytest.mark.parametrize("seed", range(5))
def test_random_short_side_crop_stays_inside_and_moves_boxes_with_pixels(seed):
    rng = np.random.default_rng(seed)
    geometry = short_side_random_geometry(120, 200, (128, 160), 96, rng, flip=bool(seed % 2))
    region_side = geometry.x1 - geometry.x0
    assert geometry.y1 - geometry.y0 == region_side
    short = 96 * 120 / region_side
    assert 127 <= short <= 161  # the sampled short side, up to the rounding of the region to whole pixels
    frames = _clip_with_rectangle(120, 200, 70, 30, 130, 90)
    out = geometry.apply_to_frames(frames)
    boxes, visible = geometry.apply_to_boxes(np.array([[70 / 200, 30 / 120, 130 / 200, 90 / 120]]))
    if visible[0]:
        np.testing.assert_allclose(_white_extent(out[0]), boxes[0] * 96, atol=1.0)


def test_to_normalized_tensor_layout_and_bgr():
    frames = np.zeros((3, 2, 2, 3), np.uint8)
    frames[..., 0] = 255  # pure red
    rgb = to_normalized_tensor(frames, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    assert rgb.shape == (3, 3, 2, 2) and rgb.dtype == torch.float32
    assert torch.allclose(rgb[0], torch.ones(3, 2, 2)) and torch.allclose(rgb[1], torch.full((3, 2, 2), -2.0))
    bgr = to_normalized_tensor(frames, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5), bgr=True)
    assert torch.equal(bgr, rgb.flip(0))


def test_colour_augmentation_is_per_clip_and_pca_matches_formula():
    clip = torch.rand(4, 8, 8, 3)
    jittered = color_jitter(clip.clone(), np.random.default_rng(0))
    assert jittered.shape == clip.shape and 0.0 <= jittered.min() and jittered.max() <= 1.0
    assert not torch.allclose(jittered, clip)
    eigval, eigvec = [0.2, 0.1, 0.05], np.eye(3).tolist()
    shifted = pca_lighting(clip, np.random.default_rng(3), eigval, eigvec, alphastd=0.1)
    alpha = np.random.default_rng(3).normal(0.0, 0.1, size=3)
    expected = torch.tensor(alpha * np.array(eigval), dtype=torch.float32)
    assert torch.allclose(shifted - clip, expected.expand_as(clip), atol=1e-6)


def _cfg(**data):
    cfg = get_cfg()
    for key, value in data.items():
        setattr(cfg.DATA, key, value)
    return cfg


def test_detection_transform_from_cfg_train_and_test():
    frames = _clip_with_rectangle(90, 160, 20, 10, 60, 80, num_frames=4)
    boxes = np.array([[20 / 160, 10 / 90, 60 / 160, 80 / 90]])
    cfg = _cfg(RESIZE_MODE="square", TRAIN_CROP_SIZE=64, TEST_CROP_SIZE=48, RANDOM_FLIP=True)
    cfg.AVA.TRAIN_USE_COLOR_AUGMENTATION = True
    test = DetectionTransform.from_cfg(cfg, "val")(frames, boxes)
    assert test.inputs.shape == (3, 4, 48, 48) and not test.flipped
    np.testing.assert_allclose(test.boxes, boxes)
    flips = set()
    for seed in range(8):
        train = DetectionTransform.from_cfg(cfg, "train")(frames, boxes, np.random.default_rng(seed))
        assert train.inputs.shape == (3, 4, 64, 64)
        expected = [1 - boxes[0, 2], boxes[0, 1], 1 - boxes[0, 0], boxes[0, 3]] if train.flipped else boxes[0]
        np.testing.assert_allclose(train.boxes[0], expected)
        flips.add(train.flipped)
    assert flips == {True, False}

    cfg = _cfg(RESIZE_MODE="short_side", TRAIN_CROP_SIZE=64, TEST_CROP_SIZE=64, TRAIN_JITTER_SCALES=[72, 90])
    test = DetectionTransform.from_cfg(cfg, "test")(frames, boxes)
    x0, y0, x1, y1 = test.crop_box
    assert test.inputs.shape == (3, 4, 64, 64)
    assert y0 == 0.0 and y1 == 1.0 and x0 == pytest.approx(1 - x1, abs=1 / 160)
    with pytest.raises(ValueError, match="random generator"):
        DetectionTransform.from_cfg(cfg, "train")(frames, boxes)
