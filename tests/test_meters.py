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


class _RecordingWriter:
    """Stands in for the TensorBoard writer: the step of every add_stats call."""

    def __init__(self):
        self.steps = []

    def add_stats(self, stats, step):
        self.steps.append(step)


def _train_steps(cfg, writer, epoch, batch_size, first_iteration=0):
    """Drive a TrainMeter through one epoch of a 16-clip train loader at `batch_size` as the trainer does."""
    from slowfast_bmvit.datasets import clip_position, construct_loader

    cfg.TRAIN.BATCH_SIZE = batch_size
    loader = construct_loader(cfg, "train", dataset=list(range(16)))
    meter = TrainMeter(len(loader), cfg, writer)
    meter.start_epoch(clip_position(loader, epoch, first_iteration))
    for cur_iter in range(first_iteration, len(loader)):
        meter.update_stats({"loss": 1.0}, lr=0.1, batch_size=batch_size)
        meter.log_iter_stats(epoch, cur_iter)
    meter.reset()


def test_tensorboard_steps_count_clips_and_only_grow_when_the_iterations_per_epoch_change(tmp_path):
    """Multigrid's long cycle: 8 iterations of 2 clips in epoch 1, 2 of 8 in epoch 2. An iteration count (epoch x
    iterations of the current epoch + iteration) would go 7, 8, then back to 3, 4 and overwrite earlier points;
    the clips seen go on: 2, 4, ..., 16, then 24, 32. A run resumed 8 clips into epoch 1 at batch 4 puts its points
    where the uninterrupted run has them."""
    cfg = get_cfg()
    cfg.LOG_PERIOD, cfg.SOLVER.MAX_EPOCH, cfg.OUTPUT_DIR, cfg.NUM_GPUS = 1, 2, str(tmp_path), 0
    cfg.DATA_LOADER.NUM_WORKERS = 0
    writer = _RecordingWriter()
    _train_steps(cfg, writer, epoch=0, batch_size=2)
    _train_steps(cfg, writer, epoch=1, batch_size=8)
    assert writer.steps == [2, 4, 6, 8, 10, 12, 14, 16, 24, 32]
    resumed = _RecordingWriter()
    _train_steps(cfg, resumed, epoch=0, batch_size=4, first_iteration=2)  # 2 iterations x 4 = the first 8 clips
    assert resumed.steps == [12, 16]
    with pytest.raises(RuntimeError, match="start_epoch"):
        meter = TrainMeter(4, cfg, _RecordingWriter())
        meter.update_stats({"loss": 1.0}, lr=0.1, batch_size=2)
        meter.log_iter_stats(0, 0)
