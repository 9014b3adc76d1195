"""The "ava" dataset on a tiny hand-written AVA folder: sampling, boxes, labels, metadata, bad-data policy."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.datasets import build_dataset, construct_loader
from slowfast_bmvit.datasets.ava_helper import load_box_csvs, load_frame_lists
from slowfast_bmvit.datasets.frame_io import FrameReader, FrameReadError, clip_frame_indices

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HEIGHT, WIDTH, NUM_VIDEO_FRAMES = 24, 32, 150

LABEL_MAP = "".join(f'label {{\n  name: "{name}"\n  label_id: {i}\n  label_type: PERSON_MOVEMENT\n}}\n'
                    for i, name in ((5, "fall down"), (12, "stand"), (14, "walk"),
                                    (79, "talk to (e.g., self, a person, a group)")))
GT_ROWS = """vidA,0902,0.1,0.2,0.5,0.9,12,0
vidA,0902,0.1,0.2,0.5,0.9,79,0
vidA,0902,0.6,0.1,0.9,0.8,3,1
vidA,0904,-0.05,0.2,0.5,1.2,14,0
vidB,0902,0.2,0.2,0.4,0.6,5,0
vidC,0902,0.2,0.2,0.4,0.6,5,0
"""
PREDICTED_ROWS = """vidA,0904,0.1,0.1,0.4,0.9,,0.95
vidA,0904,0.5,0.1,0.8,0.9,,0.5
vidB,0903,0.2,0.2,0.4,0.6,,0.99
vidB,0904,0.2,0.2,0.4,0.6,,0.99
"""


@pytest.fixture(scope="module")
def ava_root(tmp_path_factory):
    """Two 5-second videos whose frame k is a uniform grey of value k; AVA annotations as above."""
    root = tmp_path_factory.mktemp("ava")
    lines = ["original_vido_id video_id frame_id path labels\n"]
    for video_idx, video in enumerate(("vidA", "vidB")):
        (root / "frames" / video).mkdir(parents=True)
        for frame in range(NUM_VIDEO_FRAMES):
            cv2.imwrite(str(root / "frames" / video / f"{video}_{frame + 1:06d}.jpg"),
                        np.full((HEIGHT, WIDTH, 3), frame, np.uint8))
            lines.append(f'{video} {video_idx} {frame} {video}/{video}_{frame + 1:06d}.jpg ""\n')
    (root / "lists").mkdir()
    (root / "lists" / "train.csv").write_text("".join(lines))
    (root / "lists" / "val.csv").write_text("".join(lines))
    (root / "ann").mkdir()
    (root / "ann" / "labelmap.pbtxt").write_text(LABEL_MAP)
    (root / "ann" / "gt.csv").write_text(GT_ROWS)
    (root / "ann" / "predicted.csv").write_text(PREDICTED_ROWS)
    (root / "ann" / "excluded.csv").write_text("vidB,0904\n")
    return root


def make_cfg(root, **ava):
    cfg = get_cfg()
    cfg.AVA.FRAME_DIR = str(root / "frames")
    cfg.AVA.FRAME_LIST_DIR = str(root / "lists")
    cfg.AVA.ANNOTATION_DIR = str(root / "ann")
    cfg.AVA.TRAIN_GT_BOX_LISTS = ["gt.csv"]
    cfg.AVA.TEST_PREDICT_BOX_LISTS = ["predicted.csv"]
    cfg.AVA.GROUNDTRUTH_FILE = "gt.csv"
    cfg.AVA.LABEL_MAP_FILE = "labelmap.pbtxt"
    cfg.AVA.EXCLUSION_FILE = "excluded.csv"
    cfg.AVA.DETECTION_SCORE_THRESH = 0.8
    for key, value in ava.items():
        setattr(cfg.AVA, key, value)
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 4, 3
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = 16
    cfg.DATA.RANDOM_FLIP = False
    cfg.DATA.MEAN, cfg.DATA.STD = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    cfg.DATA_LOADER.NUM_WORKERS = 0
    cfg.NUM_GPUS = 0
    return cfg


def frame_values(inputs):
    """The grey level of each frame of an un-normalised clip [3, T, H, W] (= its source frame index)."""
    return (inputs[0].mean(dim=(1, 2)) * 255).round().tolist()


def test_train_samples_group_rows_into_persons_with_multi_hot_labels(ava_root, caplog):
    with caplog.at_level(logging.INFO):
        dataset = build_dataset("ava", make_cfg(ava_root), "train")
    assert [(k.video_idx, k.sec) for k in dataset.keyframes] == [(0, 902), (0, 904), (1, 902)]
    assert "1 row(s) with coordinates outside [0, 1] clipped, first at line 4" in caplog.text
    assert "absent from the frame lists" in caplog.text and "vidC" in caplog.text

    sample = dataset[0]
    assert sample["inputs"].shape == (3, 4, 16, 16)
    np.testing.assert_allclose(sample["boxes"].numpy(), [[0.1, 0.2, 0.5, 0.9], [0.6, 0.1, 0.9, 0.8]], atol=1e-6)
    assert torch.equal(sample["ori_boxes"], sample["boxes"])  # square resize keeps normalised boxes
    assert sample["labels"].shape == (2, 80)
    assert sample["labels"][0].nonzero().flatten().tolist() == [11, 78]  # ids 12 and 79
    assert sample["labels"][1].sum() == 0  # crouch/kneel (3) is not in the label map
    assert sample["actor"].tolist() == [True, False]
    meta = sample["meta"]
    assert (meta["video"], meta["video_idx"], meta["sec"], meta["orig_size"]) == ("vidA", 0, 902, (HEIGHT, WIDTH))
    assert meta["crop_box"] == (0.0, 0.0, 1.0, 1.0)
    np.testing.assert_allclose(dataset[1]["boxes"].numpy(), [[0.0, 0.2, 0.5, 1.0]], atol=1e-6)  # clipped


def test_clip_frames_follow_pyslowfast_sampling_and_are_clamped(ava_root):
    dataset = build_dataset("ava", make_cfg(ava_root), "train")
    # sec 902 -> centre frame 60; 4 frames every 3: 60 - 6 + 3i.
    values = frame_values(dataset[0]["inputs"])
    assert values == pytest.approx([54, 57, 60, 63], abs=1.5)
    np.testing.assert_array_equal(clip_frame_indices(60, 16, 4, 1000), np.arange(28, 92, 4))
    np.testing.assert_array_equal(clip_frame_indices(2, 4, 3, 8), [0, 0, 2, 5])
    np.testing.assert_array_equal(clip_frame_indices(7, 4, 3, 8), [1, 4, 7, 7])


def test_test_split_uses_thresholded_predicted_boxes_and_skips_exclusions(ava_root):
    dataset = build_dataset("ava", make_cfg(ava_root), "val")
    # vidA 904: one box above 0.8; vidB 903: not a multiple of 4; vidB 904: excluded.
    assert [(k.video_idx, k.sec, len(k.boxes)) for k in dataset.keyframes] == [(0, 904, 1)]
    sample = dataset[0]
    assert sample["labels"].sum() == 0 and sample["actor"].tolist() == [False]
    full = build_dataset("ava", make_cfg(ava_root, FULL_TEST_ON_VAL=True), "val")
    assert [(k.video_idx, k.sec) for k in full.keyframes] == [(0, 904), (1, 903)]
    test = build_dataset("ava", make_cfg(ava_root), "test")  # no sec % 4 rule on the test split
    assert len(test) == 2


def test_test_split_on_ground_truth_boxes(ava_root):
    cfg = make_cfg(ava_root, TEST_USE_GT_BOXES=True, FULL_TEST_ON_VAL=True)
    dataset = build_dataset("ava", cfg, "val")
    assert [(k.video_idx, k.sec) for k in dataset.keyframes] == [(0, 902), (0, 904), (1, 902)]
    assert dataset[2]["labels"][0].nonzero().flatten().tolist() == [4]
    assert dataset.evaluation_files == {"labelmap": str(ava_root / "ann" / "labelmap.pbtxt"),
                                        "groundtruth": str(ava_root / "ann" / "gt.csv"),
                                        "exclusions": str(ava_root / "ann" / "excluded.csv")}


def test_a_model_that_finds_persons_itself_is_tested_on_every_annotated_keyframe(ava_root):
    """Without AVA.TEST_USE_GT_BOXES the two-stage model keeps the detector's keyframes; BMViT's test set is the
    ground truth's, whatever the detector found."""
    cfg = make_cfg(ava_root, FULL_TEST_ON_VAL=True)
    two_stage = build_dataset("ava", cfg, "val", model_reads_boxes=True)
    assert [(k.video_idx, k.sec) for k in two_stage.keyframes] == [(0, 904), (1, 903)]  # predicted boxes >= 0.8
    single_stage = build_dataset("ava", cfg, "val", model_reads_boxes=False)
    assert [(k.video_idx, k.sec, len(k.boxes)) for k in single_stage.keyframes] == [(0, 902, 2), (0, 904, 1),
                                                                                     (1, 902, 1)]
    loader = construct_loader(cfg, "test", model_reads_boxes=False)
    assert [(k.video_idx, k.sec) for k in loader.dataset.keyframes] == [(0, 902), (0, 904), (1, 902)]


