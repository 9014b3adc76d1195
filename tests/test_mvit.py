"""MViTv2 backbone / classifier: PySlowFast's architecture, keys and numbers; fused == explicit attention."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, load_config
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models.attention import _rel_pos_index, rel_pos_bias, resize_rel_pos
from slowfast_bmvit.models.mvit import MViT, block_specs

REPO = Path(__file__).resolve().parents[1]
MVITV2_S = str(REPO / "configs" / "Kinetics" / "MViTv2_S_16x4.yaml")


def mvitv2_s_cfg(crop: int = 224, *opts: str):
    return load_config(MVITV2_S, ["DATA.TRAIN_CROP_SIZE", str(crop), "DATA.TEST_CROP_SIZE", str(crop), *opts])


def small_cfg(*opts: str, crop: int = 224, frames: int = 4, impl: str = "sdpa"):
    """MViTv2-S with 4 blocks (q strides at blocks 1 and 3, as blocks 1 and 3 of the real one): same attention code,
    a fraction of the cost; no stochastic depth or dropout so that two models can be compared."""
    return mvitv2_s_cfg(
        crop,
        "DATA.NUM_FRAMES", str(frames),
        "MVIT.DEPTH", "4",
        "MVIT.DIM_MUL", "[[1, 2.0], [3, 2.0]]",
        "MVIT.HEAD_MUL", "[[1, 2.0], [3, 2.0]]",
        "MVIT.POOL_Q_STRIDE", "[[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1], [3, 1, 2, 2]]",
        "MVIT.DROPPATH_RATE", "0.0",
        "MODEL.DROPOUT_RATE", "0.0",
        "MVIT.ATTN_IMPL", impl,
        *opts,
    )


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops are not faster with more threads, and tests may run side by side
    yield
    torch.set_num_threads(threads)


def expected_state_dict_shapes(rows: list[int], num_classes: int = 400) -> dict[str, tuple[int, ...]]:
    """docs/PYSLOWFAST_COMPAT.md's key list for MViTv2-S, given the rel_pos_h/w rows of each block."""
    dims = [96] + [192] * 2 + [384] * 11 + [768] * 2  # dim_out per block
    shapes: dict[str, tuple[int, ...]] = {"cls_token": (1, 1, 96)}
    shapes["patch_embed.proj.weight"] = (96, 3, 3, 7, 7)
    shapes["patch_embed.proj.bias"] = (96,)
    dim_in = 96
    for i, dout in enumerate(dims):
        p = f"blocks.{i}."
        shapes[p + "norm1.weight"] = shapes[p + "norm1.bias"] = (dim_in,)
        shapes[p + "attn.rel_pos_h"] = shapes[p + "attn.rel_pos_w"] = (rows[i], 96)
        shapes[p + "attn.rel_pos_t"] = (15, 96)
        shapes[p + "attn.qkv.weight"] = (3 * dout, dim_in)
        shapes[p + "attn.qkv.bias"] = (3 * dout,)
        shapes[p + "attn.proj.weight"] = (dout, dout)
        shapes[p + "attn.proj.bias"] = (dout,)
        for x in "qkv":
            shapes[p + f"attn.pool_{x}.weight"] = (96, 1, 3, 3, 3)
            shapes[p + f"attn.norm_{x}.weight"] = shapes[p + f"attn.norm_{x}.bias"] = (96,)
        shapes[p + "norm2.weight"] = shapes[p + "norm2.bias"] = (dout,)
        shapes[p + "mlp.fc1.weight"] = (4 * dout, dout)
        shapes[p + "mlp.fc1.bias"] = (4 * dout,)
        shapes[p + "mlp.fc2.weight"] = (dout, 4 * dout)
        shapes[p + "mlp.fc2.bias"] = (dout,)
        if dim_in != dout:
            shapes[p + "proj.weight"] = (dout, dim_in)
            shapes[p + "proj.bias"] = (dout,)
        dim_in = dout
    shapes["norm.weight"] = shapes["norm.bias"] = (768,)
    shapes["head.projection.weight"] = (num_classes, 768)
    shapes["head.projection.bias"] = (num_classes,)
    return shapes


