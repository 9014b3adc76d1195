"""SynthAVA: deterministic AVA-format generation, temporal dependence, and the "synthava" dataset."""

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.datasets import build_dataset
from slowfast_bmvit.datasets.ava_helper import load_box_csvs, load_frame_lists, sec_to_frame
from slowfast_bmvit.datasets.synthetic import (
    SynthAvaPaths,
    generate_synth_ava,
    keyframe_seconds,
    render_time_reversal_pair,
)
from slowfast_bmvit.datasets.synthetic_render import (
    EVALUATED_CLASSES,
    FALL_DOWN,
    GET_UP,
    Pose,
    SceneStyle,
    build_skeleton,
    make_background,
    random_scene,
    skeleton_box,
)
from slowfast_bmvit.evaluation.ava_io import read_exclusions, read_groundtruth_csv, read_labelmap

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
TINY = dict(seed=3, num_train_videos=2, num_val_videos=2, video_seconds=5, frame_size=(48, 64), progress=False)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory) -> SynthAvaPaths:
    return generate_synth_ava(str(tmp_path_factory.mktemp("synth") / "synthava"), **TINY)


def test_generation_is_byte_identical_per_seed(tiny_synth, tmp_path):
    again = generate_synth_ava(str(tmp_path / "again"), num_workers=2, **TINY)
    first, second = tree_hashes(Path(tiny_synth.root)), tree_hashes(Path(again.root))
    assert len(first) > 4 * 150 and first == second
    other = generate_synth_ava(str(tmp_path / "other"), **{**TINY, "seed": 4, "num_val_videos": 1,
                                                          "num_train_videos": 1})
    other_hashes = tree_hashes(Path(other.root))
    shared_frame = "frames/train_0000/train_0000_000001.jpg"
    assert other_hashes[shared_frame] != first[shared_frame]
    with pytest.raises(FileExistsError):
        generate_synth_ava(tiny_synth.root, **TINY)
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]  # staging folders are cleaned up


def test_layout_is_exact_pyslowfast_ava(tiny_synth):
    ann = Path(tiny_synth.annotation_dir)
    lists = load_frame_lists([os.path.join(tiny_synth.frame_list_dir, "train.csv")], tiny_synth.frame_dir)
    assert lists.video_names == ["train_0000", "train_0001"]
    assert all(len(p) == 150 and all(os.path.isfile(x) for x in p) for p in lists.frame_paths)
    assert lists.frame_paths[0][60].endswith("train_0000/train_0000_000061.jpg")  # second 902
    header = (Path(tiny_synth.frame_list_dir) / "val.csv").read_text().splitlines()[:2]
    assert header == ["original_vido_id video_id frame_id path labels",
                      'val_0000 0 0 val_0000/val_0000_000001.jpg ""']

    categories, ids = read_labelmap(ann / tiny_synth.label_map)
    assert ids == {i for i, _, _ in EVALUATED_CLASSES} and len(ids) == 9
    assert all("label_type" in c for c in categories)
    gt = read_groundtruth_csv(ann / tiny_synth.val_groundtruth)
    excluded = read_exclusions(ann / tiny_synth.exclusions)
    assert set(gt.sec.tolist()) <= set(keyframe_seconds(5)) == {902, 903}
    assert not excluded & set(zip(gt.video.tolist(), gt.sec.tolist()))
    assert ((gt.boxes >= 0) & (gt.boxes <= 1)).all() and (gt.boxes[:, 2] > gt.boxes[:, 0]).all()
    predicted = load_box_csvs([(str(ann / tiny_synth.val_predicted_boxes), False)], 0.8)
    assert all(not p.actions for persons in predicted.values() for p in persons.values())


def test_real_label_map_ids_and_names(tiny_synth):
    real = SHARED_DATA / "ava" / "ava_action_list_v2.2.pbtxt"
    if not real.is_file():
        pytest.skip(f"real AVA label map not available at {real}")
    real_categories, _ = read_labelmap(real)
    by_id = {c["id"]: c for c in real_categories}
    synth_categories, _ = read_labelmap(Path(tiny_synth.annotation_dir) / tiny_synth.label_map)
    for category in synth_categories:
        assert by_id[category["id"]] == category


def test_time_reversal_shares_the_keyframe_but_not_the_label():
    fall, get_up = render_time_reversal_pair(seed=1, frame_size=(64, 80))
    k = fall.keyframe_index
    assert fall.frames.shape == get_up.frames.shape == (59, 64, 80, 3) and k == 29
    np.testing.assert_array_equal(fall.frames[k], get_up.frames[k])
    np.testing.assert_array_equal(fall.frames[::-1], get_up.frames)
    np.testing.assert_allclose(fall.box, get_up.box)
    assert not np.array_equal(fall.frames[k - 8], get_up.frames[k - 8])  # the motion itself differs
    assert fall.labels == [FALL_DOWN] and get_up.labels == [GET_UP]


