"""ACT ground-truth converters (UCF101-24 pyannot / finalAnnots, per-frame JHMDB text) and the pickle reader/writer."""

import logging
import pickle
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from slowfast_bmvit.datasets.act_convert import (
    JHMDB_CLASSES,
    ActAnnotationError,
    act_from_frame_txts,
    annotated_frames,
    count_annotated_frames,
    is_ucf101_split1_test,
    jhmdb_from_frame_txts,
    read_video_list,
    save_act_pickle,
    subset_act_gt,
    ucf24_from_final_annots,
    ucf24_from_pyannot,
)
from slowfast_bmvit.evaluation.act_groundtruth import load_act_pickle

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tools"))

import convert_jhmdb  # noqa: E402
import convert_ucf24  # noqa: E402

# The 9 UCF101-24 split-1 test clips shipped in ../shared/data/ucf24/videos.
SHARED_UCF_VIDEOS = (
    "Basketball/v_Basketball_g01_c02", "Basketball/v_Basketball_g07_c04", "Biking/v_Biking_g01_c01",
    "CliffDiving/v_CliffDiving_g03_c01", "Fencing/v_Fencing_g01_c06", "HorseRiding/v_HorseRiding_g01_c03",
    "IceDancing/v_IceDancing_g02_c05", "SalsaSpin/v_SalsaSpin_g03_c01", "SkateBoarding/v_SkateBoarding_g02_c01",
)


# ---------------------------------------------------------------------------------------------------- synthetic
def _pyannot_entry(numf, label, tubes):
    """tubes: [(sf, ef, boxes)] with boxes uint8 x, y, w, h as in the real file."""
    return {
        "numf": np.uint8(numf),
        "label": label,
        "annotations": [{"label": label, "sf": sf, "ef": ef, "boxes": np.asarray(b, np.uint8)} for sf, ef, b in tubes],
    }


def _write_pickle(path, obj):
    with open(path, "wb") as file:
        pickle.dump(obj, file)
    return path


@pytest.fixture
def tiny_pyannot(tmp_path):
    database = {
        "Basketball/v_Basketball_g01_c01": _pyannot_entry(10, 0, [(2, 5, [[200, 10, 100, 20]] * 3)]),
        "Basketball/v_Basketball_g09_c01": _pyannot_entry(6, 0, [(0, 2, [[1, 2, 3, 4], [5, 6, 7, 8]])]),
        "Biking/v_Biking_g02_c03": _pyannot_entry(
            8, 1, [(0, 3, [[10, 10, 5, 5]] * 3), (2, 4, [[50, 60, 10, 10]] * 2)]
        ),
    }
    return _write_pickle(tmp_path / "pyannot.pkl", database)


def test_pyannot_uint8_boxes_do_not_wrap_and_frames_are_one_based(tiny_pyannot):
    gt = ucf24_from_pyannot(tiny_pyannot)
    tube = gt["gttubes"]["Basketball/v_Basketball_g01_c01"][0][0]
    assert tube.dtype == np.float32 and tube.shape == (3, 5)
    np.testing.assert_array_equal(tube[:, 0], [3, 4, 5])  # sf 2 (0-based) -> frame 3, ef 5 exclusive -> frame 5
    np.testing.assert_array_equal(tube[0, 1:], [200, 10, 300, 30])  # 200 + 100 would wrap to 44 in uint8
    assert gt["labels"] == ["Basketball", "Biking"]
    assert gt["nframes"]["Basketball/v_Basketball_g01_c01"] == 10
    assert gt["resolution"]["Biking/v_Biking_g02_c03"] == (240, 320)
    assert len(gt["gttubes"]["Biking/v_Biking_g02_c03"][1]) == 2


def test_pyannot_split_without_testlist_uses_groups_1_to_7(tiny_pyannot):
    gt = ucf24_from_pyannot(tiny_pyannot)
    assert gt["test_videos"] == [["Basketball/v_Basketball_g01_c01", "Biking/v_Biking_g02_c03"]]
    assert gt["train_videos"] == [["Basketball/v_Basketball_g09_c01"]]
    assert is_ucf101_split1_test("X/v_X_g07_c01") and not is_ucf101_split1_test("X/v_X_g08_c01")


