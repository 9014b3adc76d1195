"""Optimizer parameter groups: weight decay, layer decay, head LR multiplier, frozen parameters, set_lr."""

import logging

import pytest
import torch
from torch import nn

from slowfast_bmvit.config import get_cfg
from slowfast_bmvit.engine.optimizer import construct_optimizer, get_param_groups, set_lr


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 4)


class TinyBackbone(nn.Module):
    """MViT-shaped names: cls_token, patch_embed, blocks.{0,1}, norm."""

    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.patch_embed = nn.Linear(3, 4)
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.norm = nn.LayerNorm(4)

    def no_weight_decay(self):
        return {"cls_token"}


class TinyDetector(nn.Module):
    """BMViT-shaped: `backbone.*` plus heads; one frozen layer."""

    def __init__(self):
        super().__init__()
        self.backbone = TinyBackbone()
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def no_weight_decay(self):
        return {"backbone." + name for name in self.backbone.no_weight_decay()}


def _cfg(**solver):
    cfg = get_cfg()
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    cfg.SOLVER.BASE_LR = 0.1
    for key, value in solver.items():
        cfg.SOLVER[key] = value
    return cfg


def _by_name(groups):
    return {name: group for group in groups for name in group["param_names"]}


def test_zero_wd_1d_params_and_no_weight_decay_names():
    model = TinyDetector()
    groups = get_param_groups(model, _cfg(ZERO_WD_1D_PARAM=True))
    membership = _by_name(groups)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(membership) == trainable  # frozen.* absent, everything else exactly once
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    zero = {n for n, g in membership.items() if g["weight_decay"] == 0.0}
    assert zero == {
        "backbone.cls_token",
        "backbone.patch_embed.bias",
        "backbone.blocks.0.norm.weight",
        "backbone.blocks.0.norm.bias",
        "backbone.blocks.0.fc.bias",
        "backbone.blocks.1.norm.weight",
        "backbone.blocks.1.norm.bias",
        "backbone.blocks.1.fc.bias",
        "backbone.norm.weight",
        "backbone.norm.bias",
        "head.bias",
    }
    assert all(g["weight_decay"] == 0.05 for n, g in membership.items() if n not in zero)


def test_without_zero_wd_1d_only_listed_names_skip_decay():
    membership = _by_name(get_param_groups(TinyDetector(), _cfg(ZERO_WD_1D_PARAM=False)))
    assert {n for n, g in membership.items() if g["weight_decay"] == 0.0} == {"backbone.cls_token"}


def test_bare_no_weight_decay_names_match_whole_components_only():
    class Model(TinyBackbone):
        def __init__(self):
            super().__init__()
            self.cls_token_proj = nn.Linear(4, 4)

        def no_weight_decay(self):
            return {"cls_token", "norm"}  # "norm" as upstream-style bare module/parameter name

    membership = _by_name(get_param_groups(Model(), _cfg()))
    zero = {n for n, g in membership.items() if g["weight_decay"] == 0.0}
    assert "cls_token" in zero and "blocks.1.norm.weight" in zero and "norm.bias" in zero
    assert "cls_token_proj.weight" not in zero


def test_layer_decay_follows_pyslowfast_layer_ids():
    # depth 2: cls/patch_embed -> layer 0, blocks.i -> i + 1, the rest (norm, heads) -> 3 = top.
    membership = _by_name(get_param_groups(TinyDetector(), _cfg(LAYER_DECAY=0.5)))
    assert membership["backbone.cls_token"]["lr_scale"] == pytest.approx(0.125)
    assert membership["backbone.patch_embed.weight"]["lr_scale"] == pytest.approx(0.125)
    assert membership["backbone.blocks.0.fc.weight"]["lr_scale"] == pytest.approx(0.25)
    assert membership["backbone.blocks.1.norm.bias"]["lr_scale"] == pytest.approx(0.5)
    assert membership["backbone.norm.weight"]["lr_scale"] == pytest.approx(1.0)
    assert membership["head.weight"]["lr_scale"] == pytest.approx(1.0)


def test_layer_decay_uses_the_backbone_layer_id_helper():
    class Backbone(TinyBackbone):
        def layer_id(self, name):  # a model-specific rule: everything in block 1 counts as layer 1
            return 0 if name.startswith(("cls_token", "patch_embed")) else 1 if name.startswith("blocks") else 2

    model = TinyDetector()
    model.backbone = Backbone()
    membership = _by_name(get_param_groups(model, _cfg(LAYER_DECAY=0.5)))
    # top = max(known ids 2, highest block id 2 + 1) = 3
    assert membership["backbone.blocks.0.fc.weight"]["lr_scale"] == pytest.approx(0.25)
    assert membership["backbone.blocks.1.fc.weight"]["lr_scale"] == pytest.approx(0.25)
    assert membership["backbone.norm.weight"]["lr_scale"] == pytest.approx(0.5)
    assert membership["head.weight"]["lr_scale"] == pytest.approx(1.0)


