#!/usr/bin/env python3
"""Where a trained BMViT loses AVA mAP on its test split: localisation, token ranking or classification.

    python tools/diagnose_bmvit.py --cfg configs/SYNTH/BMViT_demo.yaml [KEY VALUE ...]

Loads the checkpoint `tools/run_net.py` would test (TEST.CHECKPOINT_FILE_PATH, else the newest in OUTPUT_DIR; it
must fill the whole model unless TEST.ALLOW_RANDOM_WEIGHTS, and the report names its epoch and sha256), runs the
test split of an AVA-format dataset on every annotated keyframe with its ground-truth persons (as the test of a
single-stage model does; the forward pass on one GPU when NUM_GPUS > 0 and CUDA is available, else on the CPU)
and prints, besides the official mAP: class-agnostic person AP, recall at IoU 0.5, the IoU of the token the training matcher
assigns to each actor versus the token the actor score ranks first, and the class AP given each actor's best box
(slowfast_bmvit/evaluation/error_analysis.py explains each number). With TEST.FLIP_AVERAGE, as in the test, every
number reads the flip-averaged triplets. The summary is also written to OUTPUT_DIR/diagnosis.json.
"""

import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.datasets import build_dataset, prepare_dataset  # noqa: E402
from slowfast_bmvit.datasets.collate import detection_collate  # noqa: E402
from slowfast_bmvit.engine.trained_checkpoint import load_test_checkpoint  # noqa: E402
from slowfast_bmvit.engine.evaluator import evaluate_detections  # noqa: E402
from slowfast_bmvit.evaluation.ava_io import read_labelmap  # noqa: E402
from slowfast_bmvit.evaluation.error_analysis import analyze_clip, class_agnostic_ap, summarize  # noqa: E402
from slowfast_bmvit.models import build_model  # noqa: E402
from slowfast_bmvit.models.flip_average import test_time_outputs  # noqa: E402
from slowfast_bmvit.models.heads import class_activation, class_probabilities  # noqa: E402
from slowfast_bmvit.models.matcher import build_matcher  # noqa: E402
from slowfast_bmvit.models.postprocess import postprocess_from_cfg  # noqa: E402
from slowfast_bmvit.utils.cli import (  # noqa: E402
    exit_on_config_error,
    exit_on_package_error,
    load_job_config,
    parse_args,
)


