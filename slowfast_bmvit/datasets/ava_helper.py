"""Readers of PySlowFast's AVA files: frame lists and person-box CSVs (ground truth or predicted).

Frame list (FRAME_LIST_DIR/{train,val}.csv): a header line, then space-separated rows
    original_video_id video_idx frame_idx path labels
where frame_idx is 0-based and path is relative to FRAME_DIR (the labels column is unused). Videos are indexed in
order of first appearance over the lists (the file's video_idx column is not trusted, as upstream).

Box CSV (ANNOTATION_DIR/*.csv, no header), one row per (box, action):
    video,sec,x1,y1,x2,y2,action_id,person_id      ground truth (person_id unused)
    video,sec,x1,y1,x2,y2,action_id,score          predicted boxes (action_id may be empty)
Rows of one person are grouped by the exact coordinate string within (video, sec), as upstream. Predicted rows
below the score threshold are dropped. A malformed field that is used raises ValueError("<path>:<line>: ..."); a
malformed person_id (unused), coordinates outside [0, 1] (clipped) and boxes empty after clipping (dropped) are
counted and logged once per file.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

logger = logging.getLogger(__name__)

# AVA frames are extracted at 30 fps from the 15-minute cut starting at second 900.
FPS = 30
AVA_START_SEC = 900


def sec_to_frame(sec: int) -> int:
    """0-based frame index of keyframe second `sec` (second 900 is frame 0)."""
    return (sec - AVA_START_SEC) * FPS


def frame_file(video: str, frame_idx: int) -> str:
    """Path of 0-based frame `frame_idx` of `video` relative to FRAME_DIR: `<video>/<video>_%06d.jpg` (1-based
    number in the name), the layout PySlowFast's extraction script writes."""
    return f"{video}/{video}_{frame_idx + 1:06d}.jpg"


@dataclass
class FrameCheck:
    """Frame folders checked against the frames the annotations need.

    missing: videos whose first frame is absent (no folder, or an empty one);
    short: (video, frames needed, frame files present) of folders that stop before the last needed frame;
    gaps: (video, first absent frame number (1-based, as in the file names), frame files after it) of folders whose
        numbering has a hole: filled by tools/prepare_ava.py, which lists every folder (`check_frames` looks up
        only the first and the last needed frame).
    """

    num_videos: int
    missing: list[str] = field(default_factory=list)
    short: list[tuple[str, int, int]] = field(default_factory=list)
    gaps: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.short and not self.gaps

    def summary(self) -> str:
        """One line: how many videos are missing or short, with the first of each."""
        if self.ok:
            return f"all {self.num_videos} videos have their frames"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} of {self.num_videos} videos have no frames (e.g. {self.missing[0]})")
        if self.short:
            video, needed, present = self.short[0]
            parts.append(f"{len(self.short)} stop early (e.g. {video}: {present} frames, {needed} needed)")
        if self.gaps:
            video, absent, _ = self.gaps[0]
            parts.append(f"{len(self.gaps)} have a gap (e.g. {video}: frame {absent} is missing)")
        return "; ".join(parts)


def check_frames(frame_paths: dict[str, Sequence[Optional[str]]], needed: dict[str, int]) -> FrameCheck:
    """Whether each video of `needed` (video -> number of frames it must have) has its frames on disk.

    `frame_paths` gives each video's frame files by 0-based index (a frame list's paths, or `frame_file`'s);
    only the first and the last needed frame are looked up, and a short folder's files are counted.
    """
    check = FrameCheck(num_videos=len(needed))
    for video, count in needed.items():
        paths = frame_paths.get(video) or []
        if not paths or not paths[0] or not os.path.isfile(paths[0]):
            check.missing.append(video)
            continue
        last = paths[count - 1] if len(paths) >= count else None
        if last is None or not os.path.isfile(last):
            folder = os.path.dirname(paths[0])
            present = sum(1 for name in os.listdir(folder) if name.endswith(os.path.splitext(paths[0])[1]))
            check.short.append((video, count, present))
    return check


