"""Loading PySlowFast checkpoints: shape-matched, rel-pos tables resized, prefixes, and one clear error per bad file."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from torch import nn

from slowfast_bmvit.config import load_config
from slowfast_bmvit.models.checkpoint_loading import CheckpointError, LoadReport, load_checkpoint, read_checkpoint_file
from slowfast_bmvit.models.mvit import MViT

REPO = Path(__file__).resolve().parents[1]
MVITV2_S = str(REPO / "configs" / "Kinetics" / "MViTv2_S_16x4.yaml")


def mvitv2_s_cfg(crop: int, *opts: str):
    return load_config(MVITV2_S, ["DATA.TRAIN_CROP_SIZE", str(crop), "DATA.TEST_CROP_SIZE", str(crop), *opts])


def small_cfg(crop: int, *opts: str):
    return mvitv2_s_cfg(
        crop,
        "DATA.NUM_FRAMES", "4",
        "MVIT.DEPTH", "4",
        "MVIT.DIM_MUL", "[[1, 2.0], [3, 2.0]]",
        "MVIT.HEAD_MUL", "[[1, 2.0], [3, 2.0]]",
        "MVIT.POOL_Q_STRIDE", "[[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1], [3, 1, 2, 2]]",
        "MVIT.DROPPATH_RATE", "0.0",
        "MODEL.DROPOUT_RATE", "0.0",
        *opts,
    )


class Detector(nn.Module):
    """Stands for BMViT / the two-stage model: a head-less backbone under `backbone.` plus new layers."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(backbone.out_dim, 16)


