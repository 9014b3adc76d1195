"""Checkpoints: PySlowFast layout, atomic writes, discovery, resume rules, epoch reset, the trainer's checkpoint
schedule, test-time loading."""

import hashlib
import logging
import os
import random
import re
import zipfile

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from slowfast_bmvit.config import BACKBONES, get_cfg, load_config
from slowfast_bmvit.config.validation import REFUSED_UNLESS_DEFAULT
from slowfast_bmvit.engine import checkpoint as ckpt
from slowfast_bmvit.engine import trained_checkpoint as trained
from slowfast_bmvit.engine.checkpoint import get_last_checkpoint, load_train_checkpoint, save_checkpoint
from slowfast_bmvit.engine.trained_checkpoint import load_test_checkpoint, load_trained_checkpoint
from slowfast_bmvit.engine.trainer import is_checkpoint_epoch, is_checkpoint_iter, is_eval_epoch
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models.checkpoint_loading import CheckpointError


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Linear(3, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4)])
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.blocks[0](self.patch_embed(x)))


class Classifier(Backbone):
    """K400-style classifier: backbone names at the top level plus `head.*`."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 7)


class Detector(nn.Module):
    """BMViT-style: `backbone.*` plus heads."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.heads = nn.Linear(4, 2)

    def forward(self, x):
        return self.heads(self.backbone(x))


def _cfg(output_dir, **train):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.NUM_GPUS = 0
    for key, value in train.items():
        cfg.TRAIN[key] = value
    return cfg


def _trained(seed=0):
    """A detector and its SGD-with-momentum optimizer after one step (so the optimizer has state)."""
    torch.manual_seed(seed)
    model = Detector()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).pow(2).mean().backward()
    optimizer.step()
    return model, optimizer


def _fresh(seed=1):
    torch.manual_seed(seed)
    model = Detector()
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_saved_file_has_pyslowfast_layout_and_name(tmp_path):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    path = save_checkpoint(str(tmp_path), nn.DataParallel(model), optimizer, epoch=2, cfg=cfg)
    assert path == os.path.join(str(tmp_path), "checkpoints", "checkpoint_epoch_00003.pyth")
    saved = torch.load(path, weights_only=True)
    assert {"epoch", "model_state", "optimizer_state", "cfg"} <= set(saved) and "iter" not in saved
    assert saved["epoch"] == 2
    assert list(saved["model_state"]) == list(model.state_dict())  # no "module." prefix
    assert yaml.safe_load(saved["cfg"])["OUTPUT_DIR"] == str(tmp_path)
    scaler_path = save_checkpoint(str(tmp_path), model, optimizer, 3, cfg, scaler=torch.amp.GradScaler("cpu"))
    assert "scaler_state" in torch.load(scaler_path, weights_only=True)


def test_round_trip_restores_model_optimizer_position_and_rng(tmp_path):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    path = save_checkpoint(str(tmp_path), model, optimizer, epoch=1, cfg=cfg, iter_in_epoch=5)
    assert os.path.basename(path) == "checkpoint_epoch_00001_iter_0000005.pyth"
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 0 and saved["iter"] == 5  # "epoch" = last completed epoch, as upstream
    expected_draws = (torch.rand(3), np.random.rand(2), random.random())

    resumed, resumed_optimizer = _fresh()
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    start = load_train_checkpoint(cfg, resumed, resumed_optimizer)
    assert (start.start_epoch, start.start_iter, start.path) == (1, 5, path)
    assert _same_weights(model, resumed)
    draws = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(draws[0], expected_draws[0]) and np.array_equal(draws[1], expected_draws[1])
    assert draws[2] == expected_draws[2]
    # The next step is identical to the uninterrupted run's (momentum buffers restored).
    batch = torch.randn(4, 3)
    for net, opt in ((model, optimizer), (resumed, resumed_optimizer)):
        opt.zero_grad()
        net(batch).pow(2).mean().backward()
        opt.step()
    assert _same_weights(model, resumed)


