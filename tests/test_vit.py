"""The VideoMAE ViT backbone: equal to HuggingFace's independent VideoMAE, positions at other sizes, interfaces."""

from __future__ import annotations

import pytest
import torch

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, get_cfg
from slowfast_bmvit.models.common import resize_position_table
from slowfast_bmvit.models.vit import ViT, sinusoid_position_table


def vit_cfg(depth: int = 12, frames: int = 16, crop: int = 224, *opts):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.VIT.DEPTH = depth
    cfg.VIT.DROPPATH_RATE = 0.0
    cfg.MODEL.DROPOUT_RATE = 0.0
    cfg.MODEL.NUM_CLASSES = 10
    cfg.DATA.NUM_FRAMES = frames
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = crop
    cfg.merge_from_list(list(opts))
    return cfg


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Random values in every parameter (biases, q_bias / v_bias and LayerNorms included), not the init's zeros/ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_norm_weight = param.ndim == 1 and "norm" in name and name.endswith("weight")
            param.copy_(1.0 + 0.1 * noise if is_norm_weight else 0.05 * noise)


def huggingface_state(ours: dict[str, torch.Tensor], depth: int, head: bool) -> dict[str, torch.Tensor]:
    """Our ViT state_dict under HuggingFace VideoMAE's names, key by key (the fused qkv split into q, k, v)."""
    prefix = "videomae." if head else ""
    hf = {
        f"{prefix}embeddings.patch_embeddings.projection.weight": ours["patch_embed.proj.weight"],
        f"{prefix}embeddings.patch_embeddings.projection.bias": ours["patch_embed.proj.bias"],
    }
    for i in range(depth):
        block, layer = f"blocks.{i}.", f"{prefix}encoder.layer.{i}."
        q, k, v = ours[block + "attn.qkv.weight"].chunk(3)
        hf.update({
            layer + "attention.attention.query.weight": q,
            layer + "attention.attention.key.weight": k,
            layer + "attention.attention.value.weight": v,
            layer + "attention.attention.q_bias": ours[block + "attn.q_bias"],
            layer + "attention.attention.v_bias": ours[block + "attn.v_bias"],
            layer + "attention.output.dense.weight": ours[block + "attn.proj.weight"],
            layer + "attention.output.dense.bias": ours[block + "attn.proj.bias"],
            layer + "layernorm_before.weight": ours[block + "norm1.weight"],
            layer + "layernorm_before.bias": ours[block + "norm1.bias"],
            layer + "layernorm_after.weight": ours[block + "norm2.weight"],
            layer + "layernorm_after.bias": ours[block + "norm2.bias"],
            layer + "intermediate.dense.weight": ours[block + "mlp.fc1.weight"],
            layer + "intermediate.dense.bias": ours[block + "mlp.fc1.bias"],
            layer + "output.dense.weight": ours[block + "mlp.fc2.weight"],
            layer + "output.dense.bias": ours[block + "mlp.fc2.bias"],
        })
    if head:  # VideoMAE's fine-tuned classifier: mean pooling -> fc_norm -> classifier
        hf.update({"fc_norm.weight": ours["norm.weight"], "fc_norm.bias": ours["norm.bias"],
                   "classifier.weight": ours["head.weight"], "classifier.bias": ours["head.bias"]})
    else:  # use_mean_pooling False: the final LayerNorm on every token
        hf.update({"layernorm.weight": ours["norm.weight"], "layernorm.bias": ours["norm.bias"]})
    return hf