def test_a_keyframe_annotated_without_persons_is_tested_by_a_single_stage_model_only(ava_root):
    """A 2-column ground-truth row (`video,sec`, as the ActivityNet challenge files list a keyframe without persons)
    was a malformed row. It is a test keyframe for BMViT (any detection on it is a false positive), and nothing to
    train on or to read boxes from."""
    (ava_root / "ann" / "gt_no_person.csv").write_text(GT_ROWS + "vidB,0903\n")
    cfg = make_cfg(ava_root, TRAIN_GT_BOX_LISTS=["gt_no_person.csv"], GROUNDTRUTH_FILE="gt_no_person.csv",
                   TEST_USE_GT_BOXES=True, FULL_TEST_ON_VAL=True, EXCLUSION_FILE="")
    single_stage = build_dataset("ava", cfg, "val", model_reads_boxes=False)
    assert [(k.video_idx, k.sec, len(k.boxes)) for k in single_stage.keyframes] == [
        (0, 902, 2), (0, 904, 1), (1, 902, 1), (1, 903, 0)]
    sample = single_stage[3]
    assert sample["boxes"].shape == (0, 4) and sample["labels"].shape == (0, 80)
    cfg.TEST.BATCH_SIZE = 4
    batch = next(iter(construct_loader(cfg, "test", model_reads_boxes=False)))
    assert [len(target["boxes"]) for target in batch["targets"]] == [2, 1, 1, 0]
    two_stage = build_dataset("ava", cfg, "val", model_reads_boxes=True)
    train = build_dataset("ava", cfg, "train")
    assert (1, 903) not in {(k.video_idx, k.sec) for k in two_stage.keyframes + train.keyframes}


