"""Random access to the frames of video files with PyAV: exact 1-based frame numbers, seeking, a small cache.

Frames are numbered by time: frame k is the one shown at first_pts + (k - 1) * frame_duration, where the frame
duration is the typical step between consecutive timestamps (`typical_step`: the fastest step a tenth of the steps
share, robust to a gap and exact for timestamps rounded to a coarse clock such as Matroska's milliseconds; the
declared average rate is not: the re-encoded UCF101 clips declare 25 fps and hold 29.97 fps timestamps). A video damaged in the middle (lost
packets) therefore keeps its frame numbers after the gap, and the frames of the gap are *missing*:
`VideoIndex.missing_frames` lists them and reading one raises `VideoReadError` naming the file and the first missing
frame (the datasets decide what to do about it, see DATA.ON_BAD_FRAME). Frames lost before the first decodable one
cannot be told from the timestamps; the first present frame is frame 1. A zero-size packet (an AVI "repeat the
previous frame" chunk) holds no picture, so its frame counts as missing too.

A variable-frame-rate video (phones lower the rate in dim light) has frame numbers without a frame of their own in
the same way; `VideoIndex.looks_variable_rate` tells such timestamps from lost packets, so that the error suggests
re-encoding at a constant rate instead of calling the file damaged. (datasets/frame_stream.py, which reads users'
own videos for the demo, fills such numbers by repeating the previous frame instead.)

A `VideoIndex` (built once per video by demuxing, without decoding: a few KB) lists the presentation timestamps of
all frames and of the keyframes, so a request for frames a..b seeks to the last keyframe at or before a and decodes
only up to b (UCF101 clips have a keyframe every 12 frames; a 16x4 clip decodes ~75 frames instead of the whole
video). Decoded frames go to an LRU cache shared by all videos of the reader. A request that continues where the
previous decoding of the same video stopped (test-time access walks every frame of a video in order) also decodes
ahead, so each frame is decoded about once. RGB conversion (the dominant cost: about twice the decoding time)
happens only for frames actually requested.

A reader's caches are per process: a DataLoader worker starts with empty caches (they are not pickled).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np

logger = logging.getLogger(__name__)


class VideoReadError(RuntimeError):
    """A video file that cannot be opened or decoded, or a frame it does not have; the message names the file."""


def typical_step(steps: np.ndarray, share: float = 0.1) -> float:
    """The frame duration that timestamp steps `steps` (int64 [S], S >= 1, in timestamp units) stand for: the mean
    of the steps near the shortest step that at least `share` of all steps are near.

    "Near" is within 10 % (or one timestamp unit when a unit is at most a quarter of the step), so timestamps
    rounded to a coarse clock (29.97 fps in milliseconds: steps of 33 and 34) average to the true step instead of
    drifting by a frame every few seconds. Requiring a share leaves out rare short steps (jitter, a duplicate
    frame) and, unlike the median, keeps the fast stretch of a variable-rate video (30 fps falling to 15 fps in dim
    light) at its own rate however long the slow stretch is; a constant-rate video's step, and any gap of lost
    packets, give the step itself.
    """
    steps = np.sort(np.asarray(steps, np.float64))
    candidates = np.unique(steps)
    tolerance = np.maximum(0.1 * candidates, np.where(candidates >= 4, 1.0, 0.0))
    low = np.searchsorted(steps, candidates - tolerance, side="left")
    high = np.searchsorted(steps, candidates + tolerance, side="right")
    shared = np.flatnonzero(high - low >= share * len(steps))
    if len(shared) == 0:  # no step is shared that widely (every step differs): the median step
        return float(np.median(steps))
    first = shared[0]
    return float(steps[low[first]:high[first]].mean())


@dataclass(frozen=True)
class VideoIndex:
    """Timestamps of one video's frames, numbered by time: frame `frames[i]` (1-based) has timestamp `pts[i]`.

    Frames between 1 and `num_frames` that have no timestamp are missing (lost from the file, or skipped by a
    variable frame rate: `looks_variable_rate`).
    """

    pts: np.ndarray  # int64 [N], increasing, in the video stream's time base: the frames present
    frames: np.ndarray  # int64 [N], increasing, the 1-based frame number by time of each present frame
    keyframe_pts: np.ndarray  # int64 [K], increasing
    height: int
    width: int
    frame_duration: float = 1.0  # timestamp units from one frame number to the next
    time_base: Optional[Fraction] = None  # seconds per timestamp unit (None: not known)
    dropped_frames: int = 0  # timestamps left out because they fell on an already numbered frame

    @classmethod
    def from_timestamps(cls, pts: Sequence[int], keyframe_pts: Sequence[int], height: int, width: int,
                        time_base: Optional[Fraction] = None) -> "VideoIndex":
        """Number frames by time: (pts - first pts) / frame duration + 1, rounded.

        The frame duration is `typical_step(steps)`: the fastest timestamp step that a tenth of the steps share,
        so that a gap (lost packets) does not move it and a variable-rate video is numbered at its fastest rate,
        every frame keeping a number of its own. A timestamp that rounds to an already numbered frame (jitter, a
        rare faster step) is dropped and counted.
        """
        unique = np.unique(np.asarray(pts, np.int64))
        steps = np.diff(unique)
        duration = typical_step(steps) if len(steps) else 1.0
        frames = np.rint((unique - unique[0]) / duration).astype(np.int64) + 1
        first = np.r_[True, frames[1:] != frames[:-1]]
        return cls(unique[first], frames[first], np.unique(np.asarray(keyframe_pts, np.int64)), height, width,
                   duration, time_base, int((~first).sum()))

    @property
    def num_frames(self) -> int:
        """Frames by time, the missing ones included (the last present frame's number)."""
        return int(self.frames[-1])

    @cached_property
    def missing_frames(self) -> np.ndarray:
        """int64 [M], increasing: frame numbers in 1..num_frames that the file does not hold."""
        return np.setdiff1d(np.arange(1, self.num_frames + 1), self.frames)

    @cached_property
    def num_gaps(self) -> int:
        """Runs of consecutive missing frame numbers."""
        missing = self.missing_frames
        return int(len(missing) and 1 + np.count_nonzero(np.diff(missing) > 1))

    @property
    def frame_rate(self) -> Optional[Fraction]:
        """Frame numbers per second (1 / (frame duration x time base), to a denominator of at most 1001); None
        when the time base is not known or the video has a single frame."""
        if self.time_base is None or len(self.pts) < 2:
            return None
        return (1 / (self.time_base * Fraction(self.frame_duration))).limit_denominator(1001)

    @cached_property
    def looks_variable_rate(self) -> bool:
        """Whether the timestamps step like a variable-frame-rate video's rather than a constant-rate video that lost
        packets. Rule: lost packets leave out whole frames in one or a few runs, so the video looks variable-rate
        when its missing frame numbers form 3 or more separate gaps, when a timestamp fell on an already numbered
        frame (a step shorter than the frame duration), or when a step between present frames is off a whole number
        of frame durations by more than a quarter of a duration."""
        if self.num_gaps >= 3 or self.dropped_frames:
            return True
        in_frames = np.diff(self.pts) / self.frame_duration
        return bool(np.any(np.abs(in_frames - np.rint(in_frames)) > 0.25))

    def missing_cause(self) -> str:
        """Why the video has missing frame numbers, with the remedy: lost packets, or a variable frame rate."""
        if not self.looks_variable_rate:
            return "lost from the file, by their timestamps"
        rate = self.frame_rate
        at_rate = f" at {float(rate):.4g} fps" if rate else ""
        return (f"its timestamps step as a variable-frame-rate video's do: {len(self.missing_frames)} of the "
                f"{self.num_frames} frame numbers{at_rate} have no frame, in {self.num_gaps} gaps; re-encode it at "
                f"a constant frame rate, e.g. `ffmpeg -i in.mp4 -fps_mode cfr{f' -r {rate}' if rate else ''} "
                f"out.mp4`")

    def frame_at_pts(self, pts: int) -> int:
        """1-based frame number by time of any timestamp (whether or not a frame of the index has it)."""
        return int(np.rint((pts - int(self.pts[0])) / self.frame_duration)) + 1

    def describe_gap(self, frame: int) -> str:
        """'frames a..b are missing' for the run of missing frames around missing frame `frame`."""
        position = int(np.searchsorted(self.frames, frame))
        first = int(self.frames[position - 1]) + 1 if position > 0 else 1
        last = int(self.frames[position]) - 1 if position < len(self.frames) else self.num_frames
        return f"frame {first} is missing" if first == last else f"frames {first}..{last} are missing"

    def frame_of_pts(self, pts: int) -> int | None:
        """1-based frame number of a timestamp, None when no frame has it."""
        position = int(np.searchsorted(self.pts, pts))
        return int(self.frames[position]) if position < len(self.pts) and self.pts[position] == pts else None

    def pts_of_frame(self, frame: int) -> int | None:
        """Timestamp of 1-based frame `frame`, None when it is missing."""
        position = int(np.searchsorted(self.frames, frame))
        return int(self.pts[position]) if position < len(self.frames) and self.frames[position] == frame else None

    def seek_pts(self, frame: int) -> int:
        """Timestamp of the last keyframe at or before (present) `frame` (the first frame's when there is none)."""
        target = self.pts_of_frame(frame)
        position = int(np.searchsorted(self.keyframe_pts, target, side="right")) - 1
        return int(self.keyframe_pts[position]) if position >= 0 else int(self.pts[0])


def _open(path: str) -> av.container.InputContainer:
    if not Path(path).is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        container = av.open(path)
    except av.FFmpegError as error:
        raise VideoReadError(f"cannot open video {path}: {error}") from error
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path} has no video stream")
    return container


