"""Video Hiera backbone: equal to the official `hiera-transformer` (saved reference tensors), token order, position
adaptation, official checkpoint layouts (K400 fine-tuned, MAE pre-training) into BMViT, config errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, load_config
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models.checkpoint_loading import CheckpointError, load_checkpoint
from slowfast_bmvit.models.common import resize_position_table
from slowfast_bmvit.models.hiera import Hiera, pool_leading, reroll, unroll

REPO = Path(__file__).resolve().parents[1]
# Written by the official package (see the file's "made_by"):
#   PYTHONPATH=$PWD .venv-oracle/bin/python benchmarks/oracle_hiera.py --only --write-reference tests/data/hiera_tiny_reference.pt
REFERENCE = REPO / "tests" / "data" / "hiera_tiny_reference.pt"


def tiny_opts(q_pool: int = 3, crop: int = 32, frames: int = 4, sep: bool = True, classes: int = 5) -> list[str]:
    """The tiny video Hiera of the reference file: width 4, stages 1-2-1-1, official video patch / mask units."""
    return ["NUM_GPUS", "0", "MODEL.NUM_CLASSES", str(classes), "MODEL.DROPOUT_RATE", "0.0",
            "DATA.NUM_FRAMES", str(frames), "DATA.TRAIN_CROP_SIZE", str(crop), "DATA.TEST_CROP_SIZE", str(crop),
            "HIERA.EMBED_DIM", "4", "HIERA.NUM_HEADS", "1", "HIERA.STAGES", "[1, 2, 1, 1]",
            "HIERA.Q_POOL", str(q_pool), "HIERA.SEP_POS_EMBED", str(sep)]


def tiny_hiera(*args, with_head: bool = True, **kwargs) -> Hiera:
    return Hiera(load_config(None, tiny_opts(*args, **kwargs)), with_head=with_head)


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(REFERENCE, weights_only=True)


# ---------------------------------------------------------------------------------------------- official numbers


@pytest.mark.parametrize("variant", ["q_pool3", "q_pool2", "joint_pos"])
def test_equals_official_hiera_on_saved_reference(reference, variant):
    case = reference[variant]
    model = tiny_hiera(case["q_pool"], sep=case["sep_pos_embed"])
    model.load_state_dict(case["state_dict"], strict=True)  # key for key, shape for shape
    model.train()  # logits, as the reference (no dropout, no drop path)
    with torch.no_grad():
        logits = model(reference["clip"])
        tokens, cls = model.forward_features(reference["clip"])
    assert cls is None
    torch.testing.assert_close(logits, case["logits"], atol=1e-5, rtol=0)
    # Official: last-stage intermediates rerolled to [B, T', H', W', C]; ours [B, C, T', H', W'].
    torch.testing.assert_close(tokens.permute(0, 2, 3, 4, 1), case["tokens"], atol=1e-5, rtol=0)
    assert tuple(tokens.shape[2:]) == model.output_grid(tuple(reference["clip"].shape[2:]))


# ---------------------------------------------------------------------------------------------- token order


def test_unroll_is_inverted_by_reroll_and_turns_max_pooling_into_a_leading_max():
    grid, strides = (2, 8, 16), [(1, 2, 2)] * 3
    x = torch.randn(3, 2 * 8 * 16, 5)
    unrolled = unroll(x, grid, strides)
    torch.testing.assert_close(reroll(unrolled, grid, strides), x, atol=0, rtol=0)
    # Pooling the leading quarter-blocks of the unrolled sequence is MaxPool3d(1x2x2) of the raster grid.
    pooled = pool_leading(unrolled, 4)
    raster = x.transpose(1, 2).reshape(3, 5, *grid)
    expected = F.max_pool3d(raster, (1, 2, 2)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(reroll(pooled, (2, 4, 8), strides[1:]), expected, atol=0, rtol=0)


def test_tokens_with_the_same_index_modulo_the_window_count_form_one_mask_unit():
    t, h, w = 2, 16, 16
    positions = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    unrolled = unroll(positions.reshape(1, -1, 3).float(), (t, h, w), [(1, 2, 2)] * 3)[0].long()
    windows = t * (h // 8) * (w // 8)
    for window in range(windows):
        members = unrolled[window::windows]  # the tokens MaskUnitAttention groups into this window
        assert members[:, 0].unique().numel() == 1  # one frame
        assert members[:, 1].max() - members[:, 1].min() == 7 and members[:, 2].max() - members[:, 2].min() == 7
        assert len({tuple(p) for p in members.tolist()}) == 64  # a full 1x8x8 unit


# ---------------------------------------------------------------------------------------------- positions


def test_position_resize_keeps_the_raster_layout():
    channels = 3
    grid = torch.randn(channels, 2, 5, 7)
    table = grid.flatten(1).t()  # [T*H*W, C], the layout Hiera's tables have
    # Independent layout check: a [C, 1, H, W] grid resized with torch directly.
    frame = grid[:, :1]
    expected = F.interpolate(frame.permute(1, 0, 2, 3), size=(10, 14), mode="bicubic", align_corners=False)
    torch.testing.assert_close(resize_position_table(table[:35], (1, 5, 7), (1, 10, 14)),
                               expected.permute(1, 0, 2, 3).flatten(1).t())
    # Temporal axis: linear interpolation of each spatial position's series.
    series = F.interpolate(grid.reshape(channels, 2, 35).permute(2, 0, 1), size=4, mode="linear", align_corners=False)
    torch.testing.assert_close(resize_position_table(table, (2, 5, 7), (4, 5, 7)),
                               series.permute(1, 2, 0).reshape(channels, 4 * 35).t())
    assert torch.equal(resize_position_table(table, (2, 5, 7), (2, 5, 7)), table)


@pytest.mark.parametrize("sep", [True, False])
def test_checkpoint_of_another_size_loads_resized_and_matches_run_time_resizing(sep):
    torch.manual_seed(0)
    small = tiny_hiera(crop=32, sep=sep)  # 8x8 patch grid
    large = tiny_hiera(crop=64, sep=sep)  # 16x16 patch grid
    report = load_checkpoint({"model_state": small.state_dict()}, large)
    names = {"pos_embed_spatial"} if sep else {"pos_embed"}
    assert {name for name, _, _ in report.resized} == names
    assert not report.skipped and not report.missing
    clip = torch.randn(1, 3, 4, 64, 64)
    small.eval(), large.eval()
    with torch.no_grad():
        # The 32-px model interpolates its table at run time for a 64-px clip; the loaded 64-px model holds the
        # same table resized at load time.
        torch.testing.assert_close(small.forward_features(clip)[0], large.forward_features(clip)[0])


def test_a_position_table_that_does_not_resize_names_what_sizes_it():
    """A joint table of 4 x 8x8 tokens does not resize to 2 x 8x8 (time differs): the message names Hiera's keys,
    not ViT's VIT.POS_EMBED_GRID."""
    longer = tiny_hiera(crop=32, frames=8, sep=False)
    message = (r"pos_embed \(1, 256, 4\) vs model \(1, 128, 4\) \(a position table of another token grid that does "
               r"not resize: .*DATA.NUM_FRAMES.*; a joint table, HIERA.SEP_POS_EMBED False, only with the same number of "
               r"frames\)$")
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint({"model_state": longer.state_dict()}, tiny_hiera(crop=32, frames=4, sep=False))
    assert "VIT.POS_EMBED_GRID" not in str(error.value)


