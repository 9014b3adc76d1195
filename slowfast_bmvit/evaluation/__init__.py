"""Evaluation protocols: AVA v2.2 frame-mAP, UCF101-24 / JHMDB frame-mAP and video-mAP.

This subpackage is a numpy library: it never imports torch, so the evaluators run anywhere.

Modules: ava_io (AVA files), ava (the AVA protocol + CLI), act_groundtruth (the ACT ground-truth pickle: reader and
validator), act (UCF101-24 / JHMDB saved detections: frame- and video-mAP as the engine reports them + CLI),
frame_map, video_map, tubes (3D NMS, linking), matching (greedy max-IoU matching), ap (PR curves, VOC / ACT AP),
iou.  The main entry points are also reachable here, imported lazily (so ``python -m slowfast_bmvit.evaluation.ava``
does not import itself twice).
"""

import importlib

_EXPORTS = {
    "evaluate_ava": "ava",
    "evaluate_ava_files": "ava",
    "AvaEvaluator": "ava",
    "detections_from_predictions": "ava",
    "AvaRows": "ava_io",
    "read_labelmap": "ava_io",
    "read_exclusions": "ava_io",
    "read_groundtruth_csv": "ava_io",
    "read_detections_csv": "ava_io",
    "write_detections_csv": "ava_io",
    "load_act_pickle": "act_groundtruth",
    "evaluate_act": "act",
    "read_frame_detections": "act",
    "save_frame_detections": "act",
    "frame_ap": "frame_map",
    "video_ap": "video_map",
    "video_ap_thresholds": "video_map",
    "LinkConfig": "tubes",
    "link_tubes": "tubes",
    "link_all": "tubes",
    "nms3d": "tubes",
    "tube_iou": "tubes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
