"""The engine end to end on a tiny ACT-format dataset generated here (JPEG frames + ACT pickle, as for JHMDB /
UCF101-24): training with validation every epoch, the test with frame-mAP and video-mAP, the saved detections
evaluated offline by `python -m slowfast_bmvit.evaluation.act` to the same numbers."""

import json

import cv2
import numpy as np
import pytest
import simplejson

from slowfast_bmvit.config import assert_and_infer_cfg, load_config
from slowfast_bmvit.datasets.act_convert import save_act_pickle
from slowfast_bmvit.engine import tester
from slowfast_bmvit.engine.trainer import train
from slowfast_bmvit.evaluation import act
from slowfast_bmvit.evaluation.act_groundtruth import load_act_pickle

LABELS = ["clap", "jump", "wave"]
NUM_FRAMES = 16
FRAME_SIZE = (48, 64)  # frames on disk; the annotation is in 240 x 320 pixels (x 5)

# A small MViT (the one tests/test_engine.py trains) on 4-frame clips.
TINY_OPTS = [
    "DATA.NUM_FRAMES", "4", "DATA.SAMPLING_RATE", "2", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "MVIT.DEPTH", "2", "MVIT.EMBED_DIM", "16", "MVIT.PATCH_STRIDE", "[2, 4, 4]", "MVIT.DIM_MUL", "[[1, 2.0]]",
    "MVIT.CONV_STEM_CHANNELS", "[]", "MVIT.PATCH_KERNEL", "[3, 7, 7]", "MVIT.PATCH_PADDING", "[1, 3, 3]",
    "MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]", "MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 2, 2]",
    "MVIT.REMOVE_Q_POOL_BLOCKS", "[]", "TRAIN.MIXED_PRECISION", "False", "BMVIT.CLASS_DROPOUT", "0.0",
    "BMVIT.PROJ_DIM", "16", "BMVIT.ACTOR_THRESH", "0.0", "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "8",
    "SOLVER.MAX_EPOCH", "2", "SOLVER.WARMUP_EPOCHS", "0.5", "SOLVER.BASE_LR", "0.001", "TRAIN.CHECKPOINT_PERIOD", "1",
    "TRAIN.CHECKPOINT_FILE_PATH", "", "DATA_LOADER.NUM_WORKERS", "0", "NUM_GPUS", "0", "DETERMINISTIC", "True",
    "LOG_PERIOD", "4", "DEMO.NUM_VIS_KEYFRAMES", "1", "MODEL.NUM_CLASSES", str(len(LABELS)),
]


def _write_act_dataset(root):
    """Nine videos of 16 frames, each a bright actor box moving over a dark background; label = the video's class.

    Train: two videos per class; test: one per class. Tubes cover frames 3..14, so testing every
    frame (ACT.TEST_ALL_FRAMES) also scores frames without an actor.
    """
    rng = np.random.default_rng(0)
    videos = {f"{LABELS[i % 3]}/v{i}": i % 3 for i in range(9)}
    gttubes, nframes, resolution = {}, {}, {}
    for video, label in videos.items():
        folder = root / "frames" / video
        folder.mkdir(parents=True)
        x0, y0 = rng.uniform(20, 160), rng.uniform(20, 100)
        width, height = 80 + 20 * label, 100
        rows = []
        for frame in range(1, NUM_FRAMES + 1):
            x1, y1 = x0 + 4 * frame, y0 + 2 * frame
            image = np.full((*FRAME_SIZE, 3), 20, np.uint8)
            if 3 <= frame <= 14:
                rows.append([frame, x1, y1, x1 + width, y1 + height])
                a, b, c, d = (int(round(v / 5)) for v in (x1, y1, x1 + width, y1 + height))
                image[b:d, a:c] = (200, 80 + 60 * label, 40)  # colour tells the class
            cv2.imwrite(str(folder / f"{frame:05d}.jpg"), image)
        gttubes[video] = {label: [np.array(rows, np.float32)]}
        nframes[video], resolution[video] = NUM_FRAMES, (240, 320)
    names = list(videos)
    gt = {"labels": LABELS, "train_videos": [sorted(names[3:])], "test_videos": [names[:3]], "nframes": nframes,
          "resolution": resolution, "gttubes": gttubes}
    save_act_pickle(gt, root / "gt.pkl")
    return root / "gt.pkl", root / "frames"


