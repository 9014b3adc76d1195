from pathlib import Path

import pytest
import torch
from torch import nn

from slowfast_bmvit.config import ConfigError, assert_and_infer_cfg, get_cfg, load_config
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models.bmvit import BMViT
from slowfast_bmvit.models.box_ops import box_cxcywh_to_xyxy, paired_generalized_box_iou
from slowfast_bmvit.models.criterion import build_criterion
from slowfast_bmvit.models.heads import CrossAttentionBlock
from slowfast_bmvit.models.flip_average import flip_averaged_outputs, mirror_triplets
from slowfast_bmvit.models.mvit import MViT
from slowfast_bmvit.models.postprocess import postprocess_detections
from slowfast_bmvit.models.token_selection import ARRANGEMENTS, reference_points

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class FixedTokens(nn.Module):
    """Stand-in backbone that returns a settable grid [B, C, T, H, W], whatever the input."""

    out_dim = 6

    def __init__(self, grid: torch.Tensor):
        super().__init__()
        self.grid = nn.Parameter(grid)

    def forward_features(self, x):
        return self.grid, None

    def output_grid(self, thw):
        return tuple(self.grid.shape[2:])

    def no_weight_decay(self):
        return {"grid"}


def _cfg(**bmvit):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.NUM_CLASSES = 5
    cfg.BMVIT.PROJ_DIM = 16
    for key, value in bmvit.items():
        cfg.BMVIT[key] = value
    return cfg


def tiny_mvit_cfg(crop=32, arrangement="center_tpool"):
    """A 2-block MViTv2 (conv pooling, rel-pos, residual pooling) giving a 4 x crop/4 x crop/4 grid for 8 frames."""
    cfg = _cfg(TOKEN_ARRANGEMENT=arrangement)
    cfg.MODEL.NUM_CLASSES = 4
    cfg.BMVIT.PROJ_DIM = 64
    cfg.DATA.NUM_FRAMES = 8
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = crop
    mvit = cfg.MVIT
    mvit.DEPTH, mvit.EMBED_DIM, mvit.NUM_HEADS, mvit.DROPPATH_RATE = 2, 32, 1, 0.0
    mvit.PATCH_KERNEL, mvit.PATCH_STRIDE, mvit.PATCH_PADDING = [3, 7, 7], [2, 4, 4], [1, 3, 3]
    mvit.USE_ABS_POS, mvit.REL_POS_SPATIAL, mvit.REL_POS_TEMPORAL = False, True, True
    mvit.RESIDUAL_POOLING, mvit.DIM_MUL_IN_ATT = True, True
    mvit.POOL_KVQ_KERNEL, mvit.POOL_KV_STRIDE_ADAPTIVE = [3, 3, 3], [1, 2, 2]
    mvit.DIM_MUL, mvit.HEAD_MUL = [[1, 2.0]], [[1, 2.0]]
    return cfg