def test_testlist_entries_with_extension_and_unknown_videos_are_counted(tiny_pyannot, tmp_path, caplog):
    testlist = tmp_path / "testlist01.txt"
    testlist.write_text("Basketball/v_Basketball_g09_c01.avi\nBiking/v_Biking_g99_c01.avi 3\n\n")
    assert read_video_list(testlist) == ["Basketball/v_Basketball_g09_c01", "Biking/v_Biking_g99_c01"]
    with caplog.at_level(logging.WARNING):
        gt = ucf24_from_pyannot(tiny_pyannot, testlist)
    assert gt["test_videos"] == [["Basketball/v_Basketball_g09_c01"]]
    assert len(gt["train_videos"][0]) == 2
    assert "1 listed videos have no annotation" in caplog.text


@pytest.mark.parametrize(
    "tube, message",
    [
        ({"label": 0, "sf": 0, "ef": 3, "boxes": np.zeros((2, 4), np.uint8)}, "tube 0: boxes have shape (2, 4)"),
        ({"label": 0, "sf": 2, "ef": 12, "boxes": np.zeros((10, 4), np.uint8)}, "not inside 0..10"),
        ({"label": 0, "sf": 0, "boxes": np.zeros((1, 4), np.uint8)}, "tube 0: missing key 'ef'"),
    ],
)
def test_malformed_pyannot_tube_names_file_video_and_tube(tmp_path, tube, message):
    path = _write_pickle(tmp_path / "bad.pkl", {"A/v_A_g01_c01": {"numf": 10, "label": 0, "annotations": [tube]}})
    with pytest.raises(ActAnnotationError, match="bad.pkl: video 'A/v_A_g01_c01'") as error:
        ucf24_from_pyannot(path)
    assert message in str(error.value)


def test_pyannot_missing_video_key_and_unreadable_file(tmp_path):
    path = _write_pickle(tmp_path / "nonumf.pkl", {"A/v_A_g01_c01": {"label": 0, "annotations": []}})
    with pytest.raises(ActAnnotationError, match="nonumf.pkl: video 'A/v_A_g01_c01': missing key 'numf'"):
        ucf24_from_pyannot(path)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle")
    with pytest.raises(ActAnnotationError, match="garbage.pkl: not a readable pickle"):
        ucf24_from_pyannot(garbage)
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        ucf24_from_pyannot(tmp_path / "absent.pkl")


def test_pyannot_label_used_by_two_class_folders_is_rejected(tmp_path):
    database = {
        "A/v_A_g01_c01": _pyannot_entry(4, 0, [(0, 1, [[1, 1, 2, 2]])]),
        "B/v_B_g01_c01": _pyannot_entry(4, 0, [(0, 1, [[1, 1, 2, 2]])]),
    }
    with pytest.raises(ActAnnotationError, match="label 0 is used by videos of classes \\['A', 'B'\\]"):
        ucf24_from_pyannot(_write_pickle(tmp_path / "p.pkl", database))


def test_final_annots_without_annot_variable_names_the_file(tmp_path):
    from scipy.io import savemat

    path = tmp_path / "other.mat"
    savemat(str(path), {"something": np.zeros(3)})
    with pytest.raises(ActAnnotationError, match="other.mat: no variable 'annot'"):
        ucf24_from_final_annots(path)


def _write_frame_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_frame_txts_class_prefixes_with_underscores_resolve_to_the_longest_class(tmp_path):
    _write_frame_files(tmp_path, {
        "shoot_bow_Archery_u_nm_np1_fr_med_0_00001.txt": "14 10 20 30 40\n",
        "shoot_bow_Archery_u_nm_np1_fr_med_0_00002.txt": "14 11 21 31 41\n",
        "shoot_ball_3pt_f_cm_np1_ba_med_1_00001.txt": "13 1 2 3 4\n",
        "pick_Pick_up_u_cm_np1_fr_bad_2_00003.txt": "8 5 5 9 9\n",
    })
    gt = jhmdb_from_frame_txts(tmp_path)
    assert gt["labels"] == list(JHMDB_CLASSES)
    assert gt["test_videos"] == [sorted(["shoot_bow/Archery_u_nm_np1_fr_med_0", "shoot_ball/3pt_f_cm_np1_ba_med_1",
                                         "pick/Pick_up_u_cm_np1_fr_bad_2"])]
    assert gt["train_videos"] == [[]]
    tube = gt["gttubes"]["shoot_bow/Archery_u_nm_np1_fr_med_0"][13][0]
    np.testing.assert_array_equal(tube, [[1, 10, 20, 30, 40], [2, 11, 21, 31, 41]])
    assert gt["nframes"]["pick/Pick_up_u_cm_np1_fr_bad_2"] == 3  # last annotated frame
    assert gt["resolution"]["pick/Pick_up_u_cm_np1_fr_bad_2"] == (240, 320)


