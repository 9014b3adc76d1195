"""Distributed helpers on CPU: two gloo processes reduce and gather correctly; launch modes and seeding."""

import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.engine.distributed import (
    all_gather_objects,
    all_reduce_mean,
    free_local_init_method,
    get_rank,
    get_world_size,
    is_master_proc,
    launch_cpu_processes,
    launch_job,
)


def _collectives(scale):
    rank = get_rank()
    mean = all_reduce_mean(torch.tensor([float(rank), scale * rank]))
    gathered = all_gather_objects({"rank": rank, "boxes": list(range(rank + 1))})
    return {"rank": rank, "world": get_world_size(), "master": is_master_proc(), "mean": mean.tolist(), "all": gathered}


def test_two_gloo_processes_all_reduce_and_gather():
    results = launch_cpu_processes(2, _collectives, 10.0)
    expected_gather = [{"rank": 0, "boxes": [0]}, {"rank": 1, "boxes": [0, 1]}]
    for rank, result in enumerate(results):
        assert result["rank"] == rank and result["world"] == 2
        assert result["master"] == (rank == 0)
        assert result["mean"] == [0.5, 5.0]
        assert result["all"] == expected_gather


def test_single_process_helpers_need_no_process_group():
    tensor = torch.tensor([3.0])
    assert get_world_size() == 1 and get_rank() == 0 and is_master_proc()
    assert all_reduce_mean(tensor) is tensor
    assert all_gather_objects("x") == ["x"]


def _record_job(cfg):
    """A stand-in for train/test: write what this process saw to OUTPUT_DIR/<rank>.json."""
    seen = {
        "rank": get_rank(),
        "world": get_world_size(),
        "shards": [cfg.SHARD_ID, cfg.NUM_SHARDS],
        "random": torch.rand(1).item(),
        "all": all_gather_objects(get_rank()),
    }
    with open(os.path.join(cfg.OUTPUT_DIR, f"{get_rank()}.json"), "w") as handle:
        json.dump(seen, handle)


def _job_cfg(output_dir):
    cfg = get_cfg()
    cfg.NUM_GPUS, cfg.RNG_SEED, cfg.OUTPUT_DIR = 0, 5, str(output_dir)
    cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE = 4, 2
    return cfg


def _expected_random(seed):
    torch.manual_seed(seed)
    return torch.rand(1).item()


def test_launch_job_runs_a_world_of_one_in_process_seeded(tmp_path):
    launch_job(_job_cfg(tmp_path), None, _record_job)
    seen = json.loads((tmp_path / "0.json").read_text())
    assert seen["world"] == 1 and seen["all"] == [0] and seen["shards"] == [0, 1]
    assert seen["random"] == _expected_random(5)


def _torchrun_process(local_rank, port, output_dir):
    os.environ.update(
        RANK=str(local_rank), WORLD_SIZE="2", LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE="2", GROUP_RANK="0",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    launch_job(_job_cfg(output_dir), None, _record_job)


def test_launch_job_joins_a_torchrun_world_with_per_rank_seeds(tmp_path):
    port = int(free_local_init_method().rsplit(":", 1)[1])
    mp.start_processes(_torchrun_process, args=(port, str(tmp_path)), nprocs=2, start_method="spawn")
    seen = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    for rank, record in enumerate(seen):
        assert record["rank"] == rank and record["world"] == 2 and record["all"] == [0, 1]
        assert record["shards"] == [0, 1]  # one machine with two processes
        assert record["random"] == _expected_random(5 + rank)


def test_launch_job_rejects_bad_layouts_before_connecting(tmp_path, monkeypatch):
    cfg = _job_cfg(tmp_path)
    cfg.NUM_SHARDS = 2
    with pytest.raises(ConfigError, match="init_method"):
        launch_job(cfg, None, _record_job)
    cfg.TRAIN.BATCH_SIZE = 3
    with pytest.raises(ConfigError, match="TRAIN.BATCH_SIZE"):
        launch_job(cfg, "tcp://127.0.0.1:1", _record_job)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cfg = _job_cfg(tmp_path)
    cfg.NUM_GPUS = 4
    with pytest.raises(ConfigError, match="NUM_GPUS"):
        launch_job(cfg, None, _record_job)
    assert not list(tmp_path.iterdir())  # the job never ran