@pytest.fixture
def one_thread():
    """Tiny models train several times faster single-threaded when other processes share the CPU (no thread
    oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_outputs_follow_the_contract():
    torch.manual_seed(0)
    model = BMViT(_cfg(TOKEN_ARRANGEMENT="two_halves"), backbone=FixedTokens(torch.randn(2, 6, 4, 3, 5)))
    out = model([torch.zeros(2, 3, 8, 24, 40)])
    assert out["pred_boxes"].shape == (2, 30, 4) and out["pred_boxes"].dtype == torch.float32
    assert out["pred_actor"].shape == (2, 30, 2) and out["pred_classes"].shape == (2, 30, 5)
    assert ((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1)).all()
    assert model.token_grid((8, 24, 40)) == (2, 3, 5)
    # Cell centres of the 2 x 3 x 5 triplets: x = (j + 0.5) / 5, y = (i + 0.5) / 3, repeated per slot.
    assert out["token_centres"].shape == (30, 2)
    assert torch.allclose(out["token_centres"][7], torch.tensor([2.5 / 5, 1.5 / 3]))
    assert torch.equal(out["token_centres"][:15], out["token_centres"][15:])
    assert model.no_weight_decay() == {"backbone.grid"}
    with pytest.raises(ValueError, match="one pathway"):
        model([torch.zeros(1), torch.zeros(1)])


def test_untrained_boxes_sit_on_their_token_cells():
    grid = torch.randn(1, 6, 4, 3, 5)
    out = BMViT(_cfg(TOKEN_ARRANGEMENT="all"), backbone=FixedTokens(grid))(torch.zeros(1))
    assert torch.allclose(out["pred_boxes"][0, :, :2], reference_points((4, 3, 5)), atol=1e-6)
    assert torch.allclose(out["pred_boxes"][0, :, 2:], torch.full((60, 2), 0.5))
    absolute = BMViT(_cfg(TOKEN_ARRANGEMENT="all", BOX_REFERENCE="none"), backbone=FixedTokens(grid))(torch.zeros(1))
    assert torch.allclose(absolute["pred_boxes"], torch.full((1, 60, 4), 0.5))


def test_token_grid_reference_shifts_the_centre_in_logit_space():
    torch.manual_seed(0)
    model = BMViT(_cfg(TOKEN_ARRANGEMENT="center"), backbone=FixedTokens(torch.randn(1, 6, 2, 3, 5)))
    nn.init.normal_(model.heads.box.layers[-1].weight)
    raw = model.heads.box(model.projection(model.backbone.grid[:, :, 1].flatten(2).transpose(1, 2)))
    expected_cx = torch.sigmoid(raw[0, :, 0] + torch.logit(reference_points((1, 3, 5))[:, 0]))
    assert torch.allclose(model(torch.zeros(1))["pred_boxes"][0, :, 0], expected_cx, atol=1e-6)


def test_projection_after_selection_equals_projection_of_the_whole_grid():
    torch.manual_seed(0)
    grid = torch.randn(1, 6, 4, 3, 5)
    model = BMViT(_cfg(TOKEN_ARRANGEMENT="two_halves", BOX_REFERENCE="none"), backbone=FixedTokens(grid))
    projected = model.projection(grid.permute(0, 2, 3, 4, 1))  # [1, T, H, W, 16]: the paper's order
    class_tokens = torch.cat([projected[:, :2].mean(1), projected[:, 2:].mean(1)]).reshape(1, 30, 16)
    assert torch.allclose(model(torch.zeros(1))["pred_classes"], model.heads.classes(class_tokens), atol=1e-5)


@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_spatial_permutation_permutes_all_three_heads_alike(arrangement):
    torch.manual_seed(0)
    time, height, width = 4, 3, 5
    grid = torch.randn(2, 6, time, height, width)
    # BOX_REFERENCE none: the boxes then depend on the token alone, not on where it sits.
    model = BMViT(_cfg(TOKEN_ARRANGEMENT=arrangement, BOX_REFERENCE="none"), backbone=FixedTokens(grid)).eval()
    nn.init.normal_(model.heads.box.layers[-1].weight)
    before = model(torch.zeros(1))
    cells = torch.randperm(height * width)
    permuted = grid.flatten(3)[..., cells].reshape(grid.shape)
    model.backbone.grid.data.copy_(permuted)
    after = model(torch.zeros(1))
    slots = before["pred_boxes"].shape[1] // (height * width)
    token_order = (torch.arange(slots)[:, None] * height * width + cells[None]).flatten()
    for key in ("pred_boxes", "pred_actor", "pred_classes"):
        assert torch.allclose(after[key], before[key][:, token_order], atol=1e-6), key
        assert not torch.allclose(after[key], before[key], atol=1e-3), key  # the permutation did change something


@pytest.mark.parametrize("arrangement", ["center", "two_halves"])
def test_spatial_permutation_with_grid_references_keeps_actor_and_class_aligned(arrangement):
    torch.manual_seed(1)
    grid = torch.randn(1, 6, 4, 3, 5)
    model = BMViT(_cfg(TOKEN_ARRANGEMENT=arrangement), backbone=FixedTokens(grid)).eval()
    before = model(torch.zeros(1))
    cells = torch.randperm(15)
    model.backbone.grid.data.copy_(grid.flatten(3)[..., cells].reshape(grid.shape))
    after = model(torch.zeros(1))
    order = (torch.arange(after["pred_actor"].shape[1] // 15)[:, None] * 15 + cells[None]).flatten()
    for key in ("pred_actor", "pred_classes"):
        assert torch.allclose(after[key], before[key][:, order], atol=1e-6)


def test_ava_config_token_counts_at_16x256x256():
    cfg = load_config(str(CONFIGS / "AVA/BMViT_MViTv2_S.yaml"), ["NUM_GPUS", "0"])
    backbone = MViT(cfg, with_head=False)
    assert backbone.out_dim == 768 and backbone.output_grid((16, 256, 256)) == (8, 16, 16)
    expected = {"all": 2048, "center": 256, "center_tpool": 256, "all_tpool": 256, "two_halves": 512}
    for arrangement, count in expected.items():
        cfg.BMVIT.TOKEN_ARRANGEMENT = arrangement
        slots, height, width = BMViT(cfg, backbone=backbone).token_grid((16, 256, 256))
        assert slots * height * width == count, arrangement


def test_classifier_checkpoint_keys_load_into_the_backbone():
    cfg = tiny_mvit_cfg()
    cfg.MODEL.MODEL_NAME = "MViT"
    classifier = build_model(cfg)
    cfg.MODEL.MODEL_NAME = "BMViT"
    detector = build_model(cfg)
    state = {"backbone." + key: value for key, value in classifier.state_dict().items() if not key.startswith("head.")}
    missing, unexpected = detector.load_state_dict(state, strict=False)
    assert not unexpected
    assert all(key.startswith(("projection.", "heads.")) for key in missing)
    assert torch.equal(detector.backbone.blocks[0].attn.qkv.weight, classifier.blocks[0].attn.qkv.weight)
    assert all(name.startswith("backbone.") for name in detector.no_weight_decay())


def test_gradients_reach_every_head_and_the_backbone(one_thread):
    torch.manual_seed(0)
    cfg = tiny_mvit_cfg()
    model = build_model(cfg)
    targets = [
        {"boxes": torch.tensor([[0.3, 0.4, 0.2, 0.5]]), "labels": torch.tensor([[1.0, 0, 1, 0]]),
         "actor": torch.tensor([True])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, 4), "actor": torch.zeros(0, dtype=torch.bool)},
    ]
    build_criterion(cfg)(model(torch.randn(2, 3, 8, 32, 32)), targets)["loss"].backward()
    for name in ("backbone.patch_embed.proj.weight", "backbone.blocks.0.attn.qkv.weight", "projection.weight",
                 "heads.box.layers.2.weight", "heads.actor.layers.0.weight", "heads.classes.layers.0.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def _synthetic_clip(generator, boxes_cxcywh, size=32, frames=8):
    """Noise with a bright moving-free rectangle at each person's box, so the clip shows where people are."""
    clip = 0.3 * torch.randn(3, frames, size, size, generator=generator)
    for box in box_cxcywh_to_xyxy(boxes_cxcywh):
        x1, y1, x2, y2 = (box * size).round().int().tolist()
        clip[:, :, y1:y2, x1:x2] += 1.0
    return clip