ROWS_224 = [111, 55, 55] + [27] * 12 + [13]
ROWS_256 = [127, 63, 63] + [31] * 12 + [15]


@pytest.mark.parametrize("crop, rows, params", [(224, ROWS_224, 34_537_744), (256, ROWS_256, 34_553_488)])
def test_mvitv2_s_keys_shapes_and_parameter_count_match_pyslowfast(crop, rows, params):
    model = build_model(mvitv2_s_cfg(crop, "NUM_GPUS", "0"))
    assert isinstance(model, MViT)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    expected = expected_state_dict_shapes(rows)
    assert len(expected) == 397
    assert shapes == expected
    assert sum(p.numel() for p in model.parameters()) == params


def test_block_table_matches_pyslowfast():
    specs = block_specs(mvitv2_s_cfg(224))
    heads = [1] + [2] * 2 + [4] * 11 + [8] * 2
    kv = [(1, 8, 8)] + [(1, 4, 4)] * 2 + [(1, 2, 2)] * 11 + [(1, 1, 1)] * 2
    assert [s.num_heads for s in specs] == heads
    assert [s.stride_kv for s in specs] == kv
    assert [i for i, s in enumerate(specs) if s.stride_q == (1, 2, 2)] == [1, 3, 14]
    assert all(s.kernel_q == s.kernel_kv == (3, 3, 3) for s in specs)
    assert all(s.dim_out // s.num_heads == 96 for s in specs)
    assert [round(s.drop_path, 6) for s in specs][-1] == 0.2


def test_initialisation_follows_upstream():
    model = MViT(small_cfg())
    norm, linear = model.blocks[1].norm1, model.blocks[1].attn.qkv
    assert torch.all(norm.bias == 0.02) and torch.all(norm.weight == 1.0)
    assert torch.all(linear.bias == 0.02)
    assert 0.015 < linear.weight.std().item() < 0.025
    assert 0.01 < model.blocks[0].attn.rel_pos_h.std().item() < 0.03
    assert model.blocks[0].norm1.eps == 1e-6


def test_bmvit_backbone_setting_keeps_16x16_output_at_256():
    cfg = mvitv2_s_cfg(256, "MVIT.REMOVE_Q_POOL_BLOCKS", "[14]")
    backbone = MViT(cfg, with_head=False)
    assert not any(name.startswith("head.") for name in backbone.state_dict())
    assert backbone.out_dim == 768
    assert backbone.output_grid((16, 256, 256)) == (8, 16, 16)
    specs = block_specs(cfg)
    assert specs[14].stride_q == (1, 1, 1) and backbone.blocks[14].pool_skip is None
    # the k/v strides stay those of the blocks before, as if POOL_Q_STRIDE listed [14, 1, 1, 1]
    assert specs[14].stride_kv == specs[15].stride_kv == (1, 2, 2)
    # same tensors as the classifier (minus the head), so the K400 checkpoint fills the backbone
    # block 15 now attends from 16x16 queries: its spatial tables grow from 15 to 31 rows
    expected = expected_state_dict_shapes(ROWS_256[:15] + [31])
    assert {k: tuple(v.shape) for k, v in backbone.state_dict().items()} == {
        k: v for k, v in expected.items() if not k.startswith("head.")
    }


def test_forward_features_and_output_grid_on_odd_inputs():
    model = MViT(small_cfg("MVIT.REMOVE_Q_POOL_BLOCKS", "[3]"), with_head=False).eval()
    for thw in [(4, 64, 64), (6, 72, 100), (2, 36, 52)]:
        with torch.no_grad():
            tokens, cls = model.forward_features(torch.randn(2, 3, *thw))
        assert tokens.shape == (2, model.out_dim, *model.output_grid(thw))
        assert cls.shape == (2, model.out_dim)
    # the final LayerNorm is applied: per-token mean of (x - bias) / weight is ~0
    normed = (tokens - model.norm.bias[:, None, None, None]) / model.norm.weight[:, None, None, None]
    assert normed.mean(dim=1).abs().max() < 1e-4


def test_classifier_accepts_pathway_list_and_applies_softmax_only_in_eval():
    model = MViT(small_cfg())
    x = torch.randn(2, 3, 4, 64, 64)
    model.train()
    logits = model([x])
    assert logits.shape == (2, 400)
    assert not torch.allclose(logits.sum(1), torch.ones(2))
    model.eval()
    with torch.no_grad():
        probs = model(x)
        assert torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)
        assert torch.allclose(probs, model.head.projection(model.norm(model._tokens(x)[0])[:, 0]).softmax(1))
    with pytest.raises(ValueError, match="one pathway"):
        model([x, x])
    with pytest.raises(RuntimeError, match="with_head=False"):
        MViT(small_cfg(), with_head=False)(x)


