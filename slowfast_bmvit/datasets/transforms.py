"""Clip + box transforms for detection: every geometric change of the frames moves the boxes exactly with them.

Conventions
- Frames: uint8 RGB numpy arrays [T, H, W, 3] (one geometry and one colour draw per clip).
- Boxes: float arrays [n, 4] of corners (x1, y1, x2, y2) normalised to the image they lie on, in [0, 1].
- Geometry is one `ClipGeometry`: an integer source region, an output size and an optional horizontal flip. The
  region is cut first, then resized with cv2.INTER_LINEAR (so only the pixels kept are interpolated), then flipped.
  In continuous pixel coordinates the region's edges map onto the output's edges (cv2's pixel-centre convention), so
  the normalised box map  x' = (x * W - x0) / (x1 - x0)  (flip: x' -> 1 - x') is exact for the produced pixels.

Policies (DATA.RESIZE_MODE)
- "square" (BMViT: no aspect ratio needed): the whole frame is resized to CROP x CROP, train and test.
- "short_side" (two-stage baseline): train scales the short side to a random integer in DATA.TRAIN_JITTER_SCALES and
  takes a random TRAIN_CROP_SIZE square; test scales the short side to TEST_CROP_SIZE and takes the centre square.
Training adds DATA.RANDOM_FLIP (p = 0.5) and, with AVA.TRAIN_USE_COLOR_AUGMENTATION, colour jitter (brightness,
contrast, saturation 0.4 in random order; skipped when AVA.TRAIN_PCA_JITTER_ONLY) then PCA lighting noise
(alpha std 0.1, AVA.TRAIN_PCA_EIGVAL / EIGVEC), as PySlowFast's AVA pipeline does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

# A person whose clipped box is narrower or lower than this many output pixels is treated as cropped away.
MIN_BOX_SIDE_PX = 1.0


@dataclass(frozen=True)
class ClipGeometry:
    """Crop the source pixels [y0:y1, x0:x1], resize them to (out_height, out_width), then flip if `flip`.

    src_height, src_width: size of the source frames in pixels.
    """

    src_height: int
    src_width: int
    x0: int
    y0: int
    x1: int
    y1: int
    out_height: int
    out_width: int
    flip: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.x0 < self.x1 <= self.src_width and 0 <= self.y0 < self.y1 <= self.src_height):
            raise ValueError(f"crop region ({self.x0}, {self.y0}, {self.x1}, {self.y1}) is not inside the "
                             f"{self.src_width}x{self.src_height} source")
        if self.out_height <= 0 or self.out_width <= 0:
            raise ValueError(f"output size must be positive, got {self.out_height}x{self.out_width}")

    @property
    def crop_box(self) -> tuple[float, float, float, float]:
        """The region (x0, y0, x1, y1) in source-normalised coordinates: maps output boxes back to the frame."""
        return (self.x0 / self.src_width, self.y0 / self.src_height,
                self.x1 / self.src_width, self.y1 / self.src_height)

    def apply_to_frames(self, frames: np.ndarray) -> np.ndarray:
        """[T, H, W, C] uint8 -> [T, out_height, out_width, C] uint8."""
        if frames.shape[1:3] != (self.src_height, self.src_width):
            raise ValueError(f"frames are {frames.shape[1:3]}, geometry expects {(self.src_height, self.src_width)}")
        region = frames[:, self.y0:self.y1, self.x0:self.x1]
        size = (self.out_width, self.out_height)
        if region.shape[1:3] == (self.out_height, self.out_width):
            out = np.ascontiguousarray(region)
        else:
            out = np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) for frame in region])
        if self.flip:
            flipped = np.empty_like(out)
            for frame, dst in zip(out, flipped):
                cv2.flip(frame, 1, dst=dst)  # ~10x faster than a numpy reversed-stride copy
            out = flipped
        return out

    def apply_to_boxes(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map source-normalised boxes [n, 4] to output-normalised boxes, clipped to [0, 1].

        Returns (boxes [n, 4], visible [n] bool): visible is False for a box that keeps less than
        MIN_BOX_SIDE_PX output pixels of width or height after clipping (cropped away).
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        x = (boxes[:, [0, 2]] * self.src_width - self.x0) / (self.x1 - self.x0)
        y = (boxes[:, [1, 3]] * self.src_height - self.y0) / (self.y1 - self.y0)
        x, y = np.clip(x, 0.0, 1.0), np.clip(y, 0.0, 1.0)
        if self.flip:
            x = 1.0 - x[:, ::-1]
        out = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
        visible = ((out[:, 2] - out[:, 0]) * self.out_width >= MIN_BOX_SIDE_PX) & (
            (out[:, 3] - out[:, 1]) * self.out_height >= MIN_BOX_SIDE_PX)
        return out, visible


def square_geometry(height: int, width: int, size: int, flip: bool = False) -> ClipGeometry:
    """The whole frame resized to size x size (aspect ratio not kept)."""
    return ClipGeometry(height, width, 0, 0, width, height, size, size, flip)


def _short_side_region(height: int, width: int, short_side: float, crop_size: int) -> tuple[int, int]:
    """Source pixels (height, width) of a crop_size square taken after scaling the short side to `short_side`."""
    scale = short_side / min(height, width)
    side = crop_size / scale
    return min(height, max(1, round(side))), min(width, max(1, round(side)))


def short_side_center_geometry(height: int, width: int, short_side: int, crop_size: int) -> ClipGeometry:
    """Scale the short side to `short_side`, then take the centre crop_size square."""
    region_h, region_w = _short_side_region(height, width, short_side, crop_size)
    y0, x0 = (height - region_h) // 2, (width - region_w) // 2
    return ClipGeometry(height, width, x0, y0, x0 + region_w, y0 + region_h, crop_size, crop_size)


def short_side_random_geometry(height: int, width: int, jitter_scales: Sequence[int], crop_size: int,
                               rng: np.random.Generator, flip: bool = False) -> ClipGeometry:
    """Scale the short side to a random integer in [min, max] of `jitter_scales`, then take a random square."""
    short_side = int(rng.integers(int(jitter_scales[0]), int(jitter_scales[1]) + 1))
    region_h, region_w = _short_side_region(height, width, short_side, crop_size)
    y0 = int(rng.integers(0, height - region_h + 1))
    x0 = int(rng.integers(0, width - region_w + 1))
    return ClipGeometry(height, width, x0, y0, x0 + region_w, y0 + region_h, crop_size, crop_size, flip)


def _blend(frames: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return frames * factor + other * (1.0 - factor)


def color_jitter(frames: torch.Tensor, rng: np.random.Generator, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4) -> torch.Tensor:
    """Brightness / contrast / saturation jitter in random order, one draw per clip (PySlowFast's AVA recipe).

    frames: float [T, H, W, 3] RGB in [0, 1]; each factor is drawn uniformly in [1 - s, 1 + s]. Returns [0, 1].
    """
    gray_weights = frames.new_tensor([0.299, 0.587, 0.114])
    for op in rng.permutation(3):
        if op == 0 and brightness > 0:
            frames = frames * float(rng.uniform(1 - brightness, 1 + brightness))
        elif op == 1 and contrast > 0:
            mean_gray = (frames @ gray_weights).mean()
            frames = _blend(frames, mean_gray, float(rng.uniform(1 - contrast, 1 + contrast)))
        elif op == 2 and saturation > 0:
            gray = (frames @ gray_weights).unsqueeze(-1)
            frames = _blend(frames, gray, float(rng.uniform(1 - saturation, 1 + saturation)))
    return frames.clamp_(0.0, 1.0)


def pca_lighting(frames: torch.Tensor, rng: np.random.Generator, eigval: Sequence[float],
                 eigvec: Sequence[Sequence[float]], alphastd: float = 0.1) -> torch.Tensor:
    """AlexNet-style PCA lighting noise: add eigvec @ (alpha * eigval), alpha ~ N(0, alphastd), to every pixel.

    frames: float [T, H, W, 3] RGB in [0, 1]. Returns the shifted frames (not clamped, as upstream).
    """
    alpha = rng.normal(0.0, alphastd, size=3)
    shift = np.asarray(eigvec, dtype=np.float64) @ (alpha * np.asarray(eigval, dtype=np.float64))
    return frames + frames.new_tensor(shift)


def to_normalized_tensor(frames: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float],
                         bgr: bool = False) -> torch.Tensor:
    """[T, H, W, 3] RGB (uint8 in [0, 255] or float in [0, 1]) -> float32 [3, T, H, W], (x - mean) / std.

    mean / std are RGB on [0, 1] pixels; with `bgr` the channels are reversed after normalising (AVA.BGR).
    """
    tensor = torch.as_tensor(frames)
    pixel_range = 255.0 if tensor.dtype == torch.uint8 else 1.0
    # Channels first while still compact, then one fused in-place scale and shift: x * a - b per channel.
    tensor = tensor.permute(3, 0, 1, 2).contiguous().to(torch.float32, copy=True)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    tensor = tensor.mul_(1.0 / (pixel_range * std_t)).sub_(mean_t / std_t)
    if bgr:
        tensor = tensor.flip(0).contiguous()
    return tensor


@dataclass
class TransformedClip:
    """A transformed clip and its persons.

    inputs: float32 [3, T, S, S] normalised; boxes: [m, 4] output-normalised boxes of the kept persons;
    keep: [n] bool over the input persons (False: cropped away); crop_box: the clip's region in source-normalised
    (x0, y0, x1, y1); flipped: whether the clip was mirrored.
    """

    inputs: torch.Tensor
    boxes: np.ndarray
    keep: np.ndarray
    crop_box: tuple[float, float, float, float]
    flipped: bool


class DetectionTransform:
    """Geometry (+ training augmentation) and normalisation of one detection clip with its boxes.

    Args:
        train: training (random geometry, flip, colour) or test (deterministic) behaviour.
        resize_mode: "square" or "short_side" (see the module docstring).
        crop_size: output side S in pixels (DATA.TRAIN_CROP_SIZE or DATA.TEST_CROP_SIZE).
        jitter_scales: [min, max] short side for "short_side" training.
        random_flip: horizontal flip with probability 0.5 in training.
        color_augmentation, pca_jitter_only, pca_eigval, pca_eigvec: the AVA colour recipe (training only).
        mean, std: RGB normalisation on [0, 1] pixels; bgr: feed the model BGR channels.
    """

    def __init__(self, train: bool, resize_mode: str, crop_size: int, jitter_scales: Sequence[int] = (256, 320),
                 random_flip: bool = True, color_augmentation: bool = False, pca_jitter_only: bool = True,
                 pca_eigval: Optional[Sequence[float]] = None, pca_eigvec: Optional[Sequence[Sequence[float]]] = None,
                 mean: Sequence[float] = (0.45, 0.45, 0.45), std: Sequence[float] = (0.225, 0.225, 0.225),
                 bgr: bool = False) -> None:
        if resize_mode not in ("square", "short_side"):
            raise ValueError(f"DATA.RESIZE_MODE: {resize_mode!r} is not one of square, short_side")
        if color_augmentation and (pca_eigval is None or pca_eigvec is None):
            raise ValueError("colour augmentation needs pca_eigval and pca_eigvec (AVA.TRAIN_PCA_EIGVAL / EIGVEC)")
        self.train = train
        self.resize_mode = resize_mode
        self.crop_size = int(crop_size)
        self.jitter_scales = tuple(int(s) for s in jitter_scales)
        self.random_flip = random_flip
        self.color_augmentation = color_augmentation
        self.pca_jitter_only = pca_jitter_only
        self.pca_eigval, self.pca_eigvec = pca_eigval, pca_eigvec
        self.mean, self.std, self.bgr = tuple(mean), tuple(std), bgr

    @classmethod
    def from_cfg(cls, cfg, split: str) -> "DetectionTransform":
        """The transform of `split` ("train", "val" or "test") from the DATA.* and AVA.* keys."""
        train = split == "train"
        return cls(
            train=train,
            resize_mode=cfg.DATA.RESIZE_MODE,
            crop_size=cfg.DATA.TRAIN_CROP_SIZE if train else cfg.DATA.TEST_CROP_SIZE,
            jitter_scales=cfg.DATA.TRAIN_JITTER_SCALES,
            random_flip=cfg.DATA.RANDOM_FLIP,
            color_augmentation=cfg.AVA.TRAIN_USE_COLOR_AUGMENTATION,
            pca_jitter_only=cfg.AVA.TRAIN_PCA_JITTER_ONLY,
            pca_eigval=cfg.AVA.TRAIN_PCA_EIGVAL,
            pca_eigvec=cfg.AVA.TRAIN_PCA_EIGVEC,
            mean=cfg.DATA.MEAN,
            std=cfg.DATA.STD,
            bgr=cfg.AVA.BGR,
        )

    def geometry(self, height: int, width: int, rng: Optional[np.random.Generator]) -> ClipGeometry:
        """The clip geometry for a height x width source (random in training: needs `rng`)."""
        if not self.train:
            if self.resize_mode == "square":
                return square_geometry(height, width, self.crop_size)
            return short_side_center_geometry(height, width, self.crop_size, self.crop_size)
        if rng is None:
            raise ValueError("training transforms need a random generator")
        flip = bool(self.random_flip and rng.random() < 0.5)
        if self.resize_mode == "square":
            return square_geometry(height, width, self.crop_size, flip)
        return short_side_random_geometry(height, width, self.jitter_scales, self.crop_size, rng, flip)

    def __call__(self, frames: np.ndarray, boxes: np.ndarray,
                 rng: Optional[np.random.Generator] = None) -> TransformedClip:
        """Transform uint8 RGB frames [T, H, W, 3] and their source-normalised boxes [n, 4]."""
        geometry = self.geometry(frames.shape[1], frames.shape[2], rng)
        out_frames = geometry.apply_to_frames(frames)
        out_boxes, keep = geometry.apply_to_boxes(boxes)
        if self.train and self.color_augmentation:
            clip = torch.from_numpy(out_frames).float().div_(255.0)
            if not self.pca_jitter_only:
                clip = color_jitter(clip, rng)
            clip = pca_lighting(clip, rng, self.pca_eigval, self.pca_eigvec)
            inputs = to_normalized_tensor(clip, self.mean, self.std, self.bgr)
        else:
            inputs = to_normalized_tensor(out_frames, self.mean, self.std, self.bgr)
        return TransformedClip(inputs, out_boxes[keep], keep, geometry.crop_box, geometry.flip)