def test_resuming_reads_the_checkpoint_file_once(tmp_path, monkeypatch):
    model, optimizer = _trained()
    source = save_checkpoint(str(tmp_path / "a"), model, optimizer, 0, _cfg(tmp_path / "a"))
    real_load, reads = torch.load, []

    def counted_load(path, *args, **kwargs):
        reads.append(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counted_load)
    auto_resumed = load_train_checkpoint(_cfg(tmp_path / "a"), *_fresh())  # TRAIN.AUTO_RESUME from OUTPUT_DIR
    from_file = load_train_checkpoint(_cfg(tmp_path / "b", CHECKPOINT_FILE_PATH=source), *_fresh())
    assert auto_resumed.start_epoch == from_file.start_epoch == 1
    assert reads == [source, source]


def test_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    first = save_checkpoint(str(tmp_path), model, optimizer, 0, cfg)
    first_bytes = open(first, "rb").read()

    def dying_save(obj, handle):
        handle.write(first_bytes[: len(first_bytes) // 2])
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(str(tmp_path), model, optimizer, 1, cfg)
    assert os.listdir(os.path.dirname(first)) == [os.path.basename(first)]  # no partial file, no temp file
    assert open(first, "rb").read() == first_bytes
    assert get_last_checkpoint(str(tmp_path)) == first


def test_killed_writer_and_half_copied_files_are_never_picked_up(tmp_path):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    save_checkpoint(str(tmp_path), model, optimizer, 0, cfg)
    second = save_checkpoint(str(tmp_path), model, optimizer, 1, cfg)
    folder = os.path.dirname(second)
    data = open(second, "rb").read()
    with open(os.path.join(folder, ".tmp.checkpoint_epoch_00003.pyth.4242"), "wb") as handle:  # writer killed
        handle.write(data[:100])
    with open(os.path.join(folder, "checkpoint_epoch_00004.pyth"), "wb") as handle:  # copy interrupted
        handle.write(data[: len(data) // 2])
    assert get_last_checkpoint(str(tmp_path)) == second
    assert get_last_checkpoint(str(tmp_path / "elsewhere")) is None
    start = load_train_checkpoint(cfg, *_fresh())
    assert start.path == second and start.start_epoch == 2
    save_checkpoint(str(tmp_path), model, optimizer, 2, cfg)  # a successful save clears the temp file
    assert not any(name.startswith(".tmp.") for name in os.listdir(folder))


def test_auto_resume_falls_back_past_an_unreadable_newest_file(tmp_path, caplog):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    good = save_checkpoint(str(tmp_path), model, optimizer, 0, cfg)
    bad = os.path.join(os.path.dirname(good), "checkpoint_epoch_00002.pyth")
    with zipfile.ZipFile(bad, "w") as archive:  # a complete archive that is not a torch checkpoint
        archive.writestr("junk.txt", "not a checkpoint")
    resumed, resumed_optimizer = _fresh()
    with caplog.at_level(logging.WARNING):
        start = load_train_checkpoint(cfg, resumed, resumed_optimizer)
    assert start.path == good and start.start_epoch == 1
    assert bad in caplog.text
    os.remove(good)
    with pytest.raises(CheckpointError, match="checkpoint_epoch_00002.pyth"):
        load_train_checkpoint(cfg, resumed, resumed_optimizer)


def test_checkpoint_file_path_with_and_without_epoch_reset(tmp_path):
    model, optimizer = _trained()
    source = save_checkpoint(str(tmp_path / "pretrain"), model, optimizer, 4, _cfg(tmp_path / "pretrain"))

    run_dir = tmp_path / "run"
    reset_cfg = _cfg(run_dir, CHECKPOINT_FILE_PATH=source, CHECKPOINT_EPOCH_RESET=True)
    resumed, resumed_optimizer = _fresh()
    start = load_train_checkpoint(reset_cfg, resumed, resumed_optimizer)
    assert (start.start_epoch, start.start_iter, start.path) == (0, 0, source)
    assert _same_weights(model, resumed)
    assert resumed_optimizer.state_dict()["state"] == {}  # fresh optimizer

    keep_cfg = _cfg(run_dir, CHECKPOINT_FILE_PATH=source, CHECKPOINT_EPOCH_RESET=False)
    resumed, resumed_optimizer = _fresh()
    start = load_train_checkpoint(keep_cfg, resumed, resumed_optimizer)
    assert start.start_epoch == 5
    assert torch.equal(
        resumed_optimizer.state_dict()["state"][0]["momentum_buffer"],
        optimizer.state_dict()["state"][0]["momentum_buffer"],
    )


def test_classifier_checkpoint_loads_into_the_detector_backbone(tmp_path):
    torch.manual_seed(0)
    classifier = Classifier()
    path = str(tmp_path / "k400.pyth")
    torch.save({"epoch": 199, "model_state": classifier.state_dict(), "cfg": "{}"}, path)
    detector, optimizer = _fresh()
    heads_before = detector.heads.weight.detach().clone()
    start = load_train_checkpoint(
        _cfg(tmp_path / "run", CHECKPOINT_FILE_PATH=path, CHECKPOINT_EPOCH_RESET=True), detector, optimizer
    )
    assert start.start_epoch == 0
    assert torch.equal(detector.backbone.patch_embed.weight, classifier.patch_embed.weight)
    assert torch.equal(detector.backbone.blocks[0].bias, classifier.blocks[0].bias)
    assert torch.equal(detector.heads.weight, heads_before)


def test_optimizer_that_does_not_fit_names_the_file_and_the_fix(tmp_path):
    model, optimizer = _trained()
    source = save_checkpoint(str(tmp_path / "a"), model, optimizer, 0, _cfg(tmp_path / "a"))
    other, _ = _fresh()
    two_groups = torch.optim.SGD(
        [{"params": other.backbone.parameters()}, {"params": other.heads.parameters()}], lr=0.1, momentum=0.9
    )
    with pytest.raises(CheckpointError, match="CHECKPOINT_EPOCH_RESET") as error:
        load_train_checkpoint(_cfg(tmp_path / "b", CHECKPOINT_FILE_PATH=source), other, two_groups)
    assert source in str(error.value)
    with pytest.raises(CheckpointError, match="missing.pyth"):
        load_train_checkpoint(_cfg(tmp_path / "b", CHECKPOINT_FILE_PATH=str(tmp_path / "missing.pyth")), *_fresh())


def test_resumed_hyper_parameters_follow_the_current_config(tmp_path):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    save_checkpoint(str(tmp_path), model, optimizer, 0, cfg)
    resumed, _ = _fresh()
    new_optimizer = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.5, weight_decay=0.01)
    load_train_checkpoint(cfg, resumed, new_optimizer)
    assert new_optimizer.param_groups[0]["momentum"] == 0.5 and new_optimizer.param_groups[0]["weight_decay"] == 0.01
    assert "momentum_buffer" in new_optimizer.state_dict()["state"][0]


def test_mid_epoch_checkpoints_are_pruned_but_epoch_checkpoints_kept(tmp_path):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    for epoch, iteration in [(0, 2), (0, 4), (0, None), (1, 2), (1, None), (2, 3)]:
        save_checkpoint(str(tmp_path), model, optimizer, epoch, cfg, iter_in_epoch=iteration)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [
        "checkpoint_epoch_00001.pyth",
        "checkpoint_epoch_00002.pyth",
        "checkpoint_epoch_00002_iter_0000003.pyth",
    ]


def test_load_test_checkpoint_order(tmp_path, caplog):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path / "run")
    pretrain = save_checkpoint(str(tmp_path / "pre"), model, optimizer, 0, _cfg(tmp_path / "pre"))
    cfg.TRAIN.CHECKPOINT_FILE_PATH = pretrain
    tested = _fresh()[0]
    assert load_test_checkpoint(cfg, tested).path == pretrain and _same_weights(tested, model)
    last = save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, 3, cfg)
    assert load_test_checkpoint(cfg, _fresh()[0]).path == last
    cfg.TEST.CHECKPOINT_FILE_PATH = pretrain
    assert load_test_checkpoint(cfg, _fresh()[0]).path == pretrain


def test_testing_without_a_checkpoint_is_refused_unless_allowed(tmp_path, caplog):
    cfg = _cfg(tmp_path / "run")
    with pytest.raises(CheckpointError, match="^no checkpoint to test: .*TEST.ALLOW_RANDOM_WEIGHTS"):
        load_test_checkpoint(cfg, _fresh()[0])
    cfg.TEST.ALLOW_RANDOM_WEIGHTS = True
    with caplog.at_level(logging.WARNING):
        assert load_test_checkpoint(cfg, _fresh()[0]).path is None
    assert "randomly initialised" in caplog.text


class WideHeadDetector(Detector):
    """A detector whose head has another class count (3 outputs where the file has 2)."""

    def __init__(self):
        super().__init__()
        self.heads = nn.Linear(4, 3)


class ShallowDetector(Detector):
    """A detector with one block fewer than the file (the file's `backbone.blocks.1.*` have no place)."""


class DeepDetector(Detector):
    def __init__(self):
        super().__init__()
        self.backbone.blocks.append(nn.Linear(4, 4))


@pytest.mark.parametrize(
    "source, tested_model, named",
    [
        (Classifier, Detector, r"2 model tensor\(s\) not in the file: heads.weight, heads.bias"),  # backbone only
        (Detector, WideHeadDetector, r"heads.weight \(shape \(2, 4\) != model \(3, 4\)\)"),  # other classes
        (DeepDetector, ShallowDetector, r"backbone.blocks.1.weight \(not in model\)"),  # deeper file
    ],
    ids=["classifier_file", "other_class_count", "deeper_file"],
)
def test_testing_a_checkpoint_that_leaves_random_weights_is_refused(tmp_path, caplog, source, tested_model, named):
    torch.manual_seed(0)
    path = str(tmp_path / "source.pyth")
    torch.save({"epoch": 9, "model_state": source().state_dict()}, path)
    cfg = _cfg(tmp_path / "run")
    cfg.TEST.CHECKPOINT_FILE_PATH = path
    with pytest.raises(CheckpointError, match=named) as error:
        load_test_checkpoint(cfg, tested_model())
    assert str(error.value).startswith(path) and "TEST.ALLOW_RANDOM_WEIGHTS" in str(error.value)
    cfg.TEST.ALLOW_RANDOM_WEIGHTS = True
    with caplog.at_level(logging.WARNING):
        assert load_test_checkpoint(cfg, tested_model()).path == path
    assert re.search(named, caplog.text)


def test_tested_checkpoint_records_file_epoch_and_sha256(tmp_path):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    path = save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, 4, cfg)  # after 5 epochs: checkpoint_epoch_00005.pyth
    tested = load_test_checkpoint(cfg, _fresh()[0])
    with open(path, "rb") as handle:
        expected_sha256 = hashlib.sha256(handle.read()).hexdigest()
    assert tested.as_dict() == {"path": path, "epoch": 5, "sha256": expected_sha256}
    mid_epoch = save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, 5, cfg, iter_in_epoch=2)
    assert load_test_checkpoint(cfg, _fresh()[0]).as_dict()["epoch"] == 5 and mid_epoch.endswith("_iter_0000002.pyth")