@pytest.fixture(scope="module")
def act_root(tmp_path_factory):
    return _write_act_dataset(tmp_path_factory.mktemp("act"))


def _json_rows(output_dir, kind):
    with open(output_dir / "json_stats.log") as handle:
        return [row for row in map(simplejson.loads, handle) if row["_type"] == kind]


def test_act_dataset_trains_with_validation_and_tests_with_frame_and_video_map(repo_root, act_root, tmp_path,
                                                                              capsys):
    gt_file, frame_dir = act_root
    opts = TINY_OPTS + ["ACT.GT_FILE", str(gt_file), "ACT.FRAME_DIR", str(frame_dir), "ACT.FRAME_PATTERN",
                        "{:05d}.jpg", "ACT.TEST_ALL_FRAMES", "True", "TRAIN.EVAL_PERIOD", "1",
                        "OUTPUT_DIR", str(tmp_path)]
    cfg = assert_and_infer_cfg(load_config(str(repo_root / "configs" / "JHMDB" / "BMViT_MViTv2_S.yaml"), opts))
    train(cfg)
    # validation after each of the 2 epochs, on the 3 test videos: frame-mAP only
    val = _json_rows(tmp_path, "val_epoch")
    assert [row["epoch"] for row in val] == ["1/2", "2/2"] and all(0.0 <= row["map"] <= 1.0 for row in val)

    capsys.readouterr()
    result = tester.test(cfg)
    assert 0.0 <= result["mAP"] <= 1.0
    assert val[-1]["map"] == pytest.approx(result["mAP"], rel=1e-5)  # the last validation saw the same weights
    assert set(result["video_mAP"]) == {"0.2", "0.5", "0.75", "0.5:0.95"}
    assert all(0.0 <= value <= 1.0 for value in result["video_mAP"].values())
    assert set(result["video_per_class"]) == {"0.2", "0.5", "0.75"}
    assert set(result["video_per_class"]["0.5"]) == set(LABELS)
    # the printed report (and test_results.txt): video-mAP lines, the frame-mAP last
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"frame-mAP@0.5: {result['mAP']!r}"
    assert f"video-mAP@0.5: {result['video_mAP']['0.5']!r}" in lines
    assert (tmp_path / "test_results.txt").read_text().strip().splitlines()[-5:] == lines[-5:]
    saved = json.loads((tmp_path / "test_results.json").read_text())
    assert saved["mAP"] == result["mAP"] and saved["video_mAP"] == result["video_mAP"]
    test_row = _json_rows(tmp_path, "test")[-1]
    assert test_row["map"] == pytest.approx(result["mAP"], rel=1e-5)  # the stats log keeps 6 digits
    assert test_row["video_map@0.5"] == pytest.approx(result["video_mAP"]["0.5"], rel=1e-5)
    assert "video-mAP @0.2" in (tmp_path / "stdout.log").read_text()

    # the saved detections: every frame of the 3 test videos evaluated, re-scored offline to the same numbers
    detections = act.read_frame_detections(tmp_path / "frame_detections_test.npz", load_act_pickle(gt_file))
    assert detections.videos == ["clap/v0", "jump/v1", "wave/v2"] and detections.labels == LABELS
    assert len(detections.evaluated_frames) == 3 * NUM_FRAMES and detections.frame_stride == 1
    assert len(detections.detections) > 0
    out_json = tmp_path / "offline.json"
    assert act.main(["--groundtruth", str(gt_file), "--detections", str(tmp_path / "frame_detections_test.npz"),
                     "--video", "--json", str(out_json)]) == 0
    assert capsys.readouterr().out.strip().splitlines() == lines[-len(result["report_lines"]):]
    offline = json.loads(out_json.read_text())
    assert offline["mAP"] == result["mAP"] and offline["video_mAP"] == result["video_mAP"]
    assert offline["per_class"] == saved["per_class"]
