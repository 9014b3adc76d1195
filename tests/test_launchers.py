"""SLURM and torchrun launch: the plan read from the environment, and two SLURM tasks training to the same weights
as two torchrun processes."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from slowfast_bmvit.config import ConfigError, get_cfg
from slowfast_bmvit.engine.distributed import first_slurm_host, free_local_init_method, plan_launch, slurm_env

# What srun sets for task 1 of a 2-node x 8-task step (plus the batch job's own variables).
SLURM_TASK = {
    "SLURM_JOB_ID": "4242", "SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
    "SLURM_JOB_NUM_NODES": "2", "SLURM_STEP_NUM_NODES": "2", "SLURM_JOB_NODELIST": "gpu-a[017-018]",
    "SLURM_STEP_NODELIST": "gpu-a[017-018]",
}


@pytest.mark.parametrize("nodelist, host", [
    ("node07", "node07"),
    ("gpu[03-05,9]", "gpu03"),
    ("gpu[003-005],cpu1", "gpu003"),
    ("a1,b[2-3]", "a1"),
    ("rack[1-2]-node[08-09]", "rack1-node08"),
])
def test_first_host_of_a_slurm_nodelist(nodelist, host):
    assert first_slurm_host(nodelist) == host


def test_unreadable_nodelist_names_the_variable():
    with pytest.raises(ConfigError, match="^SLURM_JOB_NODELIST: "):
        first_slurm_host("gpu[01-")


def test_slurm_layout_of_one_task():
    layout = slurm_env(SLURM_TASK)
    assert layout == {"rank": 9, "world": 16, "local_rank": 1, "node": 1, "nodes": 2,
                      "init_method": "tcp://gpu-a017:19242"}
    assert slurm_env({**SLURM_TASK, "MASTER_PORT": "29500"})["init_method"] == "tcp://gpu-a017:29500"
    assert slurm_env({"SLURM_JOB_ID": "1"}) is None  # not inside a job step


def _cfg(num_gpus, **keys):
    cfg = get_cfg()
    cfg.NUM_GPUS, cfg.TRAIN.BATCH_SIZE, cfg.TEST.BATCH_SIZE = num_gpus, 16, 16
    for key, value in keys.items():
        setattr(cfg, key, value)
    return cfg


def test_one_slurm_task_per_gpu_is_one_process_of_the_world():
    plan = plan_launch(_cfg(8), "tcp://localhost:9999", SLURM_TASK)
    assert (plan.source, plan.rank, plan.local_rank, plan.world_size) == ("slurm", 9, 1, 16)
    assert (plan.shard_id, plan.num_shards, plan.local_size) == (1, 2, 8)
    assert plan.init_method == "tcp://gpu-a017:19242" and plan.backend == "nccl" and not plan.spawn


def test_one_slurm_task_per_node_spawns_the_gpus_of_its_node():
    task = {**SLURM_TASK, "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0"}
    plan = plan_launch(_cfg(8), None, task)
    assert plan.spawn and (plan.world_size, plan.shard_id, plan.num_shards, plan.local_size) == (16, 1, 2, 8)


def test_slurm_tasks_and_num_gpus_must_agree():
    with pytest.raises(ConfigError, match="^NUM_GPUS: 4, but SLURM started 8 processes per machine"):
        plan_launch(_cfg(4), None, SLURM_TASK)


def test_torchrun_comes_before_slurm_and_pyslowfast_after_both():
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"}
    plan = plan_launch(_cfg(2), None, {**SLURM_TASK, **torchrun})
    assert (plan.source, plan.rank, plan.init_method, plan.shard_id) == ("torchrun", 3, "env://", 1)
    single_task = {**SLURM_TASK, "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
                   "SLURM_STEP_NUM_NODES": "1"}
    plan = plan_launch(_cfg(2, NUM_SHARDS=1), "tcp://h:1", single_task)  # a one-task step: PySlowFast's spawn
    assert (plan.source, plan.world_size, plan.init_method) == ("pyslowfast", 2, "tcp://h:1")


# ------------------------------------------------------------------ two CPU processes, SLURM vs torchrun


def _launcher_environment(kind: str, rank: int, port: int) -> dict[str, str]:
    if kind == "slurm":
        return {"SLURM_JOB_ID": "77", "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
                "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "localhost",
                "MASTER_PORT": str(port)}
    return {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _train_as_launched(rank, kind, port, repo_root, synth_root, output_dir):
    """One process of a 2-process CPU job started the way `kind` starts it, running tools/run_net.py's job."""
    from test_engine import tiny_cfg

    from slowfast_bmvit.engine.launch import run_job
    from slowfast_bmvit.utils.logging import setup_logging

    os.environ.update(_launcher_environment(kind, rank, port))
    torch.set_num_threads(1)
    setup_logging(output_dir, is_master=rank == 0)  # the launch's own lines reach stdout.log too
    run_job(tiny_cfg(repo_root, synth_root, output_dir, "SOLVER.MAX_EPOCH", "1", "TEST.ENABLE", "False"),
            "tcp://unused:1")


def _launch_two(kind, repo_root, synth_root, output_dir):
    port = int(free_local_init_method().rsplit(":", 1)[1])
    mp.start_processes(_train_as_launched, args=(kind, port, repo_root, synth_root, str(output_dir)), nprocs=2,
                       start_method="spawn")


@pytest.mark.slow
def test_two_slurm_tasks_reach_the_weights_of_two_torchrun_processes(repo_root, tmp_path):
    from test_engine import SYNTH_PARAMS, final_weights

    from slowfast_bmvit.datasets.synthetic import generate_synth_ava

    synth_root = str(tmp_path / "synthava")
    generate_synth_ava(synth_root, progress=False, **SYNTH_PARAMS)
    _launch_two("slurm", repo_root, synth_root, tmp_path / "slurm")
    _launch_two("torchrun", repo_root, synth_root, tmp_path / "torchrun")
    epoch_a, weights_a = final_weights(tmp_path / "slurm")
    epoch_b, weights_b = final_weights(tmp_path / "torchrun")
    assert epoch_a == epoch_b == 0 and weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    slurm_log = (tmp_path / "slurm" / "stdout.log").read_text()
    assert "slurm: 2 processes on 1 machine(s) meet at tcp://localhost:" in slurm_log
    assert "process 0/2 (local 0/2) joined gloo via tcp://localhost:" in slurm_log
    assert "process 0/2 (local 0/2) joined gloo via env://" in (tmp_path / "torchrun" / "stdout.log").read_text()