def test_a_folder_given_as_checkpoint_names_the_file_to_give(tmp_path):
    model, optimizer = _trained()
    run = tmp_path / "run"
    saved = save_checkpoint(str(run), model, optimizer, 0, _cfg(run))
    cfg = _cfg(tmp_path / "other")
    cfg.TEST.CHECKPOINT_FILE_PATH = str(run)
    with pytest.raises(CheckpointError, match=f"^{run}: is a folder; give the checkpoint file itself \\(e.g. {saved}\\)$"):
        load_test_checkpoint(cfg, _fresh()[0])
    train_cfg = _cfg(tmp_path / "other", CHECKPOINT_FILE_PATH=str(tmp_path))
    with pytest.raises(CheckpointError, match=f"^{tmp_path}: is a folder"):
        load_train_checkpoint(train_cfg, *_fresh())


def test_inference_tools_load_only_a_trained_checkpoint_of_the_same_model_config(tmp_path, caplog):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    cfg.MVIT.DEPTH, cfg.DATA.NUM_FRAMES = 4, 8
    path = save_checkpoint(cfg.OUTPUT_DIR, model, optimizer, 0, cfg)
    loaded = _fresh()[0]
    assert load_trained_checkpoint(cfg, loaded) == path and _same_weights(loaded, model)
    deeper = cfg.clone()
    deeper.MVIT.DEPTH = 6
    with pytest.raises(CheckpointError, match=f"^{re.escape(path)}: trained with another model config: "
                                              r"MVIT.DEPTH 4 \(config: 6\)$"):
        load_trained_checkpoint(deeper, _fresh()[0])
    longer = cfg.clone()
    longer.DATA.NUM_FRAMES = 16
    with caplog.at_level(logging.WARNING):
        assert load_trained_checkpoint(longer, _fresh()[0]) == path
    assert f"{path} was trained with other input settings: DATA.NUM_FRAMES 8 (config: 16)" in caplog.text
    elsewhere = _cfg(tmp_path / "elsewhere", CHECKPOINT_FILE_PATH=path)  # a pre-training file is never used
    with pytest.raises(CheckpointError, match="^no trained checkpoint: TEST.CHECKPOINT_FILE_PATH is empty"):
        load_trained_checkpoint(elsewhere, _fresh()[0])