def test_tiny_bmvit_overfits_two_clips(one_thread):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    cfg = tiny_mvit_cfg()
    model = build_model(cfg)
    criterion = build_criterion(cfg)
    targets = [
        {"boxes": torch.tensor([[0.25, 0.5, 0.3, 0.7], [0.72, 0.45, 0.35, 0.6]]),
         "labels": torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]]), "actor": torch.tensor([True, True])},
        {"boxes": torch.tensor([[0.5, 0.55, 0.4, 0.8], [0.15, 0.3, 0.2, 0.4]]),
         "labels": torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0.0]]), "actor": torch.tensor([True, False])},
    ]
    clips = torch.stack([_synthetic_clip(generator, t["boxes"]) for t in targets])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    for _ in range(200):
        losses = criterion(model(clips), targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()

    model.eval()
    with torch.no_grad():
        outputs = model(clips)
    for b, (tokens, persons) in enumerate(criterion.matcher(outputs, targets)):
        assert len(persons) == int(targets[b]["actor"].sum())
        predicted = outputs["pred_boxes"][b, tokens]
        target_boxes = targets[b]["boxes"][persons]
        l1_per_box = (predicted - target_boxes).abs().sum(-1)  # the L1 loss's measure: sum over cx, cy, w, h
        assert l1_per_box.max() < 0.02, l1_per_box
        giou = paired_generalized_box_iou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(target_boxes))
        assert giou.min() > 0.9
        class_decisions = outputs["pred_classes"][b, tokens].sigmoid() > 0.5
        assert torch.equal(class_decisions, targets[b]["labels"][persons].bool())
    detections = postprocess_detections(outputs, None, actor_thresh=0.5)
    assert [len(d["boxes"]) for d in detections] == [2, 1]  # exactly the actors, no duplicates