def test_keyframes_outside_their_video_are_skipped_with_a_counted_warning(ava_root, caplog):
    """The videos have 150 frames (seconds 900..904): second 905 is frame 150 and second 899 frame -30."""
    (ava_root / "ann" / "gt_outside.csv").write_text(
        "vidA,0899,0.1,0.2,0.5,0.9,12,0\nvidA,0905,0.1,0.2,0.5,0.9,12,0\nvidB,0903,0.2,0.2,0.4,0.6,5,0\n"
        "vidB,0905,0.2,0.2,0.4,0.6,5,0\n")
    cfg = make_cfg(ava_root, TRAIN_GT_BOX_LISTS=["gt_outside.csv"], GROUNDTRUTH_FILE="gt_outside.csv",
                   TEST_USE_GT_BOXES=True, FULL_TEST_ON_VAL=True, EXCLUSION_FILE="")
    with caplog.at_level(logging.WARNING):
        train = build_dataset("ava", cfg, "train")
    assert [(k.video_idx, k.sec) for k in train.keyframes] == [(1, 903)]
    assert train.num_outside_keyframes == 3
    assert "train: 3 keyframe(s) outside their video's frames skipped (e.g. vidA sec 899: frame -30, the frame " \
           "list has frames 0..149)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        val = build_dataset("ava", cfg, "val")
    assert len(val) == 1 and "val: 3 keyframe(s) outside" in caplog.text
    assert "their ground truth still counts as missed" in caplog.text