@dataclass
class FrameLists:
    """Frames of every listed video.

    video_names: [V] names, index = video_idx.
    frame_paths: [V] lists indexed by 0-based frame index: absolute path, or None where the list has no row.
    """

    video_names: list[str] = field(default_factory=list)
    frame_paths: list[list[Optional[str]]] = field(default_factory=list)

    def index_of(self) -> dict[str, int]:
        """video name -> video_idx."""
        return {name: index for index, name in enumerate(self.video_names)}


def load_frame_lists(list_files: Sequence[str], frame_dir: str) -> FrameLists:
    """Read PySlowFast frame lists; paths are joined to `frame_dir`.

    Raises FileNotFoundError for a missing list and ValueError("<path>:<line>: ...") for a malformed row or a frame
    listed twice. Frame indices missing from a video's rows are logged (counted) and become None (read as missing).
    """
    video_index: dict[str, int] = {}
    by_video: list[dict[int, str]] = []
    for list_file in list_files:
        if not os.path.isfile(list_file):
            raise FileNotFoundError(f"frame list not found: {list_file}")
        with open(list_file, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if lineno == 1 or not line.strip():
                    continue  # header
                fields = line.split()
                if len(fields) < 4:
                    raise ValueError(f"{list_file}:{lineno}: expected `original_video_id video_idx frame_idx path "
                                     f"labels`, got {len(fields)} field(s)")
                name, frame_text, rel_path = fields[0], fields[2], fields[3]
                try:
                    frame_idx = int(frame_text)
                except ValueError:
                    raise ValueError(f"{list_file}:{lineno}: frame_idx {frame_text!r} is not an integer") from None
                if frame_idx < 0:
                    raise ValueError(f"{list_file}:{lineno}: frame_idx {frame_idx} is negative")
                if name not in video_index:
                    video_index[name] = len(by_video)
                    by_video.append({})
                frames = by_video[video_index[name]]
                if frame_idx in frames:
                    raise ValueError(f"{list_file}:{lineno}: frame {frame_idx} of video {name} is listed twice")
                frames[frame_idx] = os.path.join(frame_dir, rel_path)
    lists = FrameLists(video_names=list(video_index))
    num_gaps = 0
    for name, frames in zip(lists.video_names, by_video):
        length = max(frames) + 1
        paths: list[Optional[str]] = [None] * length
        for frame_idx, path in frames.items():
            paths[frame_idx] = path
        gaps = length - len(frames)
        if gaps:
            num_gaps += gaps
            logger.warning("frame list: video %s has no row for %d of its %d frames (read as missing frames)",
                           name, gaps, length)
        lists.frame_paths.append(paths)
    logger.info("frame lists %s: %d videos, %d frames (%d without a row)", ", ".join(list_files),
                len(lists.video_names), sum(len(p) for p in lists.frame_paths), num_gaps)
    return lists


@dataclass
class PersonBoxes:
    """One person at a keyframe: box (x1, y1, x2, y2) normalised to [0, 1], and its action ids (may be empty)."""

    box: tuple[float, float, float, float]
    actions: list[int] = field(default_factory=list)


# (video, sec) -> {exact coordinate string -> PersonBoxes}, in file order.
KeyframeBoxes = dict[tuple[str, int], dict[str, PersonBoxes]]


@dataclass
class _FileCounts:
    rows: int = 0
    below_threshold: int = 0
    clipped: int = 0
    first_clipped_line: int = 0
    bad_person: int = 0
    first_bad_person_line: int = 0
    empty: int = 0
    first_empty_line: int = 0
    no_person: int = 0  # ground-truth `video,sec` rows: an annotated keyframe without persons


def _parse_float(text: str, what: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {what} {text!r} is not a finite number")
    return value


def _parse_int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: {what} {text!r} is not an integer") from None


def load_box_csvs(files: Iterable[tuple[str, bool]], score_thresh: float,
                  keep_sec: Optional[Callable[[int], bool]] = None,
                  boxes: Optional[KeyframeBoxes] = None) -> KeyframeBoxes:
    """Read box CSVs into {(video, sec): {coordinate string: PersonBoxes}}; a ground-truth `video,sec` row (the
    challenge files' keyframe without persons) gives its key an empty mapping.

    Args:
        files: (path, is_ground_truth) pairs; predicted-box files (is_ground_truth False) carry a score in column 8.
        score_thresh: predicted rows with score < score_thresh are dropped (AVA.DETECTION_SCORE_THRESH).
        keep_sec: optional predicate on the integer second; other rows are skipped (e.g. sec % 4 == 0 on val).
        boxes: an existing mapping to add to (rows of one box from several files merge their actions).
    """
    boxes = {} if boxes is None else boxes
    for path, is_gt in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"box CSV not found: {path}")
        counts = _FileCounts()
        with open(path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                _parse_row(line, f"{path}:{lineno}", lineno, is_gt, score_thresh, keep_sec, boxes, counts)
        _log_file_counts(path, is_gt, counts)
    return boxes


def _parse_row(line: str, where: str, lineno: int, is_gt: bool, score_thresh: float, keep_sec, boxes: KeyframeBoxes,
               counts: _FileCounts) -> None:
    row = line.split(",")
    expected = "7 or 8 (video,sec,x1,y1,x2,y2,action_id[,person_id]), or 2 (video,sec)" if is_gt else \
        "8 (video,sec,x1,y1,x2,y2,action_id,score)"
    if len(row) not in ((2, 7, 8) if is_gt else (8,)):
        raise ValueError(f"{where}: expected {expected} columns, got {len(row)}")
    video = row[0].strip()
    if not video:
        raise ValueError(f"{where}: empty video id")
    sec = _parse_int(row[1], "timestamp", where)
    counts.rows += 1
    if keep_sec is not None and not keep_sec(sec):
        return
    if len(row) == 2:
        # The ActivityNet challenge files list a keyframe without persons this way: it is annotated (a detection
        # on it is a false positive), it has no box.
        boxes.setdefault((video, sec), {})
        counts.no_person += 1
        return
    if not is_gt and _parse_float(row[7], "score", where) < score_thresh:
        counts.below_threshold += 1
        return
    coords = [_parse_float(text, name, where) for name, text in zip(("x1", "y1", "x2", "y2"), row[2:6])]
    action_text = row[6].strip()
    action = _parse_int(action_text, "action_id", where) if action_text else -1
    if is_gt and len(row) == 8:
        try:
            int(row[7])
        except ValueError:
            counts.bad_person += 1
            counts.first_bad_person_line = counts.first_bad_person_line or lineno
    clipped = [min(max(value, 0.0), 1.0) for value in coords]
    if clipped != coords:
        counts.clipped += 1
        counts.first_clipped_line = counts.first_clipped_line or lineno
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        counts.empty += 1
        counts.first_empty_line = counts.first_empty_line or lineno
        return
    persons = boxes.setdefault((video, sec), {})
    person = persons.get(",".join(row[2:6]))
    if person is None:
        person = persons[",".join(row[2:6])] = PersonBoxes(tuple(clipped))
    if action > 0 and action not in person.actions:
        person.actions.append(action)


def _log_file_counts(path: str, is_gt: bool, counts: _FileCounts) -> None:
    logger.info("%s: %d rows%s", path, counts.rows,
                "" if is_gt else f", {counts.below_threshold} below the detection score threshold")
    if counts.clipped:
        logger.warning("%s: %d row(s) with coordinates outside [0, 1] clipped, first at line %d",
                       path, counts.clipped, counts.first_clipped_line)
    if counts.empty:
        logger.warning("%s: %d row(s) with an empty box (x1 >= x2 or y1 >= y2 after clipping) dropped, first at "
                       "line %d", path, counts.empty, counts.first_empty_line)
    if counts.no_person:
        logger.info("%s: %d keyframe row(s) without persons (video,sec)", path, counts.no_person)
    if counts.bad_person:
        logger.warning("%s: %d row(s) with a malformed person_id (unused; row kept), first at line %d",
                       path, counts.bad_person, counts.first_bad_person_line)
