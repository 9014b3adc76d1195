"""AVA v2.2 evaluation: the official PySlowFast code as an oracle on random cases, hand-built protocol cases
(no fallback match, the ActivityNet 50-row cap), file readers / writers and their error messages, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slowfast_bmvit.evaluation import ava, ava_io
from slowfast_bmvit.evaluation.ava_io import AvaRows

REPO_ROOT = Path(__file__).resolve().parents[1]
AVA_DATA = REPO_ROOT.parent / "shared" / "data" / "ava"
LABELMAP_60 = AVA_DATA / "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
LABELMAP_80 = AVA_DATA / "ava_action_list_v2.2.pbtxt"
EVALUATED_60 = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34, 36, 37, 38,
                41, 43, 45, 46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70,
                72, 73, 74, 76, 77, 78, 79, 80]


def write_labelmap(path: Path, ids, style: str = "item", types: dict | None = None) -> Path:
    with open(path, "w") as f:
        for i in ids:
            if style == "item":
                f.write(f'item {{\n  name: "action {i}"\n  id: {i}\n}}\n')
            else:
                f.write(f'label {{\n  name: "action {i}"\n  label_id: {i}\n  label_type: {types[i]}\n}}\n')
    return path


def write_rows(path: Path, rows, last_fmt: str = "%r") -> Path:
    with open(path, "w") as f:
        for r in rows:
            f.write(("%s,%04d,%.3f,%.3f,%.3f,%.3f,%d," + last_fmt + "\n") % tuple(r))
    return path


def rows(video, sec, boxes, action, score=None) -> AvaRows:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    return AvaRows([video] * n if isinstance(video, str) else video, [sec] * n if np.isscalar(sec) else sec,
                   boxes, [action] * n if np.isscalar(action) else action,
                   np.ones(n) if score is None else score)


CATS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


# ------------------------------------------------------------------------------------------------ the oracle
@pytest.fixture
def official(monkeypatch):
    """PySlowFast 1.0's AVA helper, with the numpy aliases it needs restored for this test only."""
    monkeypatch.setattr(np, "float", float, raising=False)
    monkeypatch.setattr(np, "NAN", np.nan, raising=False)
    from slowfast.utils import ava_eval_helper

    def run(labelmap, gt_csv, det_csv, exclusions_csv):
        categories, whitelist = ava_eval_helper.read_labelmap(labelmap)
        gt = ava_eval_helper.read_csv(gt_csv, whitelist, load_score=False)
        det = ava_eval_helper.read_csv(det_csv, whitelist, load_score=True)
        excluded = ava_eval_helper.read_exclusions(exclusions_csv)
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
            metrics = ava_eval_helper.run_evaluation(categories, gt, det, excluded)
        prefix = "PascalBoxes_PerformanceByCategory/AP@0.5IOU/"
        per_class = {k[len(prefix):]: float(v) for k, v in metrics.items()
                     if k.startswith(prefix) and not np.isnan(v)}  # NaN: a class without ground truth
        return float(metrics["PascalBoxes_Precision/mAP@0.5IOU"]), per_class

    return run


