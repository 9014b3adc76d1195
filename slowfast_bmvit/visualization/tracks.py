"""Actor tracks drawn on video frames: each track id keeps one colour, its box and its top actions.

Conventions as in boxes.py: uint8 RGB images [H, W, 3], boxes (x1, y1, x2, y2) as fractions of the image.
Colours come from a fixed palette of saturated colours far apart in RGB (they stay tellable apart after H.264's
4:2:0 chroma subsampling); track id k gets `TRACK_PALETTE[k % len(TRACK_PALETTE)]`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .boxes import box_pixels, check_image, draw_box, draw_label

__all__ = ["TRACK_PALETTE", "track_color", "track_line_thickness", "draw_tracks"]

TRACK_PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40),  # red
    (40, 110, 255),  # blue
    (0, 220, 0),  # green
    (255, 0, 255),  # magenta
    (255, 170, 0),  # orange
    (0, 230, 230),  # cyan
    (150, 60, 255),  # violet
)


def track_color(track_id: int) -> tuple[int, int, int]:
    """The RGB colour of a track id."""
    return TRACK_PALETTE[int(track_id) % len(TRACK_PALETTE)]


def track_line_thickness(height: int, width: int) -> int:
    """Box outline width in pixels for a video frame: 2 up to 400-pixel frames, growing with the short side (thin
    lines lose their colour to chroma subsampling)."""
    return max(2, round(min(height, width) / 200))


def draw_tracks(image: np.ndarray, boxes: np.ndarray, track_ids: Sequence[int],
                labels: Sequence[Sequence[str]]) -> np.ndarray:
    """A copy of `image` with every box outlined in its track's colour and labelled "#id" plus its action lines.

    Args:
        image: uint8 RGB frame [H, W, 3].
        boxes: [N, 4] normalised (x1, y1, x2, y2).
        track_ids: N track ids.
        labels: N lists of text lines (e.g. "walk 0.83"), drawn above the box after the "#id" line.
    """
    check_image(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes) == len(track_ids) == len(labels):
        raise ValueError(f"{len(boxes)} boxes, {len(track_ids)} track ids and {len(labels)} label lists")
    canvas = image.copy()
    height, width = canvas.shape[:2]
    thickness = track_line_thickness(height, width)
    for box, track_id in zip(boxes, track_ids):
        draw_box(canvas, box, track_color(track_id), thickness)
    # Labels after all outlines, so that no outline crosses a label.
    for box, track_id, lines in zip(boxes, track_ids, labels):
        left, top, _, _ = box_pixels(box, height, width)
        draw_label(canvas, [f"#{track_id}", *lines], (left, top - thickness // 2), track_color(track_id))
    return canvas