def naive_rel_pos_bias(q, q_thw, k_thw, tables):
    """The documented definition, loop by loop: dist = i*q_ratio - j*k_ratio + (k-1)*k_ratio per axis."""
    batch, heads, _, c = q.shape
    qg = q.reshape(batch, heads, *q_thw, c)
    out = torch.zeros(batch, heads, *q_thw, *k_thw, dtype=q.dtype)
    per_axis = []
    for axis, table in enumerate(tables):
        qs, ks = q_thw[axis], k_thw[axis]
        table = resize_rel_pos(table, 2 * max(qs, ks) - 1)
        qr, kr = max(ks / qs, 1.0), max(qs / ks, 1.0)
        rows = torch.empty(qs, ks, c)
        for i in range(qs):
            for j in range(ks):
                rows[i, j] = table[int(i * qr - j * kr + (ks - 1) * kr)]
        per_axis.append(rows)
    for t in range(q_thw[0]):
        for y in range(q_thw[1]):
            for x in range(q_thw[2]):
                vec = qg[:, :, t, y, x]  # [B, heads, c]
                term_t = vec @ per_axis[0][t].T  # [B, heads, kt]
                term_h = vec @ per_axis[1][y].T
                term_w = vec @ per_axis[2][x].T
                out[:, :, t, y, x] = (
                    term_t[..., :, None, None] + term_h[..., None, :, None] + term_w[..., None, None, :]
                )
    return out


def test_rel_pos_bias_matches_the_documented_definition():
    torch.manual_seed(0)
    q_thw, k_thw = (2, 6, 4), (2, 3, 4)  # h: query finer than key (ratio 2); w: equal
    q = torch.randn(1, 2, math.prod(q_thw), 8)
    tables = [torch.randn(3, 8), torch.randn(9, 8), torch.randn(5, 8)]  # h table 9 rows -> interpolated to 11
    got = rel_pos_bias(q, q_thw, k_thw, *tables)
    torch.testing.assert_close(got, naive_rel_pos_bias(q, q_thw, k_thw, tables), rtol=1e-5, atol=1e-5)


def test_rel_pos_index_and_resize():
    # q 7, k 14 (block 14 of MViTv2-S at 224): query i sits at 2i on the key grid; table of 27 rows.
    index = _rel_pos_index(7, 14, torch.device("cpu"))
    assert index[0, 0].item() == 13 and index[6, 13].item() == 12 and index.max().item() <= 26
    assert index[3, 6].item() == 2 * 3 - 6 + 13
    table = torch.arange(5.0)[:, None].repeat(1, 2)
    expected = F.interpolate(torch.arange(5.0)[None, None], 9, mode="linear", align_corners=False)[0, 0]
    torch.testing.assert_close(resize_rel_pos(table, 9)[:, 0], expected)