def random_case(rng: np.random.Generator, folder: Path, case: int) -> tuple[Path, Path, Path, Path]:
    """Random AVA-format files: 1-30 images, 0-7 boxes each with 1-3 actions; detections from jittered ground
    truth and background boxes, exact and near duplicates (equal and different scores), invalid boxes, scores with
    1-4 decimals (ties), keys without ground truth, actions outside the label map, a few excluded keys."""
    ids = EVALUATED_60 if case % 3 else list(range(1, 81))
    types = {i: ava.AVA_V22_LABEL_TYPES[i] for i in ids}
    labelmap = write_labelmap(folder / "labelmap.pbtxt", ids, "item" if case % 2 else "label", types)
    used = list(rng.choice(ids, int(rng.integers(1, 9)), replace=False)) + [2, 81]  # 2 is outside the 60 classes
    videos = [f"v{v}_{case}" for v in range(int(rng.integers(1, 5)))]
    keys = sorted({(videos[rng.integers(len(videos))], int(rng.integers(902, 1000)))
                   for _ in range(int(rng.integers(1, 31)))})
    gt, det = [], []
    for video, sec in keys:
        nb = int(rng.integers(0, 8))
        boxes = np.round(np.sort(rng.random((nb, 2, 2)), axis=1).reshape(nb, 4), 3)
        for b in boxes:
            for a in rng.choice(used, int(rng.integers(1, 4)), replace=False):
                gt.append((video, sec, *b, a, int(rng.integers(0, 9))))
        for _ in range(int(rng.integers(0, 12))):
            if nb and rng.random() < 0.7:
                b = boxes[rng.integers(nb)] + rng.normal(0, 0.04, 4) * (rng.random() < 0.8)
            else:
                b = np.sort(rng.random(4))[[0, 1, 3, 2]]
            if rng.random() < 0.06:
                b = b[[2, 1, 0, 3]] if rng.random() < 0.5 else b[[0, 3, 2, 1]]  # x1 > x2 or y1 > y2
            if rng.random() < 0.03:
                b = np.array([b[0], b[1], b[0], b[3]])  # zero width
            b = np.round(b, 3)
            for a in rng.choice(used, int(rng.integers(1, 4)), replace=False):
                score = round(float(rng.random()), int(rng.integers(1, 5)))
                det.append((video, sec, *b, a, score))
                if rng.random() < 0.25:  # duplicate, same or other score
                    det.append((video, sec, *b, a, score if rng.random() < 0.5 else round(float(rng.random()), 2)))
    for _ in range(int(rng.integers(0, 4))):
        det.append(("no_gt_video", 950, 0.1, 0.1, 0.6, 0.6, used[0], round(float(rng.random()), 2)))
    det = [det[i] for i in rng.permutation(len(det))]
    excluded = [k for k in keys if rng.random() < 0.08]
    gt_csv = write_rows(folder / "gt.csv", gt, "%d")
    det_csv = write_rows(folder / "det.csv", det)
    ex_csv = folder / "exclusions.csv"
    ava_io.write_exclusions_csv(ex_csv, excluded)
    return labelmap, gt_csv, det_csv, ex_csv


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")  # the official code, cases without GT
def test_pyslowfast_protocol_equals_official_code_on_60_random_cases(official, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    rng = np.random.default_rng(20240601)
    compared = 0
    for case in range(60):
        folder = tmp_path / f"case{case}"
        folder.mkdir()
        labelmap, gt_csv, det_csv, ex_csv = random_case(rng, folder, case)
        expected, expected_per_class = official(str(labelmap), str(gt_csv), str(det_csv), str(ex_csv))
        result = ava.evaluate_ava_files(labelmap, gt_csv, det_csv, ex_csv, protocol="pyslowfast")
        if np.isnan(expected):
            assert np.isnan(result["mAP"]), case
            continue
        assert abs(result["mAP"] - expected) <= 1e-9, (case, result["mAP"], expected)
        assert set(result["per_class"]) == set(expected_per_class), case
        for name, ap in expected_per_class.items():
            assert abs(result["per_class"][name] - ap) <= 1e-9, (case, name)
        compared += 1
    assert compared >= 50


# ------------------------------------------------------------------------------------------- hand-built protocol
def test_voc_ap_hand_computed_and_no_fallback_to_second_best_ground_truth():
    # two ground-truth boxes of class 1; d1 takes A; d2's best is also A (taken) -> FP even though B would fit
    # d2's IoU is 0.82 with A and 0.67 with B
    gt = rows("v", 902, [[0.0, 0.0, 0.5, 0.5], [0.15, 0.0, 0.65, 0.5]], 1)
    det = rows("v", 902, [[0.0, 0.0, 0.5, 0.5], [0.05, 0.0, 0.55, 0.5], [0.15, 0.0, 0.65, 0.5]], 1, [0.9, 0.8, 0.7])
    result = ava.evaluate_ava(CATS, gt, det)
    # TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    assert result["per_class"] == {"a": pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)}
    assert result["mAP"] == pytest.approx(0.5 + 1 / 3, abs=1e-12)
    assert result["classes_without_gt"] == ["b"]


def test_iou_threshold_is_inclusive_and_invalid_boxes_are_removed():
    gt = rows("v", 902, [[0.0, 0.0, 0.5, 1.0]], 1)
    # IoU exactly 0.5: [0, 0.25] x [0, 1] over [0, 0.5] x [0, 1]; a degenerate box never counts
    det = rows("v", 902, [[0.0, 0.0, 0.25, 1.0], [0.5, 0.0, 0.5, 1.0], [0.4, 0.0, 0.1, 1.0]], 1, [0.9, 0.95, 0.99])
    result = ava.evaluate_ava(CATS, gt, det)
    assert result["mAP"] == 1.0
    assert result["counts"]["det_invalid_box"] == 2


def test_pyslowfast_counts_keys_without_ground_truth_as_false_positives_activitynet_ignores_them():
    gt = rows("v", 902, [[0.1, 0.1, 0.5, 0.5]], 1)
    det = rows(["w", "v"], [902, 902], [[0.1, 0.1, 0.5, 0.5]] * 2, [1, 1], [0.9, 0.5])
    assert ava.evaluate_ava(CATS, gt, det, protocol="pyslowfast")["mAP"] == pytest.approx(0.5)
    result = ava.evaluate_ava(CATS, gt, det, protocol="activitynet")
    assert result["mAP"] == 1.0
    assert result["counts"]["det_no_gt_key"] == 1


def test_pyslowfast_matches_in_input_order_activitynet_in_score_order():
    # two identical detections of one ground truth: the official PySlowFast code gives the TP to the first row
    gt = rows(["v", "v"], [902, 903], [[0.1, 0.1, 0.5, 0.5]] * 2, [1, 1])
    det = rows(["v", "v", "v"], [902, 902, 903], [[0.1, 0.1, 0.5, 0.5]] * 3, [1, 1, 1], [0.2, 0.9, 0.5])
    # pyslowfast: TP(0.2), FP(0.9), TP(0.5) -> sorted FP, TP, TP: P 0, 1/2, 2/3 at R 0, 1/2, 1 -> AP = 1/3 + 1/3
    assert ava.evaluate_ava(CATS, gt, det)["mAP"] == pytest.approx(2 / 3, abs=1e-12)
    # activitynet: per image by score: TP(0.9), FP(0.2); TP(0.5) -> AP 1
    assert ava.evaluate_ava(CATS, gt, det, protocol="activitynet")["mAP"] == pytest.approx(1.0)


def _cap_case(extra_score: float, fill_score: float = 0.5):
    """One image, one ground truth; 50 background rows of ``fill_score``, then a perfect row of ``extra_score``."""
    boxes = [[0.6, 0.6, 0.9, 0.9]] * 50 + [[0.1, 0.1, 0.4, 0.4]]
    det = rows("v", 902, boxes, 1, [fill_score] * 50 + [extra_score])
    return rows("v", 902, [[0.1, 0.1, 0.4, 0.4]], 1), det


def test_activitynet_cap_keeps_the_50_best_rows_per_image():
    gt, det = _cap_case(extra_score=0.4)  # the 51st row is the lowest: dropped, the only TP is lost
    result = ava.evaluate_ava(CATS, gt, det, protocol="activitynet")
    assert result["mAP"] == 0.0 and result["counts"]["det_over_cap"] == 1
    # no cap in the pyslowfast protocol: the TP ranks last of 51 -> AP = 1 * (1/51)
    assert ava.evaluate_ava(CATS, gt, det)["mAP"] == pytest.approx(1 / 51)
    gt, det = _cap_case(extra_score=0.6)  # strictly higher: displaces a 0.5 row and ranks first
    assert ava.evaluate_ava(CATS, gt, det, protocol="activitynet")["mAP"] == 1.0


def test_activitynet_cap_a_tied_row_does_not_displace():
    gt, det = _cap_case(extra_score=0.5)  # equal to the kept minimum: not strictly higher -> rejected
    result = ava.evaluate_ava(CATS, gt, det, protocol="activitynet")
    assert result["mAP"] == 0.0 and result["counts"]["det_over_cap"] == 1
    # 48 rows at 0.7, the TP and a background row at 0.5 (the heap is now full), then a 0.9 row: it displaces the
    # smallest heap tuple (score, action, y1, x1, y2, x2) among the 0.5 rows, like the challenge script
    boxes = [[0.6, 0.6, 0.9, 0.9]] * 48 + [[0.1, 0.1, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9], [0.6, 0.6, 0.95, 0.95]]
    scores = [0.7] * 48 + [0.5, 0.5, 0.9]
    gt = rows("v", 902, [[0.1, 0.1, 0.4, 0.4]], 1)
    result = ava.evaluate_ava(CATS, gt, rows("v", 902, boxes, 1, scores), protocol="activitynet")
    assert result["counts"]["det_over_cap"] == 1 and result["mAP"] == 0.0  # the TP (y1 0.1 < 0.6) went
    boxes[49] = [0.6, 0.05, 0.9, 0.9]  # now the background row has the smaller y1 and goes instead
    result = ava.evaluate_ava(CATS, gt, rows("v", 902, boxes, 1, scores), protocol="activitynet")
    assert result["counts"]["det_over_cap"] == 1 and result["mAP"] == pytest.approx(1 / 50)


def test_activitynet_cap_counts_rows_of_all_classes_of_an_image():
    gt = rows("v", 902, [[0.1, 0.1, 0.4, 0.4]], 1)
    det = rows("v", 902, [[0.6, 0.6, 0.9, 0.9]] * 50 + [[0.1, 0.1, 0.4, 0.4]], [2] * 50 + [1], [0.8] * 50 + [0.3])
    assert ava.evaluate_ava(CATS, gt, det, protocol="activitynet")["mAP"] == 0.0
    assert ava.evaluate_ava(CATS, gt, det, protocol="pyslowfast")["mAP"] == 1.0


def test_exclusions_remove_keys_from_both_sides():
    gt = rows(["v", "v"], [902, 903], [[0.1, 0.1, 0.4, 0.4]] * 2, [1, 1])
    det = rows(["v", "v"], [902, 903], [[0.6, 0.6, 0.9, 0.9], [0.1, 0.1, 0.4, 0.4]], [1, 1], [0.9, 0.8])
    assert ava.evaluate_ava(CATS, gt, det)["mAP"] == pytest.approx(0.5 * 0.5)
    result = ava.evaluate_ava(CATS, gt, det, {("v", 902)})
    assert result["mAP"] == 1.0
    assert result["counts"]["gt_excluded"] == 1 and result["counts"]["det_excluded"] == 1


def test_group_maps_are_means_over_label_types():
    cats = [{"id": 1, "name": "a", "label_type": "PERSON_MOVEMENT"},
            {"id": 2, "name": "b", "label_type": "PERSON_MOVEMENT"},
            {"id": 3, "name": "c", "label_type": "PERSON_INTERACTION"}]
    gt = rows("v", 902, [[0.1, 0.1, 0.4, 0.4]] * 3, [1, 2, 3])
    det = rows("v", 902, [[0.1, 0.1, 0.4, 0.4]] * 2, [1, 3])  # class b has ground truth, no detection
    result = ava.evaluate_ava(cats, gt, det)
    assert result["per_class"] == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert result["groups"] == {"PERSON_MOVEMENT": 0.5, "PERSON_INTERACTION": 1.0}
    assert result["mAP"] == pytest.approx(2 / 3)
    # without label_type the AVA v2.2 groups apply (1-14 movement, 15-63 objects, 64-80 interaction)
    plain = [{"id": 14, "name": "x"}, {"id": 15, "name": "y"}, {"id": 80, "name": "z"}]
    gt = rows("v", 902, [[0.1, 0.1, 0.4, 0.4]] * 3, [14, 15, 80])
    result = ava.evaluate_ava(plain, gt, rows("v", 902, [[0.1, 0.1, 0.4, 0.4]], 15))
    assert result["groups"] == {"PERSON_MOVEMENT": 0.0, "OBJECT_MANIPULATION": 1.0, "PERSON_INTERACTION": 0.0}


# --------------------------------------------------------------------------------------------- bad input
def test_empty_detection_file_gives_zero_ap_for_every_class_with_ground_truth(tmp_path):
    labelmap = write_labelmap(tmp_path / "l.pbtxt", [1, 2, 3])
    gt_csv = write_rows(tmp_path / "gt.csv", [("v", 902, 0.1, 0.1, 0.4, 0.4, 1, 0),
                                              ("v", 902, 0.1, 0.1, 0.4, 0.4, 3, 0)], "%d")
    det_csv = tmp_path / "det.csv"
    det_csv.write_text("")
    result = ava.evaluate_ava_files(labelmap, gt_csv, det_csv)
    assert result["per_class"] == {"action 1": 0.0, "action 3": 0.0}
    assert result["mAP"] == 0.0


def test_action_ids_outside_the_label_map_are_dropped_and_counted(tmp_path, caplog):
    labelmap = write_labelmap(tmp_path / "l.pbtxt", [1])
    gt_csv = write_rows(tmp_path / "gt.csv", [("v", 902, 0.1, 0.1, 0.4, 0.4, 1, 0),
                                              ("v", 902, 0.1, 0.1, 0.4, 0.4, 7, 0)], "%d")
    det_csv = write_rows(tmp_path / "det.csv", [("v", 902, 0.1, 0.1, 0.4, 0.4, 7, 0.99),
                                                ("v", 902, 0.1, 0.1, 0.4, 0.4, 99, 0.98),
                                                ("v", 902, 0.1, 0.1, 0.4, 0.4, 1, 0.5)])
    with caplog.at_level(logging.WARNING):
        result = ava.evaluate_ava_files(labelmap, gt_csv, det_csv)
    assert result["mAP"] == 1.0
    assert result["counts"]["gt_not_in_labelmap"] == 1 and result["counts"]["det_not_in_labelmap"] == 2
    assert "dropped 2 row(s)" in caplog.text
    dropped = ava_io.read_detections_csv(det_csv, class_ids={1})
    assert len(dropped) == 1 and dropped.num_dropped == 2


@pytest.mark.parametrize("line, message", [
    ("v,0902,0.1,0.1,abc,0.4,1,0.5", "x2 'abc' is not a finite number"),
    ("v,0902,0.1,0.1,0.4,0.4,1", None),  # 7 columns is legal (score 1.0)
    ("v,0902,0.1,0.1,0.4,1,0.5", "action_id '0.5' is not an integer"),
    ("v,902.5,0.1,0.1,0.4,0.4,1,0.5", "timestamp '902.5' is not an integer second"),
    ("v,0902,0.1,0.1,0.4,0.4", "expected 7 or 8 columns"),
    ("v,0902,0.1,0.1,0.4,0.4,1,0.5,9", "expected 7 or 8 columns"),
    ("v,0902,0.1,0.1,0.4,0.4,1,nan", "score 'nan' is not a finite number"),
    (",0902,0.1,0.1,0.4,0.4,1,0.5", "empty video id"),
])
def test_malformed_detection_row_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "det.csv"
    path.write_text("v,0902,0.1,0.1,0.4,0.4,1,0.5\nv,0903,0.1,0.1,0.4,0.4,1,0.5\n" + line + "\n")
    if message is None:
        assert ava_io.read_detections_csv(path).score.tolist() == [0.5, 0.5, 1.0]
        return
    with pytest.raises(ValueError) as err:
        ava_io.read_detections_csv(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_real_malformed_person_id_is_reported_with_file_line_and_count(caplog):
    if not AVA_DATA.is_dir():
        pytest.skip(f"real data folder {AVA_DATA} is absent")
    bad = AVA_DATA / "ava_val_v2.2_excerpt_malformed.csv"
    with caplog.at_level(logging.WARNING):
        gt = ava_io.read_groundtruth_csv(bad)
    assert f"{bad}: 1 row(s) with a malformed person_id" in caplog.text and "line 16: '3_'" in caplog.text
    clean = ava_io.read_groundtruth_csv(AVA_DATA / "ava_val_v2.2_excerpt.csv")
    assert len(gt) == len(clean) == 100
    np.testing.assert_array_equal(gt.boxes, clean.boxes)
    assert gt.person[15] == -1 and clean.person[15] == 3


def test_labelmap_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pbtxt"):
        ava_io.read_labelmap(tmp_path / "missing.pbtxt")
    empty = tmp_path / "empty.pbtxt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty.pbtxt: no classes"):
        ava_io.read_labelmap(empty)
    bad = tmp_path / "bad.pbtxt"
    bad.write_text('item {\n  name: "x"\n  id: one\n}\n')
    with pytest.raises(ValueError, match="bad.pbtxt:3: class id 'one'"):
        ava_io.read_labelmap(bad)


def test_real_labelmaps_parse_in_both_styles():
    if not AVA_DATA.is_dir():
        pytest.skip(f"real data folder {AVA_DATA} is absent")
    cats60, ids60 = ava_io.read_labelmap(LABELMAP_60)
    cats80, ids80 = ava_io.read_labelmap(LABELMAP_80)
    assert sorted(ids60) == EVALUATED_60 and len(cats60) == 60
    assert ids80 == set(range(1, 81))
    assert cats80[0] == {"id": 1, "name": "bend/bow (at the waist)", "label_type": "PERSON_MOVEMENT"}
    assert {c["id"]: c["label_type"] for c in cats80} == ava.AVA_V22_LABEL_TYPES


def test_exclusions_reader(tmp_path):
    path = tmp_path / "ex.csv"
    path.write_text("v1,0902\nv2,1798\n\n")
    assert ava_io.read_exclusions(path) == {("v1", 902), ("v2", 1798)}
    path.write_text("v1,0902\nv2,17x\n")
    with pytest.raises(ValueError, match=r"ex.csv:2: timestamp '17x'"):
        ava_io.read_exclusions(path)


def test_writers_round_trip_with_four_digit_seconds(tmp_path):
    path = tmp_path / "det.csv"
    ava_io.write_detections_csv(path, ["vid"], [902], np.array([[0.1, 0.2, 0.3, 0.4]]), [12], [0.123456])
    assert path.read_text() == "vid,0902,0.100,0.200,0.300,0.400,12,0.123456\n"
    back = ava_io.read_detections_csv(path)
    assert back.video.tolist() == ["vid"] and back.sec.tolist() == [902] and back.action.tolist() == [12]
    np.testing.assert_allclose(back.boxes, [[0.1, 0.2, 0.3, 0.4]])
    gt_path = tmp_path / "gt.csv"
    ava_io.write_groundtruth_csv(gt_path, ["vid", "vid"], [5, 1798], np.zeros((2, 4)), [1, 2], [0, 3])
    assert gt_path.read_text().splitlines() == ["vid,0005,0.000,0.000,0.000,0.000,1,0",
                                                "vid,1798,0.000,0.000,0.000,0.000,2,3"]


# ------------------------------------------------------------------------------------------- real data, API, CLI
def test_real_val_excerpt_perfect_detections_give_map_one(tmp_path):
    if not AVA_DATA.is_dir():
        pytest.skip(f"real data folder {AVA_DATA} is absent")
    gt_csv = AVA_DATA / "ava_val_v2.2_excerpt.csv"
    gt = ava_io.read_groundtruth_csv(gt_csv)
    det_csv = tmp_path / "det.csv"
    ava_io.write_detections_csv(det_csv, gt.video, gt.sec, gt.boxes, gt.action, np.ones(len(gt)))
    for labelmap in (LABELMAP_60, LABELMAP_80):
        for protocol in ava.PROTOCOLS:
            result = ava.evaluate_ava_files(labelmap, gt_csv, det_csv, protocol=protocol)
            assert result["mAP"] == 1.0, (labelmap.name, protocol)
            assert len(result["per_class"]) >= 5 and set(result["per_class"].values()) == {1.0}


def test_in_memory_api_equals_file_api(tmp_path):
    categories = [{"id": i, "name": f"c{i}"} for i in (1, 3, 5)]
    rng = np.random.default_rng(3)
    boxes = np.round(np.sort(rng.random((6, 2, 2)), axis=1).reshape(6, 4), 3)
    videos, secs = ["a", "a", "a", "b", "b", "b"], [902, 902, 903, 902, 902, 905]
    gt = AvaRows(videos, secs, boxes, [1, 3, 5, 1, 3, 3], np.ones(6))
    probs = np.round(rng.random((6, 3)), 4)
    actor = np.round(rng.random(6), 4)
    evaluator = ava.AvaEvaluator(categories, gt)
    evaluator.add(videos[:4], secs[:4], boxes[:4], probs[:4], [1, 3, 5], actor[:4])
    evaluator.add(videos[4:], secs[4:], boxes[4:], probs[4:], [1, 3, 5], actor[4:])
    det = evaluator.detections()
    assert len(det) == 18 and det.action[:3].tolist() == [1, 3, 5]
    assert det.score[4] == pytest.approx(probs[1, 1] * actor[1])
    in_memory = evaluator.evaluate()
    det_csv = tmp_path / "det.csv"
    ava_io.write_detections_csv(det_csv, det.video, det.sec, det.boxes, det.action, det.score, box_fmt="%.17g",
                                score_fmt="%.17g")
    gt_csv = tmp_path / "gt.csv"
    ava_io.write_groundtruth_csv(gt_csv, videos, secs, boxes, gt.action, box_fmt="%.17g")
    labelmap = tmp_path / "l.pbtxt"
    labelmap.write_text("".join(f'item {{\n  name: "c{i}"\n  id: {i}\n}}\n' for i in (1, 3, 5)))
    from_files = ava.evaluate_ava_files(labelmap, gt_csv, det_csv)
    assert in_memory["per_class"] == from_files["per_class"]
    assert 0.0 < in_memory["mAP"] < 1.0


def test_cli_prints_per_class_lines_and_last_line_map(tmp_path, capsys):
    labelmap = write_labelmap(tmp_path / "l.pbtxt", [1, 2])
    gt_csv = write_rows(tmp_path / "gt.csv", [("v", 902, 0.1, 0.1, 0.4, 0.4, 1, 0),
                                              ("v", 902, 0.5, 0.5, 0.9, 0.9, 2, 1)], "%d")
    det_csv = write_rows(tmp_path / "det.csv", [("v", 902, 0.1, 0.1, 0.4, 0.4, 1, 0.9),
                                                ("v", 902, 0.5, 0.5, 0.9, 0.9, 2, 0.2),
                                                ("v", 902, 0.1, 0.1, 0.4, 0.4, 2, 0.8)])
    out_json = tmp_path / "out" / "result.json"
    out_json.parent.mkdir()
    assert ava.main(["--labelmap", str(labelmap), "--groundtruth", str(gt_csv), "--detections", str(det_csv),
                     "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "AP@0.5IOU/1/action 1: 1.0"
    assert lines[1] == "AP@0.5IOU/2/action 2: 0.5"
    assert lines[-1] == "mAP@0.5IOU: 0.75"
    saved = json.loads(out_json.read_text())
    assert saved["mAP"] == 0.75 and saved["per_class"] == {"action 1": 1.0, "action 2": 0.5}
    # a malformed file: one clear message, exit status 2
    det_csv.write_text("v,0902,0.1,0.1,0.4,0.4,1,high\n")
    assert ava.main(["--labelmap", str(labelmap), "--groundtruth", str(gt_csv), "--detections", str(det_csv)]) == 2
    assert f"{det_csv}:1: score 'high'" in capsys.readouterr().err


def test_cli_module_runs_without_torch(tmp_path):
    labelmap = write_labelmap(tmp_path / "l.pbtxt", [1])
    gt_csv = write_rows(tmp_path / "gt.csv", [("v", 902, 0.1, 0.1, 0.4, 0.4, 1, 0)], "%d")
    det_csv = write_rows(tmp_path / "det.csv", [("v", 902, 0.1, 0.1, 0.4, 0.4, 1, 0.3)])
    code = ("import runpy, sys; sys.argv = ['ava', '--labelmap', %r, '--groundtruth', %r, '--detections', %r, "
            "'--protocol', 'activitynet']; "
            "import slowfast_bmvit.evaluation.frame_map, slowfast_bmvit.evaluation.video_map, "
            "slowfast_bmvit.evaluation.act; "
            "assert 'torch' not in sys.modules, 'evaluation imported torch'; "
            "runpy.run_module('slowfast_bmvit.evaluation.ava', run_name='__main__')"
            % (str(labelmap), str(gt_csv), str(det_csv)))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "mAP@0.5IOU: 1.0"


# ------------------------------------------------------------------- the challenge script's image keys (activitynet)
def _issue_case_files(tmp_path: Path, labelmap: Path) -> tuple[Path, Path, Path]:
    """Ground truth on vidA (action 1) and vidB (action 2, not in the label map); detections of class 1 with the
    same box on vidA (0.5), vidB (0.9) and vidC (0.95, an image the ground truth does not list)."""
    gt_csv = write_rows(tmp_path / "gt.csv", [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0),
                                              ("vidB", 902, 0.1, 0.1, 0.5, 0.5, 2, 0)], "%d")
    det_csv = write_rows(tmp_path / "det.csv", [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.5),
                                                ("vidB", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9),
                                                ("vidC", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.95)])
    return labelmap, gt_csv, det_csv


def test_activitynet_images_are_all_ground_truth_keys_before_the_label_map_filter(tmp_path):
    # activitynet, worked by hand: vidC,0902 is not in the ground-truth file -> ignored. vidB,0902 is in the file
    # (its only row has action 2, outside the label map), so the image counts: its class-1 detection finds no
    # class-1 ground truth -> FP. vidA -> TP (IoU 1). By score: FP (0.9), TP (0.5): precision 0, 1/2 at recall
    # 0, 1 -> VOC AP = 1 * 1/2 = 0.5 (ignoring vidB as well would give TP only, AP 1.0).
    # pyslowfast: vidC is an FP too: FP, FP, TP -> precision 1/3 at recall 1 -> AP 1/3.
    labelmap = write_labelmap(tmp_path / "l.pbtxt", [1, 3])  # 2 is not evaluated, like in the 60-class list
    _, gt_csv, det_csv = _issue_case_files(tmp_path, labelmap)
    result = ava.evaluate_ava_files(labelmap, gt_csv, det_csv, protocol="activitynet")
    assert result["mAP"] == pytest.approx(0.5, abs=1e-12)
    assert result["counts"]["det_no_gt_key"] == 1  # vidC only
    assert ava.evaluate_ava_files(labelmap, gt_csv, det_csv)["mAP"] == pytest.approx(1 / 3, abs=1e-12)
    # the engine reads the ground truth already restricted to the label map: vidB stays a listed image
    categories, class_ids = ava_io.read_labelmap(labelmap)
    restricted = ava_io.read_groundtruth_csv(gt_csv, class_ids)
    assert len(restricted) == 1 and restricted.empty_images == {("vidB", 902)}
    result = ava.evaluate_ava(categories, restricted, ava_io.read_detections_csv(det_csv), protocol="activitynet")
    assert result["mAP"] == pytest.approx(0.5, abs=1e-12)


def test_real_60_class_labelmap_activitynet_issue_case(tmp_path):
    if not LABELMAP_60.is_file():
        pytest.skip(f"real label map {LABELMAP_60} is absent")
    assert 2 not in EVALUATED_60
    # the same hand computation as above: FP (vidB, 0.9), TP (vidA, 0.5) -> AP 0.5 for class 1, the only class
    # with ground truth
    result = ava.evaluate_ava_files(*_issue_case_files(tmp_path, LABELMAP_60), protocol="activitynet")
    assert result["mAP"] == pytest.approx(0.5, abs=1e-12) and list(result["per_class_id"]) == [1]


def test_two_column_ground_truth_rows_list_images_without_action(tmp_path):
    labelmap = write_labelmap(tmp_path / "l.pbtxt", [1])
    gt_csv = tmp_path / "gt.csv"
    gt_csv.write_text("vidA,0902,0.1,0.1,0.5,0.5,1,0\nvidB,0903\nvidA,0902\n")
    gt = ava_io.read_groundtruth_csv(gt_csv)
    assert len(gt) == 1 and gt.empty_images == {("vidB", 903)}  # vidA,0902 has a row: not empty
    det_csv = write_rows(tmp_path / "det.csv", [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.5),
                                                ("vidB", 903, 0.1, 0.1, 0.5, 0.5, 1, 0.9),
                                                ("vidC", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.95)])
    # activitynet, by hand: vidB,0903 is listed (no action) -> its detection is an FP; vidC is not -> ignored.
    # FP (0.9), TP (0.5) -> AP = 1/2.  pyslowfast: FP, FP, TP -> AP 1/3 (the row changes nothing there).
    assert ava.evaluate_ava_files(labelmap, gt_csv, det_csv, protocol="activitynet")["mAP"] == pytest.approx(0.5)
    assert ava.evaluate_ava_files(labelmap, gt_csv, det_csv, protocol="pyslowfast")["mAP"] == pytest.approx(1 / 3)
    # the val restriction (sec % 4 == 0) applies to the listed images too
    assert gt.select_seconds(lambda sec: sec % 4 == 0).empty_images == frozenset()
    # only 2-column rows: no box, one listed image; 2 columns stay an error in a detection file
    gt_csv.write_text("vidB,0903\n")
    assert len(ava_io.read_groundtruth_csv(gt_csv)) == 0
    assert ava_io.read_groundtruth_csv(gt_csv).empty_images == {("vidB", 903)}
    with pytest.raises(ValueError, match=r"det.csv:2: expected 7 or 8 columns"):
        (tmp_path / "det.csv").write_text("vidA,0902,0.1,0.1,0.5,0.5,1,0.5\nvidB,0903\n")
        ava_io.read_detections_csv(tmp_path / "det.csv")
    with pytest.raises(ValueError, match=r"gt.csv:1: expected 2, 7 or 8 columns"):
        gt_csv.write_text("vidB,0903,1\n")
        ava_io.read_groundtruth_csv(gt_csv)


