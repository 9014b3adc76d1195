"""How often a training step makes the host wait for the device (counted on the CPU by utils/profiling.py).

The paper's recipe needs two waits a step: the matching's one copy of the costs to the host (the Hungarian
algorithm runs there), and one read of the process-averaged loss terms and gradient norm after the optimizer step,
which also serves the finite-loss check. Everything else (index building, the loss normalisers, the gradient norm)
stays on the device or is computed from what those two reads brought back.
"""

from __future__ import annotations

import json

import pytest
import torch

from slowfast_bmvit.config import assert_and_infer_cfg, load_config
from slowfast_bmvit.engine.meters import TrainMeter
from slowfast_bmvit.engine.optimizer import construct_optimizer
from slowfast_bmvit.engine.task import DetectionTask
from slowfast_bmvit.engine.trainer import train_epoch
from slowfast_bmvit.models import build_model
from slowfast_bmvit.utils.profiling import HostSyncCounter

TINY_MODEL = [
    "NUM_GPUS", "0", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
    "MVIT.DEPTH", "2", "MVIT.EMBED_DIM", "16", "MVIT.CONV_STEM_CHANNELS", "[]", "MVIT.PATCH_KERNEL", "[3, 7, 7]",
    "MVIT.PATCH_STRIDE", "[2, 4, 4]", "MVIT.PATCH_PADDING", "[1, 3, 3]", "MVIT.DIM_MUL", "[[1, 2.0]]",
    "MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]", "MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 2, 2]",
    "BMVIT.PROJ_DIM", "16", "BMVIT.AUX_DENSE_WEIGHT", "0.0", "BMVIT.COST_CENTRE", "0.0", "TRAIN.BATCH_SIZE", "3",
    "SOLVER.CLIP_GRAD_L2NORM", "1.0", "LOG_PERIOD", "1",
]


def _batch(num_classes: int) -> dict:
    """Three clips with 2, 0 and 3 persons (one annotated non-actor), as detection_collate lays them out."""
    generator = torch.Generator().manual_seed(0)
    targets = []
    for persons, actor in ((2, [True, True]), (0, []), (3, [True, False, True])):
        boxes = torch.cat([0.3 + 0.4 * torch.rand(persons, 2, generator=generator),
                           0.1 + 0.2 * torch.rand(persons, 2, generator=generator)], dim=1)
        labels = (torch.rand(persons, num_classes, generator=generator) < 0.2).float()
        targets.append({"boxes": boxes, "labels": labels, "actor": torch.tensor(actor, dtype=torch.bool)})
    return {"inputs": torch.randn(3, 3, 4, 32, 32, generator=generator), "targets": targets, "meta": [{}] * 3}


def _count_one_step(tmp_path, *opts: str) -> HostSyncCounter:
    cfg = assert_and_infer_cfg(load_config("configs/SYNTH/BMViT_demo.yaml",
                                           TINY_MODEL + ["OUTPUT_DIR", str(tmp_path), *opts]))
    torch.manual_seed(0)
    model = build_model(cfg)
    task = DetectionTask(cfg, model)
    optimizer = construct_optimizer(model, cfg)
    meter = TrainMeter(1, cfg)
    loader = [_batch(cfg.MODEL.NUM_CLASSES)]
    with HostSyncCounter() as syncs:
        train_epoch(cfg, loader, model, task, optimizer, None, meter, 0, 0, 1, torch.device("cpu"))
    return syncs


def test_a_training_step_waits_for_the_device_twice(tmp_path):
    syncs = _count_one_step(tmp_path)
    assert dict(syncs.counts) == {"cpu": 1, "tolist": 1}, syncs.counts


def test_the_training_log_shows_unweighted_terms_and_detection_health_from_the_same_read(tmp_path):
    """The unweighted loss terms and the cardinality statistics ride on the step's one read of the device."""
    syncs = _count_one_step(tmp_path, "BMVIT.LOSS_BBOX", "4.0", "BMVIT.ACTOR_THRESH", "0.0")
    assert dict(syncs.counts) == {"cpu": 1, "tolist": 1}, syncs.counts
    lines = [json.loads(line) for line in (tmp_path / "json_stats.log").read_text().splitlines()]
    step = next(line for line in lines if line["_type"] == "train_iter")
    for term, weight in (("loss_actor", 1.0), ("loss_bbox", 4.0), ("loss_giou", 2.0)):
        assert step[term] == pytest.approx(weight * step[f"{term}_unscaled"], rel=1e-5), term
    assert step["loss_class_unscaled"] > 0
    # The batch has 2, 0 and 2 actors (the third clip's non-actor person does not count); at ACTOR_THRESH 0 every
    # token of every clip is above the threshold.
    tokens = step["tokens_above_thresh"]
    assert step["actors_per_clip"] == pytest.approx(4 / 3, rel=1e-5)
    assert tokens > 4 and tokens == int(tokens)
    assert step["cardinality_error"] == pytest.approx(tokens - 4 / 3, rel=1e-5)


@pytest.mark.parametrize("opts", [("BMVIT.BOX_LOSS_ON_NON_ACTORS", "True"), ("BMVIT.COST_CLASS", "1.0"),
                                  ("BMVIT.COST_CENTRE", "5.0")])
def test_matching_options_add_no_wait(tmp_path, opts):
    assert dict(_count_one_step(tmp_path, *opts).counts) == {"cpu": 1, "tolist": 1}


def test_the_auxiliary_dense_term_waits_once_more_per_clip(tmp_path):
    """Not in the paper's recipe: the dense assignment selects tokens by value (nonzero) and each clip's actors by
    mask, clip by clip."""
    syncs = _count_one_step(tmp_path, "BMVIT.AUX_DENSE_WEIGHT", "0.5")
    # Per clip the actors' boxes and labels by mask; per clip with actors, the tokens inside them (nonzero).
    assert dict(syncs.counts) == {"cpu": 1, "tolist": 1, "bool_mask_index": 2 * 3, "nonzero": 2}, syncs.counts


def test_the_counter_sees_conversions_and_value_dependent_shapes_only():
    x = torch.randn(6)
    with HostSyncCounter() as syncs:
        x.sum().item(), x.tolist(), float(x[0]), int(x.argmax()), f"{x[1]:.2f}", x.cpu()
        if x.sum() > 0:
            pass
        x[x > 0], torch.nonzero(x), x.unique()
        y = x * 2 + x[torch.tensor([0, 2, 4, 1, 3, 5])]  # arithmetic and integer-index gathers stay on the device
        y.numpy(), torch.repeat_interleave(x, 2, output_size=12)
    assert dict(syncs.counts) == {"item": 1, "tolist": 1, "float": 1, "int": 1, "format": 1, "cpu": 1, "bool": 1,
                                  "bool_mask_index": 1, "nonzero": 1, "unique": 1}
