"""Parameter and GFLOP counting (fvcore, attention counted through the SDPA handle) and tools/model_stats.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slowfast_bmvit.config import load_config
from slowfast_bmvit.models.mvit import MViT
from slowfast_bmvit.utils.complexity import count_gflops, count_parameters, flop_analysis

REPO = Path(__file__).resolve().parents[1]
MVITV2_S = str(REPO / "configs" / "Kinetics" / "MViTv2_S_16x4.yaml")
SMALL_OPTS = [
    "DATA.NUM_FRAMES", "4",
    "DATA.TRAIN_CROP_SIZE", "64",
    "DATA.TEST_CROP_SIZE", "64",
    "MVIT.DEPTH", "4",
    "MVIT.DIM_MUL", "[[1, 2.0], [3, 2.0]]",
    "MVIT.HEAD_MUL", "[[1, 2.0], [3, 2.0]]",
    "MVIT.POOL_Q_STRIDE", "[[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1], [3, 1, 2, 2]]",
]


def _load_tool():
    spec = importlib.util.spec_from_file_location("model_stats_tool", REPO / "tools" / "model_stats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Attention(nn.Module):
    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused

    def forward(self, q, k, v):
        if self.fused:
            return F.scaled_dot_product_attention(q, k, v)
        return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v


def test_sdpa_handle_counts_the_two_matmuls_of_explicit_attention():
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)
    fused = flop_analysis(Attention(True), (q, k, v)).total()
    explicit = flop_analysis(Attention(False), (q, k, v)).total()
    assert fused == explicit == 2 * 3 * 10 * 6 * (8 + 5)


def test_sdpa_and_explicit_mvit_count_the_same_and_attention_is_counted():
    cfg = load_config(MVITV2_S, SMALL_OPTS)
    sdpa = MViT(cfg)
    cfg.MVIT.ATTN_IMPL = "explicit"
    explicit = MViT(cfg)
    clip = torch.zeros(1, 3, 4, 64, 64)
    analysis = flop_analysis(sdpa, (clip,))
    attention = analysis.by_operator().get("scaled_dot_product_attention", 0)
    assert attention > 0
    assert count_gflops(sdpa, (clip,)) == pytest.approx(count_gflops(explicit, (clip,)), rel=1e-9)
    assert sdpa.training  # the mode is restored


class DictModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.box = nn.Linear(8, 4)
        self.cls = nn.Linear(8, 3)

    def forward(self, x):
        return {"pred_boxes": self.box(x), "pred_classes": self.cls(x), "aux": [self.cls(x)]}


def test_models_returning_dicts_are_counted():
    model = DictModel()
    assert count_parameters(model) == 8 * 4 + 4 + 8 * 3 + 3
    assert count_gflops(model, (torch.zeros(5, 8),)) * 1e9 == pytest.approx(5 * 8 * (4 + 3 + 3))


def test_model_stats_tool_prints_params_and_gflops(capsys):
    tool = _load_tool()
    tool.main(["--cfg", MVITV2_S, *SMALL_OPTS])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("params: ") and lines[1].startswith("gflops: ")
    model = MViT(load_config(MVITV2_S, SMALL_OPTS))
    assert int(lines[0].split()[1]) == count_parameters(model)
    assert float(lines[1].split()[1]) == pytest.approx(count_gflops(model, (torch.zeros(1, 3, 4, 64, 64),)), abs=1e-3)


def test_model_stats_tool_splits_gflops_by_operator(capsys):
    tool = _load_tool()
    tool.main(["--cfg", MVITV2_S, "--by-operator", *SMALL_OPTS])
    lines = capsys.readouterr().out.strip().splitlines()
    total = float(lines[1].split()[1])
    parts = dict(item.split("=") for item in lines[2].removeprefix("gflops_by_operator: ").split(", "))
    assert {"linear", "scaled_dot_product_attention"} <= set(parts)
    assert sum(float(v) for v in parts.values()) == pytest.approx(total, abs=2e-3)


def test_model_stats_tool_reports_config_errors_in_one_line(capsys):
    tool = _load_tool()
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--cfg", MVITV2_S, "MVIT.PATCH_2D", "True"])
    assert exit_info.value.code == 2
    message = "error: MVIT.PATCH_2D: image (2-D patch) input is not supported by this video MViT"
    assert capsys.readouterr().err.strip() == message


@pytest.mark.slow
def test_mvitv2_s_gflops_at_224_match_pyslowfast():
    model = MViT(load_config(MVITV2_S))
    assert count_gflops(model, (torch.zeros(1, 3, 16, 224, 224),)) == pytest.approx(64.46, abs=0.05)


@pytest.mark.slow
def test_model_stats_cli_on_mvitv2_s_at_256():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "model_stats.py"), "--cfg", MVITV2_S,
         "DATA.TRAIN_CROP_SIZE", "256", "DATA.TEST_CROP_SIZE", "256"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "params: 34553488"
    assert float(lines[1].split()[1]) == pytest.approx(89.97, abs=0.05)


def test_model_stats_tool_counts_the_two_stage_model_with_boxes(capsys):
    """The two-stage model needs person boxes; more boxes cost more (RoIAlign + head), never less."""
    tool = _load_tool()
    config = str(REPO / "configs" / "AVA" / "MViTv2_S_two_stage.yaml")
    gflops = []
    for boxes in ("1", "64"):
        tool.main(["--cfg", config, "--num-boxes", boxes, *SMALL_OPTS])
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[0].startswith("params: ") and lines[1].startswith("gflops: ")
        gflops.append(float(lines[1].split()[1]))
    assert 0 < gflops[0] < gflops[1]


@pytest.mark.slow
def test_videomae_vit_b_counts_the_papers_180_gflops_at_224():
    """The supplement's Table 1 counts VideoMAE ViT-B at 180 GFLOPs for a 16x224 clip."""
    from slowfast_bmvit.models.vit import ViT

    cfg = load_config(str(REPO / "configs" / "AVA" / "BMViT_ViT_B.yaml"),
                      ["MODEL.NUM_CLASSES", "400", "DATA.TRAIN_CROP_SIZE", "224", "DATA.TEST_CROP_SIZE", "224"])
    model = ViT(cfg)
    assert count_parameters(model) == 86_534_800  # VideoMAE's ViT-B with a 400-class head: 86.5 M
    assert count_gflops(model, (torch.zeros(1, 3, 16, 224, 224),)) == pytest.approx(180.0, abs=1.0)
