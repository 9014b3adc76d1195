"""The final test: detections on the test split, the official metric, and the files a researcher looks at.

Written to OUTPUT_DIR: the detections (AVA CSV, or frame_detections_test.npz for UCF101-24 / JHMDB, see
evaluation/act.py), `test_results.json` (per-class AP, mAP, group mAPs; video-mAP for UCF101-24 / JHMDB; under
"checkpoint" the tested file, its epoch and its sha256), `test_results.txt` (the printed report), a per-class AP
bar plot, DEMO.NUM_VIS_KEYFRAMES keyframes with the detections of p(actor) > 0.5 drawn, with
TEST.SAVE_RESULTS_PATH the raw per-clip detections (pickle), and with TENSORBOARD.ENABLE the metric and AP plots in
the event files.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from typing import Any, Sequence

import cv2

from slowfast_bmvit.datasets import construct_loader, prepare_datasets
from slowfast_bmvit.evaluation.result_json import write_result_json
from slowfast_bmvit.models import build_model, unwrap_model
from slowfast_bmvit.utils.complexity import log_model_info
from slowfast_bmvit.utils.logging import setup_logging
from slowfast_bmvit.visualization.tensorboard import open_tensorboard

from . import distributed as du
from .amp import device_of
from .evaluator import evaluate_detections
from .inference import run_inference
from .meters import log_json_stats
from .task import DetectionTask, uses_input_boxes
from .trained_checkpoint import load_test_checkpoint

logger = logging.getLogger(__name__)

# Drawn keyframes show the triplets with p(actor) above this (the paper's visualisation threshold); the metric
# uses BMVIT.ACTOR_THRESH, usually lower.
VISUALISATION_ACTOR_THRESH = 0.5


def write_results(cfg, result: dict) -> str:
    """test_results.json and test_results.txt in OUTPUT_DIR; returns the json path."""
    keep = {key: value for key, value in result.items() if key not in ("curves", "report_lines")}
    json_path = os.path.join(cfg.OUTPUT_DIR, "test_results.json")
    write_result_json(json_path, keep)
    with open(os.path.join(cfg.OUTPUT_DIR, "test_results.txt"), "w") as handle:
        handle.write("\n".join(result["report_lines"]) + "\n")
    return json_path


def save_raw_detections(path: str, detections: Sequence[dict[str, Any]]) -> str:
    """Pickle the per-clip detections to `path` (atomically): a list, in dataset order, of dicts with "boxes" [k, 4]
    (x1, y1, x2, y2 as fractions of the original frame), "class_scores" [k, C], "actor_scores" [k] as float32 numpy
    arrays, and the clip's "meta" dict. Readable without torch."""
    def plain(value: Any) -> Any:
        if hasattr(value, "numpy"):
            return value.detach().cpu().numpy()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "wb") as handle:
        pickle.dump([plain(clip) for clip in detections], handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)
    return path


def column_class_names(dataset, num_classes: int) -> list[str]:
    """The class name of every score column ("" for columns no class uses)."""
    names = [""] * num_classes
    for category in getattr(dataset, "categories", []):  # AVA-format: column = id - 1
        if 1 <= int(category["id"]) <= num_classes:
            names[int(category["id"]) - 1] = category["name"]
    for column, name in enumerate(getattr(dataset, "labels", [])[:num_classes]):  # ACT: column = label
        names[column] = name
    return names


def write_visualisations(cfg, dataset, detections: Sequence[dict[str, Any]], result: dict) -> list[str]:
    """The per-class AP plot and DEMO.NUM_VIS_KEYFRAMES keyframes with their detections; returns the paths."""
    from slowfast_bmvit.visualization.ap_plots import plot_per_class_ap
    from slowfast_bmvit.visualization.boxes import draw_detections, save_png

    written = []
    if cfg.DEMO.PLOT_AP and result.get("per_class"):
        path = os.path.join(cfg.OUTPUT_DIR, "per_class_ap.png")
        plot_per_class_ap(result["per_class"], path, title=f"{cfg.TEST.DATASET}: mAP {result['mAP']:.4f}")
        written.append(path)
    if cfg.DEMO.NUM_VIS_KEYFRAMES <= 0 or not detections:
        return written
    class_names = column_class_names(dataset, cfg.MODEL.NUM_CLASSES)
    step = max(1, len(detections) // cfg.DEMO.NUM_VIS_KEYFRAMES)
    for clip in list(detections)[::step][: cfg.DEMO.NUM_VIS_KEYFRAMES]:
        meta = clip["meta"]
        tag = meta["sec"] if meta.get("sec") is not None else meta.get("frame")
        path = os.path.join(cfg.OUTPUT_DIR, "keyframes", f"{str(meta['video']).replace('/', '_')}_{tag}.png")
        image = dataset.keyframe_image(meta)
        # Small frames (SynthAVA) are enlarged so that the labels stay readable; boxes are normalised.
        scale = max(1, math.ceil(480 / max(image.shape[:2])))
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        shown = clip["actor_scores"].numpy() > VISUALISATION_ACTOR_THRESH
        drawn = draw_detections(image, clip["boxes"].numpy()[shown], clip["class_scores"].numpy()[shown],
                                class_names, top_k=3, score_thresh=0.1)
        written.append(str(save_png(drawn, path)))
    return written


def test(cfg) -> dict | None:
    """Test `cfg.MODEL.MODEL_NAME` on TEST.DATASET; returns the metric dict on the main process."""
    du.seed_process(cfg.RNG_SEED, deterministic=cfg.DETERMINISTIC)
    setup_logging(cfg.OUTPUT_DIR, du.is_master_proc())
    writer = open_tensorboard(cfg, du.is_master_proc())
    model = build_model(cfg)
    tested = load_test_checkpoint(cfg, model)
    task = DetectionTask(cfg, model).to(device_of(cfg))
    if cfg.LOG_MODEL_INFO and du.is_master_proc():
        log_model_info(unwrap_model(model), cfg, cfg.DATA.TEST_CROP_SIZE)
    prepare_datasets(cfg, [cfg.TEST.DATASET])
    loader = construct_loader(cfg, "test", model_reads_boxes=uses_input_boxes(model))
    detections = run_inference(cfg, loader, model, task, desc="test")
    if not du.is_master_proc():
        return None
    dataset = loader.dataset.dataset
    result = evaluate_detections(cfg, dataset, detections, "test", output_dir=cfg.OUTPUT_DIR)
    result["checkpoint"] = tested.as_dict()
    write_results(cfg, result)
    for path in write_visualisations(cfg, dataset, detections, result):
        logger.info("wrote %s", path)
    if cfg.TEST.SAVE_RESULTS_PATH:
        path = save_raw_detections(os.path.join(cfg.OUTPUT_DIR, cfg.TEST.SAVE_RESULTS_PATH), detections)
        logger.info("wrote %s", path)
    video_maps = {f"video_map@{key}": value for key, value in result.get("video_mAP", {}).items()}
    stats = {"_type": "test", "map": result["mAP"], **video_maps, "num_clips": len(detections)}
    log_json_stats(stats, cfg.OUTPUT_DIR)
    if writer is not None:
        step = tested.epoch or 0
        writer.add_stats(stats, step)
        writer.add_evaluation("test", result, step)
        writer.close()
    # The report goes to stdout as plain lines (the last one is the mAP) and to the log file.
    for line in result["report_lines"]:
        logger.debug(line)
    print("\n".join(result["report_lines"]), flush=True)
    return result