# ---------------------------------------------------------------------------------------------- checkpoints


def bmvit_cfg(*extra: str):
    opts = tiny_opts(q_pool=2, crop=64, classes=80)
    return load_config(None, [*opts, "MODEL.MODEL_NAME", "BMViT", "BMVIT.BACKBONE", "Hiera", "BMVIT.PROJ_DIM", "16",
                              *extra])


def test_official_k400_layout_checkpoint_loads_into_bmvit_with_every_backbone_tensor(tmp_path, reference, caplog):
    # The fine-tuned layout: {"model_state": Hiera state_dict} with a 5-class head, trained at 32 px.
    path = tmp_path / "hiera_tiny_16x224.pth"
    torch.save({"model_state": reference["q_pool3"]["state_dict"]}, path)
    model = build_model(bmvit_cfg())
    with caplog.at_level(logging.INFO, logger="slowfast_bmvit.models.checkpoint_loading"):
        report = load_checkpoint(str(path), model)
    backbone_keys = {"backbone." + key for key in model.backbone.state_dict()}
    assert report.prefix == "backbone." and set(report.loaded) == backbone_keys
    assert report.resized == [("backbone.pos_embed_spatial", (1, 64, 4), (1, 256, 4))]
    assert {key for key, _ in report.skipped} == {"head.projection.weight", "head.projection.bias"}
    assert all(not name.startswith("backbone.") for name in report.missing)
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("unused checkpoint tensors (2): not in model: head.projection.weight, head.projection.bias")
               for line in lines)
    assert any(line.startswith("model tensors not in the checkpoint (") and "projection.weight" in line
               for line in lines)
    state = reference["q_pool3"]["state_dict"]
    assert torch.equal(model.backbone.blocks[2].attn.qkv.weight, state["blocks.2.attn.qkv.weight"])