@torch.no_grad()
def diagnose(cfg) -> dict:
    """The diagnosis dict of cfg's model on its test split (see the module docstring)."""
    if not cfg.DETECTION.ENABLE:
        raise ConfigError("DETECTION.ENABLE must be True: the diagnosis compares the detections with the "
                          "ground-truth persons of each test clip")
    prepare_dataset(cfg.TEST.DATASET, cfg)
    # Every annotated keyframe with its ground-truth persons, as the test of a single-stage model reads them.
    dataset = build_dataset(cfg.TEST.DATASET, cfg, "test", model_reads_boxes=False)
    if not hasattr(dataset, "evaluation_files"):
        raise ConfigError(f"TEST.DATASET: {cfg.TEST.DATASET!r} is not an AVA-format dataset (ava, synthava)")
    device = torch.device("cuda" if cfg.NUM_GPUS > 0 and torch.cuda.is_available() else "cpu")
    model = build_model(cfg).to(device).eval()
    checkpoint = load_test_checkpoint(cfg, model)
    matcher = build_matcher(cfg)
    categories, class_ids = read_labelmap(dataset.evaluation_files["labelmap"])
    class_ids = sorted(class_ids)
    names = {int(c["id"]): c["name"] for c in categories}
    loader = DataLoader(dataset, batch_size=cfg.TEST.BATCH_SIZE, shuffle=False, collate_fn=detection_collate,
                        num_workers=cfg.DATA_LOADER.NUM_WORKERS)
    video_names = dataset.frame_lists.video_names
    records, detections, person_dets, actors = [], [], [], []
    for batch in loader:
        # The analysis itself runs on the CPU: only the forward pass uses the GPU when there is one.
        raw = test_time_outputs(model, batch["inputs"].to(device), cfg)
        outputs = {key: value.float().cpu() for key, value in raw.items()}
        kept = postprocess_from_cfg(outputs, batch["meta"], cfg)
        matches = matcher(outputs, batch["targets"])
        actor_prob = outputs["pred_actor"].float().softmax(-1)[..., 1]
        class_prob = class_probabilities(outputs["pred_classes"].float(), class_activation(cfg))
        for b, (target, clip, meta) in enumerate(zip(batch["targets"], kept, batch["meta"])):
            pairs = list(zip(matches[b][0].tolist(), matches[b][1].tolist()))
            records += analyze_clip(outputs["pred_boxes"][b].float().numpy(), actor_prob[b].numpy(),
                                    clip["token_index"].numpy(), class_prob[b].numpy(), target["boxes"].numpy(),
                                    target["actor"].numpy(), target["labels"].numpy(), pairs)
            detections.append({key: clip[key] for key in ("boxes", "class_scores", "actor_scores")} | {"meta": meta})
            video = meta.get("video") or video_names[meta["video_idx"]]
            person_dets += [(video, meta["sec"], box, float(score))
                            for box, score in zip(clip["boxes"].numpy(), clip["actor_scores"].numpy())]
            rows = batch["ori_boxes"][:, 0] == b
            actors += [(video, meta["sec"], box) for box, actor in
                       zip(batch["ori_boxes"][rows, 1:].numpy(), target["actor"].numpy()) if actor]
    official = evaluate_detections(cfg, dataset, detections, "val")
    summary = summarize(records, class_ids, [names[i] for i in class_ids])
    return {"checkpoint": checkpoint.as_dict(), "clips": len(detections), "mAP": official["mAP"],
            "per_class_ap": official["per_class"], "class_agnostic_ap": class_agnostic_ap(person_dets, actors),
            **summary}


def report_lines(result: dict) -> list[str]:
    percent = "{:.0%}".format
    lines = [
        "checkpoint: {path} (epoch {epoch}, sha256 {sha256})".format(**result["checkpoint"])
        if result["checkpoint"]["path"] else "checkpoint: none, random weights (TEST.ALLOW_RANDOM_WEIGHTS)",
        f"clips: {result['clips']}, actors: {result['actors']}",
        f"official mAP@0.5IOU: {result['mAP']:.4f}",
        f"class-agnostic person AP@0.5 (scored by p(actor)): {result['class_agnostic_ap']:.4f}",
        f"recall@0.5 of the kept detections: {percent(result['recall_at_0.5'])} "
        f"(best-box IoU mean {result['best_kept_iou_mean']:.2f})",
        f"matched token: IoU median {result['matched_iou_median']:.2f}, "
        f"{percent(result['matched_iou_at_0.5'])} at >= 0.5",
        f"top token (highest p(actor) on the actor): IoU median {result['top_iou_median']:.2f}, "
        f"{percent(result['top_iou_at_0.5'])} at >= 0.5; it is the matched token for "
        f"{percent(result['top_is_matched'])} of actors",
        f"class mAP given each actor's best box: {result['class_map_given_box']:.4f}",
    ]
    lines += [f"  {name}: given box {ap:.3f}, official {result['per_class_ap'].get(name, float('nan')):.3f}"
              for name, ap in result["class_ap_given_box"].items()]
    return lines


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args("Diagnose a trained BMViT on an AVA-format test split.", argv)
    for cfg_file in args.cfg_files:
        try:
            cfg = load_job_config(args, cfg_file, needs_devices=False)
        except ConfigError as err:
            exit_on_config_error(err)
        try:
            result = diagnose(cfg)
        except Exception as err:
            exit_on_package_error(err, args.debug)
            raise
        print("\n".join(report_lines(result)))
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        with open(os.path.join(cfg.OUTPUT_DIR, "diagnosis.json"), "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1, default=float)


if __name__ == "__main__":
    main()
