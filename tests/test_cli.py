"""tools/run_net.py command line: help, argument splitting, and one-line errors."""

import subprocess
import sys
import traceback

import numpy as np
import pytest
import torch

from slowfast_bmvit.config import get_cfg, merge_opts
from slowfast_bmvit.models.checkpoint_loading import CheckpointError
from slowfast_bmvit.utils.cli import load_job_config, package_error_message, parse_args


def run_net(repo_root, *args):
    return subprocess.run(
        [sys.executable, str(repo_root / "tools" / "run_net.py"), *args],
        capture_output=True, text=True, cwd=repo_root, timeout=120,
    )


def test_help_lists_pyslowfast_options(repo_root):
    result = run_net(repo_root, "--help")
    assert result.returncode == 0
    for option in ("--cfg", "--init_method", "--num_shards", "--shard_id", "--opts", "KEY VALUE"):
        assert option in result.stdout, option


def test_bad_key_exits_nonzero_with_one_line_naming_it(repo_root, tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("TRAIN:\n  ENABLE: False\nTEST:\n  ENABLE: False\n")
    result = run_net(repo_root, "--cfg", str(cfg), "SOME.BAD_KEY", "1")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SOME.BAD_KEY" in lines[0], result.stderr


def test_yaml_syntax_error_names_file_and_line(repo_root, tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("TRAIN:\n  ENABLE: [False\nTEST: 1\n")
    result = run_net(repo_root, "--cfg", str(cfg))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.yaml:3" in lines[0], result.stderr


def test_missing_config_file_is_named(repo_root, tmp_path):
    result = run_net(repo_root, "--cfg", str(tmp_path / "absent.yaml"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: config file not found: {tmp_path / 'absent.yaml'}"]


@pytest.mark.parametrize(
    "argv, files, opts",
    [
        (["--cfg", "a.yaml", "SOLVER.BASE_LR", "0.1"], ["a.yaml"], ["SOLVER.BASE_LR", "0.1"]),
        (["--cfg", "a.yaml", "b.yaml", "NUM_GPUS", "0"], ["a.yaml", "b.yaml"], ["NUM_GPUS", "0"]),
        (["--cfg", "a.yaml", "--opts", "NUM_GPUS", "0"], ["a.yaml"], ["NUM_GPUS", "0"]),
        (["--init_method", "tcp://h:1", "--cfg", "a.yaml"], ["a.yaml"], []),
    ],
)
def test_config_files_and_trailing_overrides_are_split(argv, files, opts):
    args = parse_args("test", argv)
    assert args.cfg_files == files
    assert args.opts == opts


def test_a_single_config_tool_refuses_more_config_files_naming_itself():
    argv = ["--cfg", "a.yaml", "b.yaml", "SOLVER.BASE_LR", "0.1"]
    assert parse_args("x", argv).cfg_files == ["a.yaml", "b.yaml"]
    with pytest.raises(SystemExit, match=r"^error: demo_net.py takes one config file, got 2$"):
        parse_args("x", argv, single_config_tool="demo_net.py")
    assert parse_args("x", argv[:2] + argv[3:], single_config_tool="demo_net.py").opts == ["SOLVER.BASE_LR", "0.1"]


def test_shard_arguments_override_the_config(tmp_path):
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text("NUM_SHARDS: 1\n")
    args = parse_args("test", ["--cfg", str(cfg_file), "--num_shards", "4", "--shard_id", "3", "NUM_GPUS", "0",
                               "TRAIN.BATCH_SIZE", "8", "TEST.BATCH_SIZE", "4"])
    cfg = load_job_config(args, str(cfg_file))
    assert (cfg.NUM_SHARDS, cfg.SHARD_ID, cfg.NUM_GPUS) == (4, 3, 0)


def test_errors_after_the_config_is_loaded_are_one_line_with_a_traceback_under_debug(repo_root, tmp_path, capsys):
    """A checkpoint error raised inside the test job: one line and status 1; --debug lets the exception through."""
    sys.path.insert(0, str(repo_root / "tools"))
    try:
        import run_net
    finally:
        sys.path.remove(str(repo_root / "tools"))
    args = ["--cfg", str(repo_root / "configs" / "SYNTH" / "BMViT_demo.yaml"), "TRAIN.ENABLE", "False",
            "OUTPUT_DIR", str(tmp_path / "out"), "TEST.CHECKPOINT_FILE_PATH", str(tmp_path)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_net.main(args)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path}: is a folder; give the checkpoint file itself"]
    with pytest.raises(CheckpointError, match="is a folder"):
        run_net.main(args[:2] + ["--debug"] + args[2:])


def _raise_from_a_library():
    return np.zeros(-1)  # numpy's own ValueError: not a message of this package


def test_only_errors_the_package_raises_itself_become_one_line():
    from slowfast_bmvit.datasets.ava_helper import sec_to_frame
    from slowfast_bmvit.datasets.frame_io import FrameReader

    def caught(function, *args):
        try:
            function(*args)
        except Exception as err:  # noqa: BLE001 - the point of the test
            return err
        raise AssertionError("no exception")

    assert package_error_message(caught(FrameReader, "sometimes")) == (
        "DATA.ON_BAD_FRAME: 'sometimes' is not one of error, skip")
    assert package_error_message(caught(_raise_from_a_library)) is None  # raised outside the package
    assert package_error_message(caught(sec_to_frame, "902")) is None  # a TypeError on a package line, not a raise
    assert package_error_message(caught(merge_opts, get_cfg(), ["NO.SUCH_KEY", "1"])) == (
        "unknown config key: NO.SUCH_KEY")


def test_an_error_re_raised_from_a_spawned_process_is_judged_by_its_own_traceback():
    from torch.multiprocessing import ProcessRaisedException

    from slowfast_bmvit.datasets.frame_io import FrameReader

    def as_if_spawned(function, *args):
        # torch.multiprocessing.spawn re-raises a child's exception with the child's formatted traceback.
        try:
            function(*args)
        except Exception:  # noqa: BLE001
            text = "\n\n-- Process 1 terminated with the following error:\n" + traceback.format_exc()
            return ProcessRaisedException(text, 1, 4242)
        raise AssertionError("no exception")

    assert package_error_message(as_if_spawned(FrameReader, "sometimes")) == (
        "process 1: DATA.ON_BAD_FRAME: 'sometimes' is not one of error, skip")
    assert package_error_message(as_if_spawned(_raise_from_a_library)) is None


class _BadPolicyDataset(torch.utils.data.Dataset):
    """Every sample raises the package's own error (a frame reader with an unknown DATA.ON_BAD_FRAME)."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        from slowfast_bmvit.datasets.frame_io import FrameReader

        return FrameReader("sometimes")


def test_an_error_raised_in_a_data_loader_worker_is_one_line_too():
    loader = torch.utils.data.DataLoader(_BadPolicyDataset(), num_workers=1)
    try:
        next(iter(loader))
    except ValueError as err:  # torch re-raises it with the worker's traceback as text
        assert package_error_message(err) == "DATA.ON_BAD_FRAME: 'sometimes' is not one of error, skip"
    else:
        raise AssertionError("no exception")