def compare_with_huggingface(depth: int) -> None:
    transformers = pytest.importorskip(
        "transformers", reason="HuggingFace transformers (test-only, requirements-dev.txt) is not installed"
    )
    torch.manual_seed(0)
    ours = ViT(vit_cfg(depth)).eval()
    randomise(ours)
    state = ours.state_dict()
    common = dict(image_size=224, patch_size=16, num_channels=3, num_frames=16, tubelet_size=2, hidden_size=768,
                  num_hidden_layers=depth, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                  layer_norm_eps=1e-6, qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                  attn_implementation="eager")
    encoder = transformers.VideoMAEModel(transformers.VideoMAEConfig(use_mean_pooling=False, **common)).eval()
    encoder.load_state_dict(huggingface_state(state, depth, head=False), strict=True)
    classifier = transformers.VideoMAEForVideoClassification(
        transformers.VideoMAEConfig(use_mean_pooling=True, num_labels=10, **common)).eval()
    classifier.load_state_dict(huggingface_state(state, depth, head=True), strict=True)

    clip = torch.randn(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens, cls = ours.forward_features(clip)
        reference = encoder(pixel_values=clip.transpose(1, 2)).last_hidden_state  # HF reads [B, T, C, H, W]
        ours.head_act = torch.nn.Identity()
        logits = ours(clip)
        reference_logits = classifier(pixel_values=clip.transpose(1, 2)).logits
    assert cls is None and tokens.shape == (1, 768, 8, 14, 14)
    assert reference.abs().mean() > 0.1  # a real signal, not all zeros
    torch.testing.assert_close(tokens.flatten(2).transpose(1, 2), reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, reference_logits, rtol=0, atol=1e-5)


def test_tokens_and_logits_equal_huggingface_videomae_reduced_depth():
    compare_with_huggingface(depth=2)


@pytest.mark.slow
def test_tokens_and_logits_equal_huggingface_videomae_vit_b():
    compare_with_huggingface(depth=12)


def test_sinusoid_table_is_videomae_formula():
    table = sinusoid_position_table(1568, 768)
    position, channel = 1000, 301  # odd channel: cosine of position / 10000^(2 * 150 / 768)
    assert table.shape == (1568, 768) and table.dtype == torch.float32
    assert table[position, channel].item() == pytest.approx(float(torch.cos(torch.tensor(1000 / 10000 ** (300 / 768),
                                                                                     dtype=torch.float64))), abs=1e-7)
    assert table[0, 0::2].abs().max() == 0 and torch.all(table[0, 1::2] == 1)


def test_resized_table_keeps_each_token_at_its_place_in_the_frame():
    """8x14x14 -> 8x18x18: the nearest trained position of every new token lies in its own time slice, less than
    one cell from where the token's centre falls on the 14x14 grid; a 1-D table regenerated for 2592 tokens
    (VideoMAE's own behaviour at another size) puts nearly every token elsewhere."""
    source, target = (8, 14, 14), (8, 18, 18)
    table = sinusoid_position_table(8 * 14 * 14, 768)
    t, h, w = (axis.flatten() for axis in torch.meshgrid(*(torch.arange(n) for n in target), indexing="ij"))
    # centre of cell i of 18 on the 14-cell axis, in cell units (cell j has its centre at j)
    centre_h, centre_w = (h + 0.5) * 14 / 18 - 0.5, (w + 0.5) * 14 / 18 - 0.5

    def in_place(rows: torch.Tensor) -> torch.Tensor:
        nearest = torch.cdist(rows, table).argmin(dim=1)
        same_slice = nearest // 196 == t
        return same_slice & ((nearest % 196 // 14 - centre_h).abs() < 1) & ((nearest % 14 - centre_w).abs() < 1)

    resized = resize_position_table(table, source, target)
    assert resized.shape == (2592, 768)
    assert bool(in_place(resized).all())
    assert in_place(sinusoid_position_table(8 * 18 * 18, 768)).float().mean() < 0.05
    # temporal resizing only moves along time
    assert torch.equal(resize_position_table(table, source, source), table)
    half = resize_position_table(table, source, (4, 14, 14)).reshape(4, 196, 768)
    torch.testing.assert_close(half[0], (table[:196] + table[196:392]) / 2)


def test_other_input_size_uses_the_resized_table():
    torch.manual_seed(0)
    model = ViT(vit_cfg(1, 4, 32, "VIT.PATCH_SIZE", [2, 8, 8], "VIT.EMBED_DIM", 24, "VIT.NUM_HEADS", 2,
                        "VIT.POS_EMBED_GRID", [2, 4, 4]), with_head=False).eval()
    clip = torch.randn(1, 3, 4, 48, 48)
    tokens, _ = model.forward_features(clip)
    assert tokens.shape == (1, 24, 2, 6, 6) and model.output_grid((4, 48, 48)) == (2, 6, 6)
    with torch.no_grad():  # the same network with the resized table made by hand
        x, grid = model.patch_embed(clip)
        x = x + resize_position_table(sinusoid_position_table(32, 24), (2, 4, 4), (2, 6, 6))[None]
        x = model.norm(model.blocks[0](x))
    torch.testing.assert_close(tokens.flatten(2).transpose(1, 2), x)


def test_learned_positions_are_a_parameter_without_weight_decay():
    model = ViT(vit_cfg(1, 4, 32, "VIT.PATCH_SIZE", [2, 8, 8], "VIT.EMBED_DIM", 24, "VIT.NUM_HEADS", 2,
                        "VIT.POS_EMBED", "learned"))
    assert model.pos_embed.shape == (1, 2 * 4 * 4, 24) and model.pos_embed.requires_grad
    assert model.no_weight_decay() == {"pos_embed"} and "pos_embed" in model.state_dict()
    fixed = ViT(vit_cfg(1, 4, 32, "VIT.PATCH_SIZE", [2, 8, 8], "VIT.EMBED_DIM", 24, "VIT.NUM_HEADS", 2))
    assert "pos_embed" not in fixed.state_dict() and fixed.no_weight_decay() == set()


def test_conv_stem_and_activation_checkpointing_keep_the_numbers():
    cfg = vit_cfg(2, 4, 32, "VIT.PATCH_SIZE", [2, 8, 8], "VIT.EMBED_DIM", 24, "VIT.NUM_HEADS", 2,
                  "VIT.CONV_STEM_CHANNELS", [8])
    torch.manual_seed(0)
    model = ViT(cfg, with_head=False)
    assert model.output_grid((4, 32, 32)) == (2, 2, 2)  # stride 2x16x16: stem halves H, W
    clip = torch.randn(2, 3, 4, 32, 32)
    plain = model.forward_features(clip)[0]
    plain.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.act_checkpoint = True
    checkpointed = model.forward_features(clip)[0]
    checkpointed.sum().backward()
    torch.testing.assert_close(checkpointed, plain)
    for expected, param in zip(grads, model.parameters()):
        torch.testing.assert_close(param.grad, expected)


@pytest.mark.parametrize(
    "opts, key",
    [
        (["VIT.NUM_HEADS", 5], "VIT.NUM_HEADS"),
        (["VIT.PATCH_SIZE", [2, 16]], "VIT.PATCH_SIZE"),
        (["VIT.POS_EMBED", "rope"], "VIT.POS_EMBED"),
        (["VIT.POS_EMBED_GRID", [8, 14]], "VIT.POS_EMBED_GRID"),
        (["VIT.CONV_STEM_CHANNELS", [0]], "VIT.CONV_STEM_CHANNELS"),
        (["VIT.DROPPATH_RATE", 1.0], "VIT.DROPPATH_RATE"),
    ],
)
def test_bad_vit_keys_are_refused_by_name(opts, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ViT(assert_and_infer_cfg(vit_cfg(1, 16, 224, *opts)))