BMVIT_CONFIGS = sorted(
    [f"{dataset}/BMViT_MViTv2_S.yaml" for dataset in ("AVA", "UCF24", "JHMDB")]
    + [str(path.relative_to(CONFIGS)) for path in (CONFIGS / "AVA/ablations").glob("*.yaml")]
)


@pytest.mark.parametrize("path", BMVIT_CONFIGS)
def test_configs_validate_and_keep_the_k400_backbone(path):
    cfg = assert_and_infer_cfg(load_config(str(CONFIGS / path)))
    kinetics = load_config(str(CONFIGS / "Kinetics/MViTv2_S_16x4.yaml"))
    assert cfg.MODEL.MODEL_NAME == "BMViT" and cfg.DETECTION.ENABLE
    assert cfg.TRAIN.CHECKPOINT_FILE_PATH.endswith("MViTv2_S_16x4_k400_f302660347.pyth")
    assert cfg.TRAIN.CHECKPOINT_EPOCH_RESET
    assert list(cfg.MVIT.REMOVE_Q_POOL_BLOCKS) == [14]
    for key in ("DEPTH", "EMBED_DIM", "NUM_HEADS", "DIM_MUL", "HEAD_MUL", "POOL_Q_STRIDE", "POOL_KV_STRIDE_ADAPTIVE",
                "POOL_KVQ_KERNEL", "PATCH_KERNEL", "PATCH_STRIDE", "PATCH_PADDING", "REL_POS_SPATIAL", "CLS_EMBED_ON"):
        assert cfg.MVIT[key] == kinetics.MVIT[key], key
    assert (cfg.BMVIT.CLASS_LOSS == "ce") == (cfg.TRAIN.DATASET in ("ucf24", "jhmdb"))
    assert cfg.MODEL.NUM_CLASSES == {"ava": 80, "ucf24": 24, "jhmdb": 21}[cfg.TRAIN.DATASET]


@pytest.mark.parametrize("path", ["SYNTH/BMViT_demo.yaml", "SYNTH/BMViT_ablation.yaml", "SYNTH/BMViT_ViT_demo.yaml"])
def test_small_synthava_configs_build_a_49_triplet_model(path):
    cfg = assert_and_infer_cfg(load_config(str(CONFIGS / path)))
    model = build_model(cfg).eval()
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE))
    assert outputs["pred_boxes"].shape == (1, 49, 4)
    assert outputs["pred_classes"].shape == (1, 49, 80)