MODEL_GROUPS = ("MODEL", "MVIT", "VIT", "HIERA", "BMVIT", "DETECTION")


def test_every_model_key_is_compared_warned_or_stated_not_to_change_the_computation():
    """A key added to a model group must be classified for check_trained_config: architecture (compared), input
    (warned), not compared (with its reason), or refused unless at its default (one value only)."""
    architecture = set(trained.COMMON_ARCHITECTURE_KEYS)
    for keys in (*trained.BACKBONE_ARCHITECTURE_KEYS.values(), *trained.MODEL_ARCHITECTURE_KEYS.values()):
        architecture |= set(keys)
    classes = {"architecture": architecture, "input": set(trained.INPUT_KEYS),
               "not compared": set(trained.NOT_COMPARED), "refused unless default": set(REFUSED_UNLESS_DEFAULT)}
    defaults = get_cfg()
    model_keys = {f"{group}.{name}" for group in MODEL_GROUPS for name in defaults[group]}
    placed = {key: [name for name, keys in classes.items() if key in keys] for key in model_keys}
    assert not [key for key, names in placed.items() if not names], "keys in no class"
    assert not {key: names for key, names in placed.items() if len(names) > 1}, "keys in two classes"
    named = architecture | set(trained.NOT_COMPARED) | set(trained.INPUT_KEYS)
    assert not [key for key in named if key.split(".")[0] not in defaults or key.split(".")[1] not in
                defaults[key.split(".")[0]]], "classified keys that are not config keys"
    assert set(BACKBONES) <= set(trained.BACKBONE_ARCHITECTURE_KEYS)  # every shipped backbone is compared
    group_of = {"MViT": "MVIT", "ViT": "VIT", "Hiera": "HIERA"}
    for backbone, keys in trained.BACKBONE_ARCHITECTURE_KEYS.items():
        assert {key.split(".")[0] for key in keys} == {group_of[backbone]}


