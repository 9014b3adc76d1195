"""Model and dataset registries: builds by config name, and clear errors for unknown names."""

import sys

import pytest
import torch
from torch import nn

from slowfast_bmvit.config import BACKBONES, ConfigError, assert_and_infer_cfg, get_cfg
from slowfast_bmvit.datasets import DATASET_REGISTRY, build_dataset, construct_loader
from slowfast_bmvit.models import MODEL_REGISTRY, build_model


def test_every_registered_model_builds_from_its_name():
    names = [name for name, _ in MODEL_REGISTRY]
    assert {"MViT", "BMViT", "MViTRoI"} <= set(names)
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    # A tiny MViT so the build is quick; each model reads the same MVIT keys.
    cfg.MVIT.DEPTH = 2
    cfg.MVIT.EMBED_DIM = 16
    cfg.MVIT.DIM_MUL = [[1, 2.0]]
    cfg.MVIT.HEAD_MUL = [[1, 2.0]]
    cfg.MVIT.POOL_Q_STRIDE = [[1, 1, 2, 2]]
    cfg.MVIT.POOL_KVQ_KERNEL = [3, 3, 3]
    cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE = [1, 4, 4]
    cfg.MVIT.REL_POS_SPATIAL = True
    cfg.MVIT.REL_POS_TEMPORAL = True
    cfg.MVIT.USE_ABS_POS = False
    cfg.MVIT.RESIDUAL_POOLING = True
    cfg.MVIT.DIM_MUL_IN_ATT = True
    cfg.BMVIT.PROJ_DIM = 16
    cfg.DATA.NUM_FRAMES = 4
    cfg.DATA.TRAIN_CROP_SIZE = cfg.DATA.TEST_CROP_SIZE = 64
    for name in names:
        cfg.MODEL.MODEL_NAME = name
        model = build_model(cfg)
        assert isinstance(model, MODEL_REGISTRY.get(name))
        assert all(p.device.type == "cpu" for p in model.parameters())


def test_unknown_model_name_is_a_config_error():
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME = "NoSuchNet"
    with pytest.raises(ConfigError, match="MODEL.MODEL_NAME: 'NoSuchNet' is not a registered model"):
        build_model(cfg)


def test_every_shipped_backbone_has_its_config_checks():
    """The registered models with forward_features that the package ships are all in config/validation.py's
    BACKBONES (their frame-count checks) before any user registers one."""
    assert set(BACKBONES) == {name for name, cls in MODEL_REGISTRY if hasattr(cls, "forward_features")}


class MyNet(nn.Module):
    """A backbone as a user registers one (docs/DESIGN.md, "A new backbone"): a 1x4x4 patch embedding."""

    def __init__(self, cfg, with_head=True):
        super().__init__()
        self.out_dim = 8
        self.patch_embed = nn.Conv3d(3, self.out_dim, kernel_size=(1, 4, 4), stride=(1, 4, 4))

    def output_grid(self, thw):
        return thw[0], thw[1] // 4, thw[2] // 4

    def forward_features(self, x):
        return self.patch_embed(x), None

    def no_weight_decay(self):
        return set()


@pytest.fixture
def user_backbone():
    MODEL_REGISTRY.register(MyNet)
    yield "MyNet"
    del MODEL_REGISTRY._obj_map["MyNet"]


def test_a_backbone_the_user_registers_is_validated_and_built_under_bmvit(user_backbone):
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.MODEL.NUM_CLASSES = 3
    cfg.BMVIT.BACKBONE = user_backbone
    cfg.BMVIT.PROJ_DIM = 16
    cfg.BMVIT.TOKEN_ARRANGEMENT = "center"
    cfg.DATA.NUM_FRAMES = 2
    model = build_model(assert_and_infer_cfg(cfg))
    assert isinstance(model.backbone, MyNet)
    out = model(torch.zeros(1, 3, 2, 16, 16))
    assert out["pred_classes"].shape == (1, 4 * 4, 3)  # one triplet per token of the centre frame's 4 x 4 grid


@pytest.mark.parametrize("name", ["MViTRoI", "BMViT", "NoSuchNet"])
def test_a_backbone_that_is_not_one_is_a_config_error_listing_the_backbones(name):
    """Also without config validation: a registered detector is not built as a backbone (it takes no with_head)."""
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.BMVIT.BACKBONE = name
    assert_and_infer_cfg(cfg)  # the registry, not config validation, knows what is a backbone
    with pytest.raises(ConfigError, match=f"^BMVIT.BACKBONE: '{name}' is not a backbone \\(backbones: Hiera, MViT, "
                                          f"ViT\\)$"):
        build_model(cfg)


def test_run_net_refuses_a_backbone_that_is_not_one_in_one_line(repo_root, tmp_path, capsys):
    sys.path.insert(0, str(repo_root / "tools"))
    try:
        import run_net
    finally:
        sys.path.remove(str(repo_root / "tools"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_net.main(["--cfg", str(repo_root / "configs" / "SYNTH" / "BMViT_demo.yaml"), "TRAIN.ENABLE", "False",
                      "OUTPUT_DIR", str(tmp_path / "out"), "BMVIT.BACKBONE", "MViTRoI"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: BMVIT.BACKBONE: 'MViTRoI' is not a backbone (backbones: Hiera, MViT, ViT)"]


def test_gpu_request_without_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("this check is about machines without CUDA")
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME = "MViT"
    cfg.NUM_GPUS = 1
    with pytest.raises(ConfigError, match="NUM_GPUS"):
        build_model(cfg)


def test_datasets_are_registered_under_pyslowfast_names():
    names = {name for name, _ in DATASET_REGISTRY}
    assert {"Ava", "Ucf24", "Jhmdb", "Synthava"} <= names


def test_unknown_dataset_name_is_a_config_error():
    cfg = get_cfg()
    with pytest.raises(ConfigError, match="TRAIN.DATASET: 'imagenet' is not a registered dataset"):
        build_dataset("imagenet", cfg, "train")


def test_construct_loader_batches_per_process():
    class Numbers(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, index):
            return torch.tensor(index)

    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.TRAIN.BATCH_SIZE = 4
    cfg.TEST.BATCH_SIZE = 3
    cfg.DATA_LOADER.NUM_WORKERS = 0
    train = list(construct_loader(cfg, "train", dataset=Numbers()))
    assert [len(batch) for batch in train] == [4, 4]  # drop_last in training
    assert len(set(torch.cat(train).tolist())) == 8
    test = list(construct_loader(cfg, "test", dataset=Numbers()))
    assert torch.cat(test).tolist() == list(range(10))  # test keeps order and every sample