def test_frame_txts_nested_layout_zip_and_two_persons_per_frame(tmp_path):
    files = {
        "labels/walk/Video_A/00001.txt": "20 1 1 10 10\n20 50 50 60 60\n",
        "labels/walk/Video_A/00002.txt": "20 2 2 11 11\n20 51 51 61 61\n",
        "labels/walk/Video_A/00003.txt": "20 3 3 12 12\n",
    }
    archive = tmp_path / "gt.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    gt = jhmdb_from_frame_txts(archive, nframes={"walk/Video_A": 40})
    first, second = gt["gttubes"]["walk/Video_A"][19]
    np.testing.assert_array_equal(first[:, 0], [1, 2, 3])
    np.testing.assert_array_equal(second, [[1, 50, 50, 60, 60], [2, 51, 51, 61, 61]])
    assert gt["nframes"]["walk/Video_A"] == 40
    assert count_annotated_frames(gt, ["walk/Video_A"]) == 3


def test_frame_txts_with_other_classes_split_by_testlist(tmp_path):
    """The generic reader: UCF101-24 classes (YOWO's per-frame UCF export), a test list and another resolution."""
    _write_frame_files(tmp_path / "gt", {
        "Biking_v_Biking_g01_c01_00002.txt": "2 1 2 3 4\n",
        "Biking_v_Biking_g09_c01_00001.txt": "2 5 6 7 8\n",
    })
    testlist = tmp_path / "test.txt"
    testlist.write_text("Biking/v_Biking_g09_c01\n")
    gt = act_from_frame_txts(tmp_path / "gt", ["Basketball", "Biking"], (256, 340), testlist_path=testlist)
    assert gt["test_videos"] == [["Biking/v_Biking_g09_c01"]] and gt["train_videos"] == [["Biking/v_Biking_g01_c01"]]
    assert gt["resolution"]["Biking/v_Biking_g01_c01"] == (256, 340)
    np.testing.assert_array_equal(gt["gttubes"]["Biking/v_Biking_g01_c01"][1][0], [[2, 1, 2, 3, 4]])


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("clap_v_00001.txt", "3 1 2 3\n", "clap_v_00001.txt, line 1: expected 'cls x1 y1 x2 y2'"),
        ("clap_v_00001.txt", "3 1 1 5 5\n3 a 1 5 5\n", "clap_v_00001.txt, line 2: expected 'cls x1 y1 x2 y2'"),
        ("clap_v_00001.txt", "22 1 1 5 5\n", "class 22 outside 1..21"),
        ("clap_v_00001.txt", "4 1 1 5 5\n", "class 4 \\(climb_stairs\\) in a clap file"),
        ("clap_v_00001.txt", "3 9 1 5 5\n", "x2 < x1"),
        ("dance_v_00001.txt", "3 1 1 5 5\n", "dance_v_00001.txt: expected <Class>_<video>_<frame>.txt"),
    ],
)
def test_malformed_frame_txt_names_file_and_line(tmp_path, name, text, message):
    _write_frame_files(tmp_path, {name: text})
    with pytest.raises(ActAnnotationError, match=message):
        jhmdb_from_frame_txts(tmp_path)


def test_frame_txts_empty_source_and_non_archive_file(tmp_path):
    with pytest.raises(ActAnnotationError, match="no per-frame ground-truth .txt files"):
        jhmdb_from_frame_txts(tmp_path)
    other = tmp_path / "gt.tar"
    other.write_bytes(b"not a zip")
    with pytest.raises(ActAnnotationError, match="neither a folder nor a zip archive"):
        jhmdb_from_frame_txts(other)