@pytest.mark.parametrize("dataset", ["AVA", "UCF24", "JHMDB"])
def test_vit_b_configs_are_the_supplement_pipeline_on_videomae(dataset):
    cfg = assert_and_infer_cfg(load_config(str(CONFIGS / dataset / "BMViT_ViT_B.yaml")))
    assert (cfg.MODEL.MODEL_NAME, cfg.BMVIT.BACKBONE, cfg.BMVIT.CLASS_HEAD) == ("BMViT", "ViT", "cross_attention")
    assert (cfg.VIT.EMBED_DIM, cfg.VIT.DEPTH, cfg.VIT.NUM_HEADS, list(cfg.VIT.PATCH_SIZE)) == (768, 12, 12, [2, 16, 16])
    assert list(cfg.VIT.POS_EMBED_GRID) == [8, 14, 14] and cfg.VIT.POS_EMBED == "sincos"
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE) == (16, 288, 288)
    assert list(cfg.DATA.MEAN) == [0.485, 0.456, 0.406] and list(cfg.DATA.STD) == [0.229, 0.224, 0.225]
    assert (cfg.BMVIT.PROJ_DIM, cfg.BMVIT.TOKEN_ARRANGEMENT, cfg.SOLVER.LAYER_DECAY) == (0, "center", 0.75)
    assert (cfg.BMVIT.CLASS_LOSS == "ce") == (cfg.TRAIN.DATASET in ("ucf24", "jhmdb"))
    assert cfg.MODEL.NUM_CLASSES == {"ava": 80, "ucf24": 24, "jhmdb": 21}[cfg.TRAIN.DATASET]
    if dataset == "AVA":  # one block is enough to count the triplets: 324 central tokens at 16x288
        cfg.VIT.DEPTH, cfg.NUM_GPUS = 1, 0
        model = build_model(cfg).eval()
        with torch.no_grad():
            outputs = model(torch.zeros(1, 3, 16, 288, 288))
        assert outputs["pred_classes"].shape == (1, 324, 80) and model.token_grid((16, 288, 288)) == (1, 18, 18)


def test_ablation_recipe_stays_the_one_its_tables_were_measured_with():
    # benchmarks/results/synth_ablation.md and ucf24_memorize.md were measured with these values.
    cfg = load_config(str(CONFIGS / "SYNTH/BMViT_ablation.yaml"))
    assert list(cfg.MVIT.CONV_STEM_CHANNELS) == []
    assert (list(cfg.MVIT.PATCH_KERNEL), list(cfg.MVIT.PATCH_STRIDE)) == ([3, 7, 7], [2, 8, 8])
    assert (cfg.BMVIT.LOSS_CLASS, cfg.BMVIT.COST_CENTRE, cfg.SOLVER.BASE_LR) == (8.0, 5.0, 0.0004)
    assert (cfg.BMVIT.AUX_DENSE_WEIGHT, cfg.BMVIT.NMS_IOU, cfg.SOLVER.MAX_EPOCH) == (0.0, 0.0, 10)


@pytest.mark.parametrize("arrangement", ["all", "center_tpool"])
def test_flip_averaging_runs_on_bmvit_token_grids(arrangement):
    # BMViT's own grid (S = 4 for "all", 1 for "center_tpool") must fit its triplets, and the two views must be
    # treated alike: the average for the mirrored clip is the mirrored average. (Which token maps to which is
    # checked on an exactly equivariant model in test_flip_average.py.)
    torch.manual_seed(0)
    model = BMViT(tiny_mvit_cfg(arrangement=arrangement)).eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    averaged = flip_averaged_outputs(model, clips)
    of_mirror = flip_averaged_outputs(model, clips.flip(-1))
    remapped = mirror_triplets(of_mirror, model.token_grid((8, 32, 32)))
    for key in ("pred_boxes", "pred_actor", "pred_classes"):
        assert torch.allclose(remapped[key], averaged[key], atol=1e-4), key
    assert not torch.allclose(averaged["pred_actor"], model(clips)["pred_actor"], atol=1e-4)


