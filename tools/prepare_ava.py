#!/usr/bin/env python3
"""AVA v2.2 from the official videos to PySlowFast's layout: 15-minute cuts, 30 fps JPEG frames, frame lists.

    python tools/prepare_ava.py --videos /data/ava/videos --out /data/ava \\
        --lists train.csv=/data/ava/annotations/ava_train_v2.2.csv val.csv=/data/ava/annotations/ava_val_v2.2.csv
    python tools/prepare_ava.py --check --out /data/ava --lists ...     # only report missing / short folders

For every video file in --videos (name = file name without extension) it writes OUT/frames/<name>/<name>_%06d.jpg:
the seconds [--start, --start + --duration) (AVA: 900 .. 1801, keyframes 902 .. 1798 read frame (sec - 900) x 30)
at --fps 30, so a full cut has 27,030 frames (fewer when the video ends earlier: 30 x what is left).
- with ffmpeg on the PATH (or --ffmpeg), PySlowFast's two commands: `ffmpeg -ss 900 -t 901 -i VIDEO CUT` into
  OUT/videos_15min/, then `ffmpeg -i CUT -r 30 -q:v 1 OUT/frames/<name>/<name>_%06d.jpg`;
- otherwise PyAV (FFmpeg's libraries, bundled with the `av` package): the same seconds decoded, resampled to 30 fps
  the way ffmpeg's `-r` does (each output frame shows the latest input frame whose timestamp rounds to it or
  earlier), and encoded as JPEG by FFmpeg's mjpeg encoder at quantizer 1 (`-q:v 1`). Same frame count and names.
ffmpeg versions resample and decode slightly differently, which moves AVA mAP by a few tenths: extract the frames
of train and val with the same tool and version (docs/DATASETS.md).
A video whose folder already holds all its frames is skipped, so an interrupted run resumes; a folder is written
under a temporary name and renamed when complete. A video's length is its container's or stream's duration, or, for a
raw stream that states neither (an .m4v elementary stream in an MP4 name), the span of its packets' timestamps plus
one frame. A video that cannot be used (corrupt, without a video stream, without frames in the requested seconds,
an ffmpeg failure) is reported on one line naming the file and the reason, the other videos are still extracted,
and the command ends with the count of failures and exit status 1.

--lists NAME=SOURCE writes OUT/frame_lists/NAME (PySlowFast's format: header, then `video video_idx frame_idx path
""` per frame) for the videos of SOURCE: an annotation CSV (first column) or a text file of video file names. Then
every listed video is checked: a folder that is missing, that stops before the frame of the video's last keyframe in
an annotation CSV (frame (sec - 900) x 30, as the AVA loader reads it), or whose numbering has a gap (a frame file
absent before later ones: the list stops before it) is reported, and the command exits with status 1. The AVA loader
runs the same check on its keyframes (without the gap search, which lists every folder) before training starts.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import av  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from slowfast_bmvit.datasets.ava_helper import AVA_START_SEC, FPS, check_frames, frame_file  # noqa: E402

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
FRAME_LIST_HEADER = "original_vido_id video_id frame_id path labels\n"


class VideoProblem(ValueError):
    """A video that cannot be extracted; the message is the reason (the caller names the file)."""


def video_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def expected_frames(seconds: float, fps: int) -> int:
    """Frames of `seconds` of video at `fps`: round(seconds x fps)."""
    return int(math.floor(seconds * fps + 0.5))


def _has_all_frames(folder: str, name: str, count: int) -> bool:
    return count > 0 and os.path.isfile(os.path.join(folder, os.path.basename(frame_file(name, count - 1))))


# ------------------------------------------------------------------ ffmpeg


def extract_with_ffmpeg(ffmpeg: str, video: str, cut: str, folder: str, start: float, duration: float,
                        fps: int) -> None:
    """PySlowFast's commands: cut [start, start + duration), then frames at `fps` with -q:v 1."""
    name = video_name(video)
    if not os.path.isfile(cut):
        partial = os.path.join(os.path.dirname(cut), f".partial.{os.path.basename(cut)}")
        _run_ffmpeg([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-ss", str(start), "-t", str(duration),
                     "-i", video, partial])
        os.replace(partial, cut)
    _run_ffmpeg([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", cut, "-r", str(fps), "-q:v", "1",
                 os.path.join(folder, f"{name}_%06d.jpg")])