def test_act_pickle_round_trip_and_validation_errors_name_the_file(tmp_path, tiny_pyannot):
    gt = ucf24_from_pyannot(tiny_pyannot)
    path = tmp_path / "out" / "gt.pkl"
    save_act_pickle(gt, path)
    loaded = load_act_pickle(path)
    assert loaded["test_videos"] == gt["test_videos"] and loaded["labels"] == gt["labels"]
    np.testing.assert_array_equal(loaded["gttubes"]["Biking/v_Biking_g02_c03"][1][1],
                                  gt["gttubes"]["Biking/v_Biking_g02_c03"][1][1])

    broken = dict(gt)
    del broken["nframes"]
    _write_pickle(tmp_path / "nokey.pkl", broken)
    with pytest.raises(ActAnnotationError, match="nokey.pkl: missing key\\(s\\) 'nframes'"):
        load_act_pickle(tmp_path / "nokey.pkl")

    unlisted = {**gt, "resolution": {}}
    with pytest.raises(ActAnnotationError, match="x.pkl: video .* has no entry in 'resolution'"):
        save_act_pickle(unlisted, tmp_path / "x.pkl")

    past_end = {**gt, "nframes": {**gt["nframes"], "Basketball/v_Basketball_g01_c01": 4}}
    with pytest.raises(ActAnnotationError, match="frames 3..5 outside 1..4"):
        save_act_pickle(past_end, tmp_path / "y.pkl")


def test_subset_keeps_split_order_and_rejects_unknown_videos(tiny_pyannot):
    gt = ucf24_from_pyannot(tiny_pyannot)
    sub = subset_act_gt(gt, ["Biking/v_Biking_g02_c03"])
    assert sub["test_videos"] == [["Biking/v_Biking_g02_c03"]] and sub["train_videos"] == [[]]
    assert set(sub["gttubes"]) == {"Biking/v_Biking_g02_c03"}
    with pytest.raises(KeyError, match="Nope/v_x"):
        subset_act_gt(gt, ["Nope/v_x"])


def test_cli_converters_write_loadable_pickles_and_report_errors(tmp_path, tiny_pyannot, capsys):
    out = tmp_path / "ucf.pkl"
    assert convert_ucf24.main(["--pyannot", str(tiny_pyannot), "--out", str(out)]) == 0
    assert load_act_pickle(out)["labels"] == ["Basketball", "Biking"]
    assert convert_ucf24.main(["--pyannot", str(tmp_path / "none.pkl"), "--out", str(out)]) == 1
    assert "none.pkl" in capsys.readouterr().err

    _write_frame_files(tmp_path / "gt", {"run_Sprint_u_cm_np1_fr_med_0_00001.txt": "12 1 2 30 40\n"})
    out = tmp_path / "jhmdb.pkl"
    assert convert_jhmdb.main(["--gt", str(tmp_path / "gt"), "--out", str(out)]) == 0
    assert load_act_pickle(out)["test_videos"] == [["run/Sprint_u_cm_np1_fr_med_0"]]