@pytest.fixture(scope="module")
def demo_checkpoints(repo_root, tmp_path_factory):
    """A checkpoint of each SynthAVA demo model (random weights), saved with its config as training saves it."""
    folder = tmp_path_factory.mktemp("trained")
    paths = {}
    for name in ("BMViT_demo", "BMViT_ViT_demo", "BMViT_Hiera_demo"):
        cfg = load_config(str(repo_root / "configs" / "SYNTH" / f"{name}.yaml"), ["NUM_GPUS", "0"])
        torch.manual_seed(0)
        paths[name] = folder / f"{name}.pyth"
        torch.save({"epoch": 0, "model_state": build_model(cfg).state_dict(), "cfg": cfg.dump()}, paths[name])
    return paths


def _load_demo(repo_root, demo_checkpoints, name, opts):
    cfg = load_config(str(repo_root / "configs" / "SYNTH" / f"{name}.yaml"),
                      ["NUM_GPUS", "0", "TEST.CHECKPOINT_FILE_PATH", str(demo_checkpoints[name]), *opts])
    return load_trained_checkpoint(cfg, build_model(cfg))


@pytest.mark.parametrize(
    "name, opts, difference",
    [
        # Hiera: query pooling and mask-unit attention change no weight shape (49 -> 196 output tokens here)
        ("BMViT_Hiera_demo", ["HIERA.Q_POOL", "1", "HIERA.MASK_UNIT_ATTN", "[False, False, False]"],
         r"HIERA.Q_POOL 2 \(config: 1\); HIERA.MASK_UNIT_ATTN \[True, True, False\] \(config: \[False, False, "
         r"False\]\)$"),
        ("BMViT_Hiera_demo", ["HIERA.HEAD_MUL", "1.0"], r"HIERA.HEAD_MUL 2.0 \(config: 1.0\)$"),
        ("BMViT_ViT_demo", ["VIT.NUM_HEADS", "1"], r"VIT.NUM_HEADS 4 \(config: 1\)$"),
        ("BMViT_ViT_demo", ["BMVIT.CROSS_ATTENTION_HEADS", "2"], r"BMVIT.CROSS_ATTENTION_HEADS 4 \(config: 2\)$"),
        # the fixed sinusoid table is not saved: made for the training clip's grid, 4x7x7, not 8x7x7
        ("BMViT_ViT_demo", ["DATA.NUM_FRAMES", "16"],
         r"VIT.POS_EMBED_GRID \[\] = \[4, 7, 7\] \(config: \[\] = \[8, 7, 7\]; VIT.POS_EMBED_GRID \[4, 7, 7\] keeps "
         r"the trained one\)$"),
        ("BMViT_ViT_demo", ["VIT.POS_EMBED_GRID", "[4, 14, 14]"],
         r"VIT.POS_EMBED_GRID \[\] = \[4, 7, 7\] \(config: \[4, 14, 14\] = \[4, 14, 14\]; .*\)$"),
    ],
)
def test_inference_tools_refuse_a_config_that_computes_something_else_with_the_same_weights(
        repo_root, demo_checkpoints, name, opts, difference):
    path = re.escape(str(demo_checkpoints[name]))
    with pytest.raises(CheckpointError, match=f"^{path}: trained with another model config: {difference}"):
        _load_demo(repo_root, demo_checkpoints, name, opts)


