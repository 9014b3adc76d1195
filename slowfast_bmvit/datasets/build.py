"""Dataset registry and data loader construction.

Datasets are registered by class name (`@DATASET_REGISTRY.register()`), PySlowFast-style: the config's lower-case
name (TRAIN.DATASET / TEST.DATASET, e.g. "ava") is capitalised to find the class (`Ava`). A dataset is built as
`Dataset(cfg, split, **options)` with split in {"train", "val", "test"} and options from the engine (the
detection datasets take `model_reads_boxes`, see keyframe_dataset.py); a dataset with its own batching rule exposes
a `collate_fn` attribute that the loader uses.
"""

from __future__ import annotations

import torch
from fvcore.common.registry import Registry

from slowfast_bmvit.config import ConfigError

from .samplers import EpochSampler, PerSampleSeeded
from .short_cycle import ShortCycleBatchSampler, ShortCycleDataset

DATASET_REGISTRY = Registry("DATASET")
DATASET_REGISTRY.__doc__ = """Registry of datasets, built with `obj(cfg, split)`; see `build_dataset`."""

SPLITS = ("train", "val", "test")


def _dataset_class(dataset_name: str, key: str) -> type:
    try:
        return DATASET_REGISTRY.get(dataset_name.capitalize())
    except KeyError:
        known = ", ".join(sorted(name.lower() for name, _ in DATASET_REGISTRY))
        raise ConfigError(f"{key}: {dataset_name!r} is not a registered dataset (known: {known})") from None


