"""datasets/label_maps.py: class names of the score columns from the config, built-in copies against the real files."""

import pytest

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.datasets.act_convert import ucf24_from_pyannot
from slowfast_bmvit.datasets.label_maps import column_names_from_cfg
from slowfast_bmvit.evaluation.ava_io import read_labelmap


def cfg_for(dataset, num_classes, **keys):
    cfg = get_cfg()
    cfg.TEST.DATASET, cfg.MODEL.NUM_CLASSES = dataset, num_classes
    for key, value in keys.items():
        group, name = key.split("__")
        cfg[group][name] = value
    return cfg


@pytest.mark.parametrize("file_name", ["ava_action_list_v2.2.pbtxt", "ava_action_list_v2.2_for_activitynet_2019.pbtxt"])
def test_builtin_ava_label_maps_equal_the_real_files(shared_data, tmp_path, file_name):
    real = cfg_for("ava", 80, AVA__ANNOTATION_DIR=str(shared_data / "ava"), AVA__LABEL_MAP_FILE=file_name)
    builtin = cfg_for("ava", 80, AVA__ANNOTATION_DIR=str(tmp_path), AVA__LABEL_MAP_FILE=file_name)  # file absent
    names = column_names_from_cfg(real)
    assert names == column_names_from_cfg(builtin)
    categories, ids = read_labelmap(shared_data / "ava" / file_name)
    assert sum(1 for name in names if name) == len(ids) == (80 if "activitynet" not in file_name else 60)
    assert all(names[c["id"] - 1] == c["name"] for c in categories)


def test_builtin_ucf24_names_equal_the_converted_real_annotations(shared_data):
    gt = ucf24_from_pyannot(shared_data / "ucf24" / "annotations" / "pyannot.pkl")
    assert column_names_from_cfg(cfg_for("ucf24", 24)) == list(gt["labels"])


def test_synthava_jhmdb_and_errors(tmp_path):
    names = column_names_from_cfg(cfg_for("synthava", 80))
    assert names[13] == "walk" and names[11] == "stand" and sum(1 for n in names if n) == 9
    assert column_names_from_cfg(cfg_for("jhmdb", 21))[0] == "brush_hair"
    with pytest.raises(ConfigError, match="MODEL.NUM_CLASSES"):
        column_names_from_cfg(cfg_for("ucf24", 21))
    with pytest.raises(ConfigError, match="AVA.LABEL_MAP_FILE"):
        column_names_from_cfg(cfg_for("ava", 80, AVA__ANNOTATION_DIR=str(tmp_path), AVA__LABEL_MAP_FILE="mine.pbtxt"))
    with pytest.raises(ConfigError, match="TEST.DATASET"):
        column_names_from_cfg(cfg_for("kinetics", 400))
