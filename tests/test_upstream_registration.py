"""Registration into the real upstream PySlowFast (pyslowfast==1.0, installed by `make test`)."""

import importlib

import pytest

import slowfast_bmvit
from slowfast_bmvit.datasets import DATASET_REGISTRY

upstream_build = pytest.importorskip(
    "slowfast.datasets.build", reason="pyslowfast==1.0 is installed by the Makefile; run through `make test`"
)


def test_datasets_and_config_keys_reach_pyslowfast_1_0():
    assert len(list(DATASET_REGISTRY)) > 0, "this package registers no dataset"
    report = slowfast_bmvit.register_into_pyslowfast()
    upstream_registry = upstream_build.DATASET_REGISTRY
    for name, dataset_class in DATASET_REGISTRY:
        if f"dataset {name}" in report.kept_upstream:
            assert upstream_registry.get(name) is not dataset_class  # upstream's own class with that name stays
        else:
            assert upstream_registry.get(name) is dataset_class
    # pyslowfast 1.0 has no model registry: reported, not silently ignored.
    assert any("MODEL_REGISTRY" in what for what in report.absent)
    assert report.models == []
    # Upstream's get_cfg now knows this package's keys, so its tools read our YAML files.
    upstream_cfg = importlib.import_module("slowfast.config.defaults").get_cfg()
    assert upstream_cfg.BMVIT.TOKEN_ARRANGEMENT == slowfast_bmvit.config.get_cfg().BMVIT.TOKEN_ARRANGEMENT
    assert "MVIT" in upstream_cfg and "REL_POS_SPATIAL" in upstream_cfg.MVIT
    assert upstream_cfg.TRAIN.DATASET == "kinetics"  # upstream's own defaults are left as they were


def test_upstream_build_dataset_finds_our_class_by_config_name():
    slowfast_bmvit.register_into_pyslowfast(override=True)
    for name, dataset_class in DATASET_REGISTRY:
        # upstream's build_dataset capitalises the config's name, exactly as ours does
        assert upstream_build.DATASET_REGISTRY.get(name.lower().capitalize()) is dataset_class


def test_second_registration_is_idempotent():
    slowfast_bmvit.register_into_pyslowfast(override=True)
    report = slowfast_bmvit.register_into_pyslowfast(override=True)
    assert report.datasets == [] and report.config_keys_added == []