@pytest.mark.parametrize(
    "name, opts",
    [
        ("BMViT_ViT_demo", ["MVIT.DEPTH", "2", "HIERA.Q_POOL", "1"]),  # another backbone's keys
        ("BMViT_ViT_demo", ["VIT.POS_EMBED_GRID", "[4, 7, 7]"]),  # the grid [] stands for
        ("BMViT_demo", ["VIT.NUM_HEADS", "1", "MVIT.DROPPATH_RATE", "0.3", "BMVIT.ACTOR_THRESH", "0.5"]),
        ("BMViT_Hiera_demo", ["MVIT.NUM_HEADS", "2", "HIERA.DROPPATH_RATE", "0.2"]),
    ],
)
def test_keys_that_do_not_change_the_computation_are_not_compared(repo_root, demo_checkpoints, name, opts):
    assert _load_demo(repo_root, demo_checkpoints, name, opts) == str(demo_checkpoints[name])


def test_a_user_backbone_compares_the_model_keys_and_warns_that_its_own_are_not(caplog):
    """A backbone registered by the user has no BACKBONE_ARCHITECTURE_KEYS entry: the MVIT keys of the default
    config are not its keys, so they are not compared; the model's own keys still are."""
    cfg = get_cfg()
    cfg.BMVIT.BACKBONE = "MyNet"
    saved = cfg.clone()
    saved.MVIT.DEPTH = 3
    with caplog.at_level(logging.WARNING):
        trained.check_trained_config(cfg, "run/c.pyth", saved.dump())
    assert [record.getMessage() for record in caplog.records] == [
        "run/c.pyth: backbone MyNet has no entry in BACKBONE_ARCHITECTURE_KEYS (engine/trained_checkpoint.py); its "
        "own config keys are not compared with the ones the checkpoint was trained under"]
    saved.BMVIT.PROJ_DIM = 8
    with pytest.raises(CheckpointError, match=r"^run/c.pyth: trained with another model config: BMVIT.PROJ_DIM 8 "
                                              r"\(config: 512\)$"):
        trained.check_trained_config(cfg, "run/c.pyth", saved.dump())
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # a shipped backbone: compared, no warning
        trained.check_trained_config(get_cfg(), "run/c.pyth", get_cfg().dump())
    assert not caplog.records


