"""Multigrid schedule numbers (computed by hand from upstream's rules) and the short-cycle sampler/resizer."""

import pytest
import torch
from torch.utils.data import SequentialSampler

from slowfast_bmvit.config import get_cfg
from slowfast_bmvit.engine.trainer import is_checkpoint_epoch, is_eval_epoch
from slowfast_bmvit.engine.multigrid import (
    MultigridSchedule,
    ShortCycleBatchSampler,
    ShortCycleDataset,
    short_cycle_batch_factors,
    short_cycle_crop_sizes,
)


def _cfg(long_cycle=True, short_cycle=False):
    cfg = get_cfg()
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.SAMPLING_RATE = 16, 224, 4
    cfg.TRAIN.BATCH_SIZE = 8
    cfg.SOLVER.STEPS, cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.GAMMA = [0, 40, 80], 95, 0.1
    cfg.MULTIGRID.EPOCH_FACTOR = 1.6
    cfg.MULTIGRID.LONG_CYCLE, cfg.MULTIGRID.SHORT_CYCLE = long_cycle, short_cycle
    return cfg


# Long-cycle shapes of 16 x 224 with the default factors: (T, S) = (4, 158), (8, 158), (8, 224), (16, 224);
# batch factors round(16 * 224^2 / (T * S^2)) = 8, 4, 2, 1 (sum 15). Each 40-epoch LR stage gives shape j
# 40 * b_j / 15 epochs = 21.33, 10.67, 5.33, 2.67 (2.67 iterations' worth each, 21.33 in total for 80 epochs:
# a 3.75x saving); fine-tuning 15 / 3.75 = 4 epochs; the 84 epochs are stretched to 95 * 1.6 = 152.
EXPECTED_ENDS = [39, 58, 68, 72, 111, 130, 140, 145, 152]
EXPECTED_SHAPES = [(8, 4, 158), (4, 8, 158), (2, 8, 224), (1, 16, 224)] * 2 + [(1, 16, 224)]


def test_long_cycle_schedule_and_solver_rewrite():
    cfg = _cfg()
    multigrid = MultigridSchedule()
    multigrid.init(cfg)
    assert [s.end_epoch for s in multigrid.schedule] == EXPECTED_ENDS
    assert [s.shape for s in multigrid.schedule] == EXPECTED_SHAPES
    assert [s.lr_stage for s in multigrid.schedule] == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    # STEPS: 0, the stage ends, the last moved to the middle of fine-tuning ((145 + 152) // 2).
    assert cfg.SOLVER.STEPS == [0, 39, 58, 68, 72, 111, 130, 140, 145, 148]
    # LRS: gamma^stage x batch factor; fine-tuning's first half keeps the previous rate.
    assert cfg.SOLVER.LRS == pytest.approx([8, 4, 2, 1, 0.8, 0.4, 0.2, 0.1, 0.1, 0.01])
    assert cfg.SOLVER.MAX_EPOCH == 152
    assert (cfg.MULTIGRID.DEFAULT_B, cfg.MULTIGRID.DEFAULT_T, cfg.MULTIGRID.DEFAULT_S) == (8, 16, 224)


def test_update_long_cycle_sets_shape_batch_and_sampling_rate():
    cfg = _cfg()
    multigrid = MultigridSchedule()
    multigrid.init(cfg)
    cfg, changed = multigrid.update_long_cycle(cfg, 0)
    assert changed
    assert (cfg.TRAIN.BATCH_SIZE, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE) == (64, 4, 158)
    assert cfg.MULTIGRID.LONG_CYCLE_SAMPLING_RATE == 16  # 4 x (16 // 4): same temporal span
    assert multigrid.update_long_cycle(cfg, 38)[1] is False
    cfg, changed = multigrid.update_long_cycle(cfg, 39)
    assert changed and (cfg.TRAIN.BATCH_SIZE, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE) == (32, 8, 158)
    cfg, changed = multigrid.update_long_cycle(cfg, 151)
    assert changed and (cfg.TRAIN.BATCH_SIZE, cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE) == (8, 16, 224)
    assert cfg.MULTIGRID.LONG_CYCLE_SAMPLING_RATE == 4


def test_short_cycle_only_stretches_the_epochs():
    cfg = _cfg(long_cycle=False, short_cycle=True)
    multigrid = MultigridSchedule()
    multigrid.init(cfg)
    assert multigrid.schedule is None
    assert cfg.SOLVER.STEPS == [0, 64, 128] and cfg.SOLVER.MAX_EPOCH == 152
    assert multigrid.update_long_cycle(cfg, 10)[1] is False
    # crops 0.5 x 224 and sqrt(.5) x 224, then 224; batches x (224 / crop)^2 rounded.
    assert short_cycle_crop_sizes(cfg) == [112, 158, 224]
    assert short_cycle_batch_factors(cfg) == [4, 2, 1]
    assert [multigrid.short_cycle_shape(i) for i in range(4)] == [(32, 112), (16, 158), (8, 224), (32, 112)]


