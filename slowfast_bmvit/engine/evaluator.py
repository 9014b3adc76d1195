"""From per-clip detections to the dataset's official metric.

AVA-format datasets ("ava", "synthava") are scored with the AVA protocol (evaluation/ava.py): every kept box x
every evaluated class becomes a row; the ground truth is the dataset's GROUNDTRUTH_FILE, restricted as in
PySlowFast to keyframes with sec % 4 == 0 on val unless AVA.FULL_TEST_ON_VAL. UCF101-24 / JHMDB ("ucf24",
"jhmdb") are scored with frame-mAP (evaluation/frame_map.py) on the dataset's ACT ground truth, boxes in
annotation pixels.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from slowfast_bmvit.evaluation.ava import detections_from_predictions, evaluate_ava, format_result
from slowfast_bmvit.evaluation.ava_io import (
    AvaRows,
    read_exclusions,
    read_groundtruth_csv,
    read_labelmap,
    write_detections_csv,
)
from slowfast_bmvit.evaluation.frame_map import frame_ap

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


def tested_groundtruth(groundtruth: dict, keyframes: np.ndarray, video_names: Sequence[str]) -> dict:
    """The ground truth with every tube cut to the frames that were tested (keyframes [S, 2] of (video_idx, frame)).

    Testing every k-th frame (ACT.TEST_FRAME_STRIDE > 1) must not count the skipped frames as misses.
    """
    tested = {(video_names[int(v)], int(f)) for v, f in np.asarray(keyframes).reshape(-1, 2)}
    tubes = {}
    for video, per_label in groundtruth["gttubes"].items():
        tubes[video] = {label: [tube[[(video, int(f)) in tested for f in tube[:, 0]]] for tube in label_tubes]
                        for label, label_tubes in per_label.items()}
    return {**groundtruth, "gttubes": tubes}


def evaluate_act_detections(cfg, dataset, detections: Sequence[dict[str, Any]], split: str,
                            output_dir: str | None = None) -> dict:
    """UCF101-24 / JHMDB frame-mAP of `detections` against the dataset's ACT ground truth (ACT.SPLIT)."""
    groundtruth = dataset.gt
    if cfg.ACT.TEST_FRAME_STRIDE > 1:
        groundtruth = tested_groundtruth(groundtruth, dataset.keyframes, dataset.video_names)
    array = act_detection_array(detections)
    result = frame_ap(groundtruth, array, videos=dataset.video_names, return_curves=True)
    if output_dir:
        path = os.path.join(output_dir, f"frame_detections_{split}.npy")
        np.save(path, array)
        result["detections_file"] = path
    result["report_lines"] = [f"frame-AP@0.5/{name}: {ap!r}" for name, ap in result["per_class"].items()]
    result["report_lines"].append(f"frame-mAP@0.5: {result['mAP']!r}")
    return result


def evaluate_detections(cfg, dataset, detections: Sequence[dict[str, Any]], split: str,
                        output_dir: str | None = None) -> dict:
    """The official metric of the test dataset: a dict with "mAP", "per_class" and "report_lines"."""
    name = cfg.TEST.DATASET.lower()
    if name in AVA_FORMAT_DATASETS or hasattr(dataset, "evaluation_files"):
        return evaluate_ava_detections(cfg, dataset, detections, split, output_dir)
    return evaluate_act_detections(cfg, dataset, detections, split, output_dir)