def _compare_impls(cfg_sdpa, cfg_explicit, shape):
    torch.manual_seed(0)
    sdpa = MViT(cfg_sdpa)
    explicit = MViT(cfg_explicit)
    explicit.load_state_dict(sdpa.state_dict())
    x = torch.randn(*shape)
    out_s, out_e = sdpa(x), explicit(x)
    assert (out_s - out_e).abs().max().item() < 1e-4
    out_s.square().sum().backward()
    out_e.square().sum().backward()
    scale = max(p.grad.abs().max().item() for p in explicit.parameters())
    for (name, p_s), p_e in zip(sdpa.named_parameters(), explicit.parameters()):
        torch.testing.assert_close(p_s.grad, p_e.grad, rtol=1e-3, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("impl", ["sdpa", "folded"])
@pytest.mark.parametrize(
    "crop, shape", [(224, (1, 3, 4, 224, 224)), (256, (1, 3, 4, 256, 256)), (224, (2, 3, 8, 96, 160))]
)
def test_fused_attention_equals_explicit_with_gradients(impl, crop, shape):
    _compare_impls(small_cfg(crop=crop, impl=impl), small_cfg(crop=crop, impl="explicit"), shape)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["sdpa", "folded"])
def test_fused_attention_equals_explicit_on_full_mvitv2_s_at_224(impl):
    torch.manual_seed(0)
    fused = MViT(mvitv2_s_cfg(224, "MVIT.ATTN_IMPL", impl)).eval()
    explicit = MViT(mvitv2_s_cfg(224, "MVIT.ATTN_IMPL", "explicit")).eval()
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        assert (fused.forward_features(x)[0] - explicit.forward_features(x)[0]).abs().max().item() < 1e-4


@pytest.mark.parametrize("impl", ["folded", "sdpa", "explicit"])
def test_bf16_autocast_is_finite_and_close(impl):
    torch.manual_seed(0)
    model = MViT(small_cfg(impl=impl)).eval()
    x = torch.randn(1, 3, 4, 96, 96)
    with torch.no_grad():
        reference, _ = model.forward_features(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = model.forward_features(x)
    assert torch.isfinite(low).all()
    assert (low.float() - reference).abs().mean() < 0.05 * reference.abs().mean()


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = MViT(small_cfg())
    ckpt = MViT(small_cfg("MODEL.ACT_CHECKPOINT", "True"))
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 4, 32, 32)
    plain(x).sum().backward()
    ckpt(x).sum().backward()
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7)


def test_layer_id_and_no_weight_decay():
    model = MViT(small_cfg("MVIT.ZERO_DECAY_POS_CLS", "True"))
    assert model.layer_id("cls_token") == 0
    assert model.layer_id("patch_embed.proj.weight") == 0
    assert model.layer_id("blocks.2.attn.qkv.weight") == 3
    assert model.layer_id("norm.weight") == model.layer_id("head.projection.bias") == 5
    names = model.no_weight_decay()
    assert "cls_token" in names and "blocks.3.attn.rel_pos_t" in names and "blocks.0.attn.rel_pos_h" in names
    assert len(names) == 1 + 3 * 4
    assert names <= {n for n, _ in model.named_parameters()}
    assert MViT(small_cfg("MVIT.ZERO_DECAY_POS_CLS", "False")).no_weight_decay() == set()


@pytest.mark.parametrize(
    "opts, keys",
    [
        (("MVIT.USE_ABS_POS", "True", "MVIT.REL_POS_SPATIAL", "False"), {"pos_embed"}),
        (("MVIT.CLS_EMBED_ON", "False", "MVIT.DIM_MUL_IN_ATT", "False"), {"blocks.0.proj.weight"}),
    ],
)
def test_variants_build_and_run_on_another_grid(opts, keys):
    model = MViT(assert_and_infer_cfg(small_cfg(*opts, crop=64)))
    assert keys <= set(model.state_dict())
    tokens, cls = model.forward_features(torch.randn(1, 3, 8, 96, 80))  # not the configured 4x64x64
    assert tokens.shape[2:] == model.output_grid((8, 96, 80))
    assert (cls is None) == ("MVIT.CLS_EMBED_ON" in opts)
    assert torch.isfinite(tokens).all()


