"""From per-clip detections to the dataset's official metric.

AVA-format datasets ("ava", "synthava") are scored with the AVA protocol (evaluation/ava.py): every kept box x
every evaluated class becomes a row; the ground truth is the dataset's GROUNDTRUTH_FILE, restricted as in
PySlowFast to keyframes with sec % 4 == 0 on val unless AVA.FULL_TEST_ON_VAL. UCF101-24 / JHMDB ("ucf24",
"jhmdb") are scored with frame-mAP on the dataset's ACT ground truth, boxes in annotation pixels, and at test also
with video-mAP at 0.2, 0.5, 0.75 and 0.5:0.95 (evaluation/act.py; `python -m slowfast_bmvit.evaluation.act`
repeats it offline on the saved frame_detections_test.npz).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from slowfast_bmvit.datasets.act_convert import annotated_frames
from slowfast_bmvit.evaluation.act import evaluate_act, save_frame_detections
from slowfast_bmvit.evaluation.ava import detections_from_predictions, evaluate_ava, format_result
from slowfast_bmvit.evaluation.ava_io import (
    AvaRows,
    read_exclusions,
    read_groundtruth_csv,
    read_labelmap,
    write_detections_csv,
)

logger = logging.getLogger(__name__)

AVA_FORMAT_DATASETS = ("ava", "synthava")


def _concatenate(rows: Sequence[AvaRows]) -> AvaRows:
    if not rows:
        return AvaRows.empty()
    return AvaRows(*(np.concatenate([getattr(r, name) for r in rows]) for name in ("video", "sec", "boxes", "action",
                                                                                  "score")))


def ava_rows(detections: Sequence[dict[str, Any]], class_ids: Sequence[int], video_names: Sequence[str]) -> AvaRows:
    """AVA detection rows of per-clip detections; class_scores column id-1 scores class id."""
    columns = np.asarray(class_ids, dtype=np.int64) - 1
    parts = []
    for clip in detections:
        boxes = np.asarray(clip["boxes"], dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            continue
        meta = clip["meta"]
        video = meta.get("video") or video_names[meta["video_idx"]]
        scores = np.asarray(clip["class_scores"], dtype=np.float64)[:, columns]
        parts.append(detections_from_predictions([video] * len(boxes), [meta["sec"]] * len(boxes), boxes, scores,
                                                 class_ids))
    return _concatenate(parts)


def evaluate_ava_detections(cfg, dataset, detections: Sequence[dict[str, Any]], split: str,
                            output_dir: str | None = None) -> dict:
    """AVA frame-mAP of `detections`; writes the detection CSV to output_dir when given."""
    files = dataset.evaluation_files
    categories, class_ids = read_labelmap(files["labelmap"])
    class_ids = sorted(class_ids)
    video_names = getattr(getattr(dataset, "frame_lists", None), "video_names", [])
    rows = ava_rows(detections, class_ids, video_names)
    groundtruth = read_groundtruth_csv(files["groundtruth"], class_ids)
    if split == "val" and not cfg.AVA.FULL_TEST_ON_VAL:
        groundtruth = groundtruth.select_seconds(lambda sec: sec % 4 == 0)
    excluded = read_exclusions(files["exclusions"]) if files.get("exclusions") else set()
    result = evaluate_ava(categories, groundtruth, rows, excluded, protocol=cfg.AVA.EVAL_PROTOCOL, return_curves=True)
    if result["nothing_can_match"]:
        logger.warning("%s mAP is meaningless, no detection can match: %s", split, result["nothing_can_match"])
    if output_dir:
        path = os.path.join(output_dir, f"detections_{split}.csv")
        write_detections_csv(path, rows.video, rows.sec, rows.boxes, rows.action, rows.score)
        result["detections_csv"] = path
    result["report_lines"] = format_result(result, categories)
    return result


def act_detection_array(detections: Sequence[dict[str, Any]]) -> np.ndarray:
    """Frame detections [N, 8] (video_index, frame, label 0-based, score, x1, y1, x2, y2 in annotation pixels)."""
    parts = []
    for clip in detections:
        boxes = np.asarray(clip["boxes"], dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            continue
        meta = clip["meta"]
        height, width = meta["orig_size"]
        pixels = boxes * np.array([width, height, width, height], dtype=np.float64)
        scores = np.asarray(clip["class_scores"], dtype=np.float64)
        num_boxes, num_classes = scores.shape
        labels = np.tile(np.arange(num_classes), num_boxes)
        repeated = np.repeat(np.arange(num_boxes), num_classes)
        parts.append(np.column_stack([
            np.full(len(labels), meta["video_idx"]), np.full(len(labels), meta["frame"]), labels,
            scores.reshape(-1), pixels[repeated],
        ]))
    return np.concatenate(parts) if parts else np.zeros((0, 8))


def _has_unannotated_frames(dataset) -> bool:
    """Does a video of the ACT dataset's split have frames outside every tube (UCF101-24 does, JHMDB does not)?"""
    gt = dataset.gt
    return any(len(annotated_frames(gt["gttubes"][video])) < int(gt["nframes"][video]) for video in dataset.video_names)


def evaluate_act_detections(cfg, dataset, detections: Sequence[dict[str, Any]], split: str,
                            output_dir: str | None = None) -> dict:
    """UCF101-24 / JHMDB frame-mAP of `detections` against the dataset's ACT ground truth (ACT.SPLIT); the test
    split also links tubes and reports video-mAP (evaluation/act.py; validation keeps to the cheaper frame-mAP)."""
    array = act_detection_array(detections)
    # The ground truth of the tested frames counts, and that of keyframes skipped for damaged video (as missed).
    evaluated = np.concatenate([dataset.keyframes, getattr(dataset, "keyframes_skipped", np.zeros((0, 2)))])
    video = split == "test"
    if video and not cfg.ACT.TEST_ALL_FRAMES and _has_unannotated_frames(dataset):
        logger.warning("video-mAP from annotated frames only (ACT.TEST_ALL_FRAMES False): the tubes' temporal extent "
                       "comes from the ground truth, so it is optimistic; the ACT protocol tests every frame")
    result = evaluate_act(dataset.gt, array, dataset.video_names, evaluated, cfg.ACT.TEST_FRAME_STRIDE, video=video,
                          return_curves=True)
    if video:
        logger.info("%s: frame-mAP@0.5 %.4f, video-mAP %s", split, result["mAP"],
                    ", ".join(f"@{key} {value:.4f}" for key, value in result["video_mAP"].items()))
    if output_dir:
        path = os.path.join(output_dir, f"frame_detections_{split}.npz")
        save_frame_detections(path, array, dataset.video_names, dataset.labels, evaluated, cfg.ACT.TEST_FRAME_STRIDE)
        result["detections_file"] = path
    return result


def evaluate_detections(cfg, dataset, detections: Sequence[dict[str, Any]], split: str,
                        output_dir: str | None = None) -> dict:
    """The official metric of the test dataset: a dict with "mAP", "per_class" and "report_lines"."""
    name = cfg.TEST.DATASET.lower()
    if name in AVA_FORMAT_DATASETS or hasattr(dataset, "evaluation_files"):
        return evaluate_ava_detections(cfg, dataset, detections, split, output_dir)
    return evaluate_act_detections(cfg, dataset, detections, split, output_dir)