def build_video_index(path: str | Path) -> VideoIndex:
    """Demux (no decoding) the first video stream of `path` and index its frames' timestamps."""
    path = str(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        pts, keyframes = [], []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's final flush packet
                continue
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None:
                raise VideoReadError(f"{path}: packets without timestamps; re-encode the video (e.g. to mp4)")
            pts.append(timestamp)
            if packet.is_keyframe:
                keyframes.append(timestamp)
        height, width, time_base = stream.codec_context.height, stream.codec_context.width, stream.time_base
    except av.FFmpegError as error:
        raise VideoReadError(f"cannot read video {path}: {error}") from error
    finally:
        container.close()
    if not pts:
        raise VideoReadError(f"{path} has no video frames")
    return VideoIndex.from_timestamps(pts, keyframes, height, width, time_base)


class VideoReader:
    """Frames of video files by 1-based frame number, as RGB uint8 arrays.

    Args:
        max_cached_frames: decoded frames kept (LRU over all videos); 0 keeps none beyond one request.
        threaded_decoding: let FFmpeg decode with several threads (PyAV thread_type "AUTO").
    """

    def __init__(self, max_cached_frames: int = 512, threaded_decoding: bool = False):
        self.max_cached_frames = max_cached_frames
        self.threaded_decoding = threaded_decoding
        self._indices: dict[str, VideoIndex] = {}
        # (path, frame) -> av.VideoFrame (decoded, not yet requested) or RGB array [H, W, 3].
        self._frames: OrderedDict[tuple[str, int], object] = OrderedDict()
        self._decoded_until: dict[str, int] = {}  # path -> last frame of its latest decoding

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_indices"], state["_frames"], state["_decoded_until"] = {}, OrderedDict(), {}
        return state

    def index(self, path: str | Path) -> VideoIndex:
        """The frame index of `path` (built on first use, then kept)."""
        path = str(path)
        if path not in self._indices:
            self._indices[path] = build_video_index(path)
        return self._indices[path]

    def num_frames(self, path: str | Path) -> int:
        return self.index(path).num_frames

    def read(self, path: str | Path, frames: Sequence[int]) -> np.ndarray:
        """Frames `frames` (1-based, any order, repeats allowed) of `path` -> uint8 [T, H, W, 3] RGB."""
        path = str(path)
        index = self.index(path)
        wanted = sorted(set(int(f) for f in frames))
        if wanted and not (1 <= wanted[0] and wanted[-1] <= index.num_frames):
            raise VideoReadError(f"{path} has frames 1..{index.num_frames}; requested {wanted[0]}..{wanted[-1]}")
        absent = np.intersect1d(wanted, index.missing_frames)
        if len(absent):
            raise VideoReadError(f"{path}: {index.describe_gap(int(absent[0]))} ({index.missing_cause()}); "
                                 f"requested frame {int(absent[0])}")
        missing = [f for f in wanted if (path, f) not in self._frames]
        decoded: dict[int, object] = {}
        if missing:
            last = missing[-1]
            if self._decoded_until.get(path, -1) >= missing[0] - 1:  # a forward walk: read ahead
                read_ahead = min(max(wanted[-1] - wanted[0] + 1, 32), self.max_cached_frames // 2)
                ahead = min(index.num_frames, max(last, missing[0] + read_ahead))
                last = int(index.frames[np.searchsorted(index.frames, ahead, side="right") - 1])  # a present frame
            decoded = self._decode(path, index, missing[0], last)
            lost = [f for f in missing if f not in decoded]
            if lost:
                raise VideoReadError(f"{path}: frame(s) {lost[:5]} could not be decoded (corrupt or truncated video)")
        rgb = {f: self._rgb(path, f, decoded) for f in wanted}
        self._evict(keep=len(wanted))
        if not wanted:
            return np.zeros((0, index.height, index.width, 3), np.uint8)
        return np.stack([rgb[int(f)] for f in frames])

    def _rgb(self, path: str, frame: int, decoded: dict[int, object]) -> np.ndarray:
        key = (path, frame)
        value = self._frames.pop(key) if key in self._frames else decoded[frame]
        if not isinstance(value, np.ndarray):
            value = value.to_ndarray(format="rgb24")
        self._frames[key] = value  # most recently used
        return value

    def _decode(self, path: str, index: VideoIndex, first: int, last: int) -> dict[int, object]:
        """Decode frames first..last (from the keyframe before `first`); cache them; return them by frame number."""
        decoded = self._decode_from(path, index, first, last, seek=True)
        if first not in decoded:  # a seek that landed past the keyframe: decode from the start instead
            logger.debug("%s: seeking missed frame %d; decoding from the start", path, first)
            decoded = self._decode_from(path, index, first, last, seek=False)
        self._decoded_until[path] = max(decoded, default=first - 1)
        for frame, value in decoded.items():
            key = (path, frame)
            if key not in self._frames:
                self._frames[key] = value
        return decoded

    def _decode_from(self, path: str, index: VideoIndex, first: int, last: int, seek: bool) -> dict[int, object]:
        start_pts = index.seek_pts(first) if seek else int(index.pts[0])
        start_frame, last_pts = index.frame_of_pts(start_pts) or 1, index.pts_of_frame(last)
        decoded: dict[int, object] = {}
        container = _open(path)
        try:
            stream = container.streams.video[0]
            if self.threaded_decoding:
                stream.thread_type = "AUTO"
            if start_pts > index.pts[0]:
                container.seek(start_pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                number = index.frame_of_pts(frame.pts) if frame.pts is not None else None
                if number is not None and number >= start_frame:
                    decoded[number] = frame
                if frame.pts is not None and frame.pts >= last_pts:
                    break
        except av.FFmpegError as error:
            raise VideoReadError(f"cannot decode video {path}: {error}") from error
        finally:
            container.close()
        return decoded

    def _evict(self, keep: int) -> None:
        """Drop least recently used frames beyond the budget (never the `keep` most recent)."""
        budget = max(self.max_cached_frames, keep)
        while len(self._frames) > budget:
            self._frames.popitem(last=False)
