"""UCF101-24 / JHMDB evaluation of frame detections: frame-mAP and video-mAP as the engine reports them, and the CLI.

Saved detections: the engine's test writes ``OUTPUT_DIR/frame_detections_<split>.npz`` (numpy's npz, no pickle):
    detections        float64 [N, 8] (video_index, frame 1-based, label 0-based, score, x1, y1, x2, y2): one row per
                      (detected box, class), boxes in pixels of the ground truth's annotation resolution
    videos            str [V] video names "<Class>/<video>" that video_index points into (the split's test videos)
    labels            str [C] class names, in label order; they must equal the ground truth's
    evaluated_frames  int64 [S, 2] (video_index, frame): the frames whose ground truth frame-mAP counts (the tested
                      ones, and keyframes skipped for damaged video); absent: every annotated frame
    frame_stride      int: every frame_stride-th frame was tested (the tube linker bridges that spacing)
A plain ``.npy`` array [N, 8] is read too; its video_index points into the ground truth's test videos of ``split``.

Frame-mAP@0.5: frame_map.py (ACT convention) on the ground truth cut to ``evaluated_frames``.
Video-mAP: per video and class the detections are linked into tubes (tubes.py, the greedy linker with LinkConfig's
defaults; with frame_stride k a tube survives k * (max_gap + 1) - 1 frames without a match instead of max_gap) and
scored by video_map.py against the full ground-truth tubes at ST-IoU 0.2, 0.5, 0.75 and averaged over
0.5:0.05:0.95. Tubes need the detections of every frame (ACT.TEST_ALL_FRAMES): from annotated frames only their
temporal extent comes from the ground truth and video-mAP is optimistic.

    python -m slowfast_bmvit.evaluation.act --groundtruth GT.pkl --detections DETS [--video] [--split N] [--json OUT]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import zipfile
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from slowfast_bmvit.evaluation.act_groundtruth import load_act_pickle
from slowfast_bmvit.evaluation.frame_map import frame_ap, split_videos
from slowfast_bmvit.evaluation.result_json import run_evaluator_cli
from slowfast_bmvit.evaluation.tubes import LinkConfig, link_all
from slowfast_bmvit.evaluation.video_map import DEFAULT_THRESHOLDS, video_ap_thresholds

logger = logging.getLogger(__name__)

__all__ = ["FrameDetections", "save_frame_detections", "read_frame_detections",
           "restrict_to_frames", "link_config_for_stride", "evaluate_act", "main"]

DETECTION_COLUMNS = "video_index, frame, label, score, x1, y1, x2, y2"
VIDEO_MAP_KEYS = tuple(f"{t:g}" for t in DEFAULT_THRESHOLDS) + ("0.5:0.95",)


class ActEvaluationError(ValueError):
    """A ground-truth or detection file that cannot be evaluated; the message names the file."""


@dataclass
class FrameDetections:
    """Frame detections of one split, as saved by the engine (see the module docstring for the fields)."""

    detections: np.ndarray  # float64 [N, 8]
    videos: list[str]
    labels: list[str] | None = None
    evaluated_frames: np.ndarray | None = None  # int64 [S, 2]
    frame_stride: int = 1


# ------------------------------------------------------------------------------------------------------------ files
def save_frame_detections(path: str | os.PathLike, detections: np.ndarray, videos: Sequence[str],
                          labels: Sequence[str], evaluated_frames: np.ndarray | None = None,
                          frame_stride: int = 1) -> None:
    """Write frame detections in the format :func:`read_frame_detections` reads (atomically)."""
    path = os.fspath(path)
    fields = {"detections": np.asarray(detections, np.float64).reshape(-1, 8),
              "videos": np.asarray(list(videos), dtype=str), "labels": np.asarray(list(labels), dtype=str),
              "frame_stride": np.int64(frame_stride)}
    if evaluated_frames is not None:
        fields["evaluated_frames"] = np.asarray(evaluated_frames, np.int64).reshape(-1, 2)
    partial = path + ".partial"
    with open(partial, "wb") as handle:
        np.savez_compressed(handle, **fields)
    os.replace(partial, path)


def read_frame_detections(path: str | os.PathLike, gt: Mapping, split: int = 1) -> FrameDetections:
    """Frame detections from the engine's .npz, or from a plain .npy [N, 8] on the test videos of ``split``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detections file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise ActEvaluationError(f"{path}: not a numpy .npz / .npy detections file ({error})") from None
    if isinstance(loaded, np.ndarray):
        result = FrameDetections(loaded, split_videos(gt, split))
    else:
        with loaded:
            missing = [key for key in ("detections", "videos") if key not in loaded.files]
            if missing:
                raise ActEvaluationError(f"{path}: no {' or '.join(missing)} array (the engine's "
                                         f"frame_detections_<split>.npz has detections, videos, labels, ...)")
            result = FrameDetections(
                loaded["detections"], [str(v) for v in loaded["videos"]],
                [str(v) for v in loaded["labels"]] if "labels" in loaded.files else None,
                loaded["evaluated_frames"] if "evaluated_frames" in loaded.files else None,
                int(loaded["frame_stride"]) if "frame_stride" in loaded.files else 1)
    _check_detections(path, result, gt)
    return result


