"""evaluation/result_json.py: the JSON form of evaluation results (evaluator --json, test_results.json)."""

import json
import math

import numpy as np
import torch

from slowfast_bmvit.evaluation.result_json import json_folder_error, json_ready, write_result_json


def test_json_ready_gives_plain_values_and_null_for_non_finite_numbers(tmp_path):
    result = {"mAP": np.float64(0.25), "per_class": {3: float("nan"), "walk": np.float32(0.5)},
              "curve": np.array([[0.0, 1.0], [np.inf, 0.5]]), "counts": (np.int64(2), torch.tensor(4)),
              "video_mAP": {"0.5:0.95": -math.inf}}
    ready = json_ready(result)
    assert ready == {"mAP": 0.25, "per_class": {"3": None, "walk": 0.5}, "curve": [[0.0, 1.0], [None, 0.5]],
                     "counts": [2, 4], "video_mAP": {"0.5:0.95": None}}
    assert type(ready["mAP"]) is float and type(ready["counts"][0]) is int
    path = tmp_path / "result.json"
    write_result_json(str(path), result)

    def refuse(token):
        raise AssertionError(f"{token} is not JSON")

    assert json.loads(path.read_text(), parse_constant=refuse) == ready


def test_json_folder_error_names_a_missing_folder(tmp_path):
    assert json_folder_error(None) is None and json_folder_error(str(tmp_path / "out.json")) is None
    assert json_folder_error(str(tmp_path / "missing" / "out.json")) == f"folder {tmp_path / 'missing'} does not exist"


def test_the_engine_test_writes_test_results_json_with_the_same_writer(tmp_path):
    """test_results.json is written by write_result_json (NaN -> null), without the curves and report lines, which
    go to test_results.txt."""
    from slowfast_bmvit.config import get_cfg
    from slowfast_bmvit.engine.tester import write_results

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    result = {"mAP": np.float64(0.5), "per_class": {"walk": np.float32(0.5), "swim": float("nan")},
              "curves": {"walk": {"precision": np.ones(3)}}, "report_lines": ["AP@0.5IOU/walk: 0.5", "mAP: 0.5"],
              "checkpoint": {"path": "run/checkpoint_epoch_00001.pyth", "epoch": 1, "sha256": "0" * 64}}
    path = write_results(cfg, result)
    def refuse(token):
        raise AssertionError(f"{token} is not JSON")

    assert json.loads(open(path).read(), parse_constant=refuse) == {
        "mAP": 0.5, "per_class": {"walk": 0.5, "swim": None}, "checkpoint": result["checkpoint"]}
    write_result_json(str(tmp_path / "expected.json"), {k: v for k, v in result.items()
                                                       if k not in ("curves", "report_lines")})
    assert open(path).read() == (tmp_path / "expected.json").read_text()
    assert (tmp_path / "test_results.txt").read_text() == "AP@0.5IOU/walk: 0.5\nmAP: 0.5\n"
