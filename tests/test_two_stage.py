"""Two-stage baseline: the RoI head's computation, MViTRoI end to end on a tiny MViT, its config and stride rules."""

from __future__ import annotations

import logging
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, load_config
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models.checkpoint_loading import load_checkpoint
from slowfast_bmvit.models.mvit import MViT
from slowfast_bmvit.models.roi_align import roi_align
from slowfast_bmvit.models.roi_head import RoIHead
from slowfast_bmvit.models.two_stage import MViTRoI, backbone_output_stride

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "AVA", "MViTv2_S_two_stage.yaml")

# A 2-block MViT with output stride 8 (patch 4, one 2x q-pool): a 4 x 32 x 32 clip -> tokens [B, 32, 2, 4, 4].
TINY = [
    "NUM_GPUS", "0",
    "DATA.NUM_FRAMES", "4",
    "DATA.TRAIN_CROP_SIZE", "32",
    "DATA.TEST_CROP_SIZE", "32",
    "MVIT.DEPTH", "2",
    "MVIT.EMBED_DIM", "16",
    "MVIT.DIM_MUL", "[[1, 2.0]]",
    "MVIT.HEAD_MUL", "[[1, 2.0]]",
    "MVIT.POOL_Q_STRIDE", "[[0, 1, 1, 1], [1, 1, 2, 2]]",
    "MVIT.POOL_KV_STRIDE_ADAPTIVE", "[1, 4, 4]",
    "MVIT.DROPPATH_RATE", "0.0",
    "MODEL.NUM_CLASSES", "5",
    "DETECTION.SPATIAL_SCALE_FACTOR", "8",
    "TRAIN.BATCH_SIZE", "2",
    "TEST.BATCH_SIZE", "2",
]


def tiny_cfg(*extra: str):
    return assert_and_infer_cfg(load_config(CONFIG, TINY + list(extra)))