def test_official_mae_layout_checkpoint_loads_encoder_and_reports_decoder_unused(reference, caplog):
    model = build_model(bmvit_cfg())
    with caplog.at_level(logging.INFO, logger="slowfast_bmvit.models.checkpoint_loading"):
        report = load_checkpoint({"model_state": reference["mae_state_dict"]}, model)
    backbone_keys = {"backbone." + key for key in model.backbone.state_dict()}
    # Every encoder tensor loads; the final norm is not in a pre-training checkpoint (MAE uses encoder_norm after
    # its multi-scale fusion), so it starts fresh, as in the official fine-tuning.
    assert set(report.loaded) == backbone_keys - {"backbone.norm.weight", "backbone.norm.bias"}
    assert {"backbone.norm.weight", "backbone.norm.bias"} <= set(report.missing)
    unused = {key for key, _ in report.skipped}
    assert unused == {key for key in reference["mae_state_dict"] if not key.startswith(("blocks.", "patch_embed.",
                                                                                         "pos_embed"))}
    unused_line = next(r.getMessage() for r in caplog.records if "unused checkpoint tensors" in r.getMessage())
    assert unused_line.startswith(f"unused checkpoint tensors ({len(unused)}): ")
    assert "not in model: mask_token, decoder_pos_embed, encoder_norm.weight" in unused_line


def test_mismatched_checkpoint_fails_with_one_line_naming_the_tensor(tmp_path, reference):
    state = dict(reference["q_pool3"]["state_dict"])
    state["blocks.3.mlp.fc1.weight"] = torch.zeros(5, 16)  # another width
    path = tmp_path / "wrong.pth"
    torch.save({"model_state": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(path), build_model(bmvit_cfg()))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "blocks.3.mlp.fc1.weight (5, 16)" in message


# ---------------------------------------------------------------------------------------------- BMViT, training


def test_bmvit_with_hiera_keeps_the_stride_16_grid_and_trains_with_act_checkpoint_and_drop_path():
    torch.manual_seed(0)
    model = build_model(bmvit_cfg("MODEL.ACT_CHECKPOINT", "True", "HIERA.DROPPATH_RATE", "0.5"))
    assert model.backbone.out_dim == 32 and model.token_grid((4, 64, 64)) == (1, 4, 4)
    clip = torch.randn(2, 3, 4, 64, 64)
    out = model(clip)
    assert out["pred_boxes"].shape == (2, 16, 4)
    out["pred_boxes"].sum().backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
    rates = [block.drop_path.drop_prob for block in model.backbone.blocks[1:]]
    assert rates == sorted(rates) and rates[-1] == 0.5
    # Drop path acts in training only (8 clips: two passes drawing the same masks everywhere is then negligible).
    clips = torch.randn(8, 3, 4, 64, 64)
    with torch.no_grad():
        assert not torch.equal(model.backbone.forward_features(clips)[0], model.backbone.forward_features(clips)[0])
        model.eval()
        assert torch.equal(model.backbone.forward_features(clips)[0], model.backbone.forward_features(clips)[0])


def test_activation_checkpointing_gives_the_same_gradients():
    grads = []
    for act_checkpoint in (False, True):
        torch.manual_seed(0)
        model = Hiera(load_config(None, tiny_opts() + ["MODEL.ACT_CHECKPOINT", str(act_checkpoint)]))
        model.train()
        model(torch.ones(1, 3, 4, 32, 32)).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("opts, key", [
    (["HIERA.MASK_UNIT_SIZE", "[1, 8, 4]"], "HIERA.MASK_UNIT_SIZE"),
    (["HIERA.Q_POOL", "4"], "HIERA.Q_POOL"),
    (["HIERA.MASK_UNIT_ATTN", "[True, False]"], "HIERA.MASK_UNIT_ATTN"),
    (["DATA.TRAIN_CROP_SIZE", "48"], "DATA.TRAIN_CROP_SIZE"),
    (["HIERA.NUM_HEADS", "3"], "HIERA.NUM_HEADS"),
])
def test_bad_hiera_config_is_refused_naming_the_key(opts, key):
    with pytest.raises(ConfigError, match=f"^{key}"):
        Hiera(assert_and_infer_cfg(load_config(None, tiny_opts() + opts)))


def test_clip_whose_grid_the_strides_do_not_divide_is_refused():
    with pytest.raises(ValueError, match="not divisible by 1x8x8"):
        tiny_hiera()(torch.zeros(1, 3, 4, 48, 48))