def _check_detections(path: str, found: FrameDetections, gt: Mapping) -> None:
    dets = found.detections
    if dets.ndim != 2 or dets.shape[1] != 8 or not np.issubdtype(dets.dtype, np.number):
        raise ActEvaluationError(f"{path}: detections must be a numeric array [N, 8] ({DETECTION_COLUMNS}), got "
                                 f"{dets.dtype} {dets.shape}")
    found.detections = dets = dets.astype(np.float64)
    if not np.isfinite(dets).all():
        row = int(np.flatnonzero(~np.isfinite(dets).all(axis=1))[0])
        raise ActEvaluationError(f"{path}: detection row {row} is not finite: {dets[row].tolist()}")
    unknown = [video for video in found.videos if video not in gt["gttubes"]]
    if unknown:
        raise ActEvaluationError(f"{path}: {len(unknown)} of its {len(found.videos)} videos are not in the ground "
                                 f"truth, e.g. {unknown[0]!r}")
    if found.labels is not None and list(found.labels) != list(gt["labels"]):
        raise ActEvaluationError(f"{path}: its {len(found.labels)} class names differ from the ground truth's "
                                 f"{len(gt['labels'])} (e.g. {found.labels[:2]} vs {list(gt['labels'])[:2]})")
    video_index = dets[:, 0]
    outside = (video_index < 0) | (video_index >= len(found.videos)) | (video_index != np.round(video_index))
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise ActEvaluationError(f"{path}: {int(outside.sum())} detection row(s) with a video_index outside "
                                 f"0..{len(found.videos) - 1} (its {len(found.videos)} videos), e.g. row {row}: "
                                 f"{dets[row].tolist()}")
    if found.evaluated_frames is not None:
        problem = _evaluated_frames_problem(found.evaluated_frames, len(found.videos))
        if problem:
            raise ActEvaluationError(f"{path}: {problem}")
    if found.frame_stride < 1:
        raise ActEvaluationError(f"{path}: frame_stride {found.frame_stride} must be >= 1")


