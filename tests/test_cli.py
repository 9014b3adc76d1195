"""tools/run_net.py command line: help, argument splitting, and one-line errors."""

import subprocess
import sys

import pytest

from slowfast_bmvit.utils.cli import load_job_config, parse_args


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


def test_shard_arguments_override_the_config(tmp_path):
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text("NUM_SHARDS: 1\n")
    args = parse_args("test", ["--cfg", str(cfg_file), "--num_shards", "4", "--shard_id", "3", "NUM_GPUS", "0",
                               "TRAIN.BATCH_SIZE", "8", "TEST.BATCH_SIZE", "4"])
    cfg = load_job_config(args, str(cfg_file))
    assert (cfg.NUM_SHARDS, cfg.SHARD_ID, cfg.NUM_GPUS) == (4, 3, 0)
