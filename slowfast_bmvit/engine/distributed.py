"""Process launch and torch.distributed helpers, PySlowFast-style.

Launch (`launch_job`, planned by `plan_launch`), checked in this order:
- torchrun: when RANK / WORLD_SIZE / LOCAL_RANK are set, the process is already one of the world; it joins with
  init_method "env://" (MASTER_ADDR / MASTER_PORT) and SHARD_ID / NUM_SHARDS are filled in from torchrun's node
  rank and sizes.
- SLURM: inside a job step started by `srun` with more than one task (SLURM_PROCID, SLURM_NTASKS set). With one
  task per process (`--ntasks-per-node` = NUM_GPUS, or any count with NUM_GPUS 0), the task is the process of rank
  SLURM_PROCID on node SLURM_NODEID (local rank SLURM_LOCALID); with one task per node and NUM_GPUS > 1, the task is
  shard SLURM_PROCID and spawns NUM_GPUS processes, as PySlowFast's own SLURM launcher does. Everyone meets at
  tcp://<first host of SLURM_JOB_NODELIST>:<MASTER_PORT, or a port derived from SLURM_JOB_ID>
  (tools/slurm/train.sbatch is an example job).
- PySlowFast's way: one command per machine (shard). It spawns max(NUM_GPUS, 1) processes; the world has
  max(NUM_GPUS, 1) x NUM_SHARDS processes and process `local_rank` of shard SHARD_ID has rank
  SHARD_ID x NUM_GPUS + local_rank. They meet at `init_method` ("tcp://host:port" of shard 0, or "file://...").
- A world of one process runs `func(cfg)` in the calling process, without a process group.
Backends: NUM_GPUS = 0 always uses "gloo" (CPU); otherwise DIST_BACKEND (nccl).

CPU multi-process runs (for tests and debugging): NUM_GPUS 0 under `torchrun --nproc_per_node N` or
`srun --ntasks N`, or, from Python, `launch_cpu_processes(N, fn, *args)`, which runs fn(*args) in N gloo processes
and returns their results.

Seeding: every process seeds Python, numpy and torch with RNG_SEED + rank (`seed_process`), so per-process
randomness (augmentation, dropout) differs between ranks; DistributedDataParallel broadcasts rank 0's initial
weights, so the model itself starts identical everywhere.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import pickle
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from slowfast_bmvit.config import ConfigError, check_devices
from slowfast_bmvit.utils.seeding import seed_everything

logger = logging.getLogger(__name__)

# Variables torchrun sets for every process it starts.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


# ------------------------------------------------------------------ queries


def is_dist_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the run (1 without torch.distributed)."""
    return dist.get_world_size() if is_dist_initialized() else 1


def get_rank() -> int:
    """Global rank of this process (0 without torch.distributed)."""
    return dist.get_rank() if is_dist_initialized() else 0


def is_master_proc() -> bool:
    """True on the main process (global rank 0), the one that writes checkpoints, logs and results."""
    return get_rank() == 0


# ------------------------------------------------------------------ collectives


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over all processes (a new tensor; the input is unchanged).

    With the nccl backend the tensor must be on this process's GPU.
    """
    if get_world_size() == 1:
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / get_world_size()


@functools.lru_cache(maxsize=None)
def _object_group() -> Any:
    # Gathering Python objects through NCCL would stage them in GPU memory; use a gloo group instead (as upstream).
    if dist.get_backend() == "nccl":
        return dist.new_group(backend="gloo")
    return dist.group.WORLD


def all_gather_objects(obj: Any) -> list[Any]:
    """`[obj of rank 0, obj of rank 1, ...]` gathered on every process (any picklable object, e.g. predictions
    before evaluation). Collective: every process must call it."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj, group=_object_group())
    return gathered


# ------------------------------------------------------------------ set-up


