"""Config defaults, YAML merge order, overrides and validation messages."""

import textwrap

import pytest
import torch

from slowfast_bmvit.config import BACKBONES, ConfigError, assert_and_infer_cfg, check_devices, get_cfg, load_config
from slowfast_bmvit.engine.distributed import launch_job
from slowfast_bmvit.config.validation import CHOICES


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_defaults_have_pyslowfast_groups_and_validate():
    cfg = get_cfg()
    for group in ("TRAIN", "TEST", "DATA", "AVA", "MVIT", "MODEL", "DETECTION", "SOLVER", "DATA_LOADER",
                  "MULTIGRID", "TENSORBOARD", "BN", "BMVIT", "AUG", "MIXUP"):
        assert group in cfg, group
    for key in ("NUM_GPUS", "NUM_SHARDS", "SHARD_ID", "OUTPUT_DIR", "RNG_SEED", "LOG_PERIOD", "DIST_BACKEND"):
        assert key in cfg, key
    assert assert_and_infer_cfg(cfg) is cfg
    assert get_cfg() is not get_cfg()  # fresh copies: mutating one run's config never leaks into another


def test_every_default_key_has_a_comment(repo_root):
    """defaults.py is the documentation of the knobs: each assignment is preceded by a comment line."""
    lines = (repo_root / "slowfast_bmvit" / "config" / "defaults.py").read_text().splitlines()
    missing = []
    for index, line in enumerate(lines):
        if line.startswith("_C.") and "=" in line:
            previous = lines[index - 1].strip()
            if not previous.startswith("#"):
                missing.append(line.split("=")[0].strip())
    assert not missing, f"keys without a comment: {missing}"


def test_merge_order_defaults_base_file_opts(tmp_path):
    write(tmp_path / "base.yaml", """
        SOLVER:
          BASE_LR: 0.5
          MAX_EPOCH: 7
        TRAIN:
          BATCH_SIZE: 4
    """)
    child = write(tmp_path / "child.yaml", """
        _BASE_: base.yaml
        SOLVER:
          BASE_LR: 0.25
    """)
    cfg = load_config(child, ["TRAIN.BATCH_SIZE", "2"])
    assert cfg.SOLVER.BASE_LR == 0.25  # file beats _BASE_
    assert cfg.SOLVER.MAX_EPOCH == 7  # _BASE_ beats defaults
    assert cfg.TRAIN.BATCH_SIZE == 2  # opts beat everything
    assert cfg.SOLVER.MOMENTUM == get_cfg().SOLVER.MOMENTUM  # untouched keys keep defaults