def test_head_lr_mult_scales_non_backbone_params(caplog):
    membership = _by_name(get_param_groups(TinyDetector(), _cfg(HEAD_LR_MULT=10.0, LAYER_DECAY=0.5)))
    assert membership["head.weight"]["lr_scale"] == pytest.approx(10.0)
    assert membership["backbone.norm.weight"]["lr_scale"] == pytest.approx(1.0)
    assert membership["backbone.blocks.1.fc.weight"]["lr_scale"] == pytest.approx(0.5)
    with caplog.at_level(logging.WARNING):
        plain = _by_name(get_param_groups(TinyBackbone(), _cfg(HEAD_LR_MULT=10.0)))
    assert {g["lr_scale"] for g in plain.values()} == {1.0}
    assert "HEAD_LR_MULT" in caplog.text


def test_wrapped_model_names_have_no_module_prefix():
    membership = _by_name(get_param_groups(nn.DataParallel(TinyDetector()), _cfg(ZERO_WD_1D_PARAM=True)))
    assert "backbone.cls_token" in membership and membership["backbone.cls_token"]["weight_decay"] == 0.0
    assert not any(name.startswith("module.") for name in membership)


def test_set_lr_respects_lr_scale_and_initial_lrs():
    optimizer = construct_optimizer(TinyDetector(), _cfg(LAYER_DECAY=0.5, HEAD_LR_MULT=2.0))
    assert {round(g["lr"] / g["lr_scale"], 12) for g in optimizer.param_groups} == {0.1}
    set_lr(optimizer, 0.02)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(0.02 * group["lr_scale"])
    assert sorted({g["lr_scale"] for g in optimizer.param_groups}) == pytest.approx([0.125, 0.25, 0.5, 1.0, 2.0])


def test_optimizer_types_and_hyper_parameters():
    sgd = construct_optimizer(TinyDetector(), _cfg(OPTIMIZING_METHOD="sgd", MOMENTUM=0.8, NESTEROV=True))
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.8 and sgd.param_groups[0]["nesterov"]
    adamw = construct_optimizer(TinyDetector(), _cfg(OPTIMIZING_METHOD="adamw", BETAS=(0.9, 0.95)))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["betas"] == (0.9, 0.95)
    adam = construct_optimizer(TinyDetector(), _cfg(OPTIMIZING_METHOD="adam", ZERO_WD_1D_PARAM=True))
    assert isinstance(adam, torch.optim.Adam) and not isinstance(adam, torch.optim.AdamW)
    assert sorted(g["weight_decay"] for g in adam.param_groups) == [0.0, 0.05]


def test_frozen_parameters_do_not_change_after_a_step():
    model = TinyDetector()
    optimizer = construct_optimizer(model, _cfg())
    frozen_before = model.frozen.weight.detach().clone()
    head_before = model.head.weight.detach().clone()
    model.head(model.frozen(torch.randn(3, 4))).sum().backward()
    optimizer.step()
    assert torch.equal(model.frozen.weight, frozen_before)
    assert not torch.equal(model.head.weight, head_before)


def test_layer_decay_on_a_vit_backbone_follows_videomae():
    """BMViT on a 3-block ViT: VideoMAE's fine-tuning rule (its get_num_layer_for_vit and scales
    decay ** (depth + 1 - layer)): patch embedding layer 0, blocks.i layer i + 1, everything else (final norm,
    heads, the cross-attention class head) layer depth + 1 at the full rate."""
    from slowfast_bmvit.models.bmvit import BMViT

    cfg = _cfg(LAYER_DECAY=0.75, ZERO_WD_1D_PARAM=True)
    cfg.NUM_GPUS = 0
    cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE = 4, 32
    cfg.VIT.DEPTH, cfg.VIT.EMBED_DIM, cfg.VIT.NUM_HEADS, cfg.VIT.PATCH_SIZE = 3, 16, 2, [2, 8, 8]
    cfg.VIT.POS_EMBED = "learned"
    cfg.BMVIT.BACKBONE, cfg.BMVIT.PROJ_DIM, cfg.BMVIT.TOKEN_ARRANGEMENT = "ViT", 0, "center"
    cfg.BMVIT.CLASS_HEAD, cfg.BMVIT.CROSS_ATTENTION_HEADS = "cross_attention", 2
    model = BMViT(cfg)

    def videomae_layer(name: str, num_layers: int = 3 + 2) -> int:
        name = name.removeprefix("backbone.") if name.startswith("backbone.") else "head." + name
        if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks"):
            return int(name.split(".")[1]) + 1
        return num_layers - 1

    by_name = _by_name(get_param_groups(model, cfg))
    assert set(by_name) == {name for name, _ in model.named_parameters()}
    for name, group in by_name.items():
        assert group["lr_scale"] == pytest.approx(0.75 ** (3 + 1 - videomae_layer(name))), name
    assert by_name["backbone.pos_embed"]["weight_decay"] == 0.0  # no_weight_decay()
    assert by_name["backbone.blocks.0.attn.q_bias"]["weight_decay"] == 0.0  # 1-D
    assert by_name["heads.class_attention.q.weight"]["lr_scale"] == 1.0