def seed_process(seed: int, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch with `seed` + this process's rank (utils/seeding.py; `deterministic` asks torch
    for deterministic algorithms too)."""
    seed_everything(seed + get_rank(), deterministic=deterministic)


def backend_for(cfg) -> str:
    """"gloo" on the CPU (NUM_GPUS 0), else DIST_BACKEND."""
    return "gloo" if cfg.NUM_GPUS == 0 else cfg.DIST_BACKEND


def init_distributed_training(
    rank: int,
    world_size: int,
    init_method: str,
    backend: str,
    local_rank: int = 0,
    local_size: int = 1,
    use_cuda: bool = False,
) -> None:
    """Join the process group of `world_size` processes as `rank` (and select GPU `local_rank` with `use_cuda`);
    `local_size`, the processes on this machine, is logged."""
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=backend,
        init_method=init_method,
        world_size=world_size,
        rank=rank,
        timeout=datetime.timedelta(minutes=30),
    )
    logger.info(
        "process %d/%d (local %d/%d) joined %s via %s", rank, world_size, local_rank, local_size, backend, init_method
    )


def shutdown_distributed() -> None:
    """Leave the process group, if any."""
    if is_dist_initialized():
        _object_group.cache_clear()
        dist.destroy_process_group()


def free_local_init_method() -> str:
    """A "tcp://127.0.0.1:<port>" address with a port that was free a moment ago (single-machine runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


# ------------------------------------------------------------------ launch plans


@dataclass(frozen=True)
class LaunchPlan:
    """Where this command sits in the run's world of processes, from the config and the environment.

    Either this command spawns the processes of its machine (`spawn`, PySlowFast's way and one SLURM task per
    machine), or it already is one process of the world (`rank` set: torchrun, one SLURM task per process).
    """

    source: str  # "pyslowfast", "torchrun" or "slurm"
    world_size: int
    num_shards: int  # machines
    shard_id: int  # this machine
    local_size: int  # processes on this machine
    init_method: str | None
    backend: str
    rank: int | None = None  # this process's global rank when it is one process of the world
    local_rank: int = 0

    @property
    def spawn(self) -> bool:
        return self.rank is None


def torchrun_env(environ: Mapping[str, str] | None = None) -> dict[str, int] | None:
    """RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and GROUP_RANK as ints when started by torchrun, else None."""
    environ = os.environ if environ is None else environ
    if not all(name in environ for name in TORCHRUN_ENV):
        return None
    env = {name: int(environ[name]) for name in TORCHRUN_ENV}
    env["LOCAL_WORLD_SIZE"] = int(environ.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"]))
    env["GROUP_RANK"] = int(environ.get("GROUP_RANK", env["RANK"] // env["LOCAL_WORLD_SIZE"]))
    return env


def first_slurm_host(nodelist: str) -> str:
    """The first host name of a Slurm host list: "gpu[03-05,9],cpu1" -> "gpu03" (zero padding kept)."""
    depth, end = 0, len(nodelist)
    for index, char in enumerate(nodelist):  # the first entry ends at a comma outside brackets
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            end = index
            break
    first = nodelist[:end].strip()
    # Each bracket group "[a-b,c]" contributes its first number.
    host = re.sub(r"\[([^\]]*)\]", lambda match: re.split(r"[-,]", match.group(1))[0], first)
    if not host or "[" in host or "]" in host:
        raise ConfigError(f"SLURM_JOB_NODELIST: cannot read a host name from {nodelist!r}")
    return host


def slurm_env(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The layout of a job step started by `srun`, or None outside one (SLURM_PROCID / SLURM_NTASKS unset).

    Returns rank (SLURM_PROCID), world (SLURM_NTASKS), local_rank (SLURM_LOCALID), node (SLURM_NODEID), nodes
    (SLURM_STEP_NUM_NODES, SLURM_JOB_NUM_NODES or SLURM_NNODES) and the meeting point "tcp://<first node>:<port>":
    the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST / SLURM_NODELIST, and MASTER_PORT when set, else a
    port in 15000..34999 derived from SLURM_JOB_ID (so that jobs sharing a node do not collide).
    """
    environ = os.environ if environ is None else environ
    if "SLURM_PROCID" not in environ or "SLURM_NTASKS" not in environ:
        return None

    def first_of(*names: str, default: str | None = None) -> str:
        for name in names:
            if environ.get(name):
                return environ[name]
        if default is None:
            raise ConfigError(f"{names[0]}: not set in this SLURM job step (start the run with srun)")
        return default

    layout: dict[str, Any] = {
        "rank": int(environ["SLURM_PROCID"]),
        "world": int(environ["SLURM_NTASKS"]),
        "local_rank": int(first_of("SLURM_LOCALID", default="0")),
        "node": int(first_of("SLURM_NODEID", default="0")),
        "nodes": int(first_of("SLURM_STEP_NUM_NODES", "SLURM_JOB_NUM_NODES", "SLURM_NNODES", default="1")),
    }
    host = first_slurm_host(first_of("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"))
    port = environ.get("MASTER_PORT") or str(15000 + int(first_of("SLURM_JOB_ID", default="0")) % 20000)
    layout["init_method"] = f"tcp://{host}:{port}"
    return layout


def plan_launch(cfg, init_method: str | None, environ: Mapping[str, str] | None = None) -> LaunchPlan:
    """The launch plan of this command (see the module docstring): torchrun's variables first, then a SLURM job
    step of more than one task, then PySlowFast's NUM_GPUS x NUM_SHARDS with `init_method`.

    Raises:
        ConfigError: NUM_GPUS disagrees with the processes torchrun / SLURM started per machine, or several
            machines without a meeting point.
    """
    backend = backend_for(cfg)
    torchrun = torchrun_env(environ)
    if torchrun is not None:
        local_size, world_size = torchrun["LOCAL_WORLD_SIZE"], torchrun["WORLD_SIZE"]
        _check_processes_per_machine(cfg, local_size, "torchrun started", "(--nproc_per_node)")
        return LaunchPlan("torchrun", world_size, world_size // local_size, torchrun["GROUP_RANK"], local_size,
                          "env://", backend, rank=torchrun["RANK"], local_rank=torchrun["LOCAL_RANK"])
    slurm = slurm_env(environ)
    if slurm is not None and slurm["world"] > 1:
        nodes = slurm["nodes"]
        if slurm["world"] % nodes:
            raise ConfigError(f"SLURM_NTASKS: {slurm['world']} tasks do not divide evenly over {nodes} nodes")
        tasks_per_node = slurm["world"] // nodes
        if tasks_per_node == 1 and cfg.NUM_GPUS > 1:
            # One task per machine, as PySlowFast's submitit launcher: it spawns NUM_GPUS processes.
            return LaunchPlan("slurm", nodes * cfg.NUM_GPUS, nodes, slurm["rank"], cfg.NUM_GPUS,
                              slurm["init_method"], backend)
        _check_processes_per_machine(cfg, tasks_per_node, "SLURM started", "per node (--ntasks-per-node)")
        return LaunchPlan("slurm", slurm["world"], nodes, slurm["node"], tasks_per_node, slurm["init_method"],
                          backend, rank=slurm["rank"], local_rank=slurm["local_rank"])
    local_size = max(cfg.NUM_GPUS, 1)
    world_size = local_size * cfg.NUM_SHARDS
    if world_size > 1 and init_method is None:
        if cfg.NUM_SHARDS > 1:
            raise ConfigError(f"NUM_SHARDS: {cfg.NUM_SHARDS} machines need --init_method tcp://<shard 0 host>:<port>")
        init_method = free_local_init_method()
    return LaunchPlan("pyslowfast", world_size, cfg.NUM_SHARDS, cfg.SHARD_ID, local_size, init_method, backend)


def _check_processes_per_machine(cfg, local_size: int, who: str, flag: str) -> None:
    if cfg.NUM_GPUS > 0 and cfg.NUM_GPUS != local_size:
        raise ConfigError(f"NUM_GPUS: {cfg.NUM_GPUS}, but {who} {local_size} processes per machine {flag}; "
                          f"they must agree")


def _check_batch_divisible(cfg, world_size: int) -> None:
    for key, value in (("TRAIN.BATCH_SIZE", cfg.TRAIN.BATCH_SIZE), ("TEST.BATCH_SIZE", cfg.TEST.BATCH_SIZE)):
        if value % world_size:
            raise ConfigError(f"{key}: {value} is not divisible by the {world_size} processes")


def _run_spawned(
    local_rank: int,
    local_size: int,
    func: Callable[..., Any],
    init_method: str,
    shard_id: int,
    num_shards: int,
    backend: str,
    cfg,
) -> None:
    """Entry point of a process started by `launch_job`'s torch.multiprocessing.spawn."""
    _run_in_world(cfg, func, shard_id * local_size + local_rank, local_size * num_shards, init_method, backend,
                  local_rank, local_size)


def _run_in_world(cfg, func: Callable[..., Any], rank: int, world_size: int, init_method: str, backend: str,
                  local_rank: int, local_size: int) -> None:
    """Join the process group, seed this process, run `func(cfg=cfg)`, and always leave the group."""
    init_distributed_training(
        rank=rank,
        world_size=world_size,
        init_method=init_method,
        backend=backend,
        local_rank=local_rank,
        local_size=local_size,
        use_cuda=cfg.NUM_GPUS > 0,
    )
    try:
        seed_process(cfg.RNG_SEED)
        func(cfg=cfg)
    finally:
        shutdown_distributed()


def launch_job(cfg, init_method: str | None, func: Callable[..., Any], daemon: bool = False) -> None:
    """Run `func(cfg=cfg)` on every process of this machine (see the module docstring for the launch modes).

    Args:
        cfg: the validated config (NUM_GPUS, NUM_SHARDS, SHARD_ID, DIST_BACKEND, RNG_SEED). Under torchrun or
            SLURM, NUM_SHARDS and SHARD_ID are set from the environment.
        init_method: where processes meet, e.g. "tcp://host:port" of shard 0 (PySlowFast's --init_method);
            None picks a free local port for single-machine runs. Ignored under torchrun ("env://") and SLURM
            (the first node of the job).
        func: a picklable (module-level) function taking `cfg=`.
        daemon: spawn the processes as daemons.
    Raises:
        ConfigError: NUM_GPUS > 0 without enough CUDA devices, or a layout that cannot work (before any process
            starts).
    """
    check_devices(cfg)
    plan = plan_launch(cfg, init_method)
    cfg.NUM_SHARDS, cfg.SHARD_ID = plan.num_shards, plan.shard_id
    _check_batch_divisible(cfg, plan.world_size)
    if plan.world_size == 1:
        seed_process(cfg.RNG_SEED)
        func(cfg=cfg)
        return
    if plan.source != "pyslowfast" and plan.rank == 0:
        logger.info("%s: %d processes on %d machine(s) meet at %s", plan.source, plan.world_size, plan.num_shards,
                    plan.init_method)
    if not plan.spawn:
        _run_in_world(cfg, func, plan.rank, plan.world_size, plan.init_method, plan.backend, plan.local_rank,
                      plan.local_size)
        return
    args = (plan.local_size, func, plan.init_method, plan.shard_id, plan.num_shards, plan.backend, cfg)
    if plan.local_size == 1:
        _run_spawned(0, *args)
    else:
        mp.spawn(_run_spawned, nprocs=plan.local_size, args=args, daemon=daemon)


# ------------------------------------------------------------------ CPU multi-process helper


def _run_cpu_worker(
    rank: int,
    num_processes: int,
    folder: str,
    func: Callable[..., Any],
    args: tuple[Any, ...],
) -> None:
    torch.set_num_threads(1)  # N processes share the machine's cores
    init_method = "file://" + os.path.join(folder, "rendezvous")
    init_distributed_training(rank, num_processes, init_method, "gloo", local_rank=rank, local_size=num_processes)
    try:
        result = func(*args)
    finally:
        shutdown_distributed()
    with open(os.path.join(folder, f"result_{rank}.pkl"), "wb") as handle:
        pickle.dump(result, handle)


def launch_cpu_processes(num_processes: int, func: Callable[..., Any], *args: Any) -> list[Any]:
    """Run `func(*args)` in `num_processes` fresh CPU processes that form one gloo world; return their results
    ordered by rank.

    `func` and its arguments must be picklable (e.g. a module-level function); the return values too. Inside,
    `get_rank()` / `get_world_size()` and every collective here work, and `build_model` wraps DDP as in a real run.
    A failure in any process raises here with that process's traceback. Meant for tests and debugging: the
    processes meet through a file in a fresh temporary folder (no port needed) and hand back their results there;
    each uses one intra-op thread.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    folder = tempfile.mkdtemp(prefix="slowfast_bmvit_dist_")
    try:
        mp.start_processes(
            _run_cpu_worker, args=(num_processes, folder, func, args), nprocs=num_processes, start_method="spawn"
        )
        results = []
        for rank in range(num_processes):
            with open(os.path.join(folder, f"result_{rank}.pkl"), "rb") as handle:
                results.append(pickle.load(handle))
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)
