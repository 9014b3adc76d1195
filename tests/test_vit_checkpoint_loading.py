"""VideoMAE checkpoints (fine-tuned and pre-training layouts) into the ViT classifier, BMViT and the two-stage model."""

from __future__ import annotations

import logging

import pytest
import torch

from slowfast_bmvit.config import get_cfg
from slowfast_bmvit.models.bmvit import BMViT
from slowfast_bmvit.models.checkpoint_loading import CheckpointError, load_checkpoint
from slowfast_bmvit.models.two_stage import MViTRoI
from slowfast_bmvit.models.common import resize_position_table
from slowfast_bmvit.models.vit import ViT, sinusoid_position_table

DEPTH = 2  # ViT-B width, fewer blocks: every key kind is there, the test stays fast


def videomae_block(prefix: str, dim: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One VideoMAE block's tensors under VideoMAE's own names (modeling_finetune.Block)."""
    shapes = {
        "norm1.weight": (dim,), "norm1.bias": (dim,),
        "attn.qkv.weight": (3 * dim, dim), "attn.q_bias": (dim,), "attn.v_bias": (dim,),
        "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
        "norm2.weight": (dim,), "norm2.bias": (dim,),
        "mlp.fc1.weight": (4 * dim, dim), "mlp.fc1.bias": (4 * dim,),
        "mlp.fc2.weight": (dim, 4 * dim), "mlp.fc2.bias": (dim,),
    }
    return {prefix + name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


def videomae_finetuned(dim: int = 768, tubelet: int = 2, classes: int = 400) -> dict[str, torch.Tensor]:
    """A VideoMAE K400 fine-tuned state (mean pooling: `fc_norm`, no `norm`; a 400-class `head`)."""
    generator = torch.Generator().manual_seed(0)
    state = {"patch_embed.proj.weight": torch.randn(dim, 3, tubelet, 16, 16, generator=generator),
             "patch_embed.proj.bias": torch.randn(dim, generator=generator)}
    for i in range(DEPTH):
        state.update(videomae_block(f"blocks.{i}.", dim, generator))
    state.update({"fc_norm.weight": torch.randn(dim, generator=generator),
                  "fc_norm.bias": torch.randn(dim, generator=generator),
                  "head.weight": torch.randn(classes, dim, generator=generator),
                  "head.bias": torch.randn(classes, generator=generator)})
    return state


def videomae_pretraining(dim: int = 768) -> dict[str, torch.Tensor]:
    """A VideoMAE pre-training state: `encoder.*` (with its final `norm`), the decoder and the mask token."""
    generator = torch.Generator().manual_seed(1)
    state = {"encoder.patch_embed.proj.weight": torch.randn(dim, 3, 2, 16, 16, generator=generator),
             "encoder.patch_embed.proj.bias": torch.randn(dim, generator=generator)}
    for i in range(DEPTH):
        state.update(videomae_block(f"encoder.blocks.{i}.", dim, generator))
    state.update({"encoder.norm.weight": torch.randn(dim, generator=generator),
                  "encoder.norm.bias": torch.randn(dim, generator=generator),
                  "encoder_to_decoder.weight": torch.randn(384, dim), "mask_token": torch.zeros(1, 1, 384)})
    for i in range(2):
        state.update(videomae_block(f"decoder.blocks.{i}.", 384, generator))
    state.update({"decoder.norm.weight": torch.ones(384), "decoder.norm.bias": torch.zeros(384),
                  "decoder.head.weight": torch.randn(1536, 384), "decoder.head.bias": torch.zeros(1536)})
    return state


def detection_cfg(crop: int, model: str = "BMViT"):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.MODEL_NAME = model
    cfg.MODEL.NUM_CLASSES = 80
    cfg.DATA.NUM_FRAMES = 16
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = crop
    cfg.VIT.DEPTH = DEPTH
    cfg.VIT.POS_EMBED_GRID = [8, 14, 14]  # the checkpoint's 16x224 grid
    cfg.DETECTION.SPATIAL_SCALE_FACTOR = 16
    cfg.BMVIT.BACKBONE = "ViT"
    cfg.BMVIT.PROJ_DIM = 0
    cfg.BMVIT.TOKEN_ARRANGEMENT = "center"
    cfg.BMVIT.CLASS_HEAD = "cross_attention"
    return cfg


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videomae")
    finetuned = folder / "vit_b_k400_ft.pth"
    pretraining = folder / "vit_b_k400_pt.pth"
    torch.save({"model": videomae_finetuned()}, finetuned)  # VideoMAE's save_model layout
    torch.save({"model": videomae_pretraining()}, pretraining)
    return finetuned, pretraining


def assert_backbone_equals(backbone: ViT, state: dict[str, torch.Tensor], prefix: str = "") -> None:
    loaded = backbone.state_dict()
    for name, value in loaded.items():
        source = prefix + ("fc_norm." + name[5:] if name.startswith("norm.") and not prefix else name)
        assert torch.equal(value, state[source]), name


def test_finetuned_checkpoint_into_the_classifier_loads_every_tensor(checkpoint_files):
    cfg = detection_cfg(224, "ViT")
    cfg.MODEL.NUM_CLASSES = 400
    model = ViT(cfg)
    report = load_checkpoint(checkpoint_files[0], model)
    assert report.layout == "VideoMAE fine-tuned" and report.prefix == ""
    assert not report.skipped and not report.missing and len(report.loaded) == len(model.state_dict())
    assert_backbone_equals(model, videomae_finetuned())


@pytest.mark.parametrize("model_name, crop", [("BMViT", 224), ("BMViT", 288), ("MViTRoI", 224), ("MViTRoI", 288)])
def test_finetuned_checkpoint_into_detectors_at_224_and_288(checkpoint_files, model_name, crop):
    model = (BMViT if model_name == "BMViT" else MViTRoI)(detection_cfg(crop, model_name))
    report = load_checkpoint(checkpoint_files[0], model)
    assert report.prefix == "backbone."
    assert not [name for name in report.missing if name.startswith("backbone.")]  # every backbone tensor assigned
    assert report.skipped == [("head.weight", "not in model"), ("head.bias", "not in model")]
    assert report.missing and all(name.startswith(("heads.", "head.")) for name in report.missing)
    assert_backbone_equals(model.backbone, videomae_finetuned())
    # positions: the 8x14x14 table, resized to the 8x18x18 grid of 288-pixel clips
    grid = model.backbone.output_grid((16, crop, crop))
    assert grid == (8, crop // 16, crop // 16)
    expected = resize_position_table(sinusoid_position_table(1568, 768), (8, 14, 14), grid)
    torch.testing.assert_close(model.backbone.position_embedding(grid)[0], expected)
    if crop == 288:
        assert not torch.allclose(expected, sinusoid_position_table(8 * 18 * 18, 768))
    if model_name == "BMViT":
        assert model.token_grid((16, crop, crop)) == (1, crop // 16, crop // 16)  # 324 triplets at 288


def test_pretraining_checkpoint_drops_the_decoder_and_reports_it(checkpoint_files, caplog):
    model = BMViT(detection_cfg(288))
    with caplog.at_level(logging.INFO, logger="slowfast_bmvit.models.checkpoint_loading"):
        report = load_checkpoint(checkpoint_files[1], model)
    assert report.layout == "VideoMAE pre-training"
    assert not [name for name in report.missing if name.startswith("backbone.")]
    assert {reason for _, reason in report.skipped} == {"VideoMAE pre-training decoder"}
    assert {key.split(".")[0] for key, _ in report.skipped} == {"decoder", "encoder_to_decoder", "mask_token"}
    assert_backbone_equals(model.backbone, videomae_pretraining(), prefix="encoder.")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith(f"{checkpoint_files[1]} (VideoMAE pre-training layout): loaded ")
    assert lines[1].startswith(f"unused checkpoint tensors ({len(report.skipped)}): VideoMAE pre-training decoder: ")
    assert lines[2].startswith(f"model tensors not in the checkpoint ({len(report.missing)}): heads.")


def test_deepspeed_module_key_and_ddp_prefix_load():
    state = videomae_finetuned()
    model = ViT(detection_cfg(224, "ViT"), with_head=False)
    for checkpoint in ({"module": state}, {"model": {"module." + k: v for k, v in state.items()}}):
        report = load_checkpoint(checkpoint, model)
        assert not report.missing and len(report.skipped) == 2


@pytest.mark.parametrize(
    "state, tensor",
    [
        (videomae_finetuned(dim=384), "patch_embed.proj.weight (384, 3, 2, 16, 16) vs model (768, 3, 2, 16, 16)"),
        (videomae_finetuned(tubelet=3), "patch_embed.proj.weight (768, 3, 3, 16, 16) vs model (768, 3, 2, 16, 16)"),
    ],
    ids=["wrong width", "wrong tubelet"],
)
def test_mismatched_checkpoint_is_one_line_naming_the_tensor(tmp_path, state, tensor):
    path = tmp_path / "other.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, BMViT(detection_cfg(288)))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: does not fit the model")
    assert tensor in message


def test_learned_table_of_another_grid_names_the_key_to_set():
    cfg = detection_cfg(224, "ViT")
    cfg.VIT.POS_EMBED = "learned"
    cfg.VIT.POS_EMBED_GRID = [8, 18, 18]
    state = {**videomae_finetuned(), "pos_embed": torch.zeros(1, 1568, 768)}
    message = r"pos_embed \(1, 1568, 768\) vs model \(1, 2592, 768\) .*VIT\.POS_EMBED_GRID"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(state, ViT(cfg))
