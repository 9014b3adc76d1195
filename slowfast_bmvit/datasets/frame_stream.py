"""A video file or a folder of frame images, read once from start to end, one frame at a time.

`open_frame_source(path, folder_fps)` checks the input (it exists, decodes, has frames) and returns a
`FrameSource` whose `frames()` yields uint8 RGB arrays [H, W, 3] in order; memory holds one decoded frame at a time,
whatever the length of the video. Video files are decoded with PyAV (FFmpeg's threaded decoding); a folder's images
(.jpg, .jpeg, .png, .bmp) play in natural name order (frame_2 before frame_10) at `folder_fps`.
Every problem is an `InputError` whose one-line message names the file.

A video file plays as a constant-rate sequence numbered by time, as `ffmpeg -i in.mp4 -fps_mode cfr -r RATE`
presents it at RATE = the rate of the typical timestamp step (`VideoIndex.frame_rate`, see `video_io.typical_step`:
the fastest step that a tenth of the steps share, not the declared average rate: the re-encoded UCF101 clips declare
25 fps and hold 29.97 fps timestamps). A number without a frame of its own repeats the latest earlier frame, and a
frame whose timestamp falls on an already shown number (a rare shorter step) is left out. So frame n (0-based) of
`frames()` is the picture on screen at n / fps seconds after the first frame, for a variable-frame-rate video (phones
lower the rate in dim light: it plays at its fast rate, repeating frames where the rate drops) or one with lost
frames as much as for a constant-rate one, which plays unchanged, frame for frame.
"""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from .frame_io import clip_frame_indices, decode_image
from .video_io import VideoIndex, VideoReadError, build_video_index

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class InputError(ValueError):
    """An input video or frame folder that cannot be used; the message names the file."""


@dataclass(frozen=True)
class FrameSource(ABC):
    """One input, described before decoding: `frames()` yields its `num_frames` frames of `height` x `width`.

    fps is the frame rate (frames per second): frame n (0-based) is shown at n / fps seconds; for a video file the rate
    its frames are numbered at by their timestamps (module docstring). name is the file or folder name without its
    extension (the "video" column of the detections).
    """

    path: str
    name: str
    fps: Fraction
    num_frames: int
    height: int
    width: int

    @abstractmethod
    def frames(self) -> Iterator[np.ndarray]:
        """The frames in order, uint8 RGB [H, W, 3]; raises InputError naming the file on a decoding failure."""


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class ImageFolderSource(FrameSource):
    image_paths: tuple[str, ...] = ()

    def frames(self) -> Iterator[np.ndarray]:
        for path in self.image_paths:
            image = decode_image(path)
            if image is None:
                raise InputError(f"{path}: unreadable image (corrupt, truncated or not an image)")
            if image.shape[:2] != (self.height, self.width):
                raise InputError(f"{path}: image is {image.shape[1]}x{image.shape[0]}, the folder's first image "
                                 f"{self.width}x{self.height}; all frames of a video need one size")
            yield image


@dataclass(frozen=True)
class VideoFileSource(FrameSource):
    """A video file at the constant rate `fps` of its time numbering (see the module docstring); `index` holds the
    timestamps. A repeated frame is yielded as the same array object: treat the frames as read-only."""

    index: VideoIndex

    def frames(self) -> Iterator[np.ndarray]:
        shown, previous, decoded = 0, None, 0  # frame numbers yielded, the latest frame, frames decoded
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    decoded += 1
                    number = self.index.frame_at_pts(frame.pts) if frame.pts is not None else shown + 1
                    if number <= shown:  # a second frame for a number already shown: left out
                        continue
                    if number > self.num_frames:  # later than every timestamp the file's packets hold
                        break
                    image = frame.to_ndarray(format="rgb24")
                    if image.shape[:2] != (self.height, self.width):
                        raise InputError(f"{self.path}: frame {number - 1} is {image.shape[1]}x{image.shape[0]}, "
                                         f"the stream header says {self.width}x{self.height}")
                    held = image if previous is None else previous
                    for _ in range(number - 1 - shown):  # numbers without a frame: the latest earlier frame
                        yield held
                    shown, previous = number, image
                    yield image
        except av.FFmpegError as error:
            raise InputError(f"{self.path}: cannot decode frame {shown} ({error})") from None
        if decoded == 0:
            raise InputError(f"{self.path}: no frame could be decoded")


