"""Model and dataset registries: builds by config name, and clear errors for unknown names."""

import pytest
import torch

from slowfast_bmvit.config import BACKBONES, ConfigError, get_cfg
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


def test_the_configurable_backbones_are_the_registered_ones():
    """config/validation.py's BACKBONES (what BMVIT.BACKBONE may name) are the registered models with
    forward_features, the ones build_backbone builds."""
    assert set(BACKBONES) == {name for name, cls in MODEL_REGISTRY if hasattr(cls, "forward_features")}


@pytest.mark.parametrize("name", ["MViTRoI", "BMViT", "NoSuchNet"])
def test_a_backbone_that_is_not_one_is_a_config_error_listing_the_backbones(name):
    """Also without config validation: a registered detector is not built as a backbone (it takes no with_head)."""
    cfg = get_cfg()
    cfg.NUM_GPUS = 0
    cfg.BMVIT.BACKBONE = name
    with pytest.raises(ConfigError, match=f"^BMVIT.BACKBONE: '{name}' is not a backbone \\(backbones: Hiera, MViT, "
                                          f"ViT\\)$"):
        build_model(cfg)


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
