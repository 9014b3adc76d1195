"""What each output token of BMViT says about the keyframe (the supplement's Fig. 3, left).

- `confidence_map`: p(actor) of every token of one slice of the token grid (e.g. the 16 x 16 tokens of a central
  frame), each token a block of the keyframe coloured by its confidence.
- `token_boxes_map`: the box every token predicts, yellow for the positive tokens (p(actor) > threshold, the boxes
  that become detections) drawn over thin grey ones for the rest.
- `token_figure`: the two, one above the other, as in the figure.
Inputs are plain arrays (numpy, or CPU tensors): the keyframe as uint8 RGB [H, W, 3], the per-token p(actor) as
[h, w], boxes as normalised (x1, y1, x2, y2) [h, w, 4] or [h * w, 4] in row-major token order. From BMViT's
outputs for clip b: `p = pred_actor[b].softmax(-1)[:, 1].reshape(model.token_grid((T, H, W)))[s]` for slice s, and
`cxcywh_to_xyxy(pred_boxes[b])` reshaped likewise (boxes.py).
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from .boxes import check_image, draw_box, line_thickness

__all__ = ["POSITIVE_TOKEN_COLOR", "NEGATIVE_TOKEN_COLOR", "confidence_map", "token_boxes_map", "token_figure"]

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
