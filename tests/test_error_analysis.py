"""Error analysis of a set-prediction detector (evaluation/error_analysis.py, tools/diagnose_bmvit.py)."""

import json
import sys

import numpy as np
import pytest

from slowfast_bmvit.config import assert_and_infer_cfg, load_config
from slowfast_bmvit.datasets.synthetic import generate_synth_ava
from slowfast_bmvit.evaluation.error_analysis import (
    ActorRecord,
    analyze_clip,
    average_precision,
    class_agnostic_ap,
    summarize,
)

from test_engine import SYNTH_PARAMS, TINY_OPTS


def test_analyze_clip_separates_the_matched_and_the_top_token():
    # One actor: box x 0.2..0.6, y 0.2..0.8 (cx 0.4, cy 0.5, w 0.4, h 0.6); one non-actor far right.
    gt = np.array([[0.4, 0.5, 0.4, 0.6], [0.85, 0.5, 0.2, 0.4]])
    tokens = np.array([
        [0.4, 0.5, 0.4, 0.3],   # token 0: same centre, half the height -> IoU 0.5
        [0.4, 0.4, 0.4, 0.6],   # token 1: shifted up by 0.1 -> overlap 0.4*0.5=0.2, union 0.28 -> IoU 5/7
        [0.9, 0.9, 0.1, 0.1],   # token 2: elsewhere
    ])
    actor_prob = np.array([0.6, 0.9, 0.2])
    class_prob = np.array([[0.1, 0.7], [0.3, 0.2], [0.5, 0.5]])
    labels = np.array([[0, 1], [0, 0]])
    records = analyze_clip(tokens, actor_prob, kept=[1, 0], class_prob=class_prob, gt_boxes=gt,
                           gt_actor=np.array([True, False]), gt_labels=labels, matches=[(0, 0), (2, 1)])
    assert len(records) == 1  # non-actors are not analysed
    record = records[0]
    assert record.matched_iou == pytest.approx(0.5)
    assert record.top_iou == pytest.approx(0.2 / 0.28) and not record.top_is_matched
    assert record.best_kept_iou == pytest.approx(0.2 / 0.28)
    np.testing.assert_allclose(record.best_kept_class_scores, [0.3, 0.2])  # token 1's class probabilities
    # The matcher choosing the top token makes them one; nothing kept leaves zero IoU and zero scores.
    again = analyze_clip(tokens, actor_prob, [], class_prob, gt, np.array([True, False]), labels, [(1, 0)])[0]
    assert again.top_is_matched and again.best_kept_iou == 0.0 and not again.best_kept_class_scores.any()


def test_average_precision_by_hand():
    # Positives at ranks 1 and 3: precisions 1 and 2/3.
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    assert np.isnan(average_precision(np.array([0.3]), np.array([0])))


def test_class_agnostic_ap_uses_the_ava_matching():
    actors = [("v", 902, np.array([0.1, 0.1, 0.4, 0.9])), ("v", 903, np.array([0.5, 0.1, 0.9, 0.9]))]
    detections = [
        ("v", 902, np.array([0.1, 0.1, 0.4, 0.9]), 0.9),  # true positive
        ("v", 902, np.array([0.1, 0.1, 0.4, 0.85]), 0.8),  # duplicate of the same person: false positive
        ("v", 903, np.array([0.5, 0.15, 0.9, 0.9]), 0.7),  # true positive
    ]
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; the VOC envelope gives 1/2 * 1 + 1/2 * 2/3.
    assert class_agnostic_ap(detections, actors) == pytest.approx(0.5 + 1 / 3)


def test_summarize_rates_and_given_box_ap():
    records = []
    for matched, top, same, best, label, score in [(0.7, 0.7, True, 0.7, 1, 0.9), (0.6, 0.3, False, 0.6, 0, 0.8),
                                                    (float("nan"), 0.2, False, 0.2, 1, 0.1)]:
        records.append(ActorRecord(matched, top, same, best, np.array([label, 0.0]), np.array([score, 0.5])))
    summary = summarize(records, class_ids=[1, 2], class_names=["a", "b"])
    assert summary["actors"] == 3
    assert summary["recall_at_0.5"] == pytest.approx(2 / 3)
    assert summary["matched_iou_median"] == pytest.approx(0.65) and summary["matched_iou_at_0.5"] == 1.0
    assert summary["top_is_matched"] == pytest.approx(1 / 3) and summary["top_iou_at_0.5"] == pytest.approx(1 / 3)
    assert summary["class_ap_given_box"]["a"] == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(summary["class_ap_given_box"]["b"])  # no positive: left out of the mean
    assert summary["class_map_given_box"] == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="no ground-truth actor"):
        summarize([], [1], ["a"])


def test_diagnose_cli_on_a_tiny_synthava(repo_root, tmp_path, capsys):
    root = str(tmp_path / "synth")
    generate_synth_ava(root, progress=False, **SYNTH_PARAMS)
    sys.path.insert(0, str(repo_root / "tools"))
    try:
        import diagnose_bmvit
    finally:
        sys.path.remove(str(repo_root / "tools"))
    args = ["--cfg", str(repo_root / "configs" / "SYNTH" / "BMViT_demo.yaml"), *TINY_OPTS, "SYNTH.ROOT", root,
            "OUTPUT_DIR", str(tmp_path / "out"), "RNG_SEED", "1"]
    # Without a checkpoint the diagnosis would read random weights: refused unless asked for.
    with pytest.raises(SystemExit) as exit_info:
        diagnose_bmvit.main(args)
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 1 and len(error_lines) == 1
    assert error_lines[0].startswith("error: no checkpoint to test") and "TEST.ALLOW_RANDOM_WEIGHTS" in error_lines[0]
    args += ["TEST.ALLOW_RANDOM_WEIGHTS", "True"]
    diagnose_bmvit.main(args)
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "diagnosis.json").read_text())
    cfg = assert_and_infer_cfg(load_config(args[1], args[2:]))
    assert result["clips"] > 0 and result["actors"] > 0 and result["checkpoint"]["path"] is None
    assert 0.0 <= result["class_agnostic_ap"] <= 1.0 and 0.0 <= result["top_is_matched"] <= 1.0
    assert len(result["class_ap_given_box"]) == 9 and set(result["per_class_ap"]) <= set(result["class_ap_given_box"])
    assert f"official mAP@0.5IOU: {result['mAP']:.4f}" in printed and cfg.AVA.TEST_USE_GT_BOXES
    # The diagnosis reads every annotated keyframe with its ground-truth persons, whatever AVA.TEST_USE_GT_BOXES.
    diagnose_bmvit.main(args + ["AVA.TEST_USE_GT_BOXES", "False", "AVA.DETECTION_SCORE_THRESH", "0.96"])
    again = json.loads((tmp_path / "out" / "diagnosis.json").read_text())
    assert (again["clips"], again["actors"]) == (result["clips"], result["actors"])
