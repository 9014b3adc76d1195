"""Detections and ground truth drawn on a keyframe.

Conventions: images are uint8 RGB arrays [H, W, 3] (convert cv2's BGR frames first); boxes are float arrays [N, 4]
of corners (x1, y1, x2, y2) as fractions of the image, AVA's convention (`ori_boxes`, the box CSVs). Drawing
functions return a new image of the same size and leave their input untouched; `save_png` writes one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from slowfast_bmvit.evaluation.iou import cxcywh_to_xyxy

__all__ = [
    "DETECTION_COLOR",
    "GROUND_TRUTH_COLOR",
    "TEXT_COLOR",
    "check_image",
    "cxcywh_to_xyxy",
    "box_pixels",
    "draw_box",
    "draw_label",
    "line_thickness",
    "draw_detections",
    "save_png",
]

DETECTION_COLOR = (0, 230, 64)  # green
GROUND_TRUTH_COLOR = (255, 48, 48)  # red
TEXT_COLOR = (255, 255, 255)  # white, on a patch of the box's colour

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def check_image(image: np.ndarray) -> None:
    """Raise ValueError unless `image` is a uint8 RGB array [H, W, 3]."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got dtype {image.dtype} shape {image.shape}")


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def line_thickness(image: np.ndarray) -> int:
    """Box line width in pixels: 1 up to 300-pixel frames, growing with the short side."""
    return max(1, round(min(image.shape[:2]) / 300))


def box_pixels(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """Normalised (x1, y1, x2, y2) -> inclusive pixel corners (left, top, right, bottom), clipped to the image.

    The box covers the continuous span [x1 * W, x2 * W); its first and last covered pixels are the corners.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    left = min(max(int(round(x1 * width)), 0), width - 1)
    top = min(max(int(round(y1 * height)), 0), height - 1)
    right = min(max(int(round(x2 * width)) - 1, left), width - 1)
    bottom = min(max(int(round(y2 * height)) - 1, top), height - 1)
    return left, top, right, bottom


def draw_box(image: np.ndarray, box: Sequence[float], color: tuple[int, int, int], thickness: int) -> None:
    """Draw a normalised (x1, y1, x2, y2) box outline on `image` in place."""
    left, top, right, bottom = box_pixels(box, *image.shape[:2])
    cv2.rectangle(image, (left, top), (right, bottom), color, thickness, lineType=cv2.LINE_8)


def draw_label(
    image: np.ndarray,
    lines: Sequence[str],
    anchor: tuple[int, int],
    color: tuple[int, int, int],
    below: bool = False,
) -> None:
    """Draw text lines on filled patches of `color`, in place.

    `anchor` (x, y) in pixels is the box corner the label attaches to: the lines stack upwards from it (or
    downwards with `below`), and move inside the image when they would leave it.
    """
    if not lines:
        return
    height, width = image.shape[:2]
    scale = max(0.35, min(height, width) / 900)
    text_thickness = 1
    sizes = [cv2.getTextSize(line, _FONT, scale, text_thickness) for line in lines]
    line_height = max(h + baseline for (_, h), baseline in sizes) + 2
    block_height = line_height * len(lines)
    x = min(max(anchor[0], 0), max(width - max(w for (w, _), _ in sizes) - 2, 0))
    y0 = anchor[1] if below else anchor[1] - block_height
    y0 = min(max(y0, 0), max(height - block_height, 0))
    for index, (line, ((text_width, text_height), baseline)) in enumerate(zip(lines, sizes)):
        top = y0 + index * line_height
        cv2.rectangle(image, (x, top), (x + text_width + 2, top + line_height - 1), color, cv2.FILLED)
        cv2.putText(image, line, (x + 1, top + text_height + 1), _FONT, scale, TEXT_COLOR, text_thickness,
                    cv2.LINE_AA)


def _top_classes(scores: np.ndarray, class_names: Sequence[str], top_k: int, score_thresh: float) -> list[str]:
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [f"{class_names[i]} {scores[i]:.2f}" for i in order if scores[i] >= score_thresh]


def draw_detections(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    top_k: int = 3,
    score_thresh: float = 0.0,
    gt_boxes: Optional[np.ndarray] = None,
    gt_labels: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Keyframe with detections (green, top classes and scores above each box) and ground truth (red).

    Args:
        image: uint8 RGB keyframe [H, W, 3].
        boxes: [N, 4] detected boxes, normalised (x1, y1, x2, y2).
        scores: [N, C] per-class scores of each box (e.g. MViTRoI.predict, or p(class) * p(actor) for BMViT).
        class_names: C names; name i labels score column i (AVA: action id i + 1).
        top_k: at most this many classes listed per box, highest score first.
        score_thresh: classes below this score are not listed (the box is still drawn).
        gt_boxes: [M, 4] ground-truth boxes, normalised (x1, y1, x2, y2), or None.
        gt_labels: [M, C] multi-hot ground-truth classes, listed below each ground-truth box, or None.
    Returns:
        A new uint8 RGB image [H, W, 3].
    """
    check_image(image)
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(boxes):
        raise ValueError(f"scores must be [N, C] for the {len(boxes)} boxes, got shape {scores.shape}")
    if scores.shape[1] != len(class_names):
        raise ValueError(f"scores has {scores.shape[1]} classes but class_names has {len(class_names)}")
    canvas = image.copy()
    height, width = canvas.shape[:2]
    thickness = line_thickness(canvas)

    if gt_boxes is not None:
        gt_boxes = _as_boxes(gt_boxes)
        for index, box in enumerate(gt_boxes):
            draw_box(canvas, box, GROUND_TRUTH_COLOR, thickness)
            if gt_labels is not None:
                names = [class_names[i] for i in np.flatnonzero(np.asarray(gt_labels)[index] > 0)]
                left, _, _, bottom = box_pixels(box, height, width)
                draw_label(canvas, names, (left, bottom + 1), GROUND_TRUTH_COLOR, below=True)
    for box in boxes:
        draw_box(canvas, box, DETECTION_COLOR, thickness)
    # Labels after all outlines, so that no outline crosses a label.
    for box, box_scores in zip(boxes, scores):
        left, top, _, _ = box_pixels(box, height, width)
        draw_label(canvas, _top_classes(box_scores, class_names, top_k, score_thresh), (left, top), DETECTION_COLOR)
    return canvas


def save_png(image: np.ndarray, out_path: str | os.PathLike) -> Path:
    """Write a uint8 RGB image as PNG (creating parent folders); returns the path."""
    check_image(image)
    out = Path(out_path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"save_png writes PNG files; got the file name {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write PNG image: {out}")
    return out