def test_short_side_crop_drops_persons_outside_and_keeps_everything_aligned(ava_root):
    cfg = make_cfg(ava_root)
    cfg.DATA.RESIZE_MODE = "short_side"
    cfg.AVA.TEST_USE_GT_BOXES = True
    dataset = build_dataset("ava", cfg, "test")
    sample = dataset[0]  # vidA 902: the 24x32 frame's centre 24x24 square is x in [4, 28) px = [0.125, 0.875)
    np.testing.assert_allclose(sample["meta"]["crop_box"], (0.125, 0.0, 0.875, 1.0))
    np.testing.assert_allclose(sample["boxes"][0].numpy(), [0.0, 0.2, (0.5 - 0.125) / 0.75, 0.9], atol=1e-6)
    assert len(sample["boxes"]) == len(sample["labels"]) == len(sample["actor"]) == len(sample["ori_boxes"]) == 2
    # Mapping clip boxes back through crop_box gives the clipped original boxes.
    x0, y0, x1, y1 = sample["meta"]["crop_box"]
    back = sample["boxes"].numpy() * [x1 - x0, y1 - y0, x1 - x0, y1 - y0] + [x0, y0, x0, y0]
    np.testing.assert_allclose(back, np.clip(sample["ori_boxes"].numpy(), [x0, y0, x0, y0], [x1, y1, x1, y1]),
                               atol=1e-6)

    tiny = build_dataset("ava", cfg, "test")
    tiny.keyframes[0] = type(tiny.keyframes[0])(0, 902, np.array([[0.0, 0.1, 0.1, 0.5], [0.3, 0.1, 0.6, 0.5]],
                                                                 np.float32), ((12,), (14,)))
    sample = tiny[0]
    assert sample["labels"].nonzero().tolist() == [[0, 13]]  # the person left of the crop is dropped
    assert tiny.num_cropped_away == 1


def test_loader_batches_follow_the_collate_contract(ava_root):
    cfg = make_cfg(ava_root)
    cfg.TRAIN.BATCH_SIZE = 3
    batch = next(iter(construct_loader(cfg, "train")))
    assert batch["inputs"].shape == (3, 3, 4, 16, 16)
    assert batch["boxes"].shape == (4, 5) and batch["labels"].shape == (4, 80)
    assert sorted(batch["metadata"][:, 1].tolist()) == [902, 902, 902, 904]
    for target, meta in zip(batch["targets"], batch["meta"]):
        assert target["boxes"].shape[1] == 4 and ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()
        assert meta["video"] in ("vidA", "vidB")


def test_label_map_ids_beyond_num_classes_are_a_config_error(ava_root):
    cfg = make_cfg(ava_root)
    cfg.MODEL.NUM_CLASSES = 60
    with pytest.raises(ConfigError, match="MODEL.NUM_CLASSES"):
        build_dataset("ava", cfg, "train")


def test_malformed_rows_name_file_and_line(tmp_path):
    bad_box = tmp_path / "bad.csv"
    bad_box.write_text("vidA,0902,0.1,0.2,0.5,0.9,12,0\nvidA,0902,0.1,oops,0.5,0.9,12,0\n")
    with pytest.raises(ValueError, match=rf"{bad_box}:2: y1 'oops' is not a number"):
        load_box_csvs([(str(bad_box), True)], 0.8)
    bad_score = tmp_path / "pred.csv"
    bad_score.write_text("vidA,0902,0.1,0.2,0.5,0.9,,high\n")
    with pytest.raises(ValueError, match=rf"{bad_score}:1: score 'high'"):
        load_box_csvs([(str(bad_score), False)], 0.8)
    columns = tmp_path / "cols.csv"
    columns.write_text("\nvidA,0902,0.1,0.2\n")
    with pytest.raises(ValueError, match=rf"{columns}:2: expected 7 or 8"):
        load_box_csvs([(str(columns), True)], 0.8)
    frame_list = tmp_path / "list.csv"
    frame_list.write_text("header\nvidA 0 zero vidA/vidA_000001.jpg \"\"\n")
    with pytest.raises(ValueError, match=rf"{frame_list}:2: frame_idx 'zero'"):
        load_frame_lists([str(frame_list)], str(tmp_path))


