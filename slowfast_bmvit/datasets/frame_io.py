"""Robust reading of JPEG frames into clips, with the package's bad-data policy.

Policy (shared by every frame-folder dataset: AVA, SynthAVA, UCF101-24 / JHMDB frames):
- a missing frame (no file, or no row for it in the frame list) -> a warning naming it, and the nearest frame of the
  same video that exists is used instead (searching outwards: i-1, i+1, i-2, i+2, ...);
- an unreadable frame (the file exists but does not decode) -> `FrameReadError` naming the path when
  DATA.ON_BAD_FRAME is "error" (the default); with "skip" it is counted, warned about, and the nearest readable frame
  is used, like a missing one.
Each process counts what it replaced in `FrameReader.num_missing` / `num_unreadable`; every replacement is logged.
Frames come back RGB, uint8, [T, H, W, 3].
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import cv2
import numpy as np

logger = logging.getLogger(__name__)

ON_BAD_FRAME_CHOICES = ("error", "skip")


class FrameReadError(OSError):
    """A frame could not be used: unreadable under the "error" policy, or no usable frame in the whole video."""


_JPEG_END = b"\xff\xd9"
_JPEG_SUFFIXES = (".jpg", ".jpeg")


def decode_image(path: str) -> Optional[np.ndarray]:
    """Decode the image at `path` into an RGB uint8 array [H, W, 3].

    Returns None when the file is missing or does not decode, including a truncated JPEG (no end-of-image marker
    at its end), which cv2 would otherwise return half grey with only a libjpeg warning on stderr.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The marker cannot occur inside entropy-coded data (0xFF is always stuffed there), so this test is exact.
    if path.lower().endswith(_JPEG_SUFFIXES) and _JPEG_END not in data[-64:]:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def nearest_first(index: int, length: int):
    """Frame indices of a video of `length` frames ordered by distance from `index` (ties: earlier frame first)."""
    yield index
    for step in range(1, length):
        before, after = index - step, index + step
        if before < 0 and after >= length:
            return
        if before >= 0:
            yield before
        if after < length:
            yield after


class FrameReader:
    """Reads clips from per-video frame path lists, applying the missing / unreadable frame policy.

    Args:
        on_bad_frame: "error" (raise `FrameReadError` for an undecodable file) or "skip" (count it, use the nearest
            readable frame). Missing files always fall back to the nearest existing frame, with a warning.
    """

    def __init__(self, on_bad_frame: str = "error") -> None:
        if on_bad_frame not in ON_BAD_FRAME_CHOICES:
            raise ValueError(f"DATA.ON_BAD_FRAME: {on_bad_frame!r} is not one of {', '.join(ON_BAD_FRAME_CHOICES)}")
        self.on_bad_frame = on_bad_frame
        self.num_missing = 0
        self.num_unreadable = 0

    def read_clip(self, video_paths: Sequence[Optional[str]], indices: Sequence[int]) -> np.ndarray:
        """Read frames `indices` of one video.

        Args:
            video_paths: the video's frame paths indexed by 0-based frame index; None marks a frame the list lacks.
            indices: frame indices to read (already clamped to the video; repeats are decoded once).
        Returns:
            uint8 RGB array [len(indices), H, W, 3].
        Raises:
            FrameReadError: an unreadable file under the "error" policy, no usable frame at all, or frames of
                different sizes in one clip.
        """
        decoded: dict[int, np.ndarray] = {}
        frames = []
        for index in indices:
            if index not in decoded:
                decoded[index] = self._read_or_replace(video_paths, int(index))
            frames.append(decoded[index])
        shapes = {frame.shape for frame in frames}
        if len(shapes) > 1:
            first = video_paths[int(indices[0])]
            raise FrameReadError(f"frames of one clip have different sizes {sorted(shapes)} (clip starting at {first})")
        return np.stack(frames)

    def _read_or_replace(self, video_paths: Sequence[Optional[str]], index: int) -> np.ndarray:
        if not 0 <= index < len(video_paths):
            raise IndexError(f"frame index {index} outside the video's {len(video_paths)} frames")
        requested = video_paths[index]
        for candidate in nearest_first(index, len(video_paths)):
            path = video_paths[candidate]
            if path is None:
                continue
            image = decode_image(path)
            if image is not None:
                if candidate != index:
                    self._report_replacement(requested, index, path)
                return image
            if os.path.exists(path):
                self._handle_unreadable(path)
        raise FrameReadError(f"no readable frame in the video of {requested or f'frame index {index}'}")

    def _handle_unreadable(self, path: str) -> None:
        if self.on_bad_frame == "error":
            raise FrameReadError(f"unreadable image {path} (corrupt, truncated or not an image); set "
                                 f"DATA.ON_BAD_FRAME skip to use the nearest readable frame instead")
        self.num_unreadable += 1
        logger.warning("unreadable image %s skipped (DATA.ON_BAD_FRAME skip; %d so far in this process)",
                       path, self.num_unreadable)

    def _report_replacement(self, requested: Optional[str], index: int, used: str) -> None:
        if requested is not None and os.path.exists(requested):
            return  # unreadable, already counted and logged by _handle_unreadable
        self.num_missing += 1
        what = requested if requested is not None else f"frame index {index} (no row in the frame list)"
        logger.warning("missing frame %s: using the nearest frame %s (%d missing so far in this process)",
                       what, used, self.num_missing)


def clip_frame_indices(center: int, num_frames: int, sampling_rate: int, video_length: int) -> np.ndarray:
    """Frame indices of a clip around `center`, PySlowFast's rule, clamped to the video.

    Frames center - (num_frames * sampling_rate) // 2 + i * sampling_rate for i in range(num_frames): for 16x4,
    center-32 .. center+28 step 4. Indices outside [0, video_length - 1] are clamped (edge frames repeat).
    Returns int64 [num_frames].
    """
    start = center - (num_frames * sampling_rate) // 2
    indices = start + np.arange(num_frames, dtype=np.int64) * sampling_rate
    return np.clip(indices, 0, video_length - 1)