def test_upstream_value_formats_are_accepted(tmp_path):
    """PySlowFast YAML writes tuples as '(3, 7, 7)' strings and lists of lists for per-block settings."""
    path = write(tmp_path / "mvit.yaml", """
        MVIT:
          PATCH_KERNEL: (3, 7, 7)
          DIM_MUL: [[1, 2.0], [3, 2.0], [14, 2.0]]
          POOL_KV_STRIDE_ADAPTIVE: [1, 8, 8]
    """)
    cfg = assert_and_infer_cfg(load_config(path))
    assert list(cfg.MVIT.PATCH_KERNEL) == [3, 7, 7]
    assert cfg.MVIT.DIM_MUL[2] == [14, 2.0]
    assert list(cfg.MVIT.POOL_KV_STRIDE_ADAPTIVE) == [1, 8, 8]


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = write(tmp_path / "bad.yaml", """
        SOLVER:
          BASE_LRR: 0.1
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "SOLVER.BASE_LRR" in message and "bad.yaml" in message and "\n" not in message


def test_unknown_key_in_opts_names_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key: SOME\.BAD_KEY$"):
        load_config(None, ["SOME.BAD_KEY", "1"])


def test_odd_number_of_opts_is_an_error():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        load_config(None, ["SOLVER.BASE_LR"])


def test_wrong_type_override_names_the_key():
    with pytest.raises(ConfigError, match="TRAIN.BATCH_SIZE"):
        load_config(None, ["TRAIN.BATCH_SIZE", "many"])


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "broken.yaml", "TRAIN:\n  ENABLE: True\n  BATCH_SIZE: [1, 2\nTEST:\n  ENABLE: False\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "broken.yaml:" in message
    line = int(message.split("broken.yaml:")[1].split(":")[0])
    assert 3 <= line <= 4  # the unclosed list opens on line 3; yaml notices it on line 4


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nowhere.yaml"):
        load_config(str(tmp_path / "nowhere.yaml"))


def test_missing_base_file_is_named(tmp_path):
    path = write(tmp_path / "child.yaml", "_BASE_: missing_base.yaml\n")
    with pytest.raises(ConfigError, match="missing_base.yaml"):
        load_config(path)


@pytest.mark.parametrize(
    "text, problem",
    [("", "empty config file"), ("# only a comment\n", "empty config file"),
     ("- TRAIN\n- TEST\n", "the top level is a list"), ("just text\n", "the top level is a str")],
    ids=["empty", "comment_only", "list", "scalar"],
)
def test_config_file_without_key_value_entries_is_named(tmp_path, text, problem):
    path = write(tmp_path / "shape.yaml", text)
    with pytest.raises(ConfigError, match=f"^{path}: {problem}"):
        load_config(path)
    child = write(tmp_path / "child.yaml", "_BASE_: shape.yaml\nTRAIN:\n  ENABLE: False\n")
    with pytest.raises(ConfigError, match=f"^{path}: {problem}"):  # a _BASE_ file is checked too
        load_config(child)


def test_folder_or_binary_file_as_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path}: is a folder, not a config file$"):
        load_config(str(tmp_path))
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yaml", "_BASE_: ../\nTRAIN:\n  ENABLE: False\n")
    with pytest.raises(ConfigError, match=f"^{child}: _BASE_ ../ is a folder \\({tmp_path}/sub/../\\), not a config "
                                          f"file$"):
        load_config(child)
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(ConfigError, match="weights.yaml: not a text"):
        load_config(str(binary))


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_invalid_choice_names_the_key(key):
    cfg = get_cfg()
    group, name = key.split(".")
    cfg[group][name] = "no-such-choice"
    with pytest.raises(ConfigError, match=f"^{key}: 'no-such-choice' is not one of"):
        assert_and_infer_cfg(cfg)


@pytest.mark.parametrize(
    "opts, key",
    [
        (["TRAIN.BATCH_SIZE", "0"], "TRAIN.BATCH_SIZE"),
        (["NUM_GPUS", "2", "TRAIN.BATCH_SIZE", "3"], "TRAIN.BATCH_SIZE"),
        (["NUM_GPUS", "-1"], "NUM_GPUS"),
        (["SHARD_ID", "1"], "SHARD_ID"),
        (["DATA.MEAN", "[0.5, 0.5]"], "DATA.MEAN"),
        (["MVIT.DEPTH", "4", "MVIT.DIM_MUL", "[[5, 2.0]]"], "MVIT.DIM_MUL"),
        (["MVIT.REMOVE_Q_POOL_BLOCKS", "[20]"], "MVIT.REMOVE_Q_POOL_BLOCKS"),
        (["BMVIT.ACTOR_THRESH", "1.5"], "BMVIT.ACTOR_THRESH"),
        (["BMVIT.NMS_IOU", "1.0"], "BMVIT.NMS_IOU"),
        (["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 10]", "SOLVER.LRS", "[1]"],
         "SOLVER.STEPS"),
        (["NUM_GPUS", "0", "TRAIN.MIXED_PRECISION", "True", "TRAIN.MIXED_PRECISION_DTYPE", "float16"],
         "TRAIN.MIXED_PRECISION_DTYPE"),
        (["DATA.NUM_FRAMES", "1"], "DATA.NUM_FRAMES"),  # no temporal token with the temporal patch stride 2
        (["DATA.NUM_FRAMES", "2", "BMVIT.TOKEN_ARRANGEMENT", "two_halves"], "DATA.NUM_FRAMES"),  # one token, not 2
        (["SOLVER.BASE_LR", "-0.1"], "SOLVER.BASE_LR"),
        (["SOLVER.BASE_LR", "0.0"], "SOLVER.BASE_LR"),
        (["SOLVER.WARMUP_START_LR", "-1e-4"], "SOLVER.WARMUP_START_LR"),
        (["SOLVER.COSINE_END_LR", "-1e-6"], "SOLVER.COSINE_END_LR"),
        (["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 10]", "SOLVER.LRS", "[1, -0.1]"],
         "SOLVER.LRS"),
        (["SOLVER.CLIP_GRAD_L2NORM", "-1.0"], "SOLVER.CLIP_GRAD_L2NORM"),
    ],
)
def test_range_errors_name_the_key(opts, key):
    cfg = load_config(None, opts)
    with pytest.raises(ConfigError, match=f"^{key}:"):
        assert_and_infer_cfg(cfg)


def test_any_backbone_name_passes_validation_and_skips_the_frame_checks_of_the_shipped_ones():
    """A backbone the user registers is the registry's to accept or refuse (models/build.py), not a fixed list's;
    the frame-count checks, which need the backbone's temporal stride key, are left to its builder."""
    assert "MyNet" not in BACKBONES
    assert_and_infer_cfg(load_config(None, ["BMVIT.BACKBONE", "MyNet", "MVIT.PATCH_STRIDE", "[4, 4, 4]",
                                            "DATA.NUM_FRAMES", "2", "BMVIT.TOKEN_ARRANGEMENT", "two_halves"]))
    with pytest.raises(ConfigError, match="^DATA.NUM_FRAMES: 2 frame"):  # the same config with MViT
        assert_and_infer_cfg(load_config(None, ["BMVIT.BACKBONE", "MViT", "MVIT.PATCH_STRIDE", "[4, 4, 4]",
                                                "DATA.NUM_FRAMES", "2", "BMVIT.TOKEN_ARRANGEMENT", "two_halves"]))


@pytest.mark.parametrize(
    "config, opts, message",
    [
        ("BMViT_ViT_demo", ["VIT.PATCH_SIZE", "[8, 8, 8]", "BMVIT.TOKEN_ARRANGEMENT", "two_halves"],
         r"8 frame\(s\) give 1 temporal token\(s\) with VIT.PATCH_SIZE\[0\] = 8; BMVIT.TOKEN_ARRANGEMENT two_halves "
         r"needs 2 \(at least 16 frames\)"),
        ("BMViT_ViT_demo", ["VIT.PATCH_SIZE", "[4, 8, 8]", "DATA.NUM_FRAMES", "2"],
         r"2 frame\(s\) give no temporal token with VIT.PATCH_SIZE\[0\] = 4; use at least 4"),
        ("BMViT_Hiera_demo", ["DATA.NUM_FRAMES", "2", "BMVIT.TOKEN_ARRANGEMENT", "two_halves"],
         r"2 frame\(s\) give 1 temporal token\(s\) with HIERA.PATCH_STRIDE\[0\] = 2"),
        ("BMViT_demo", ["MVIT.PATCH_STRIDE", "[4, 4, 4]", "DATA.NUM_FRAMES", "2"],
         r"2 frame\(s\) give no temporal token with MVIT.PATCH_STRIDE\[0\] = 4"),
        # a ViT classifier: its own VIT keys, whatever BMVIT.BACKBONE says
        ("BMViT_ViT_demo", ["MODEL.MODEL_NAME", "ViT", "BMVIT.BACKBONE", "MViT", "VIT.PATCH_SIZE", "[4, 8, 8]",
                            "DATA.NUM_FRAMES", "2"],
         r"2 frame\(s\) give no temporal token with VIT.PATCH_SIZE\[0\] = 4"),
    ],
)
def test_frames_are_checked_against_the_temporal_stride_of_the_backbone_in_use(repo_root, config, opts, message):
    cfg = load_config(str(repo_root / "configs" / "SYNTH" / f"{config}.yaml"), opts)
    with pytest.raises(ConfigError, match=f"^DATA.NUM_FRAMES: {message}"):
        assert_and_infer_cfg(cfg)


def test_keys_of_another_backbone_do_not_limit_the_frames(repo_root):
    """One frame is a temporal token for a ViT with a 1-frame tubelet, whatever MVIT.PATCH_STRIDE says."""
    vit_demo = str(repo_root / "configs" / "SYNTH" / "BMViT_ViT_demo.yaml")
    assert_and_infer_cfg(load_config(vit_demo, ["VIT.PATCH_SIZE", "[1, 8, 8]", "DATA.NUM_FRAMES", "1"]))
    assert_and_infer_cfg(load_config(vit_demo, ["VIT.PATCH_SIZE", "[4, 8, 8]", "BMVIT.TOKEN_ARRANGEMENT", "two_halves",
                                                "MVIT.PATCH_STRIDE", "[8, 4, 4]"]))


def test_num_gpus_is_checked_against_the_machine(monkeypatch):
    cfg = load_config(None, ["NUM_GPUS", "8", "TRAIN.BATCH_SIZE", "8"])
    assert_and_infer_cfg(cfg)  # a valid config: counting its FLOPs needs no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="^NUM_GPUS: 8, but CUDA is not available here .* set NUM_GPUS 0"):
        check_devices(cfg)
    with pytest.raises(ConfigError, match="^NUM_GPUS: 8, but CUDA"):  # before any process is started
        launch_job(cfg, None, print)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError, match="^NUM_GPUS: 8, but this machine has 2 CUDA device"):
        check_devices(cfg)
    cfg.NUM_GPUS = 0
    check_devices(cfg)


def test_ucf24_and_jhmdb_configs_test_every_frame_as_the_act_protocol_does(repo_root):
    """docs/EVALUATION.md: ACT.TEST_ALL_FRAMES True in the UCF101-24 and JHMDB configs (frame-mAP counts detections
    outside the tubes; video-mAP's tubes do not borrow their extent from the ground truth)."""
    paths = [path for dataset in ("UCF24", "JHMDB")
             for path in sorted((repo_root / "configs" / dataset).glob("*.yaml"))]
    assert len(paths) >= 4
    for path in paths:
        assert load_config(str(path)).ACT.TEST_ALL_FRAMES is True, path