def test_real_malformed_ava_excerpt_gives_a_counted_warning_naming_file_and_line(caplog):
    path = SHARED_DATA / "ava" / "ava_val_v2.2_excerpt_malformed.csv"
    if not path.is_file():
        pytest.skip(f"real AVA excerpt not available at {path}")
    with caplog.at_level(logging.WARNING):
        boxes = load_box_csvs([(str(path), True)], 0.8)
    assert f"{path}: 1 row(s) with a malformed person_id (unused; row kept), first at line 16" in caplog.text
    clean = load_box_csvs([(str(SHARED_DATA / "ava" / "ava_val_v2.2_excerpt.csv"), True)], 0.8)
    assert {k: [(p.box, p.actions) for p in v.values()] for k, v in boxes.items()} == \
        {k: [(p.box, p.actions) for p in v.values()] for k, v in clean.items()}
    persons = boxes[("1j20qq1JyX4", 902)]
    assert persons["0.002,0.118,0.714,0.977"].actions == [12, 79]


def test_missing_frame_uses_nearest_with_a_warning(tmp_path, caplog):
    paths = []
    for index in range(5):
        path = tmp_path / f"f{index}.jpg"
        cv2.imwrite(str(path), np.full((8, 8, 3), 40 * index, np.uint8))
        paths.append(str(path))
    Path(paths[2]).unlink()
    reader = FrameReader("error")
    with caplog.at_level(logging.WARNING):
        clip = reader.read_clip(paths + [None], [2, 2, 4, 5])
    assert clip.shape == (4, 8, 8, 3)
    assert [int(round(v)) for v in clip.mean(axis=(1, 2, 3))] == [40, 40, 160, 160]  # 2 -> 1 (earlier tie), 5 -> 4
    assert reader.num_missing == 2
    assert f"missing frame {paths[2]}: using the nearest frame {paths[1]}" in caplog.text
    assert "frame index 5 (no row in the frame list)" in caplog.text


def test_unreadable_frame_is_an_error_naming_the_path_or_a_counted_skip(tmp_path, caplog):
    paths = []
    for index in range(3):
        path = tmp_path / f"f{index}.jpg"
        cv2.imwrite(str(path), np.full((8, 8, 3), 100 * index, np.uint8))
        paths.append(str(path))
    whole = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(whole[: len(whole) // 2])  # truncated: cv2 alone would return a half-grey image
    with pytest.raises(FrameReadError, match=f"unreadable image {paths[1]}"):
        FrameReader("error").read_clip(paths, [0, 1, 2])
    Path(paths[1]).write_bytes(b"not a jpeg at all")
    with pytest.raises(FrameReadError, match=f"unreadable image {paths[1]}"):
        FrameReader("error").read_clip(paths, [0, 1, 2])
    reader = FrameReader("skip")
    with caplog.at_level(logging.WARNING):
        clip = reader.read_clip(paths, [1])
    assert reader.num_unreadable == 1 and reader.num_missing == 0
    assert int(round(clip.mean())) == 0  # nearest readable: frame 0
    assert f"unreadable image {paths[1]} skipped" in caplog.text
    with pytest.raises(ValueError, match="DATA.ON_BAD_FRAME"):
        FrameReader("ignore")
    Path(paths[0]).unlink()
    Path(paths[2]).unlink()
    with pytest.raises(FrameReadError, match="no readable frame"):
        reader.read_clip(paths, [1])
