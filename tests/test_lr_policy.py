"""LR schedules: values pinned at a few epochs, computed by hand from PySlowFast's formulas."""

import math

import pytest

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.engine.lr_policy import get_base_lr, get_lr_at_epoch


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


def test_cosine_without_warmup():
    cfg = _cfg(LR_POLICY="cosine", BASE_LR=1.0, COSINE_END_LR=0.0, MAX_EPOCH=10)
    assert get_lr_at_epoch(cfg, 0.0) == pytest.approx(1.0)
    assert get_lr_at_epoch(cfg, 2.5) == pytest.approx(0.5 * (math.cos(math.pi / 4) + 1))  # 0.853553
    assert get_lr_at_epoch(cfg, 5.0) == pytest.approx(0.5)
    assert get_lr_at_epoch(cfg, 10.0) == pytest.approx(0.0, abs=1e-12)


def test_cosine_end_lr_is_the_floor():
    cfg = _cfg(LR_POLICY="cosine", BASE_LR=1.0, COSINE_END_LR=0.1, MAX_EPOCH=10)
    assert get_lr_at_epoch(cfg, 5.0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert get_lr_at_epoch(cfg, 10.0) == pytest.approx(0.1)


def test_warmup_ends_on_the_cosine_value_at_the_warmup_epoch():
    # Upstream: without COSINE_AFTER_WARMUP the cosine runs from epoch 0, so warmup targets cos at epoch 2:
    # 0.5 * (cos(0.2 pi) + 1) = 0.9045085.
    cfg = _cfg(LR_POLICY="cosine", BASE_LR=1.0, MAX_EPOCH=10, WARMUP_EPOCHS=2.0, WARMUP_START_LR=0.1)
    target = 0.5 * (math.cos(0.2 * math.pi) + 1)
    assert get_lr_at_epoch(cfg, 0.0) == pytest.approx(0.1)
    assert get_lr_at_epoch(cfg, 1.0) == pytest.approx(0.1 + (target - 0.1) / 2)  # 0.5022543
    assert get_lr_at_epoch(cfg, 2.0) == pytest.approx(target)


def test_cosine_after_warmup_starts_the_decay_at_the_warmup_end():
    cfg = _cfg(
        LR_POLICY="cosine", BASE_LR=1.0, MAX_EPOCH=10, WARMUP_EPOCHS=2.0, WARMUP_START_LR=0.1, COSINE_AFTER_WARMUP=True
    )
    assert get_lr_at_epoch(cfg, 1.0) == pytest.approx(0.55)
    assert get_lr_at_epoch(cfg, 2.0) == pytest.approx(1.0)
    assert get_lr_at_epoch(cfg, 6.0) == pytest.approx(0.5)  # halfway through the 8 decay epochs


def test_steps_with_relative_lrs():
    cfg = _cfg(LR_POLICY="steps_with_relative_lrs", BASE_LR=0.5, STEPS=[0, 3, 6], LRS=[1, 0.1, 0.01], MAX_EPOCH=9)
    assert get_lr_at_epoch(cfg, 2.99) == pytest.approx(0.5)
    assert get_lr_at_epoch(cfg, 3.0) == pytest.approx(0.05)
    assert get_lr_at_epoch(cfg, 8.5) == pytest.approx(0.005)
    assert get_lr_at_epoch(cfg, 9.0) == pytest.approx(0.005)  # past MAX_EPOCH: the last stage
    cfg.SOLVER.WARMUP_EPOCHS, cfg.SOLVER.WARMUP_START_LR = 1.0, 0.0
    assert get_lr_at_epoch(cfg, 0.5) == pytest.approx(0.25)


def test_constant():
    cfg = _cfg(LR_POLICY="constant", BASE_LR=0.3, MAX_EPOCH=5)
    assert get_lr_at_epoch(cfg, 0.0) == get_lr_at_epoch(cfg, 4.7) == pytest.approx(0.3)


def test_shard_scaling_applies_to_base_warmup_and_end_lrs():
    cfg = _cfg(
        LR_POLICY="cosine", BASE_LR=0.1, COSINE_END_LR=0.001, WARMUP_START_LR=0.01, WARMUP_EPOCHS=1.0, MAX_EPOCH=10
    )
    cfg.NUM_SHARDS = 4
    assert get_base_lr(cfg) == pytest.approx(0.1)  # off by default
    cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS = True
    assert get_base_lr(cfg) == pytest.approx(0.4)
    assert get_lr_at_epoch(cfg, 0.0) == pytest.approx(0.04)
    assert get_lr_at_epoch(cfg, 10.0) == pytest.approx(0.004)
    assert cfg.SOLVER.BASE_LR == 0.1  # the config is not mutated


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="SOLVER.LR_POLICY"):
        get_lr_at_epoch(_cfg(LR_POLICY="poly"), 1.0)
    with pytest.raises(ConfigError, match="SOLVER.COSINE_END_LR"):
        get_lr_at_epoch(_cfg(LR_POLICY="cosine", BASE_LR=0.1, COSINE_END_LR=0.2), 1.0)