def test_people_are_large_as_in_ava():
    heights = []
    for index in range(12):
        scene = random_scene(np.random.default_rng([7, index]), 128, 160, 5)
        for actor_index, actor in enumerate(scene.actors):
            for k in (2, 3):
                if actor.segments[k].action in ("stand", "walk", "run"):
                    box = scene.box(actor_index, 30 * k)
                    heights.append(box[3] - box[1])
    heights = np.array(heights)
    assert len(heights) > 20
    assert np.mean((heights >= 0.3) & (heights <= 0.95)) > 0.9


def test_scene_style_changes_the_look_not_the_story():
    def wall_texture(clutter):
        # Spread of the wall above the lowest possible horizon, after removing each colour's mean.
        img = make_background(np.random.default_rng(5), 96, 120, clutter)[:28].astype(np.float64)
        return float(np.std(img - img.mean(axis=(0, 1))))

    assert wall_texture(0.0) < 5.0 < 2 * wall_texture(0.0) < wall_texture(1.0)  # fine noise (std 4) only at 0
    assert np.array_equal(make_background(np.random.default_rng(5), 96, 120),
                          make_background(np.random.default_rng(5), 96, 120, 1.0))

    def scenes(style):
        return [random_scene(np.random.default_rng([11, i]), 96, 120, 4, style) for i in range(24)]

    default, styled = scenes(SceneStyle()), scenes(SceneStyle(clutter=0.0, limb_thickness=0.12, max_people=2,
                                                              occluder_probability=0.0))
    assert max(len(s.actors) for s in default) > 2 and {len(s.actors) for s in styled} == {1, 2}
    assert any(s.occluders for s in default) and not any(s.occluders for s in styled)
    for scene in styled:
        for actor in scene.actors:
            assert actor.look.thickness == pytest.approx(max(2.0, 0.12 * actor.look.height))
    assert all(len(s.occluders) == 1 for s in scenes(SceneStyle(occluder_probability=1.0)))
    # Same actions and poses when only the look changes (clutter and thickness draw no random numbers).
    looks_only = scenes(SceneStyle(clutter=0.2, limb_thickness=0.11))
    for a, b in zip(default, looks_only):
        assert [x.segments for x in a.actors] == [x.segments for x in b.actors]
        assert not np.array_equal(a.render(30), b.render(30))
    with pytest.raises(ValueError, match="max_people must be 1, 2, 3 or 4, got 5"):
        SceneStyle(max_people=5)
    with pytest.raises(ValueError, match="limb_thickness"):
        SceneStyle(limb_thickness=0.0)


def test_skeleton_box_bounds_the_body_and_tilt_lays_it_down():
    standing = build_skeleton(Pose(x=50.0, ground=100.0, facing=1), height=60.0, thickness=4.0)
    box = skeleton_box(standing)
    assert box[3] == pytest.approx(100.0 + 2.0 * 0.95, abs=0.5) and 58 < box[3] - box[1] < 66
    lying = skeleton_box(build_skeleton(Pose(x=50.0, ground=100.0, facing=1, tilt=np.pi / 2), 60.0, 4.0))
    assert lying[2] - lying[0] > 55 and lying[3] - lying[1] < 25 and lying[0] > 45


def _synth_cfg(root: str):
    cfg = get_cfg()
    cfg.SYNTH.ROOT = root
    cfg.SYNTH.SEED, cfg.SYNTH.NUM_TRAIN_VIDEOS, cfg.SYNTH.NUM_VAL_VIDEOS = 3, 2, 2
    cfg.SYNTH.VIDEO_SECONDS, cfg.SYNTH.FRAME_SIZE = 5, [48, 64]
    cfg.AVA.FULL_TEST_ON_VAL = True
    cfg.AVA.TEST_USE_GT_BOXES = True
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 8, 4
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = 32
    return cfg