def _evaluated_frames_problem(evaluated_frames: np.ndarray, num_videos: int) -> str | None:
    """Why ``evaluated_frames`` is not an integer array [S, 2] of (video_index in 0..num_videos - 1, frame >= 1);
    None when it is."""
    frames = np.asarray(evaluated_frames)
    if frames.size == 0:
        return None
    if frames.ndim != 2 or frames.shape[1] != 2 or not np.issubdtype(frames.dtype, np.number) \
            or not np.array_equal(frames, np.round(frames)):
        return (f"evaluated_frames must be an integer array [S, 2] of (video_index, frame), got {frames.dtype} "
                f"{frames.shape}")
    bad = (frames[:, 0] < 0) | (frames[:, 0] >= num_videos) | (frames[:, 1] < 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        return (f"{int(bad.sum())} evaluated_frames row(s) with a video_index outside 0..{num_videos - 1} (its "
                f"{num_videos} videos) or a frame below 1, e.g. row {row}: {frames[row].tolist()}")
    return None


# ------------------------------------------------------------------------------------------------------- evaluation
def restrict_to_frames(gt: Mapping, evaluated_frames: np.ndarray, videos: Sequence[str]) -> dict:
    """The ground truth with every tube cut to ``evaluated_frames`` [S, 2] (video_index into ``videos``, frame).

    Testing every k-th frame (ACT.TEST_FRAME_STRIDE > 1) must not count the untested frames as misses.

    Raises:
        ValueError: ``evaluated_frames`` is not integer [S, 2], or a video_index is outside ``videos``.
    """
    problem = _evaluated_frames_problem(evaluated_frames, len(videos))
    if problem:
        raise ValueError(problem)
    evaluated = {(videos[int(v)], int(f)) for v, f in np.asarray(evaluated_frames).reshape(-1, 2)}
    tubes = {}
    for video, per_label in gt["gttubes"].items():
        tubes[video] = {label: [tube[[(video, int(f)) in evaluated for f in tube[:, 0]]] for tube in label_tubes]
                        for label, label_tubes in per_label.items()}
    return {**gt, "gttubes": tubes}


def link_config_for_stride(frame_stride: int) -> LinkConfig:
    """LinkConfig's defaults, with max_gap widened so that a tube tested every k-th frame bridges the same number
    of tested frames without a match."""
    return LinkConfig(max_gap=(LinkConfig.max_gap + 1) * frame_stride - 1)


def evaluate_act(gt: Mapping, detections: np.ndarray, videos: Sequence[str],
                 evaluated_frames: np.ndarray | None = None, frame_stride: int = 1, video: bool = True,
                 return_curves: bool = False) -> dict:
    """Frame-mAP@0.5 and (``video``) video-mAP of frame detections [N, 8] on ``videos`` of the ACT ground truth.

    Returns frame_map.frame_ap's dict ("mAP" is the frame-mAP, "per_class", "num_gt", ...) plus, with ``video``,
    "video_mAP" {"0.2", "0.5", "0.75", "0.5:0.95": mAP} and "video_per_class" {"0.2", "0.5", "0.75": {name: AP}},
    and "report_lines" (frame-AP per class, the video-mAPs, and last the frame-mAP).
    """
    frame_gt = gt if evaluated_frames is None else restrict_to_frames(gt, evaluated_frames, videos)
    result = frame_ap(frame_gt, detections, videos=videos, return_curves=return_curves)
    lines = [f"frame-AP@0.5/{name}: {ap!r}" for name, ap in result["per_class"].items()]
    if video:
        tubes = link_all(detections, videos, len(gt["labels"]), link_config_for_stride(frame_stride))
        summary = video_ap_thresholds(gt, tubes, videos=videos)
        result["video_mAP"] = {key: summary[key] for key in VIDEO_MAP_KEYS}
        result["video_per_class"] = {key: value["per_class"] for key, value in summary["per_threshold"].items()}
        lines += [f"video-mAP@{key}: {value!r}" for key, value in result["video_mAP"].items()]
    lines.append(f"frame-mAP@0.5: {result['mAP']!r}")  # last, like every report: the line of "mAP"
    result["report_lines"] = lines
    return result


# -------------------------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slowfast_bmvit.evaluation.act",
                                     description="UCF101-24 / JHMDB frame-mAP@0.5 (and video-mAP) of saved frame "
                                                 "detections, as the engine's test reports them.")
    parser.add_argument("--groundtruth", required=True, help="ACT ground-truth pickle (ACT.GT_FILE)")
    parser.add_argument("--detections", required=True,
                        help="frame_detections_<split>.npz written by the test, or a .npy array [N, 8] "
                             f"({DETECTION_COLUMNS}) on the test videos of --split")
    parser.add_argument("--video", action="store_true", help="also link tubes and report video-mAP")
    parser.add_argument("--split", type=int, default=1, help="test split of a plain .npy array (default 1)")

    def evaluate(args: argparse.Namespace) -> tuple[list[str], dict]:
        gt = load_act_pickle(args.groundtruth)
        found = read_frame_detections(args.detections, gt, args.split)
        result = evaluate_act(gt, found.detections, found.videos, found.evaluated_frames, found.frame_stride,
                              video=args.video)
        return result["report_lines"], {k: v for k, v in result.items() if k != "report_lines"}

    return run_evaluator_cli(parser, argv, evaluate)


if __name__ == "__main__":
    sys.exit(main())