# ------------------------------------------------------------------ cross-attention class head (ViT-B pipeline)


def test_cross_attention_class_tokens_read_the_whole_clip_box_tokens_only_the_centre():
    """centre arrangement: changing a token of another time slice changes the class logits through the
    cross-attention head only; the boxes and actor logits of the central slice stay."""
    torch.manual_seed(0)
    grid = torch.randn(1, 6, 4, 3, 5)
    for class_head, classes_change in (("cross_attention", True), ("mlp", False)):
        torch.manual_seed(0)
        model = BMViT(_cfg(TOKEN_ARRANGEMENT="center", CLASS_HEAD=class_head, CROSS_ATTENTION_HEADS=4),
                      backbone=FixedTokens(grid.clone())).eval()
        nn.init.normal_(model.heads.box.layers[-1].weight)
        before = model(torch.zeros(1))
        model.backbone.grid.data[:, :, 0, 1, 2] += 3.0  # slice 0; the central slice is 2
        after = model(torch.zeros(1))
        assert after["pred_classes"].shape == (1, 15, 5)  # one-to-one with the 15 central tokens
        assert torch.equal(before["pred_boxes"], after["pred_boxes"])
        assert torch.equal(before["pred_actor"], after["pred_actor"])
        assert (not torch.allclose(before["pred_classes"], after["pred_classes"])) == classes_change


def test_cross_attention_block_equals_torch_multihead_attention():
    """The block against torch.nn.MultiheadAttention with the same weights, residuals and MLP written out."""
    torch.manual_seed(0)
    block = CrossAttentionBlock(16, num_heads=4).eval()
    for param in block.parameters():
        nn.init.normal_(param, std=0.3)
    reference = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([block.q.weight, block.kv.weight]))
        reference.in_proj_bias.copy_(torch.cat([block.q.bias, block.kv.bias]))
        reference.out_proj.weight.copy_(block.proj.weight)
        reference.out_proj.bias.copy_(block.proj.bias)
    queries, context = torch.randn(2, 7, 16), torch.randn(2, 30, 16)
    with torch.no_grad():
        kv = block.norm_kv(context)
        x = queries + reference(block.norm_q(queries), kv, kv, need_weights=False)[0]
        expected = x + block.fc2(torch.nn.functional.gelu(block.fc1(block.norm_mlp(x))))
        torch.testing.assert_close(block(queries, context), expected, rtol=1e-5, atol=1e-5)
    assert block.fc1.out_features == 64  # the 4x MLP (3072 for 768)


def test_proj_dim_zero_feeds_the_backbone_tokens_to_the_heads():
    grid = torch.randn(1, 6, 4, 3, 5)
    model = BMViT(_cfg(PROJ_DIM=0, TOKEN_ARRANGEMENT="center", CLASS_HEAD="cross_attention", CROSS_ATTENTION_HEADS=2),
                  backbone=FixedTokens(grid))
    assert not any(name.startswith("projection.") for name in model.state_dict())
    assert model.heads.box.layers[0].in_features == 6 and model.heads.class_attention.q.in_features == 6
    assert model(torch.zeros(1))["pred_classes"].shape == (1, 15, 5)
    with pytest.raises(ConfigError, match="BMVIT.CROSS_ATTENTION_HEADS"):
        BMViT(_cfg(PROJ_DIM=0, CLASS_HEAD="cross_attention", CROSS_ATTENTION_HEADS=4), backbone=FixedTokens(grid))
    with pytest.raises(ConfigError, match="BMVIT.CLASS_HEAD"):
        BMViT(assert_and_infer_cfg(_cfg(CLASS_HEAD="transformer")), backbone=FixedTokens(grid))
    with pytest.raises(ConfigError, match="BMVIT.BACKBONE: 'ResNet'"):
        BMViT(_cfg(BACKBONE="ResNet"))
