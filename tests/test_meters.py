"""json_stats lines and the training meter."""

import json
import logging
import math

import pytest
import torch

from slowfast_bmvit.config import get_cfg
from slowfast_bmvit.engine import meters
from slowfast_bmvit.engine.meters import ScalarMeter, TrainMeter, format_json_stats, log_json_stats


def _json_lines(caplog):
    prefix = "json_stats: "
    return [json.loads(r.getMessage()[len(prefix):]) for r in caplog.records if r.getMessage().startswith(prefix)]


def test_json_stats_line_is_sorted_rounded_and_appended_to_the_file(tmp_path, caplog):
    stats = {"lr": 1.23456789e-05, "_type": "train_iter", "loss": torch.tensor(0.6931471805), "iter": "3/10", "n": 7}
    with caplog.at_level(logging.INFO, logger=meters.__name__):
        text = log_json_stats(stats, str(tmp_path))
    assert text == '{"_type": "train_iter", "iter": "3/10", "loss": 0.693147, "lr": 0.0000123457, "n": 7}'
    assert caplog.records[-1].getMessage() == "json_stats: " + text
    log_json_stats({"a": 1.0}, str(tmp_path))
    lines = (tmp_path / "json_stats.log").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [json.loads(text), {"a": 1.0}]


def test_non_finite_values_stay_parseable():
    parsed = json.loads(format_json_stats({"loss": float("nan"), "eta": float("inf")}))
    assert math.isnan(parsed["loss"]) and parsed["eta"] == float("inf")


def test_scalar_meter_window_and_weighted_global_mean():
    meter = ScalarMeter(window_size=3)
    for value, weight in [(10.0, 1), (1.0, 3), (2.0, 1), (3.0, 1)]:
        meter.add_value(value, weight)
    assert meter.get_win_median() == 2.0  # window holds 1, 2, 3
    assert meter.get_win_avg() == pytest.approx(2.0)
    assert meter.get_global_avg() == pytest.approx((10 + 3 + 2 + 3) / 6)


def test_train_meter_emits_iter_lines_every_log_period_and_an_epoch_line(tmp_path, caplog):
    cfg = get_cfg()
    cfg.LOG_PERIOD, cfg.SOLVER.MAX_EPOCH, cfg.OUTPUT_DIR, cfg.NUM_GPUS = 2, 3, str(tmp_path), 0
    meter = TrainMeter(epoch_iters=4, cfg=cfg)
    losses = [(1.0, 0.4), (3.0, 0.6), (5.0, 1.0), (7.0, 1.2)]
    with caplog.at_level(logging.INFO, logger=meters.__name__):
        for cur_iter, (total, bbox) in enumerate(losses):
            meter.iter_tic()
            meter.data_toc()
            meter.iter_toc()
            meter.update_stats({"loss": total, "loss_bbox": torch.tensor(bbox)}, lr=0.01 * (cur_iter + 1), batch_size=2)
            logged = meter.log_iter_stats(cur_epoch=1, cur_iter=cur_iter)
            assert (logged is not None) == (cur_iter % 2 == 1)
        epoch = meter.log_epoch_stats(cur_epoch=1)
    lines = _json_lines(caplog)
    assert [line["_type"] for line in lines] == ["train_iter", "train_iter", "train_epoch"]
    first, second, last = lines
    assert first["epoch"] == "2/3" and first["iter"] == "2/4" and second["iter"] == "4/4"
    assert first["loss"] == pytest.approx(2.0) and first["loss_bbox"] == pytest.approx(0.5)  # window medians
    assert second["loss"] == pytest.approx(6.0) and second["lr"] == pytest.approx(0.04)
    assert last["loss"] == pytest.approx(4.0) and last["loss_bbox"] == pytest.approx(0.8)  # epoch means
    assert {"dt", "dt_data", "dt_net", "eta"} <= set(first) and "gpu_mem" not in first
    assert epoch["epoch"] == "2/3"
    assert len((tmp_path / "json_stats.log").read_text().splitlines()) == 3
    meter.reset()
    assert meter.log_epoch_stats(cur_epoch=2)["lr"] is None and meter.num_samples == 0


def test_train_meter_timings_and_eta(monkeypatch):
    clock = iter([0.0, 0.5, 2.0, 2.0, 2.25, 4.0])  # two iterations: data 0.5 + net 1.5, data 0.25 + net 1.75
    monkeypatch.setattr(meters.time, "perf_counter", lambda: next(clock))
    cfg = get_cfg()
    cfg.LOG_PERIOD, cfg.SOLVER.MAX_EPOCH, cfg.OUTPUT_DIR = 1, 2, ""
    meter = TrainMeter(epoch_iters=10, cfg=cfg)
    for cur_iter in range(2):
        meter.iter_tic()
        meter.data_toc()
        meter.iter_toc()
        meter.update_stats({"loss": 1.0}, lr=0.1, batch_size=1, grad_norm=2.0 + cur_iter)
    stats = meter.log_iter_stats(cur_epoch=0, cur_iter=1)
    assert stats["dt"] == pytest.approx(2.0) and stats["dt_data"] == pytest.approx(0.25)
    assert stats["dt_net"] == pytest.approx(1.75)
    assert stats["eta"] == "0:00:36"  # 18 iterations left x 2 s
    assert stats["grad_norm"] == pytest.approx(3.0)
    epoch = meter.log_epoch_stats(cur_epoch=0)
    assert epoch["dt_data"] == pytest.approx(0.375) and epoch["eta"] == "0:00:20"  # 10 iterations x 2 s
    assert epoch["grad_norm"] == pytest.approx(2.5)