def _open_folder(path: Path, folder_fps: float) -> ImageFolderSource:
    images = sorted((entry.name for entry in os.scandir(path)
                     if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)
    if not images:
        raise InputError(f"{path}: no frame images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    paths = tuple(str(path / name) for name in images)
    first = decode_image(paths[0])
    if first is None:
        raise InputError(f"{paths[0]}: unreadable image (corrupt, truncated or not an image)")
    return ImageFolderSource(str(path), path.name, Fraction(folder_fps).limit_denominator(1001), len(paths),
                             first.shape[0], first.shape[1], paths)


def _open_video(path: Path, fallback_fps: float) -> VideoFileSource:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes), not a video")
    try:
        index = build_video_index(path)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            declared = [rate for rate in (stream.average_rate, stream.guessed_rate) if rate]
    except (VideoReadError, av.FFmpegError, IndexError) as error:
        raise InputError(f"{path}: not a readable video ({str(error).splitlines()[0] if str(error) else error!r})") \
            from None
    rate = index.frame_rate
    if rate is not None:
        # The declared rate when it is the same to 0.01 % (exact: 30000/1001 rather than the estimate from
        # millisecond timestamps).
        rate = next((Fraction(d) for d in declared if abs(d - rate) <= rate * Fraction(1, 10000)), rate)
    elif declared:  # a single frame: no step to measure
        rate = Fraction(declared[0])
    else:
        logger.warning("%s: the stream gives no frame rate; assuming %s fps (DEMO.FOLDER_FPS)", path, fallback_fps)
        rate = Fraction(fallback_fps).limit_denominator(1001)
    if index.height <= 0 or index.width <= 0:
        raise InputError(f"{path}: the video stream has no frame size")
    if len(index.missing_frames) or index.dropped_frames:
        logger.warning("%s: not a constant frame rate (%d frames in the file); played as %d frames at %.4g fps, the "
                       "rate of its typical timestamp step, as `ffmpeg -fps_mode cfr` at that rate does: %d frame "
                       "numbers repeat the previous frame, %d frames are left out", path, len(index.pts) + index.dropped_frames,
                       index.num_frames, float(rate), len(index.missing_frames), index.dropped_frames)
    return VideoFileSource(str(path), path.stem, rate, index.num_frames, index.height, index.width, index)


def open_frame_source(path: str | os.PathLike, folder_fps: float = 30.0) -> FrameSource:
    """The video file or frame folder at `path`.

    Args:
        folder_fps: frame rate of a frame folder (and of a video whose stream states none), frames per second.
    Raises:
        InputError: a missing path, an empty or unreadable video, a video without frames, or a folder without
            readable images.
    """
    path = Path(path)
    if path.is_dir():
        return _open_folder(path, folder_fps)
    if not path.is_file():
        raise InputError(f"{path}: no such video file or frame folder")
    return _open_video(path, folder_fps)


def read_clip(source: FrameSource, center: int, num_frames: int, sampling_rate: int) -> np.ndarray:
    """The clip of `num_frames` frames every `sampling_rate` centred on frame `center` (0-based, PySlowFast's rule
    `clip_frame_indices`, clamped to the video): uint8 RGB [num_frames, H, W, 3]. Decodes up to its last frame."""
    if not 0 <= center < source.num_frames:
        raise InputError(f"{source.path}: frame {center} is outside its {source.num_frames} frames "
                         f"({source.num_frames / float(source.fps):.2f} s at {float(source.fps):g} fps)")
    indices = clip_frame_indices(center, num_frames, sampling_rate, source.num_frames)
    wanted, last = set(indices.tolist()), int(indices.max())
    kept: dict[int, np.ndarray] = {}
    for index, frame in enumerate(source.frames()):
        if index in wanted:
            kept[index] = frame
        if index >= last:
            break
    if len(kept) < len(wanted):
        raise InputError(f"{source.path}: decoding stopped before frame {last} ({len(kept)} of the clip's frames read)")
    return np.stack([kept[int(i)] for i in indices])