@pytest.fixture(scope="module")
def k400_checkpoint_224(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A PySlowFast-layout .pyth of the full MViTv2-S at 224 (as MViTv2_S_16x4_k400_f302660347.pyth)."""
    torch.manual_seed(0)
    state = MViT(mvitv2_s_cfg(224)).state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint_epoch_00200.pyth"
    torch.save({"epoch": 200, "model_state": state, "optimizer_state": {}, "cfg": "MODEL:\n  NUM_CLASSES: 400\n"}, path)
    return path, state


def test_224_checkpoint_into_256_classifier_resizes_only_spatial_rel_pos(k400_checkpoint_224):
    path, state = k400_checkpoint_224
    model = MViT(mvitv2_s_cfg(256))
    report = load_checkpoint(path, model)
    assert isinstance(report, LoadReport) and report.epoch == 200 and report.prefix == ""
    assert len(report.loaded) == 397 and not report.skipped and not report.missing
    resized = {name for name, _, _ in report.resized}
    assert resized == {f"blocks.{i}.attn.rel_pos_{a}" for i in range(16) for a in "hw"}
    assert ("blocks.0.attn.rel_pos_h", (111, 96), (127, 96)) in report.resized
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k not in resized)
    expected = torch.nn.functional.interpolate(state["blocks.15.attn.rel_pos_w"].t()[None], 15, mode="linear")[0].t()
    torch.testing.assert_close(loaded["blocks.15.attn.rel_pos_w"], expected)


def test_224_checkpoint_into_bmvit_backbone_under_a_prefix(k400_checkpoint_224):
    path, state = k400_checkpoint_224
    detector = Detector(MViT(mvitv2_s_cfg(256, "MVIT.REMOVE_Q_POOL_BLOCKS", "[14]", "MODEL.NUM_CLASSES", "80"), False))
    for prefix in (None, "backbone."):
        report = load_checkpoint(path, detector, prefix=prefix)
        assert report.prefix == "backbone."
        assert len(report.loaded) == 395  # every backbone tensor
        assert {k for k, _ in report.skipped} == {"head.projection.weight", "head.projection.bias"}
        assert all(reason == "not in model" for _, reason in report.skipped)
        assert sorted(report.missing) == ["projection.bias", "projection.weight"]
        assert len(report.resized) == 32 and all(".rel_pos_" in name for name, _, _ in report.resized)
    assert torch.equal(detector.backbone.blocks[7].mlp.fc1.weight, state["blocks.7.mlp.fc1.weight"])


def test_ddp_prefix_plain_state_dict_and_new_head(tmp_path):
    torch.manual_seed(0)
    source = MViT(small_cfg(224))
    path = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    target = MViT(small_cfg(224, "MODEL.NUM_CLASSES", "80"))
    report = load_checkpoint(str(path), target)
    assert report.epoch is None
    assert sorted(k for k, _ in report.skipped) == ["head.projection.bias", "head.projection.weight"]
    assert "head.projection.weight (shape (400, 384) != model (80, 384))" in report.summary()
    assert sorted(report.missing) == ["head.projection.bias", "head.projection.weight"]
    assert torch.equal(target.blocks[2].attn.qkv.weight, source.blocks[2].attn.qkv.weight)


def test_load_time_resize_equals_run_time_interpolation():
    """A model for 96-pixel clips loaded from a 64-pixel one computes what the latter computes on 96-pixel clips."""
    torch.manual_seed(0)
    model_64 = MViT(small_cfg(64)).eval()
    model_96 = MViT(small_cfg(96)).eval()
    report = load_checkpoint(model_64.state_dict(), model_96)
    assert len(report.resized) == 8
    x = torch.randn(1, 3, 4, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model_96(x), model_64(x), rtol=1e-5, atol=1e-6)


def test_truncated_file_is_one_clear_error(k400_checkpoint_224, tmp_path):
    data = k400_checkpoint_224[0].read_bytes()
    path = tmp_path / "truncated.pyth"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"truncated\.pyth: truncated or corrupt checkpoint"):
        load_checkpoint(path, MViT(small_cfg(224)))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"TRAIN:\n  ENABLE: True\n", "not a PyTorch checkpoint"),
        (b"", "empty file"),
    ],
)
def test_non_checkpoint_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"config.yaml: {message}"):
        load_checkpoint(path, MViT(small_cfg(224)))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pyth", MViT(small_cfg(224)))


def test_pickled_objects_are_refused_by_weights_only(tmp_path):
    path = tmp_path / "objects.pyth"
    torch.save({"model_state": {"a": torch.zeros(1)}, "meter": collections.OrderedDict(), "x": Detector}, path)
    with pytest.raises(CheckpointError, match=r"objects\.pyth: holds a Python object .*Detector"):
        load_checkpoint(path, MViT(small_cfg(224)))


def test_wrapped_models_are_filled_through_the_bare_module(tmp_path):
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    path = tmp_path / "plain.pyth"
    torch.save({"model_state": source.state_dict()}, path)
    for wrap in (nn.DataParallel, torch.compile):  # `.module` and torch.compile's `._orig_mod`
        bare = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
        report = load_checkpoint(str(path), wrap(bare))
        assert report.prefix == "" and len(report.loaded) == 4 and not report.missing
        assert torch.equal(bare[0].weight, source[0].weight)


def test_a_file_that_is_not_a_dict_and_an_in_memory_checkpoint_name_their_source(tmp_path):
    path = tmp_path / "list.pyth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match=r"^.*list\.pyth: not a checkpoint \(a list, expected a dict of tensors\)$"):
        read_checkpoint_file(str(path))
    with pytest.raises(CheckpointError, match=r"^run/c\.pyth: no model tensors found"):
        load_checkpoint({"epoch": 3, "cfg": ""}, nn.Linear(2, 2), source="run/c.pyth")


def test_an_absolute_position_table_of_another_grid_names_what_sizes_it():
    """MViT's absolute positions (MVIT.USE_ABS_POS) are not resized: the message names the keys that size the table,
    not ViT's VIT.POS_EMBED_GRID."""
    state = MViT(small_cfg(224, "MVIT.USE_ABS_POS", "True")).state_dict()
    message = (r"^<state dict>: does not fit the model .* pos_embed \(1, 6273, 96\) vs model \(1, 8193, 96\) \(an "
               r"absolute position table of another token grid, not resized as it loads: MVIT.USE_ABS_POS has .*"
               r"DATA.NUM_FRAMES x DATA.TRAIN_CROP_SIZE\^2 over MVIT.PATCH_STRIDE, .* MVIT.CLS_EMBED_ON\)$")
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(state, MViT(small_cfg(256, "MVIT.USE_ABS_POS", "True")))
    assert "VIT.POS_EMBED_GRID" not in str(error.value)


def test_wrong_architecture_checkpoints_are_one_clear_error(tmp_path):
    model = MViT(small_cfg(224))
    # a plain ViT-B: same module names, other shapes
    vit = {
        "patch_embed.proj.weight": torch.zeros(768, 3, 2, 16, 16),
        "blocks.0.attn.qkv.weight": torch.zeros(2304, 768),
        "blocks.0.norm1.weight": torch.zeros(768),
    }
    path = tmp_path / "vit_b.pyth"
    torch.save({"model_state": vit}, path)
    with pytest.raises(CheckpointError, match=r"vit_b\.pyth: does not fit the model .*3 tensors differ in shape"):
        load_checkpoint(path, model)
    # a ResNet: nothing in common
    path = tmp_path / "slowfast_r50.pyth"
    torch.save({"model_state": {"s1.pathway0_stem.conv.weight": torch.zeros(64, 3, 1, 7, 7)}}, path)
    with pytest.raises(CheckpointError, match=r"slowfast_r50\.pyth: no tensor matches the model"):
        load_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="no model tensors"):
        load_checkpoint({"epoch": 3, "cfg": "x"}, model)