# --------------------------------------------------------------------------------- CLI: loud where numbers would lie
def _cli(tmp_path, gt_rows, det_rows, *extra):
    labelmap = write_labelmap(tmp_path / "l.pbtxt", [1, 2])
    gt_csv = write_rows(tmp_path / "gt.csv", gt_rows, "%d")
    det_csv = write_rows(tmp_path / "det.csv", det_rows)
    return ava.main(["--labelmap", str(labelmap), "--groundtruth", str(gt_csv), "--detections", str(det_csv),
                     *extra])


GT_ROWS = [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0), ("vidA", 903, 0.2, 0.2, 0.6, 0.6, 2, 0)]


@pytest.mark.parametrize("det_rows, message", [
    # every box has x1 >= x2
    ([("vidA", 902, 0.5, 0.1, 0.1, 0.5, 1, 0.9), ("vidA", 903, 0.6, 0.2, 0.6, 0.6, 2, 0.8)],
     "all 2 detection boxes have x1 >= x2 or y1 >= y2"),
    # a video id typo: no detection is on a ground-truth image
    ([("vidAA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9), ("vidAA", 903, 0.2, 0.2, 0.6, 0.6, 2, 0.8)],
     r"none of the 2 detection rows is on an image with ground truth .*vidAA,0902.*vidA,0902"),
    # pixel coordinates
    ([("vidA", 902, 32.0, 24.0, 160.0, 120.0, 1, 0.9), ("vidA", 903, 64.0, 48.0, 192.0, 144.0, 2, 0.8)],
     "every detection box has a coordinate outside \\[0, 1\\].*pixel coordinates"),
])
def test_cli_fails_when_no_detection_can_match(tmp_path, capsys, det_rows, message):
    assert _cli(tmp_path, GT_ROWS, det_rows) == 2
    captured = capsys.readouterr()
    assert "mAP" not in captured.out
    error = captured.err.strip().splitlines()[-1]  # after the warnings with counts
    assert error.startswith("error: no detection can match, the mAP would be meaningless: ")
    assert __import__("re").search(message, error), error


def test_cli_fails_on_pixel_ground_truth_and_warns_with_counts_on_partly_bad_input(tmp_path, capsys, caplog):
    pixel_gt = [("vidA", 902, 32, 24, 160, 120, 1, 0)]
    assert _cli(tmp_path, [r[:2] + tuple(float(v) for v in r[2:6]) + r[6:] for r in pixel_gt],
                [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9)]) == 2
    assert "every ground-truth box has a coordinate outside [0, 1]" in capsys.readouterr().err.splitlines()[-1]
    # one invalid ground-truth box (kept, counted), one invalid detection, one pixel detection, one typo: warned
    gt_rows = GT_ROWS + [("vidA", 904, 0.5, 0.1, 0.5, 0.4, 1, 1)]
    det_rows = [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9), ("vidA", 903, 0.6, 0.2, 0.2, 0.6, 2, 0.8),
                ("vidA", 903, 20.0, 20.0, 60.0, 60.0, 2, 0.7), ("vidX", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.6)]
    with caplog.at_level(logging.WARNING):
        assert _cli(tmp_path, gt_rows, det_rows) == 0
    text = caplog.text
    assert "1 ground-truth row(s) with x1 >= x2 or y1 >= y2 (e.g. vidA,0904)" in text
    assert "1 of 4 detection row(s) with x1 >= x2 or y1 >= y2 are removed" in text
    assert "1 of 4 detection row(s) have a box coordinate outside [0, 1]" in text
    assert "1 detection row(s) on images the ground truth does not list are false positives (pyslowfast" in text
    # class 1: TP (0.9), FP (vidX, 0.6) over 2 ground truths (one invalid) -> AP 1/2; class 2: FP (pixels) -> 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "mAP@0.5IOU: 0.25"


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "nan", "half"])
def test_cli_refuses_an_iou_threshold_outside_0_1(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        _cli(tmp_path, GT_ROWS, [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9)], "--iou", value)
    assert exit_info.value.code == 2
    assert "--iou" in capsys.readouterr().err


def test_cli_json_missing_folder_is_refused_and_a_failed_write_keeps_the_printed_result(tmp_path, capsys):
    det = [("vidA", 902, 0.1, 0.1, 0.5, 0.5, 1, 0.9)]
    assert _cli(tmp_path, GT_ROWS, det, "--json", str(tmp_path / "missing" / "r.json")) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: --json: folder {tmp_path / 'missing'} does not exist"
    (tmp_path / "a_folder").mkdir()
    assert _cli(tmp_path, GT_ROWS, det, "--json", str(tmp_path / "a_folder")) == 2  # not writable as a file
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == "mAP@0.5IOU: 0.5"  # class 1: 1.0, class 2: 0.0
    assert captured.err.strip().splitlines()[-1].startswith(f"error: --json: cannot write {tmp_path / 'a_folder'}")
