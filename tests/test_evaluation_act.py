"""UCF101-24 / JHMDB frame-mAP, video-mAP, 3D NMS and tube linking: hand-computed cases pin the ACT semantics
(matched ground truth removed, +1 IoU, trapezoid AP from (0, 1), temporal IoU on inclusive frames); the real
UCF101-24 test ground truth used as detections gives frame-mAP 1 and video-mAP@0.5 about 0.979."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slowfast_bmvit.evaluation.ap import act_ap, average_precision, precision_recall, voc_ap
from slowfast_bmvit.evaluation.frame_map import frame_ap
from slowfast_bmvit.evaluation.iou import iou_matrix, iou_pairs
from slowfast_bmvit.evaluation.matching import greedy_match
from slowfast_bmvit.evaluation.tubes import LinkConfig, link_all, link_tubes, nms3d, temporal_iou, tube_iou
from slowfast_bmvit.evaluation.video_map import video_ap, video_ap_thresholds

REPO_ROOT = Path(__file__).resolve().parents[1]
UCF24 = REPO_ROOT.parent / "shared" / "data" / "ucf24" / "annotations"


def tube(first: int, last: int, box, score: float | None = None) -> np.ndarray:
    """A still tube over inclusive frames first..last: [T, 5] or [T, 6] with a score column."""
    frames = np.arange(first, last + 1, dtype=np.float64)
    cols = [frames] + [np.full(len(frames), float(v)) for v in box]
    if score is not None:
        cols.append(np.full(len(frames), score))
    return np.column_stack(cols)


def act_gt(gttubes: dict, labels=("a", "b"), videos=("A/v1", "A/v2")) -> dict:
    return {"labels": list(labels), "test_videos": [list(videos)], "train_videos": [[]],
            "nframes": {v: 40 for v in videos}, "resolution": {v: (240, 320) for v in videos},
            "gttubes": {v: gttubes.get(v, {}) for v in videos}}


# ------------------------------------------------------------------------------------------------------ AP, IoU
def test_ap_conventions_hand_computed():
    tp = np.array([True, False, True])
    precision, recall = precision_recall(tp, 2)
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1])
    # ACT: trapezoids over (0, 1), (0.5, 1), (0.5, 0.5), (1, 2/3)
    assert act_ap(precision, recall) == pytest.approx(0.5 * (1 + 1) / 2 + 0.5 * (0.5 + 2 / 3) / 2)
    # VOC: precision made non-increasing from the right, summed where recall changes
    assert voc_ap(precision, recall) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # a first FP: the raw ACT curve drops to (0, 0), then a trapezoid up to (1, 1/2); VOC interpolates to 1/2
    assert average_precision(np.array([False, True]), 1, "act") == pytest.approx(1 * (0 + 0.5) / 2)
    assert average_precision(np.array([False, True]), 1, "voc") == pytest.approx(0.5)
    assert average_precision(np.array([], bool), 3, "act") == 0.0
    assert average_precision(np.array([], bool), 3, "voc") == 0.0
    with pytest.raises(ValueError, match="unknown AP convention"):
        average_precision(tp, 2, "coco")


def test_iou_plus_one_convention():
    a, b = np.array([[0, 0, 9, 9]]), np.array([[5, 5, 14, 14]])
    assert iou_pairs(a, b, plus_one=True)[0] == pytest.approx(25 / 175)  # 10x10 boxes overlapping 5x5 pixels
    assert iou_pairs(a, b, plus_one=False)[0] == pytest.approx(16 / (81 + 81 - 16))
    assert iou_pairs(a, np.array([[10, 0, 19, 9]]), plus_one=True)[0] == 0.0  # adjacent, no shared pixel
    np.testing.assert_allclose(iou_matrix(a, np.vstack([a, b]), plus_one=True), [[1.0, 25 / 175]])


def test_remove_rule_replays_groups_with_several_ground_truths():
    # one group, ground truths G1, G2; d1 = G1, d2 best matches G1 (0.82) and G2 (0.54)
    gt_boxes = np.array([[0, 0, 9, 9], [4, 0, 13, 9]], dtype=float)
    det_boxes = np.array([[0, 0, 9, 9], [1, 0, 10, 9], [0, 0, 9, 9]], dtype=float)
    groups = np.zeros(3, np.int64)
    remove = greedy_match(groups, det_boxes, np.zeros(2, np.int64), gt_boxes, 0.5, "remove", plus_one=True)
    flag = greedy_match(groups, det_boxes, np.zeros(2, np.int64), gt_boxes, 0.5, "flag", plus_one=True)
    assert remove.tolist() == [True, True, False]
    assert flag.tolist() == [True, False, False]


# ------------------------------------------------------------------------------------------------------ frame-mAP
def frame_case():
    g1, g2 = (0, 0, 9, 9), (4, 0, 13, 9)
    gt = act_gt({"A/v1": {0: [tube(1, 2, g1), tube(1, 1, g2)]}})
    dets = np.array([
        # video, frame, label, score, x1, y1, x2, y2
        [1, 1, 0, 0.95, 0, 0, 9, 9],   # video without ground truth of class a: FP
        [0, 1, 0, 0.90, *g1],          # TP, removes G1
        [0, 1, 0, 0.80, 1, 0, 10, 9],  # best is G1 (gone) -> G2 among the rest (IoU 0.54): TP under act
        [0, 2, 0, 0.70, 30, 30, 40, 40],  # FP
        [0, 2, 0, 0.60, *g1],          # TP
    ])
    return gt, dets


def test_frame_ap_act_removes_matched_ground_truth_and_uses_trapezoid():
    gt, dets = frame_case()
    result = frame_ap(gt, dets)
    # FP, TP, TP, FP, TP of 3: points (0,1) (0,0) (1/3,1/2) (2/3,2/3) (2/3,1/2) (1,3/5)
    expected = 1 / 3 * (0 + 1 / 2) / 2 + 1 / 3 * (1 / 2 + 2 / 3) / 2 + 1 / 3 * (1 / 2 + 3 / 5) / 2
    assert result["per_class"]["a"] == pytest.approx(expected, abs=1e-12)
    assert result["per_class"]["b"] == 0.0  # no ground truth, no detection
    assert result["mAP"] == pytest.approx(expected / 2, abs=1e-12)
    assert result["num_gt"] == {"a": 3, "b": 0}


def test_frame_ap_voc_flags_matched_ground_truth():
    gt, dets = frame_case()
    result = frame_ap(gt, dets, convention="voc")
    # no +1: d2 has IoU 0.8 with G1 (already matched) -> FP. FP, TP, FP, FP, TP: P 0 1/2 1/3 1/4 2/5
    assert result["per_class"]["a"] == pytest.approx(1 / 3 * 1 / 2 + 1 / 3 * 2 / 5, abs=1e-12)


def test_frame_ap_threshold_video_index_and_split_errors():
    gt, dets = frame_case()
    assert frame_ap(gt, dets, iou_thresh=0.6)["per_class"]["a"] < frame_ap(gt, dets)["per_class"]["a"]
    with pytest.raises(ValueError, match="video index outside 0..1"):
        frame_ap(gt, np.array([[2, 1, 0, 0.5, 0, 0, 9, 9]]))
    with pytest.raises(ValueError, match="split 2"):
        frame_ap(gt, dets, split=2)
    with pytest.raises(ValueError, match="unknown convention"):
        frame_ap(gt, dets, convention="coco")
    empty = frame_ap(gt, np.zeros((0, 8)))
    assert empty["mAP"] == 0.0


# ------------------------------------------------------------------------------------------------------ tubes
def test_temporal_and_spatio_temporal_iou_on_inclusive_frames():
    assert temporal_iou(1, 10, 6, 15) == pytest.approx(5 / 15)
    assert temporal_iou(1, 10, 10, 19) == pytest.approx(1 / 19)
    assert temporal_iou(1, 10, 11, 20) == 0.0
    box = (0, 0, 9, 9)
    assert tube_iou(tube(1, 10, box), tube(6, 15, box)) == pytest.approx(5 / 15)
    # same frames, spatial IoU (+1) 80/120 on every frame
    assert tube_iou(tube(1, 10, box), tube(1, 10, (2, 0, 11, 9))) == pytest.approx(80 / 120)
    assert tube_iou(tube(1, 10, box), tube(1, 10, (2, 0, 11, 9)), plus_one=False) == pytest.approx(63 / 99)
    assert tube_iou(tube(1, 10, box), tube(11, 12, box)) == 0.0
    # a frame missing from one tube inside the overlap counts as IoU 0
    gappy = np.delete(tube(1, 10, box), 4, axis=0)
    assert tube_iou(tube(1, 10, box), gappy) == pytest.approx(9 / 10)


def test_nms3d_suppresses_overlap_above_threshold_by_score():
    box = (0, 0, 9, 9)
    tubes = [(tube(1, 10, box), 0.5), (tube(1, 10, box), 0.9), (tube(8, 20, box), 0.7), (tube(30, 40, box), 0.1)]
    # ST-IoU(0, 1) = 1 > 0.3; ST-IoU(1, 2) = 3/20 <= 0.3 kept
    assert nms3d(tubes, 0.3) == [1, 2, 3]
    assert nms3d(tubes, 0.1) == [1, 3]
    assert nms3d([], 0.3) == []


# ------------------------------------------------------------------------------------------------------ video-mAP
def test_video_ap_thresholds_and_removal():
    box = (0, 0, 9, 9)
    gt = act_gt({"A/v1": {0: [tube(1, 10, box)]}, "A/v2": {1: [tube(1, 10, box)]}})
    tubes = {"A/v1": {0: [(tube(1, 10, (2, 0, 11, 9), 0.8), 0.8)]},  # ST-IoU 2/3 with the ground truth
             "A/v2": {1: [(tube(6, 15, box, 0.9), 0.9)],             # ST-IoU 1/3 (a FP after NMS? no: one tube)
                      0: [(tube(1, 10, box, 0.3), 0.3)]}}            # class a in a video without class-a GT
    at_05 = video_ap(gt, tubes, 0.5)
    # class a: TP (0.8), FP (0.3): AP = 1 ; class b: FP at 0.5 -> 0
    assert at_05["per_class"] == {"a": 1.0, "b": 0.0}
    at_02 = video_ap(gt, tubes, 0.2)
    assert at_02["per_class"] == {"a": 1.0, "b": 1.0}
    at_075 = video_ap(gt, tubes, 0.75)
    assert at_075["mAP"] == 0.0
    summary = video_ap_thresholds(gt, tubes)
    assert summary["0.2"] == 1.0 and summary["0.5"] == 0.5 and summary["0.75"] == 0.0
    # 0.50 .. 0.65: class a TP (2/3 >= t) -> mAP 0.5; 0.70 .. 0.95: 0
    assert summary["0.5:0.95"] == pytest.approx(0.5 * 4 / 10)
    assert set(summary["per_threshold"]) == {"0.2", "0.5", "0.75"}


def test_video_ap_3d_nms_suppresses_one_of_two_overlapping_ground_truth_tubes():
    g1, g2 = tube(1, 10, (0, 0, 9, 9)), tube(1, 10, (3, 0, 12, 9))  # ST-IoU 70/130 > 0.3
    gt = act_gt({"A/v1": {0: [g1, g2]}}, labels=("a",))
    as_detections = {"A/v1": {0: [(np.column_stack([g1, np.ones(10)]), 0.9),
                                  (np.column_stack([g2, np.ones(10)]), 0.8)]}}
    assert video_ap(gt, as_detections, 0.5)["per_class"]["a"] == pytest.approx(0.5)
    assert video_ap(gt, as_detections, 0.5, nms_thresh=None)["per_class"]["a"] == 1.0
    # act removes the matched tube: the second detection takes the other ground truth; voc flags -> FP
    same = {"A/v1": {0: [(np.column_stack([g1, np.ones(10)]), 0.9), (np.column_stack([g1, np.ones(10)]), 0.8)]}}
    assert video_ap(gt, same, 0.5, nms_thresh=None)["per_class"]["a"] == 1.0  # 2nd: 0.54 with g2 -> TP
    voc = video_ap(gt, same, 0.5, convention="voc", nms_thresh=None)["per_class"]["a"]
    assert voc == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------------ linking
def two_actors(frames=range(1, 21), drop=()):
    rows = []
    for f in frames:
        rows.append([f, 10 + f, 10, 40 + f, 60, 0.9])  # actor 1 moves right
        if f not in drop:
            rows.append([f, 200 - f, 100, 240 - f, 160, 0.6])  # actor 2 moves left
    return np.array(rows, dtype=float)


def test_greedy_linking_two_actors_gaps_and_filters():
    tubes = link_tubes(two_actors(), LinkConfig(min_length=15))
    assert sorted(round(s, 6) for _, s in tubes) == [0.6, 0.9]
    assert all(len(t) == 20 and t[0, 0] == 1 and t[-1, 0] == 20 for t, _ in tubes)
    # a 2-frame gap is bridged (max_gap 5) and filled by interpolation
    tubes = link_tubes(two_actors(drop=(8, 9)), LinkConfig(min_length=5))
    actor2 = [t for t, s in tubes if s < 0.8]
    assert len(actor2) == 1 and len(actor2[0]) == 20
    np.testing.assert_allclose(actor2[0][7, 1:5], [192, 100, 232, 160])  # frame 8, interpolated
    # with max_gap 1 the tube breaks into frames 1-7 and 10-20; min_length 8 drops the first piece
    tubes = link_tubes(two_actors(drop=(8, 9)), LinkConfig(min_length=8, max_gap=1))
    lengths = sorted(len(t) for t, _ in tubes)
    assert lengths == [11, 20]
    assert len(link_tubes(two_actors(), LinkConfig(min_length=15, min_score=0.7))) == 1
    assert link_tubes(np.zeros((0, 6))) == []


def test_viterbi_linking_keeps_at_most_max_tubes_best_first():
    cfg = LinkConfig(method="viterbi", max_tubes=1, min_length=15)
    tubes = link_tubes(two_actors(), cfg)
    assert len(tubes) == 1 and tubes[0][1] == pytest.approx(0.9)
    np.testing.assert_allclose(tubes[0][0][:, 1], 10 + np.arange(1, 21))  # follows actor 1 throughout
    both = link_tubes(two_actors(), LinkConfig(method="viterbi", max_tubes=3, min_length=15))
    assert sorted(round(s, 6) for _, s in both) == [0.6, 0.9]
    with pytest.raises(ValueError, match="method"):
        LinkConfig(method="hungarian")


def test_linked_ground_truth_boxes_score_video_map_one():
    box1, box2 = (10, 10, 50, 60), (200, 100, 240, 160)
    gt = act_gt({"A/v1": {0: [tube(1, 20, box1)]}, "A/v2": {1: [tube(5, 30, box2)]}})
    dets = np.array([[0, f, 0, 0.8, *box1] for f in range(1, 21)] + [[1, f, 1, 0.7, *box2] for f in range(5, 31)])
    tubes = link_all(dets, gt["test_videos"][0], 2, LinkConfig())
    assert video_ap(gt, tubes, 0.5)["mAP"] == 1.0
    assert frame_ap(gt, dets)["mAP"] == 1.0


# ------------------------------------------------------------------------------------------------------ real data
def test_real_ucf24_ground_truth_as_detections():
    if not UCF24.is_dir():
        pytest.skip(f"real data folder {UCF24} is absent")
    from slowfast_bmvit.datasets.act_convert import ucf24_from_pyannot

    gt = ucf24_from_pyannot(UCF24 / "pyannot.pkl", UCF24 / "testlist01.txt")
    videos = gt["test_videos"][0]
    assert len(videos) == 910 and len(gt["labels"]) == 24
    rows, tubes = [], {}
    for iv, video in enumerate(videos):
        tubes[video] = {}
        for label, gts in gt["gttubes"][video].items():
            tubes[video][label] = [(np.column_stack([t, np.ones(len(t))]), 1.0) for t in gts]
            rows += [np.column_stack([np.full(len(t), iv), t[:, 0], np.full(len(t), label), np.ones(len(t)),
                                      t[:, 1:5]]) for t in gts]
    frame = frame_ap(gt, np.concatenate(rows))
    assert frame["mAP"] == 1.0 and set(frame["per_class"].values()) == {1.0}
    video = video_ap_thresholds(gt, tubes)
    # below 1 only because 3D NMS suppresses one tube of each same-class pair overlapping by more than 0.3
    assert 0.975 <= video["0.5"] <= 0.983
    assert video["0.2"] == video["0.5"] == video["0.75"]  # every surviving tube matches itself exactly
    assert video_ap(gt, tubes, 0.5, nms_thresh=None)["mAP"] == 1.0


# ------------------------------------------------------------------------------ saved detections, engine metric, CLI
from slowfast_bmvit.evaluation import act  # noqa: E402


def perfect_detections(gt, videos, every=1, score=0.9):
    """The ground-truth boxes of every `every`-th frame (1, 1 + every, ...) as detections [N, 8]."""
    rows = []
    for iv, video in enumerate(videos):
        for label, tubes in gt["gttubes"][video].items():
            for t in tubes:
                t = t[(t[:, 0] - 1) % every == 0]
                rows.append(np.column_stack([np.full(len(t), iv), t[:, 0], np.full(len(t), label),
                                             np.full(len(t), score), t[:, 1:5]]))
    return np.concatenate(rows)


def test_evaluate_act_reports_frame_and_video_map_and_bridges_a_test_stride():
    box1, box2 = (10, 10, 50, 60), (200, 100, 240, 160)
    gt = act_gt({"A/v1": {0: [tube(1, 40, box1)]}, "A/v2": {1: [tube(3, 38, box2)]}})
    videos = gt["test_videos"][0]
    result = act.evaluate_act(gt, perfect_detections(gt, videos), videos)
    assert result["mAP"] == 1.0
    assert result["video_mAP"] == {"0.2": 1.0, "0.5": 1.0, "0.75": 1.0, "0.5:0.95": 1.0}
    assert result["video_per_class"]["0.5"] == {"a": 1.0, "b": 1.0}
    assert result["report_lines"][-5:] == ["video-mAP@0.2: 1.0", "video-mAP@0.5: 1.0", "video-mAP@0.75: 1.0",
                                           "video-mAP@0.5:0.95: 1.0", "frame-mAP@0.5: 1.0"]
    # Every 7th frame tested (frames 1, 8, 15, 22, 29, 36): the evaluated frames are those, so frame-mAP stays 1.
    # The linker bridges 6 untested frames only with max_gap widened to (5 + 1) * 7 - 1 = 41; interpolation fills
    # them with the (still) boxes. Tubes: v1 frames 1..36 of the ground truth's 1..40 -> ST-IoU 36/40 = 0.9;
    # v2 frames 8..36 of 3..38 -> 29/36 = 0.806.
    assert act.link_config_for_stride(7).max_gap == 41 and act.link_config_for_stride(1).max_gap == 5
    dets = perfect_detections(gt, videos, every=7)
    evaluated = dets[:, :2].astype(np.int64)
    strided = act.evaluate_act(gt, dets, videos, evaluated, frame_stride=7)
    assert strided["mAP"] == 1.0
    assert strided["video_mAP"]["0.75"] == 1.0
    # 0.5:0.05:0.95: both classes pass 0.5..0.8 (7 thresholds, mAP 1), only a passes 0.85 and 0.9 (mAP 1/2),
    # neither 0.95 (0) -> (7 + 2 * 0.5 + 0) / 10 = 0.8
    assert strided["video_mAP"]["0.5:0.95"] == pytest.approx(0.8)
    # without the widening every tube breaks at each 6-frame gap into 1-frame pieces, all shorter than min_length
    unbridged = video_ap(gt, link_all(dets, videos, 2, LinkConfig()), 0.2)
    assert unbridged["mAP"] == 0.0


def test_saved_frame_detections_round_trip_and_cli_reproduces_the_metric(tmp_path, capsys):
    box1, box2 = (10, 10, 50, 60), (200, 100, 240, 160)
    gt = act_gt({"A/v1": {0: [tube(1, 40, box1)]}, "A/v2": {1: [tube(3, 38, box2)]}})
    gt_file = tmp_path / "gt.pkl"
    gt_file.write_bytes(__import__("pickle").dumps(gt))
    videos = gt["test_videos"][0]
    dets = perfect_detections(gt, videos)
    dets[::3, [4, 6]] += 30  # a third of the boxes 30 px to the right: IoU below 0.5, false positives
    expected = act.evaluate_act(gt, dets, videos)
    assert 0.0 < expected["mAP"] < 1.0
    path = tmp_path / "frame_detections_test.npz"
    act.save_frame_detections(path, dets, videos, gt["labels"], dets[:, :2].astype(np.int64), 1)
    loaded = act.read_frame_detections(path, gt)
    np.testing.assert_array_equal(loaded.detections, dets)
    assert loaded.videos == videos and loaded.labels == ["a", "b"] and loaded.frame_stride == 1
    out_json = tmp_path / "result.json"
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(path), "--video", "--json",
                     str(out_json)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == expected["report_lines"] and lines[-1] == f"frame-mAP@0.5: {expected['mAP']!r}"
    saved = __import__("json").loads(out_json.read_text())
    assert saved["mAP"] == expected["mAP"] and saved["video_mAP"] == expected["video_mAP"]
    # without --video: frame-mAP only; a plain .npy array indexes the ground truth's test videos of --split
    np.save(tmp_path / "dets.npy", dets)
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(tmp_path / "dets.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"frame-mAP@0.5: {expected['mAP']!r}" and not any("video" in line for line in lines)


@pytest.mark.parametrize("make, message", [
    (lambda p, gt, d: act.save_frame_detections(p, d, ["A/v1", "B/x"], gt["labels"]),
     "1 of its 2 videos are not in the ground truth, e.g. 'B/x'"),
    (lambda p, gt, d: act.save_frame_detections(p, d, gt["test_videos"][0], ["a", "c"]),
     "its 2 class names differ from the ground truth's 2"),
    (lambda p, gt, d: np.savez(p, boxes=d), "no detections or videos array"),
    (lambda p, gt, d: p.write_bytes(b"not numpy at all"), "not a numpy .npz / .npy detections file"),
    (lambda p, gt, d: np.savez(p, detections=d[:, :6], videos=np.array(gt["test_videos"][0])),
     r"detections must be a numeric array \[N, 8\]"),
])
def test_cli_refuses_unusable_detection_files_with_one_line(tmp_path, capsys, make, message):
    gt = act_gt({"A/v1": {0: [tube(1, 4, (10, 10, 50, 60))]}})
    gt_file = tmp_path / "gt.pkl"
    gt_file.write_bytes(__import__("pickle").dumps(gt))
    path = tmp_path / "dets.npz"
    make(path, gt, perfect_detections(gt, gt["test_videos"][0]))
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {path}: ")
    assert __import__("re").search(message, err), err
    gt_file.write_bytes(b"\x00\x01")
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(path)]) == 2
    assert "not a readable ACT ground-truth pickle" in capsys.readouterr().err


@pytest.mark.parametrize("breaks, message", [
    (lambda gt: gt["gttubes"]["A/v1"][0].__setitem__(0, np.zeros((20, 4))),
     r"gttubes\['A/v1'\]\[0\]\[0\]: expected a numeric array \[T, 5\] .* shape \(20, 4\)"),
    (lambda gt: gt["gttubes"]["A/v1"].__setitem__(5, [tube(1, 4, (10, 10, 50, 60))]),
     r"gttubes\['A/v1'\]: label 5 outside 0..1"),
    (lambda gt: gt["gttubes"]["A/v1"][0].__setitem__(0, tube(38, 44, (10, 10, 50, 60))),
     r"frames 38..44 outside 1..40 \(nframes\)"),
    (lambda gt: gt["nframes"].pop("A/v2"), r"video 'A/v2' is listed in a split but has no entry in 'nframes'"),
    (lambda gt: gt.pop("resolution"), r"missing key\(s\) 'resolution'"),
    (lambda gt: gt["nframes"].__setitem__("A/v1", None),
     r"nframes\['A/v1'\]: None is not a number of frames \(a positive integer\)$"),
    (lambda gt: gt["nframes"].__setitem__("A/v2", 40.5), r"nframes\['A/v2'\]: 40.5 is not a number of frames"),
    (lambda gt: gt["gttubes"].__setitem__("A/v1", {"a": gt["gttubes"]["A/v1"][0]}),
     r"gttubes\['A/v1'\]: label 'a' is not a class index \(an integer 0..1 into 'labels'\)$"),
], ids=["tube_4_columns", "label_out_of_range", "frame_past_nframes", "listed_video_without_nframes",
        "missing_key", "nframes_none", "nframes_fraction", "class_name_as_label"])
def test_cli_refuses_a_malformed_ground_truth_as_the_datasets_do(tmp_path, capsys, breaks, message):
    """The CLI reads the ground truth through the validator the UCF101-24 / JHMDB datasets use: a file they refuse
    is refused here too (one line naming the file), not evaluated to a frame-mAP."""
    import pickle

    from slowfast_bmvit.evaluation.act_groundtruth import ActAnnotationError, load_act_pickle

    gt = act_gt({"A/v1": {0: [tube(1, 4, (10, 10, 50, 60))]}})
    detections = tmp_path / "dets.npz"
    act.save_frame_detections(detections, perfect_detections(gt, gt["test_videos"][0]), gt["test_videos"][0],
                              gt["labels"])
    breaks(gt)
    gt_file = tmp_path / "gt.pkl"
    gt_file.write_bytes(pickle.dumps(gt))
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(detections)]) == 2
    captured = capsys.readouterr()
    assert "frame-mAP" not in captured.out
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith(f"error: {gt_file}: ") and __import__("re").search(message, err), err
    with pytest.raises(ActAnnotationError, match=message):
        load_act_pickle(gt_file)


@pytest.mark.parametrize("evaluated, message", [
    ([[0, 1], [-1, 3]], r"1 evaluated_frames row\(s\) with a video_index outside 0..1 \(its 2 videos\) or a frame "
                        r"below 1, e.g. row 1: \[-1, 3\]"),
    ([[0, 1], [2, 3]], r"e.g. row 1: \[2, 3\]"),
    ([[0, 0]], r"e.g. row 0: \[0, 0\]"),
], ids=["negative_index", "index_past_the_end", "frame_0"])
def test_evaluated_frames_outside_the_videos_are_refused_naming_the_file(tmp_path, capsys, evaluated, message):
    """A negative video_index must not wrap to the last video (cutting its ground truth to the wrong frames), nor
    one past the end end in an IndexError traceback."""
    gt = act_gt({"A/v1": {0: [tube(1, 4, (10, 10, 50, 60))]}, "A/v2": {1: [tube(1, 4, (10, 10, 50, 60))]}})
    videos = gt["test_videos"][0]
    with pytest.raises(ValueError, match=message):
        act.restrict_to_frames(gt, np.array(evaluated), videos)
    gt_file = tmp_path / "gt.pkl"
    gt_file.write_bytes(__import__("pickle").dumps(gt))
    path = tmp_path / "frame_detections_test.npz"
    act.save_frame_detections(path, perfect_detections(gt, videos), videos, gt["labels"], np.array(evaluated))
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {path}: ") and __import__("re").search(message, err), err


def test_detection_video_index_outside_the_files_videos_is_refused_naming_the_file(tmp_path, capsys):
    gt = act_gt({"A/v1": {0: [tube(1, 4, (10, 10, 50, 60))]}})
    dets = perfect_detections(gt, gt["test_videos"][0])
    dets[1, 0] = 2  # the file lists 2 videos
    gt_file = tmp_path / "gt.pkl"
    gt_file.write_bytes(__import__("pickle").dumps(gt))
    path = tmp_path / "frame_detections_test.npz"
    act.save_frame_detections(path, dets, gt["test_videos"][0], gt["labels"])
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: {path}: 1 detection row(s) with a video_index outside 0..1"), err


def test_real_ucf24_single_actor_clips_link_into_their_ground_truth_tubes(tmp_path, capsys):
    if not UCF24.is_dir():
        pytest.skip(f"real data folder {UCF24} is absent")
    from slowfast_bmvit.datasets.act_convert import save_act_pickle, subset_act_gt, ucf24_from_pyannot

    clips = ("Basketball/v_Basketball_g01_c02", "Biking/v_Biking_g01_c01", "CliffDiving/v_CliffDiving_g03_c01",
             "HorseRiding/v_HorseRiding_g01_c03", "SkateBoarding/v_SkateBoarding_g02_c01",
             "SalsaSpin/v_SalsaSpin_g03_c01")
    gt = subset_act_gt(ucf24_from_pyannot(UCF24 / "pyannot.pkl", UCF24 / "testlist01.txt"), clips)
    save_act_pickle(gt, tmp_path / "gt.pkl")
    videos = gt["test_videos"][0]
    single = [video for video in videos if sum(map(len, gt["gttubes"][video].values())) == 1]
    assert len(single) == 5  # SalsaSpin has 5 dancers
    path = tmp_path / "frame_detections_test.npz"
    act.save_frame_detections(path, perfect_detections(gt, videos), videos, gt["labels"])
    out = tmp_path / "result.json"
    assert act.main(["--groundtruth", str(tmp_path / "gt.pkl"), "--detections", str(path), "--video", "--json",
                     str(out)]) == 0
    result = __import__("json").loads(out.read_text())
    # every annotated box detected: frame-AP 1 for the 6 classes; one box per frame in a single-actor clip links
    # into exactly its ground-truth tube: video-AP 1 at every threshold for those 5 classes
    present = {video.split("/")[0] for video in videos}
    assert {name: round(ap, 12) for name, ap in result["per_class"].items() if name in present} == dict.fromkeys(
        present, 1.0)
    for threshold in ("0.2", "0.5", "0.75"):
        for video in single:
            assert result["video_per_class"][threshold][video.split("/")[0]] == 1.0, (threshold, video)
    assert "video-mAP@0.5:0.95" in capsys.readouterr().out