def test_short_cycle_inside_a_long_cycle_shape():
    cfg = _cfg(long_cycle=True, short_cycle=True)
    multigrid = MultigridSchedule()
    multigrid.init(cfg)
    cfg, _ = multigrid.update_long_cycle(cfg, 0)  # crop 158, batch 8 x 8
    # (158 / 112)^2 = 1.99 -> 2, (158 / 158.4)^2 = 0.995 -> 1; the third position is the long-cycle crop.
    assert short_cycle_batch_factors(cfg) == [2, 1, 1]
    assert short_cycle_crop_sizes(cfg) == [112, 158, 158]
    assert multigrid.short_cycle_shape(0) == (cfg.TRAIN.BATCH_SIZE * 2, 112)


def test_multigrid_checkpoint_and_eval_epochs():
    cfg = _cfg()
    multigrid = MultigridSchedule()
    multigrid.init(cfg)
    cfg.MULTIGRID.EVAL_FREQ = 3
    # First stage: epochs 0..38, period 39 // 3 + 1 = 14, counted back from its last epoch 38: 38, 24, 10.
    first_stage = [e for e in range(39) if is_eval_epoch(cfg, e, multigrid.schedule)]
    assert first_stage == [10, 24, 38]
    assert is_checkpoint_epoch(cfg, 151, multigrid.schedule)  # the last epoch


def test_short_cycle_batch_sampler_sizes_and_length():
    cfg = _cfg(long_cycle=False, short_cycle=True)
    MultigridSchedule().init(cfg)
    sampler = ShortCycleBatchSampler(SequentialSampler(range(30)), batch_size=2, drop_last=False, cfg=cfg)
    batches = list(sampler)
    assert [len(b) for b in batches] == [8, 4, 2, 8, 4, 2, 2]  # 28 in two cycles, 2 left over
    assert [key[1] for key in batches[1]] == [1, 1, 1, 1]
    assert [key[0] for b in batches for key in b] == list(range(30))
    assert len(sampler) == 7
    dropping = ShortCycleBatchSampler(SequentialSampler(range(30)), batch_size=2, drop_last=True, cfg=cfg)
    assert len(dropping) == len(list(dropping)) == 6


class _Clips:
    """`length` 4 x 224 x 224 clips of constant value 0.25 with one box each."""

    def __init__(self, length=3):
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return {"inputs": torch.full((3, 4, 224, 224), 0.25), "boxes": torch.tensor([[0.1, 0.2, 0.5, 0.9]]), "i": index}


def test_short_cycle_dataset_resizes_only_the_clip():
    cfg = _cfg(long_cycle=False, short_cycle=True)
    MultigridSchedule().init(cfg)
    dataset = ShortCycleDataset(_Clips(), cfg)
    small = dataset[(2, 0)]
    assert small["inputs"].shape == (3, 4, 112, 112)
    assert torch.allclose(small["inputs"], torch.tensor(0.25))  # resampling, not cropping or rescaling values
    assert small["i"] == 2 and torch.equal(small["boxes"], torch.tensor([[0.1, 0.2, 0.5, 0.9]]))
    assert dataset[(1, 1)]["inputs"].shape == (3, 4, 158, 158)
    assert dataset[(1, 2)]["inputs"].shape == (3, 4, 224, 224)
    assert dataset[0]["inputs"].shape == (3, 4, 224, 224)
    assert len(dataset) == 3


def test_short_cycle_batch_sampler_skips_whole_batches_when_resuming():
    cfg = _cfg(long_cycle=False, short_cycle=True)
    MultigridSchedule().init(cfg)
    full = list(ShortCycleBatchSampler(SequentialSampler(range(30)), batch_size=2, drop_last=True, cfg=cfg))
    resumed = ShortCycleBatchSampler(SequentialSampler(range(30)), batch_size=2, drop_last=True, cfg=cfg)
    resumed.set_start_batch(4)
    assert len(resumed) == len(full) - 4 == 2
    assert list(resumed) == full[4:]  # same indices and the same cycle positions as the uninterrupted epoch
    with pytest.raises(ValueError):
        resumed.set_start_batch(-1)


def test_short_cycle_loader_from_the_config():
    """construct_loader builds the cycling loader under MULTIGRID.SHORT_CYCLE; set_loader_epoch drives it."""
    from slowfast_bmvit.datasets import clip_position, construct_loader, epoch_sampler, set_loader_epoch

    cfg = _cfg(long_cycle=False, short_cycle=True)
    cfg.TRAIN.BATCH_SIZE = 1
    MultigridSchedule().init(cfg)
    cfg.DATA_LOADER.NUM_WORKERS, cfg.NUM_GPUS = 0, 0
    clips = _Clips(length=10)
    loader = construct_loader(cfg, "train", dataset=clips)
    assert len(loader) == 3  # batches of 4, 2, 1; the 3 clips left cannot fill the next batch of 4
    set_loader_epoch(loader, epoch=1)
    batches = list(loader)
    assert [tuple(b["inputs"].shape) for b in batches] == [(4, 3, 4, 112, 112), (2, 3, 4, 158, 158),
                                                           (1, 3, 4, 224, 224)]
    order = epoch_sampler(loader).epoch_indices()
    assert sorted(order) == list(range(10)) and [int(i) for b in batches for i in b["i"]] == order[:7]
    set_loader_epoch(loader, epoch=1, first_iteration=2)
    assert [int(i) for b in loader for i in b["i"]] == order[6:7]
    # the clip stream position of that batch: epoch 1 of 10 clips, then the 4 + 2 clips of the skipped batches
    assert clip_position(loader, epoch=1, first_iteration=2) == 10 + 6