def build_dataset(dataset_name: str, cfg, split: str, **options) -> torch.utils.data.Dataset:
    """Build the dataset registered as `dataset_name.capitalize()` for `split` (options go to its constructor)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _dataset_class(dataset_name, "TRAIN.DATASET" if split == "train" else "TEST.DATASET")(cfg, split, **options)


def prepare_dataset(dataset_name: str, cfg) -> None:
    """Run a dataset's one-time preparation (its `prepare(cfg)`, e.g. generating SynthAVA), if it has one.

    Multi-process jobs call `prepare_datasets` instead, so that no two processes write the same files.
    """
    prepare = getattr(_dataset_class(dataset_name, "TRAIN.DATASET"), "prepare", None)
    if prepare is not None:
        prepare(cfg)


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def prepare_datasets(cfg, dataset_names) -> None:
    """`prepare_dataset` for each of `dataset_names` (once per name), on the main process while the others wait at
    a barrier: the loops call it from every process before building their loaders."""
    world_size, rank = _world()
    if rank == 0:
        for name in dict.fromkeys(dataset_names):
            prepare_dataset(name, cfg)
    if world_size > 1:
        torch.distributed.barrier()


def construct_loader(cfg, split: str, dataset: torch.utils.data.Dataset | None = None,
                     **dataset_options) -> torch.utils.data.DataLoader:
    """A DataLoader for `split`: per-process batch = global batch / world size. Without `dataset`, the dataset is
    built with `dataset_options` (e.g. model_reads_boxes).

    Training shuffles (a permutation that depends only on RNG_SEED and the epoch) and drops the last incomplete
    batch (a training set smaller than one batch is a ConfigError naming both numbers); val/test keep order and every
    sample. Under torch.distributed each process reads its own shard. The order comes from an `EpochSampler` and
    the dataset is wrapped in `PerSampleSeeded`, so that augmentation is a pure function of (seed, epoch, index)
    whatever the number of workers or processes; call `set_loader_epoch(loader, epoch, first_iteration)` before each
    epoch.
    With MULTIGRID.SHORT_CYCLE the train loader's batches cycle through the short-cycle crops and batch sizes
    (datasets/short_cycle.py).
    """
    is_train = split == "train"
    dataset_name = cfg.TRAIN.DATASET if is_train else cfg.TEST.DATASET
    if dataset is None:
        dataset = build_dataset(dataset_name, cfg, split, **dataset_options)
    world, rank = _world()
    global_batch = cfg.TRAIN.BATCH_SIZE if is_train else cfg.TEST.BATCH_SIZE
    batch_size = max(1, global_batch // world)
    sampler = EpochSampler(len(dataset), shuffle=is_train, seed=cfg.RNG_SEED, num_replicas=world, rank=rank)
    common = {
        "num_workers": cfg.DATA_LOADER.NUM_WORKERS,
        "pin_memory": cfg.DATA_LOADER.PIN_MEMORY and cfg.NUM_GPUS > 0,
        "collate_fn": getattr(dataset, "collate_fn", None),
        # Workers live across epochs: the epoch reaches them through PerSampleSeeded's shared-memory counter.
        "persistent_workers": cfg.DATA_LOADER.NUM_WORKERS > 0,
    }
    if is_train and cfg.MULTIGRID.SHORT_CYCLE:
        batch_sampler = ShortCycleBatchSampler(sampler, batch_size, drop_last=True, cfg=cfg)
        loader = torch.utils.data.DataLoader(PerSampleSeeded(ShortCycleDataset(dataset, cfg), seed=cfg.RNG_SEED),
                                             batch_sampler=batch_sampler, **common)
    else:
        loader = torch.utils.data.DataLoader(PerSampleSeeded(dataset, seed=cfg.RNG_SEED), batch_size=batch_size,
                                             sampler=sampler, drop_last=is_train, **common)
    if is_train and len(loader) == 0:
        # drop_last would give epochs of 0 iterations that "train" nothing and still save checkpoints.
        largest = max(batch_sampler.batch_sizes) * world if cfg.MULTIGRID.SHORT_CYCLE else global_batch
        cycle = f" (multigrid's short cycle batches reach {largest})" if largest != global_batch else ""
        processes = f", split over {world} processes" if world > 1 else ""
        raise ConfigError(f"TRAIN.BATCH_SIZE: {global_batch}{cycle} is larger than the training set ({dataset_name}: "
                          f"{len(dataset)} clips{processes}); not one full batch per epoch")
    return loader


def clip_position(loader: torch.utils.data.DataLoader, epoch: int, first_iteration: int = 0) -> int:
    """Where batch `first_iteration` of `epoch` starts in the training clip stream, counted over all processes:
    epoch x the clips of one epoch's order (the dataset, padded to a multiple of the processes) + the clips of the
    epoch's first `first_iteration` batches of a train loader from `construct_loader`.

    It depends neither on the batch size of earlier epochs (multigrid's long cycle changes it) nor on where a run
    resumed, and an epoch never trains more than its order holds, so it grows monotonically over a whole run.
    """
    sampler = epoch_sampler(loader)
    if isinstance(loader.batch_sampler, ShortCycleBatchSampler):
        sizes = loader.batch_sampler.batch_sizes
        per_process = sum(sizes[index % len(sizes)] for index in range(first_iteration))
    else:
        per_process = first_iteration * loader.batch_size
    return epoch * sampler.per_replica * sampler.num_replicas + per_process * sampler.num_replicas


def epoch_sampler(loader: torch.utils.data.DataLoader) -> EpochSampler:
    """The `EpochSampler` of a loader from `construct_loader` (inside the short-cycle batch sampler if there is one)."""
    if isinstance(loader.batch_sampler, ShortCycleBatchSampler):
        return loader.batch_sampler.sampler
    return loader.sampler


def set_loader_epoch(loader: torch.utils.data.DataLoader, epoch: int, first_iteration: int = 0) -> None:
    """Point a loader from `construct_loader` at `epoch`'s order and augmentation, starting at batch
    `first_iteration` (non-zero when resuming mid-epoch). Call before iterating (workers copy the state)."""
    sampler = epoch_sampler(loader)
    sampler.set_epoch(epoch)
    loader.dataset.epoch = epoch
    if isinstance(loader.batch_sampler, ShortCycleBatchSampler):
        # Batch sizes differ along the cycle: skip whole batches so every batch keeps its cycle position.
        loader.batch_sampler.set_start_batch(first_iteration)
    else:
        sampler.set_start(first_iteration * loader.batch_size)
