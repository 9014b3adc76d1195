"""What each output token of BMViT says about the keyframe (the supplement's Fig. 3, left).

- `confidence_map`: p(actor) of every token of one slice of the token grid (e.g. the 16 x 16 tokens of a central
  frame), each token a block of the keyframe coloured by its confidence.
- `token_boxes_map`: the box every token predicts, yellow for the positive tokens (p(actor) > threshold, the boxes
  that become detections) drawn over thin grey ones for the rest.
- `token_figure`: the two, one above the other, as in the figure.
- `attention_rows`: for each positive token, its attention over the key grid (Fig. 3, right): one row per token, one
  tile per key time slice (the clip frame at that slice's centre, tinted by the token's attention, its box in
  yellow), each row scaled to its own maximum.
- `token_attention_figure`: `token_figure` beside `attention_rows`.
Inputs are plain arrays (numpy, or CPU tensors): the keyframe as uint8 RGB [H, W, 3], the per-token p(actor) as
[h, w], boxes as normalised (x1, y1, x2, y2) [h, w, 4] or [h * w, 4] in row-major token order. From BMViT's
outputs for clip b: `p = pred_actor[b].softmax(-1)[:, 1].reshape(model.token_grid((T, H, W)))[s]` for slice s, and
`cxcywh_to_xyxy(pred_boxes[b])` reshaped likewise (boxes.py).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from matplotlib import colormaps

from .boxes import check_image, draw_box, draw_label, line_thickness

__all__ = ["POSITIVE_TOKEN_COLOR", "NEGATIVE_TOKEN_COLOR", "confidence_map", "token_boxes_map", "token_figure",
           "attention_rows", "token_attention_figure"]

POSITIVE_TOKEN_COLOR = (255, 255, 0)  # yellow, as in the paper
NEGATIVE_TOKEN_COLOR = (150, 150, 150)  # grey


def _actor_grid(actor_prob: np.ndarray) -> np.ndarray:
    grid = np.asarray(actor_prob, dtype=np.float64)
    if grid.ndim != 2:
        raise ValueError(f"actor_prob must be one [h, w] slice of the token grid, got shape {grid.shape}")
    if grid.size and (grid.min() < 0.0 or grid.max() > 1.0):
        raise ValueError("actor_prob must hold probabilities in [0, 1] (apply the softmax to pred_actor first)")
    return grid


def _token_cells(height: int, width: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Token row of every image row [H] and token column of every image column [W]: token (i, j) covers the image
    span [i * H / rows, (i + 1) * H / rows) x [j * W / cols, (j + 1) * W / cols)."""
    return (np.arange(height) * rows) // height, (np.arange(width) * cols) // width


