"""Attention capture (models/attention_capture.py), engine/token_inspection.py and tools/visualize_tokens.py."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from slowfast_bmvit.config import assert_and_infer_cfg, load_config
from slowfast_bmvit.engine.token_inspection import inspect_tokens
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models import attention
from slowfast_bmvit.models.attention import MultiScaleAttention
from slowfast_bmvit.models.attention_capture import capture_attention, last_attention_module
from slowfast_bmvit.models.token_selection import box_token_times
from slowfast_bmvit.visualization.token_maps import confidence_map

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import visualize_tokens  # noqa: E402
from test_demo import DEMO_CFG, TINY_OPTS, save_checkpoint, walking_person_frames, write_video  # noqa: E402


def tiny_model(*opts):
    cfg = assert_and_infer_cfg(load_config(DEMO_CFG, TINY_OPTS + ["DATA.NUM_FRAMES", "8", *opts]))
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def test_capture_keeps_the_outputs_and_rows_sum_to_one():
    cfg, model = tiny_model()
    clip = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        fused = model(clip)
        module = last_attention_module(model)
        with capture_attention(module) as captured:
            explicit = model(clip)
    for key in ("pred_boxes", "pred_actor", "pred_classes"):
        torch.testing.assert_close(explicit[key], fused[key], atol=1e-5, rtol=1e-5)
    (qt, qh, qw), (kt, kh, kw) = captured.grids
    assert (qt, qh, qw) == tuple(model.backbone.output_grid((8, 32, 32)))
    weights = captured.weights
    assert weights.shape == (2, module.num_heads, 1 + qt * qh * qw, 1 + kt * kh * kw)  # class token first
    assert weights.min() >= 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert not module.capture_weights and module.captured_weights is None  # released after the block


def test_without_capture_every_block_stays_on_the_fused_path(monkeypatch):
    _, model = tiny_model()

    def refuse(*args, **kwargs):
        raise AssertionError("the explicit attention ran outside a capture")

    # attention_weights is where the explicit formulation forms the weights (a capture goes through it too).
    monkeypatch.setattr(attention, "attention_weights", refuse)
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 32, 32))
    assert all(m.captured_weights is None for m in model.modules() if isinstance(m, MultiScaleAttention))


@pytest.mark.parametrize("arrangement", ["center_tpool", "two_halves"])
def test_inspection_maps_are_the_models_actor_probabilities_and_attention_rows(arrangement):
    _, model = tiny_model("BMVIT.TOKEN_ARRANGEMENT", arrangement)
    clip = torch.randn(1, 3, 8, 32, 32)
    slots, height, width = model.token_grid((8, 32, 32))
    with torch.no_grad():
        fused = model(clip)  # the normal (fused attention) forward
        with capture_attention(last_attention_module(model)) as captured:
            model(clip)
    expected = fused["pred_actor"][0].softmax(-1)[:, 1].reshape(slots, height, width)
    result = inspect_tokens(model, clip, actor_thresh=0.0, slot=slots - 1)
    np.testing.assert_allclose(result.actor_prob, expected[slots - 1].numpy(), atol=1e-6)
    assert len(result.positive) == height * width
    np.testing.assert_allclose(result.attention.sum(axis=(1, 2, 3)) + result.cls_attention, 1.0, atol=1e-6)
    # Token (h, w) of the last slot is, as a query, backbone token (t, h, w) with t from box_token_times.
    (qt, qh, qw), (kt, kh, kw) = captured.grids
    t = box_token_times(arrangement, qt)[slots - 1][0]
    assert t == qt // 2  # the last slot of both arrangements is the central slice
    rows = captured.weights[0].mean(0)
    for i, token in enumerate(result.positive[:3]):
        row = rows[1 + t * qh * qw + token]
        np.testing.assert_allclose(result.attention[i].reshape(-1), row[1:].numpy(), atol=1e-6)
    # The drawn heat map: each token's block has the colour of its p(actor) (alpha 1: colour only).
    image = np.zeros((64, 64, 3), np.uint8)
    heat = confidence_map(image, result.actor_prob, alpha=1.0)
    for i in range(height):
        for j in range(width):
            pixel = heat[int((i + 0.5) * 64 / height), int((j + 0.5) * 64 / width)]
            colour = np.rint(np.array(colormaps["jet"](result.actor_prob[i, j])[:3]) * 255)
            np.testing.assert_array_equal(pixel, colour)


def test_box_token_times_of_each_arrangement():
    assert box_token_times("all", 4) == [[0], [1], [2], [3]]
    assert box_token_times("center", 4) == [[2]] == box_token_times("center_tpool", 4)
    assert box_token_times("all_tpool", 4) == [[0, 1, 2, 3]]
    assert box_token_times("two_halves", 4) == [[1], [2]]


def test_command_line_writes_the_figure(tmp_path, capsys):
    opts = TINY_OPTS + ["DATA.NUM_FRAMES", "8", "OUTPUT_DIR", str(tmp_path / "run")]
    cfg, model = tiny_model("OUTPUT_DIR", str(tmp_path / "run"))
    save_checkpoint(cfg, model, tmp_path / "run")
    write_video(tmp_path / "walk.mp4", walking_person_frames(num_frames=40, height=64, width=96))
    visualize_tokens.main(["--cfg", DEMO_CFG, "--input", str(tmp_path / "walk.mp4"), "--time", "0.8",
                           "--max-tokens", "2", "--actor-thresh", "0.0", *opts])
    line = capsys.readouterr().out.strip()
    path = tmp_path / "run" / "tokens" / "walk_0.8s.png"
    assert line.startswith(f"wrote {path}: 16 tokens in slot 0, 16 with p(actor) > 0") and line.endswith("rows for 2")
    import cv2

    figure = cv2.imread(str(path))
    # 96 x 64 frames are enlarged 5x: left panel 480 wide and 2 x 320 high, then 2 rows of 160-pixel tiles.
    assert figure.shape[0] == 640 and figure.shape[1] > 480 + 2 * 240
    with pytest.raises(SystemExit):
        visualize_tokens.main(["--cfg", DEMO_CFG, "--input", str(tmp_path / "walk.mp4"), "--time", "9", *opts])
    assert "outside its 40 frames" in capsys.readouterr().err