def test_synthava_dataset_reads_through_ava(tiny_synth):
    cfg = _synth_cfg(tiny_synth.root)
    train = build_dataset("synthava", cfg, "train")
    val = build_dataset("synthava", cfg, "val")
    assert cfg.AVA.FRAME_DIR != tiny_synth.frame_dir  # the caller's config is not modified
    assert len(train) == 4 and len(val) == 4 - len(read_exclusions(val.evaluation_files["exclusions"]))
    gt = read_groundtruth_csv(val.evaluation_files["groundtruth"])
    for index in range(len(val)):
        sample = val[index]
        meta = sample["meta"]
        rows = (gt.video == meta["video"]) & (gt.sec == meta["sec"])
        expected = {tuple(np.round(b, 3)) for b in gt.boxes[rows]}
        assert {tuple(np.round(b, 3)) for b in sample["ori_boxes"].numpy().astype(np.float64)} == expected
        evaluated = {a for a in gt.action[rows].tolist() if a in {i for i, _, _ in EVALUATED_CLASSES}}
        assert {i + 1 for i in sample["labels"].nonzero()[:, 1].tolist()} == evaluated
        assert sample["inputs"].shape == (3, 8, 32, 32)
        assert meta["orig_size"] == (48, 64) and sec_to_frame(meta["sec"]) in (60, 90)


def test_generate_if_missing_and_parameter_mismatch(tmp_path, tiny_synth):
    cfg = _synth_cfg(str(tmp_path / "auto"))
    cfg.SYNTH.NUM_TRAIN_VIDEOS, cfg.SYNTH.NUM_VAL_VIDEOS = 1, 1
    cfg.SYNTH.GENERATE_IF_MISSING = False
    with pytest.raises(FileNotFoundError, match="SYNTH.ROOT"):
        build_dataset("synthava", cfg, "train")
    cfg.SYNTH.GENERATE_IF_MISSING = True
    assert len(build_dataset("synthava", cfg, "train")) == 2
    assert (tmp_path / "auto" / "synthava.json").is_file()
    mismatch = _synth_cfg(tiny_synth.root)
    mismatch.SYNTH.SEED = 99
    with pytest.raises(ConfigError, match="SYNTH.ROOT: .*seed.*delete the folder"):
        build_dataset("synthava", mismatch, "train")
    other_look = _synth_cfg(tiny_synth.root)
    other_look.SYNTH.CLUTTER = 0.5
    with pytest.raises(ConfigError, match="SYNTH.ROOT: .*'clutter': 1.0.*'clutter': 0.5.*delete the folder"):
        build_dataset("synthava", other_look, "train")
    other_look.SYNTH.CLUTTER, other_look.SYNTH.MAX_PEOPLE = 1.0, 7
    with pytest.raises(ConfigError, match=r"^SYNTH.MAX_PEOPLE must be 1, 2, 3 or 4, got 7$"):
        build_dataset("synthava", other_look, "train")


def test_manifest_without_style_reads_as_the_original_look(tmp_path, tiny_synth):
    # Datasets generated before SYNTH.CLUTTER & co. existed keep working with the default keys.
    import json
    import shutil
    old = tmp_path / "old"
    shutil.copytree(tiny_synth.root, old)
    manifest = json.loads((old / "synthava.json").read_text())
    del manifest["style"]
    (old / "synthava.json").write_text(json.dumps(manifest))
    cfg = _synth_cfg(str(old))
    assert len(build_dataset("synthava", cfg, "train")) == 4
    cfg.SYNTH.LIMB_THICKNESS = 0.1
    with pytest.raises(ConfigError, match="limb_thickness"):
        build_dataset("synthava", cfg, "train")


def test_make_synth_ava_cli(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_synth_ava
    finally:
        sys.path.remove(str(ROOT / "tools"))
    args = ["--root", str(tmp_path / "cli"), "--seed", "5", "--num-train-videos", "1", "--num-val-videos", "1",
            "--video-seconds", "4", "--frame-size", "40", "48"]
    assert make_synth_ava.main(args) == 0
    assert "SynthAVA written to" in capsys.readouterr().out
    assert make_synth_ava.main(args) == 0
    assert "already at" in capsys.readouterr().out
    assert make_synth_ava.main(args[:3] + ["6"] + args[4:]) == 2
    assert "delete the folder" in capsys.readouterr().err
    too_short = ["--root", str(tmp_path / "short")] + args[2:-4] + ["3"] + args[-3:]
    assert make_synth_ava.main(too_short) == 2
    assert "VIDEO_SECONDS must be >= 4" in capsys.readouterr().err
    styled = ["--root", str(tmp_path / "styled")] + args[2:] + ["--clutter", "0.2", "--max-people", "2"]
    assert make_synth_ava.main(styled) == 0
    capsys.readouterr()
    import json
    style = json.loads((tmp_path / "styled" / "synthava.json").read_text())["style"]
    assert style["clutter"] == 0.2 and style["max_people"] == 2 and style["limb_thickness"] == 0.075
    assert make_synth_ava.main(styled[:-1] + ["9"]) == 2
    assert "SYNTH.MAX_PEOPLE must be 1, 2, 3 or 4, got 9" in capsys.readouterr().err
