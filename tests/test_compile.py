"""MODEL.COMPILE: torch.compile applied in place, so checkpoints and parameter names do not change."""

import pytest
import torch

from slowfast_bmvit.config import load_config
from slowfast_bmvit.models import build_model

TINY = ["NUM_GPUS", "0", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "DATA.TEST_CROP_SIZE", "32",
        "MVIT.DEPTH", "2", "MVIT.EMBED_DIM", "16", "MVIT.CONV_STEM_CHANNELS", "[]", "MVIT.PATCH_KERNEL", "[3, 7, 7]",
        "MVIT.PATCH_STRIDE", "[2, 4, 4]", "MVIT.PATCH_PADDING", "[1, 3, 3]", "MVIT.DIM_MUL", "[[1, 2.0]]",
        "MVIT.HEAD_MUL", "[[1, 2.0]]", "MVIT.POOL_Q_STRIDE", "[[1, 1, 2, 2]]", "MVIT.POOL_KV_STRIDE_ADAPTIVE",
        "[1, 2, 2]", "BMVIT.PROJ_DIM", "16", "MVIT.ATTN_IMPL", "folded"]


def _models():
    torch.manual_seed(0)
    eager = build_model(load_config("configs/SYNTH/BMViT_demo.yaml", TINY))
    compiled = build_model(load_config("configs/SYNTH/BMViT_demo.yaml", TINY + ["MODEL.COMPILE", "True"]))
    compiled.load_state_dict(eager.state_dict())
    return eager, compiled


def test_compile_is_in_place_and_keeps_the_checkpoint_layout():
    eager, compiled = _models()
    assert type(compiled) is type(eager) and compiled._compiled_call_impl is not None
    assert eager._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    assert compiled.backbone is not None


@pytest.mark.slow
def test_compiled_forward_equals_eager():
    eager, compiled = _models()
    eager.eval(), compiled.eval()
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected, got = eager(clip), compiled(clip)
    for key in ("pred_boxes", "pred_actor", "pred_classes"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