@pytest.mark.parametrize(
    "key, value",
    [
        ("MVIT.SEPARATE_QKV", "True"),
        ("MVIT.MODE", "max"),
        ("MVIT.MODE", "avg"),
        ("MVIT.POOL_FIRST", "True"),
        ("MVIT.SEP_POS_EMBED", "True"),
        ("MVIT.NORM_STEM", "True"),
        ("MVIT.LAYER_SCALE_INIT_VALUE", "0.1"),
        ("MVIT.USE_MEAN_POOLING", "True"),
        ("MVIT.NORM", "batchnorm"),
    ],
)
def test_upstream_variants_are_refused_at_config_time(key, value):
    """Upstream MViT variants no shipped config uses are not built: one line naming the key says so."""
    with pytest.raises(ConfigError, match=f"^{key}: .* is not supported by slowfast_bmvit") as error:
        assert_and_infer_cfg(small_cfg(key, value))
    assert "\n" not in str(error.value)


def test_unsupported_options_raise_config_errors():
    with pytest.raises(ConfigError, match="MVIT.PATCH_2D"):
        MViT(small_cfg("MVIT.PATCH_2D", "True"))
    with pytest.raises(ConfigError, match="MVIT.USE_FIXED_SINCOS_POS"):
        MViT(small_cfg("MVIT.USE_FIXED_SINCOS_POS", "True"))
    with pytest.raises(ConfigError, match="MODEL.HEAD_ACT"):
        assert_and_infer_cfg(small_cfg("MODEL.HEAD_ACT", "relu"))


def test_conv_stem_geometry_keys_and_batchnorm():
    """MVIT.CONV_STEM_CHANNELS: each stem layer halves H and W; output_grid and the rel-pos grid follow it."""
    # stem [8, 16] (H/W stride 4) + patch stride 2x2x2 = the 2x8x8 of a plain 3x7x7/2x8x8 patch embedding
    opts = ("MVIT.CONV_STEM_CHANNELS", "[8, 16]", "MVIT.PATCH_KERNEL", "[3, 3, 3]", "MVIT.PATCH_STRIDE", "[2, 2, 2]",
            "MVIT.PATCH_PADDING", "[1, 1, 1]")
    model = MViT(small_cfg(*opts, crop=64, frames=8), with_head=False)
    assert model.patch_dims == (4, 8, 8)  # 8 frames / 2, 64 px / 8
    keys = set(model.state_dict())
    assert {"patch_embed.stem.0.weight", "patch_embed.stem.1.running_mean", "patch_embed.stem.3.weight",
            "patch_embed.norm.running_var", "patch_embed.proj.weight"} <= keys
    assert model.patch_embed.proj.weight.shape == (96, 16, 3, 3, 3)
    plain = MViT(small_cfg(crop=64, frames=8), with_head=False)
    assert not any(k.startswith(("patch_embed.stem", "patch_embed.norm")) for k in plain.state_dict())
    model.eval()
    for thw in [(8, 64, 64), (6, 97, 83), (4, 33, 50)]:
        with torch.no_grad():
            tokens, _ = model.forward_features(torch.randn(1, 3, *thw))
        assert tokens.shape[2:] == model.output_grid(thw), thw
    # (97 -> 49 -> 25 -> 13 after the stem and the stride-2 projection, then the q pooling of blocks 1 and 3)
    assert model.output_grid((6, 97, 83))[1:] == (4, 3)
    # train mode normalises the patch projection over the batch: per-channel mean ~0 before the blocks
    model.train()
    embedded, _ = model.patch_embed(torch.randn(2, 3, 8, 64, 64) * 3 + 1)
    assert embedded.mean(dim=(0, 1)).abs().max() < 1e-4


def test_conv_stem_widths_are_validated():
    with pytest.raises(ConfigError, match="MVIT.CONV_STEM_CHANNELS"):
        assert_and_infer_cfg(small_cfg("MVIT.CONV_STEM_CHANNELS", "[16, 0]"))