def _run_ffmpeg(command: list[str]) -> None:
    """Run ffmpeg; a failure raises VideoProblem with its exit status and last error line."""
    result = subprocess.run(command, stderr=subprocess.PIPE, text=True, errors="replace")
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise VideoProblem(f"ffmpeg exited with status {result.returncode}" + (f": {lines[-1]}" if lines else ""))


# ------------------------------------------------------------------ PyAV


def _jpeg_encoder(width: int, height: int, fps: int) -> av.CodecContext:
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, fps)
    encoder.options = {"qmin": "1", "qmax": "1"}  # ffmpeg's -q:v 1: quantizer 1
    encoder.open()
    return encoder


def extract_with_pyav(video: str, folder: str, start: float, duration: float, fps: int) -> int:
    """Frames of [start, start + duration) at `fps` into `folder`; returns how many were written.

    Output frame k (time start + k / fps) is the latest input frame whose timestamp, in output frames, rounds to k
    or less; the last output frame is the one the last input frame's display ends in (ffmpeg's -r rule).
    """
    name = video_name(video)
    written = 0
    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        encoder = None
        shown = None  # the input frame currently on screen, as yuvj420p
        last_time = None
        limit = expected_frames(duration, fps)
        for frame in container.decode(stream):
            time = float(frame.pts * stream.time_base) if frame.pts is not None else (
                last_time + 1.0 / rate if last_time is not None else 0.0)
            last_time = time
            slot = max(0, expected_frames(time - start, fps))  # frames before the cut only wait for slot 0
            if shown is not None:
                written = _emit(encoder, shown, folder, name, written, min(slot, limit))
            if slot >= limit:
                break
            if encoder is None:
                encoder = _jpeg_encoder(frame.width, frame.height, fps)
            shown = frame.reformat(format="yuvj420p")
        else:
            if shown is not None:  # the last frame shows until its display time ends
                end = expected_frames(last_time + 1.0 / rate - start, fps)
                written = _emit(encoder, shown, folder, name, written, min(end, limit))
    return written


def _emit(encoder: av.CodecContext, frame: av.VideoFrame, folder: str, name: str, written: int, until: int) -> int:
    """Write `frame` as output frames written .. until - 1; returns the new count."""
    if until <= written:
        return written
    packet = b"".join(bytes(p) for p in encoder.encode(frame))
    for index in range(written, until):
        with open(os.path.join(folder, os.path.basename(frame_file(name, index))), "wb") as handle:
            handle.write(packet)
    return until


# ------------------------------------------------------------------ one video, all videos


@dataclass
class VideoResult:
    """What became of one video: its frames (and whether the folder was already complete), or why it failed."""

    video: str
    frames: int = 0
    skipped: bool = False
    error: Optional[str] = None  # one line, without the file name


def prepare_video(task: tuple[str, str, str | None, float, float, int]) -> VideoResult:
    """Frames of one video into OUT/frames/<name>/ (skipped when complete). Any failure is returned, not raised,
    so that one bad video does not stop the others."""
    video, out, ffmpeg, start, duration, fps = task
    name = video_name(video)
    partial = os.path.join(out, "frames", f".partial.{name}")
    try:
        return _prepare_video(video, out, ffmpeg, start, duration, fps, partial)
    except Exception as error:  # every failure of this video becomes its one-line report
        shutil.rmtree(partial, ignore_errors=True)
        return VideoResult(video, error=_reason(error))


def _prepare_video(video: str, out: str, ffmpeg: str | None, start: float, duration: float, fps: int,
                   partial: str) -> VideoResult:
    name = video_name(video)
    folder = os.path.join(out, "frames", name)
    length = video_seconds(video)
    expected = expected_frames(max(0.0, min(duration, length - start)), fps)
    if expected == 0:
        raise VideoProblem(f"no frames in the requested seconds {start:g} .. {start + duration:g}: the video is "
                           f"{length:.2f} s long")
    if _has_all_frames(folder, name, expected):
        return VideoResult(video, len(os.listdir(folder)), skipped=True)
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    if ffmpeg:
        cut_dir = os.path.join(out, "videos_15min")
        os.makedirs(cut_dir, exist_ok=True)
        extract_with_ffmpeg(ffmpeg, video, os.path.join(cut_dir, os.path.basename(video)), partial, start,
                            duration, fps)
    else:
        extract_with_pyav(video, partial, start, duration, fps)
    if not os.listdir(partial):
        raise VideoProblem("no frame could be decoded")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    return VideoResult(video, len(os.listdir(folder)))