def test_checkpoint_eval_and_iteration_periods():
    cfg = get_cfg()
    cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.CHECKPOINT_PERIOD, cfg.TRAIN.EVAL_PERIOD = 5, 2, 0
    assert [e for e in range(5) if is_checkpoint_epoch(cfg, e)] == [1, 3, 4]
    assert [e for e in range(5) if is_eval_epoch(cfg, e)] == [4]
    cfg.TRAIN.CHECKPOINT_ITER_PERIOD = 3
    assert [i for i in range(8) if is_checkpoint_iter(cfg, i)] == [2, 5]
    cfg.TRAIN.CHECKPOINT_ITER_PERIOD = 0
    assert not any(is_checkpoint_iter(cfg, i) for i in range(8))


@pytest.mark.parametrize(
    "processes, batch_size, resumed_iteration",
    [(2, 4, 3), (4, 4, 3), (2, 6, 2), (1, 12, 1), (3, 6, 2)],
    ids=["2_processes", "4_processes", "2_processes_batch_6", "1_process_batch_12", "3_processes_batch_6"],
)
def test_mid_epoch_resume_continues_at_the_same_sample_for_any_process_count(processes, batch_size,
                                                                             resumed_iteration):
    """30 clips, one process with batch 4 saved after 3 iterations: the first 12 samples of the epoch's permutation
    are done. Every (processes, batch) that can resume there trains exactly the other 18 (plus the sampler's padding
    repeats when 30 does not divide among the processes)."""
    from slowfast_bmvit.datasets.samplers import EpochSampler

    order = EpochSampler(30, shuffle=True, seed=7).epoch_indices()
    start = ckpt.TrainStart(start_epoch=0, start_iter=3, saved_batch_size=4)
    assert start.first_iteration(batch_size) == resumed_iteration
    per_process = batch_size // processes
    rest = []
    for rank in range(processes):
        sampler = EpochSampler(30, shuffle=True, seed=7, num_replicas=processes, rank=rank)
        sampler.set_start(resumed_iteration * per_process)
        rest += list(sampler)
    padding = -30 % processes  # the sampler repeats the permutation's first clips to fill the last round
    assert sorted(rest) == sorted(order[12:] + order[:padding])


def test_mid_epoch_resume_refuses_a_batch_size_that_cannot_start_at_the_same_sample():
    start = ckpt.TrainStart(start_epoch=2, start_iter=3, path="run/c.pyth", saved_batch_size=2)
    with pytest.raises(CheckpointError, match=r"^run/c.pyth was saved 3 iterations of 2 clips \(6 samples\) into "
                                              r"epoch 3; TRAIN.BATCH_SIZE 4 cannot resume at that sample"):
        start.first_iteration(4)
    assert start.first_iteration(3) == 2 and start.first_iteration(6) == 1
    with pytest.raises(CheckpointError, match="MULTIGRID.SHORT_CYCLE"):
        start.first_iteration(6, short_cycle=True)
    assert ckpt.TrainStart(start_iter=3, saved_batch_size=None).first_iteration(4) == 3  # not recorded: as saved


def test_checkpoints_record_the_batch_size_and_older_files_give_it_through_their_config(tmp_path):
    model, optimizer = _trained()
    cfg = _cfg(tmp_path)
    cfg.TRAIN.BATCH_SIZE = 6
    path = save_checkpoint(str(tmp_path), model, optimizer, 0, cfg, iter_in_epoch=2)
    saved = torch.load(path, weights_only=True)
    assert saved["batch_size"] == 6
    del saved["batch_size"]  # as written before the key existed: the config dump still tells
    ckpt.atomic_torch_save(saved, path)
    start = load_train_checkpoint(_cfg(tmp_path), *_fresh())
    assert (start.start_epoch, start.start_iter, start.saved_batch_size) == (0, 2, 6)
    assert start.first_iteration(4) == 3