def confidence_map(image: np.ndarray, actor_prob: np.ndarray, colormap: str = "jet", alpha: float = 0.6) -> np.ndarray:
    """Keyframe with each token's block tinted by its p(actor).

    Args:
        image: uint8 RGB keyframe [H, W, 3].
        actor_prob: [h, w] p(actor) of one slice of tokens, in [0, 1].
        colormap: a matplotlib colormap name; 0 maps to its low end, 1 to its high end.
        alpha: weight of the colour over the image (1: colour only).
    Returns:
        A new uint8 RGB image [H, W, 3].
    """
    check_image(image)
    grid = _actor_grid(actor_prob)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    token_rows, token_cols = _token_cells(image.shape[0], image.shape[1], *grid.shape)
    per_pixel = grid[token_rows[:, None], token_cols[None, :]]  # [H, W], nearest: tokens stay blocks
    colours = colormaps[colormap](per_pixel)[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def token_boxes_map(
    image: np.ndarray, token_boxes: np.ndarray, actor_prob: np.ndarray, threshold: float
) -> np.ndarray:
    """Keyframe with the box of every token: yellow where p(actor) > threshold, thin grey elsewhere.

    Args:
        image: uint8 RGB keyframe [H, W, 3].
        token_boxes: [h, w, 4] or [h * w, 4] normalised (x1, y1, x2, y2), one per token, row-major.
        actor_prob: [h, w] p(actor) of the same tokens.
        threshold: BMVIT.ACTOR_THRESH; tokens strictly above it are positive.
    Returns:
        A new uint8 RGB image [H, W, 3]; positive boxes are drawn last, on top.
    """
    check_image(image)
    grid = _actor_grid(actor_prob)
    boxes = np.asarray(token_boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != grid.size:
        raise ValueError(f"{len(boxes)} token boxes for a {grid.shape[0]} x {grid.shape[1]} grid of tokens")
    positive = grid.reshape(-1) > threshold
    canvas = image.copy()
    for box in boxes[~positive]:
        draw_box(canvas, box, NEGATIVE_TOKEN_COLOR, 1)
    thickness = line_thickness(canvas) + 1
    for box in boxes[positive]:
        draw_box(canvas, box, POSITIVE_TOKEN_COLOR, thickness)
    return canvas


def token_figure(
    image: np.ndarray, token_boxes: np.ndarray, actor_prob: np.ndarray, threshold: float, colormap: str = "jet"
) -> np.ndarray:
    """`confidence_map` above `token_boxes_map`: a uint8 RGB image [2H, W, 3]."""
    return np.concatenate(
        [confidence_map(image, actor_prob, colormap), token_boxes_map(image, token_boxes, actor_prob, threshold)],
        axis=0,
    )


_SEPARATOR = 4  # white pixels between tiles, rows and panels


def _pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` on a white canvas of height x width (top-left aligned)."""
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image
    return canvas


def attention_rows(frames: Sequence[np.ndarray], maps: np.ndarray, token_boxes: np.ndarray, titles: Sequence[str],
                   tile_height: int, colormap: str = "jet") -> np.ndarray:
    """One row per token of its attention over the key grid.

    Args:
        frames: kt uint8 RGB frames [H, W, 3], the clip frame of each key time slice.
        maps: [P, kt, kh, kw] attention weights (any non-negative scale; each row is divided by its maximum).
        token_boxes: [P, 4] each token's box, normalised (x1, y1, x2, y2), drawn in yellow on its row.
        titles: P labels written on each row's first tile.
        tile_height: tile height in pixels (the width keeps the frames' aspect ratio).
    Returns:
        uint8 RGB image [P * (tile_height + 4) - 4, kt * (tile_width + 4) - 4, 3] (white between tiles).
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4 or maps.shape[1] != len(frames):
        raise ValueError(f"maps must be [P, {len(frames)}, kh, kw] for {len(frames)} frames, got {maps.shape}")
    if not len(maps) == len(token_boxes) == len(titles):
        raise ValueError(f"{len(maps)} maps, {len(token_boxes)} boxes and {len(titles)} titles")
    for frame in frames:
        check_image(frame)
    tile_width = max(1, round(tile_height * frames[0].shape[1] / frames[0].shape[0]))
    tiles = [cv2.resize(frame, (tile_width, tile_height), interpolation=cv2.INTER_AREA) for frame in frames]
    rows = []
    for token_maps, box, title in zip(maps, token_boxes, titles):
        scale = token_maps.max() or 1.0
        row = []
        for tile, weights in zip(tiles, token_maps):
            shown = confidence_map(tile, weights / scale, colormap)
            draw_box(shown, box, POSITIVE_TOKEN_COLOR, line_thickness(shown))
            row.append(_pad(shown, tile_height, tile_width + _SEPARATOR))
        line = np.concatenate(row, axis=1)[:, :-_SEPARATOR]
        draw_label(line, [title], (0, 0), (0, 0, 0), below=True)
        rows.append(_pad(line, tile_height + _SEPARATOR, line.shape[1]))
    if not rows:
        return np.full((tile_height, tile_width, 3), 255, dtype=np.uint8)
    return np.concatenate(rows, axis=0)[:-_SEPARATOR]


def token_attention_figure(keyframe: np.ndarray, token_boxes: np.ndarray, actor_prob: np.ndarray, threshold: float,
                           frames: Sequence[np.ndarray], maps: np.ndarray, positive_boxes: np.ndarray,
                           titles: Sequence[str], colormap: str = "jet") -> np.ndarray:
    """The supplement's Fig. 3 for one clip: `token_figure` on the left, `attention_rows` on the right (tiles of
    half the keyframe's height). Returns a uint8 RGB image on a white background."""
    left = token_figure(keyframe, token_boxes, actor_prob, threshold, colormap)
    right = attention_rows(frames, maps, positive_boxes, titles, max(16, keyframe.shape[0] // 2), colormap)
    height = max(left.shape[0], right.shape[0])
    return np.concatenate([_pad(left, height, left.shape[1] + _SEPARATOR), _pad(right, height, right.shape[1])],
                          axis=1)