def _reason(error: Exception) -> str:
    """One line saying why a video failed."""
    if isinstance(error, av.FFmpegError):
        text = f"not a readable video ({getattr(error, 'strerror', None) or error})"
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    elif isinstance(error, VideoProblem):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def video_seconds(video: str) -> float:
    """Length of `video` in seconds: the container's duration, else the video stream's, else (a raw stream that
    states neither, such as an .m4v elementary stream) the span of its packets' timestamps plus one frame, read by
    demuxing without decoding."""
    if os.path.getsize(video) == 0:
        raise VideoProblem("empty file (0 bytes), not a video")
    with av.open(video) as container:
        if not container.streams.video:
            raise VideoProblem("no video stream")
        stream = container.streams.video[0]
        if container.duration is not None:
            return container.duration / av.time_base
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        stamps = np.unique([packet.pts if packet.pts is not None else packet.dts
                            for packet in container.demux(stream)
                            if packet.size and (packet.pts is not None or packet.dts is not None)])
        if len(stamps) == 0:
            raise VideoProblem("no duration and no packet timestamps: re-mux it, e.g. `ffmpeg -i VIDEO -c copy "
                               "out.mp4`")
        step = float(np.median(np.diff(stamps))) if len(stamps) > 1 else 0.0
        return float(stamps[-1] - stamps[0] + step) * float(stream.time_base)