class GridBackbone(nn.Module):
    """Stand-in backbone: average-pools the clip by `stride` into a [B, 3, T, H/stride, W/stride] grid."""

    out_dim = 3

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride
        self.scale = nn.Parameter(torch.ones(()))

    def output_grid(self, thw):
        t, h, w = thw
        return (t, -(-h // self.stride), -(-w // self.stride))

    def forward_features(self, x):
        return self.scale * F.avg_pool3d(x, (1, self.stride, self.stride), ceil_mode=True), None

    def no_weight_decay(self):
        return {"scale"}


# ----------------------------------------------------------------------------------------------------- RoI head


def test_head_pools_the_time_mean_inside_each_box_and_takes_the_max():
    head = RoIHead(dim_in=2, num_classes=3, resolution=2, spatial_scale=1 / 8, aligned=True).eval()
    tokens = torch.zeros(1, 2, 2, 4, 4)  # [B, C, T, H, W], cells of 8 x 8 input pixels
    tokens[0, 0, 0, 1, 2] = 6.0  # channel 0, row 1, column 2, first time step only: time mean 3
    tokens[0, 1, :, 3, 0] = -2.0  # channel 1, row 3, column 0, both time steps: time mean -2
    with torch.no_grad():
        head.projection.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        head.projection.bias.zero_()
    boxes = torch.tensor([[0, 16.0, 8.0, 24.0, 16.0], [0, 0.0, 24.0, 8.0, 32.0], [0, 0.0, 0.0, 8.0, 8.0]])
    logits = head(tokens, boxes)
    # Box 0 lies on cell (1, 2): in cells x 1.5..2.5, y 0.5..1.5; one sample per bin at 1.75 / 2.25 and
    # 0.75 / 1.25, each 0.75 x 0.75 on the cell: every bin (and so the max) is 3 * 0.5625.
    # Box 1 lies on cell (3, 0): samples y 2.75 / 3.25 (clamped to 3), x -0.25 (clamped to 0) / 0.25; bins
    # -2 * {0.75, 0.5625, 1, 0.75}: the max is -1.125 (the mean would be -1.53).
    # Box 2 sees only zeros.
    expected = torch.tensor([[1.6875, 0.0, 1.6875], [0.0, -1.125, -1.125], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(logits, expected)


def test_head_returns_logits_in_both_modes_and_dropout_only_in_training():
    torch.manual_seed(0)
    head = RoIHead(dim_in=16, num_classes=4, resolution=7, spatial_scale=1 / 32, dropout_rate=0.5)
    tokens = torch.randn(2, 16, 3, 7, 7)
    boxes = torch.tensor([[0, 10.0, 10.0, 200.0, 220.0], [1, 50.0, 0.0, 120.0, 100.0]])
    head.eval()
    eval_logits = head(tokens, boxes)
    torch.testing.assert_close(head(tokens, boxes), eval_logits)  # deterministic
    assert (eval_logits < 0).any()  # logits, not probabilities
    torch.testing.assert_close(RoIHead.probabilities(eval_logits), torch.sigmoid(eval_logits))
    head.train()
    assert not torch.allclose(head(tokens, boxes), eval_logits)  # dropout active


# -------------------------------------------------------------------------------------------------- MViTRoI


def test_config_file_states_the_baseline():
    cfg = assert_and_infer_cfg(load_config(CONFIG))
    assert cfg.MODEL.MODEL_NAME == "MViTRoI"
    assert cfg.MODEL.NUM_CLASSES == 80
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE) == (16, 4)
    assert cfg.DATA.RESIZE_MODE == "short_side"
    assert cfg.DATA.TRAIN_CROP_SIZE == cfg.DATA.TEST_CROP_SIZE == 224
    assert cfg.DETECTION.ENABLE and cfg.DETECTION.ALIGNED
    assert cfg.DETECTION.SPATIAL_SCALE_FACTOR == 32 and cfg.DETECTION.ROI_XFORM_RESOLUTION == 7
    assert cfg.AVA.DETECTION_SCORE_THRESH == 0.8
    assert cfg.TRAIN.CHECKPOINT_EPOCH_RESET
    # MViTv2-S keys come from the Kinetics base config.
    assert cfg.MVIT.DEPTH == 16 and cfg.MVIT.EMBED_DIM == 96
    assert [list(x) for x in cfg.MVIT.DIM_MUL] == [[1, 2.0], [3, 2.0], [14, 2.0]]
    assert not cfg.AUG.ENABLE and not cfg.MIXUP.ENABLE


def test_mvitv2_s_output_stride_is_32_and_16_without_block_14_q_pooling(monkeypatch, caplog):
    # Geometry only: skip the random initialisation of 34M parameters (seconds on a shared CPU).
    for name in ("trunc_normal_", "kaiming_uniform_", "uniform_"):
        monkeypatch.setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
    cfg = assert_and_infer_cfg(load_config(CONFIG))
    assert backbone_output_stride(MViT(cfg, with_head=False), cfg.DATA.NUM_FRAMES) == 32
    cfg.MVIT.REMOVE_Q_POOL_BLOCKS = [14]
    with caplog.at_level(logging.WARNING, logger="slowfast_bmvit.models.two_stage"):
        model = MViTRoI(cfg)  # SPATIAL_SCALE_FACTOR still says 32
    assert model.head.spatial_scale == 1 / 16
    assert "DETECTION.SPATIAL_SCALE_FACTOR is 32 but the backbone's output stride is 16" in caplog.text


def test_stand_in_backbone_sets_the_spatial_scale(caplog):
    cfg = tiny_cfg("DETECTION.SPATIAL_SCALE_FACTOR", "16")
    with caplog.at_level(logging.WARNING, logger="slowfast_bmvit.models.two_stage"):
        model = MViTRoI(cfg, backbone=GridBackbone(16))
    assert model.head.spatial_scale == 1 / 16 and not caplog.text
    assert model.no_weight_decay() == {"backbone.scale"}
    assert MViTRoI(cfg, backbone=GridBackbone(8)).head.spatial_scale == 1 / 8


class SkewedBackbone(GridBackbone):
    def output_grid(self, thw):
        t, h, w = thw
        return (t, h // self.stride, w // (2 * self.stride))


class FractionalBackbone(GridBackbone):
    def output_grid(self, thw):  # 2 tokens per 3 pixels
        t, h, w = thw
        return (t, 2 * h // 3, 2 * w // 3)


def test_unequal_or_fractional_strides_are_config_errors():
    with pytest.raises(ConfigError, match=r"one integer spatial stride, got 8.0 \(H\) and 16.0 \(W\)"):
        MViTRoI(tiny_cfg(), backbone=SkewedBackbone(8))
    with pytest.raises(ConfigError, match="one integer spatial stride"):
        MViTRoI(tiny_cfg(), backbone=FractionalBackbone(1))
    assert MViTRoI(tiny_cfg(), backbone=GridBackbone(12)).head.spatial_scale == 1 / 12


def test_tiny_mvit_end_to_end_forward_predict_and_backward():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg)
    assert isinstance(model, MViTRoI) and model.head.spatial_scale == 1 / 8
    clip = torch.randn(2, 3, 4, 32, 32)
    boxes = torch.tensor([[0, 2.0, 3.0, 20.0, 30.0], [1, 0.0, 0.0, 32.0, 32.0], [1, 16.0, 8.0, 31.0, 15.0]])

    model.eval()
    with torch.no_grad():
        logits = model(clip, boxes)
        assert logits.shape == (3, 5)
        torch.testing.assert_close(model([clip], boxes), logits)  # PySlowFast's one-pathway list
        torch.testing.assert_close(model.predict(clip, boxes), torch.sigmoid(logits))
        # The same box on the other clip gives other scores: the batch index is honoured.
        swapped = boxes.clone()
        swapped[:, 0] = 1 - swapped[:, 0]
        assert not torch.allclose(model(clip, swapped), logits)

    model.train()
    labels = torch.zeros(3, 5)
    labels[0, 1] = labels[2, 4] = 1.0
    loss = F.binary_cross_entropy_with_logits(model(clip, boxes), labels)
    loss.backward()
    assert model.head.projection.weight.grad.abs().sum() > 0
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_parameter_names_and_initialisation():
    cfg = tiny_cfg("MVIT.ZERO_DECAY_POS_CLS", "True", "MVIT.HEAD_INIT_SCALE", "0.5")
    model = MViTRoI(cfg)
    names = set(dict(model.named_parameters()))
    assert {n for n in names if not n.startswith("backbone.")} == {"head.projection.weight", "head.projection.bias"}
    assert model.head.projection.weight.shape == (5, model.backbone.out_dim)
    torch.testing.assert_close(model.head.projection.bias, torch.full((5,), 0.01))  # 0.02 x HEAD_INIT_SCALE
    no_decay = model.no_weight_decay()
    assert no_decay and no_decay <= names
    assert "backbone.cls_token" in no_decay and any(".rel_pos_h" in n for n in no_decay)


def test_a_k400_style_classifier_checkpoint_fills_the_backbone_and_not_the_head(tmp_path):
    torch.manual_seed(1)
    cfg = tiny_cfg()
    classifier = MViT(cfg.clone(), with_head=True)  # a 5-class "K400" classifier of the same backbone
    path = tmp_path / "k400.pyth"
    torch.save({"epoch": 7, "model_state": classifier.state_dict()}, path)
    model = MViTRoI(cfg)
    head_before = model.head.projection.weight.detach().clone()
    report = load_checkpoint(str(path), model)  # the prefix "backbone." is detected
    assert report.prefix == "backbone."
    assert not [name for name in report.missing if name.startswith("backbone.")]
    assert sorted(report.missing) == ["head.projection.bias", "head.projection.weight"]
    torch.testing.assert_close(model.backbone.blocks[1].attn.qkv.weight, classifier.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(model.head.projection.weight, head_before)