@pytest.mark.parametrize("content, message", [
    (b"", "the video list is empty"),
    (b"\n  \n", "the video list is empty"),
    (b"Fencing/v_Fencing_g01_c01.avi\nSkiing/v_Skiing_g02_c01.avi 3\n",
     "none of its 2 videos has an annotation .*'Fencing/v_Fencing_g01_c01'.*'Basketball/v_Basketball_g01_c01'"),
    (bytes(range(256)) * 4, "not a text video list"),  # e.g. the pyannot.pkl given as --testlist
    (b"\x80\x04\x95Basketball/v_Basketball_g09_c01\n", "not a text video list \\(byte 0 is not UTF-8 text\\)"),
])
def test_cli_converter_refuses_an_empty_non_matching_or_binary_testlist(tmp_path, tiny_pyannot, capsys, content,
                                                                          message):
    testlist = tmp_path / "testlist01.txt"
    testlist.write_bytes(content)
    out = tmp_path / "ucf.pkl"
    assert convert_ucf24.main(["--pyannot", str(tiny_pyannot), "--testlist", str(testlist), "--out", str(out)]) == 1
    err = capsys.readouterr().err.split("\r")[-1]  # after the progress bar
    assert err.startswith(f"error: {testlist}: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists()


# --------------------------------------------------------------------------------------------------------- real
@pytest.fixture(scope="module")
def real_ucf(shared_data):
    annotations = shared_data / "ucf24" / "annotations"
    with open(annotations / "pyannot.pkl", "rb") as file:
        raw = pickle.load(file)
    gt = ucf24_from_pyannot(annotations / "pyannot.pkl", annotations / "testlist01.txt")
    return raw, gt, annotations


def test_real_jhmdb_converts_to_268_test_videos_and_9126_frames(shared_data, tmp_path):
    gt = jhmdb_from_frame_txts(shared_data / "jhmdb" / "groundtruths_jhmdb.zip")
    save_act_pickle(gt, tmp_path / "JHMDB-GT.pkl")
    gt = load_act_pickle(tmp_path / "JHMDB-GT.pkl")
    assert len(gt["test_videos"][0]) == 268
    assert count_annotated_frames(gt, gt["test_videos"][0]) == 9126
    assert len(gt["labels"]) == 21
    assert {video.split("/")[0] for video in gt["test_videos"][0]} == set(JHMDB_CLASSES)
    video = "clap/Boom_Snap_Clap_clap_u_nm_np1_fr_med_1"
    (tube,) = gt["gttubes"][video][JHMDB_CLASSES.index("clap")]
    np.testing.assert_array_equal(tube[tube[:, 0] == 38, 1:], [[113, 11, 230, 240]])
    assert gt["nframes"][video] == len(tube) == tube[-1, 0]


def test_real_ucf24_pyannot_split_and_shared_test_videos(real_ucf):
    raw, gt, _ = real_ucf
    assert len(gt["labels"]) == 24 and gt["labels"][0] == "Basketball" and gt["labels"][23] == "WalkingWithDog"
    assert len(gt["test_videos"][0]) == 910 and len(gt["train_videos"][0]) == 2284
    assert set(SHARED_UCF_VIDEOS) <= set(gt["test_videos"][0])
    for video in SHARED_UCF_VIDEOS:
        entry = raw[video]
        expected = set()
        for tube in entry["annotations"]:
            expected |= set(range(int(tube["sf"]) + 1, int(tube["ef"]) + 1))
        assert list(annotated_frames(gt["gttubes"][video])) == sorted(expected), video
        assert gt["nframes"][video] == int(entry["numf"])
        assert sum(len(t) for t in gt["gttubes"][video].values()) == len(entry["annotations"])
    tube = gt["gttubes"]["Basketball/v_Basketball_g01_c02"][0][0]
    assert len(tube) == 48
    np.testing.assert_array_equal(tube[0], [64, 189, 99, 236, 194])  # x, y, w, h = 189, 99, 47, 95 at sf = 63
    assert count_annotated_frames(gt, SHARED_UCF_VIDEOS) == 1357


def test_real_ucf24_split_rule_without_testlist_reproduces_testlist01(real_ucf):
    _, gt, annotations = real_ucf
    by_rule = ucf24_from_pyannot(annotations / "pyannot.pkl")
    assert by_rule["test_videos"] == gt["test_videos"] and by_rule["train_videos"] == gt["train_videos"]


def test_real_ucf24_final_annots_agrees_with_pyannot(real_ucf):
    _, gt, annotations = real_ucf
    from_mat = ucf24_from_final_annots(annotations / "finalAnnots.mat", annotations / "testlist01.txt")
    for key in ("labels", "train_videos", "test_videos", "nframes", "resolution"):
        assert from_mat[key] == gt[key], key
    assert set(from_mat["gttubes"]) == set(gt["gttubes"])
    for video, tubes in gt["gttubes"].items():
        assert sorted(from_mat["gttubes"][video]) == sorted(tubes), video
        for label, label_tubes in tubes.items():
            assert len(from_mat["gttubes"][video][label]) == len(label_tubes)
            for a, b in zip(from_mat["gttubes"][video][label], label_tubes):
                np.testing.assert_array_equal(a, b, err_msg=video)