def read_video_ids(source: str) -> dict[str, int | None]:
    """Video id -> its last keyframe second, in order of appearance: from an annotation CSV (`video,sec,...`), or
    from a text file of video file names (seconds None)."""
    videos: dict[str, int | None] = {}
    with open(source, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            if source.endswith(".csv"):
                fields = line.split(",")
                try:
                    second = int(float(fields[1]))
                except (IndexError, ValueError):
                    raise SystemExit(f"error: {source}:{line_number}: expected `video,sec,...`, got {line!r}")
                videos[fields[0]] = max(second, videos.get(fields[0]) or second)
            else:
                videos.setdefault(video_name(line), None)
    return videos


def write_frame_list(path: str, videos: list[str], frame_counts: dict[str, int]) -> None:
    """PySlowFast's frame list of `videos` with their counted frames (atomically)."""
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(FRAME_LIST_HEADER)
        for video_idx, video in enumerate(videos):
            handle.writelines(f'{video} {video_idx} {frame} {frame_file(video, frame)} ""\n'
                              for frame in range(frame_counts.get(video, 0)))
    os.replace(partial, path)


def frame_numbers(frame_dir: str, video: str) -> set[int]:
    """The 1-based numbers N of the files `<video>_N.jpg` (N zero-padded, as `frame_file` names them) in the video's
    folder; empty without a folder."""
    folder = os.path.join(frame_dir, video)
    if not os.path.isdir(folder):
        return set()
    pattern = re.compile(re.escape(video) + r"_(\d{6,})\.jpg")
    return {int(match.group(1)) for match in map(pattern.fullmatch, os.listdir(folder)) if match}


def count_frames(frame_dir: str, video: str, numbers: set[int] | None = None) -> int:
    """The number of consecutive frames `<video>_000001.jpg`, `<video>_000002.jpg`, ... from the first in the video's
    folder (0 without a folder): a gap stops the count before it. `numbers`: the folder's `frame_numbers`, when
    already listed."""
    numbers = frame_numbers(frame_dir, video) if numbers is None else numbers
    count = 0
    while count + 1 in numbers:
        count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--videos", help="folder of the official AVA videos (<id>.mp4 / .mkv / .webm)")
    parser.add_argument("--out", required=True, help="dataset root: frames/, frame_lists/, videos_15min/")
    parser.add_argument("--start", type=float, default=900.0, help="cut start in seconds (AVA: 900)")
    parser.add_argument("--duration", type=float, default=901.0, help="cut length in seconds (AVA: 901)")
    parser.add_argument("--fps", type=int, default=FPS, help="frame rate of the extracted frames (AVA: 30)")
    parser.add_argument("--backend", choices=("auto", "ffmpeg", "pyav"), default="auto",
                        help="auto: ffmpeg when found on the PATH (or --ffmpeg), else PyAV")
    parser.add_argument("--ffmpeg", default="ffmpeg", help="the ffmpeg executable")
    parser.add_argument("--jobs", type=int, default=1, help="videos processed in parallel")
    parser.add_argument("--lists", nargs="*", default=[], metavar="NAME=SOURCE",
                        help="frame lists to write: NAME (e.g. train.csv) = annotation CSV or list of video names")
    parser.add_argument("--check", action="store_true", help="extract nothing: only write the lists and check")
    args = parser.parse_args(argv)

    ffmpeg = None
    if args.backend != "pyav":
        ffmpeg = shutil.which(args.ffmpeg)
        if ffmpeg is None and args.backend == "ffmpeg":
            raise SystemExit(f"error: --backend ffmpeg: {args.ffmpeg} not found")
    failures = 0
    if not args.check:
        if not args.videos or not os.path.isdir(args.videos):
            raise SystemExit(f"error: --videos: not a folder: {args.videos}")
        videos = sorted(os.path.join(args.videos, n) for n in os.listdir(args.videos)
                        if n.lower().endswith(VIDEO_EXTENSIONS))
        if not videos:
            raise SystemExit(f"error: --videos: no {'/'.join(VIDEO_EXTENSIONS)} file in {args.videos}")
        os.makedirs(os.path.join(args.out, "frames"), exist_ok=True)
        print(f"extracting {len(videos)} videos with {'ffmpeg (' + ffmpeg + ')' if ffmpeg else 'PyAV'}: "
              f"{args.duration:g} s from {args.start:g} s at {args.fps} fps", flush=True)
        tasks = [(video, args.out, ffmpeg, args.start, args.duration, args.fps) for video in videos]
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for result in tqdm(pool.map(prepare_video, tasks), total=len(tasks), desc="videos"):
                if result.error:
                    failures += 1
                    tqdm.write(f"failed: {result.video}: {result.error}", file=sys.stderr)
                else:
                    tqdm.write(f"{video_name(result.video)}: {result.frames} frames"
                               f"{' (already there)' if result.skipped else ''}", file=sys.stdout)
        if failures:
            print(f"error: {failures} of {len(videos)} videos failed (each named above); the others are extracted",
                  file=sys.stderr, flush=True)

    frame_dir = os.path.join(args.out, "frames")
    problems = 0
    for spec in args.lists:
        name, _, source = spec.partition("=")
        if not name or not source or not os.path.isfile(source):
            raise SystemExit(f"error: --lists {spec}: expected NAME=SOURCE with an existing SOURCE file")
        last_seconds = read_video_ids(source)
        videos = list(last_seconds)
        numbers = {video: frame_numbers(frame_dir, video) for video in videos}
        counts = {video: count_frames(frame_dir, video, numbers[video]) for video in videos}
        os.makedirs(os.path.join(args.out, "frame_lists"), exist_ok=True)
        write_frame_list(os.path.join(args.out, "frame_lists", name), videos, counts)
        # A video needs its frames up to its last keyframe, frame (sec - 900) x 30 as the AVA loader reads it.
        needed = {video: 1 if sec is None else (sec - AVA_START_SEC) * args.fps + 1
                  for video, sec in last_seconds.items()}
        paths = {video: [os.path.join(frame_dir, frame_file(video, i)) for i in range(max(counts[video], 1))]
                 for video in videos}
        check = check_frames(paths, needed)
        check.short = [(video, want, counts[video]) for video, want, _ in check.short]  # the frames the list has
        check.missing = [video for video in check.missing if not numbers[video]]  # files, but not frame 1: a gap
        check.gaps = [(video, counts[video] + 1, len(numbers[video]) - counts[video]) for video in videos
                      if len(numbers[video]) > counts[video]]
        print(f"{name}: {len(videos)} videos, {sum(counts.values())} frames; {check.summary()}", flush=True)
        for video in check.missing:
            print(f"  missing: {os.path.join(frame_dir, video)}")
        for video, want, present in check.short:
            print(f"  short:   {os.path.join(frame_dir, video)}: {present} frames, {want} needed")
        for video, absent, after in check.gaps:
            print(f"  gap:     {os.path.join(frame_dir, video)}: {os.path.basename(frame_file(video, absent - 1))} "
                  f"is missing; the list stops before it ({after} later frame files left out)")
        problems += not check.ok
    return 1 if problems or failures else 0


if __name__ == "__main__":
    sys.exit(main())
