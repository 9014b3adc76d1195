"""H.264 video files written frame by frame with PyAV (libx264), at a constant frame rate.

Frames are uint8 RGB arrays [H, W, 3] of the size given at opening. Even sizes are encoded as yuv420p (plays
everywhere); an odd width or height, which 4:2:0 chroma cannot represent, as yuv444p. The file is written under a
temporary name and renamed when `close()` has flushed the encoder, so an interrupted run leaves no truncated video
under the final name.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class H264Writer:
    """`with H264Writer(path, width, height, fps) as writer: writer.write(frame)` -> an .mp4 file.

    Args:
        fps: frame rate (frames per second); frame k is shown at time k / fps.
        crf: libx264 constant rate factor (0 lossless .. 51; 18 is visually lossless).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction | float, crf: int = 18):
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.num_frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._temporary = self.path.with_name(f".{self.path.name}.partial")
        self._container = av.open(str(self._temporary), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self.width, self.height
        even = self.width % 2 == 0 and self.height % 2 == 0
        self._stream.pix_fmt = "yuv420p" if even else "yuv444p"
        self._stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
        self._stream.codec_context.time_base = 1 / rate

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 RGB frame [H, W, 3]."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected uint8 frames [{self.height}, {self.width}, 3], got "
                             f"{frame.dtype} {list(frame.shape)}")
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        video_frame.pts = self.num_frames
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.num_frames += 1

    def close(self) -> Path:
        """Flush the encoder, close the file and give it its final name; returns the path."""
        if self._container is None:
            return self.path
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._temporary, self.path)
        return self.path

    def abort(self) -> None:
        """Close without keeping the file (after an error)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> "H264Writer":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
