"""Deterministic, resumable data order.

Two pieces make a training run's data a pure function of (RNG_SEED, epoch, position), whatever the number of
processes or loader workers and across kills and resumes:
- `EpochSampler` shuffles with a generator seeded by (seed, epoch), shards the permutation over processes
  (rank r takes every world-th index, padded like DistributedSampler) and can start mid-epoch;
- `PerSampleSeeded` wraps a dataset so that each `__getitem__` runs its random augmentation with Python, numpy and
  torch generators seeded by (seed, epoch, index), restoring the caller's generator states afterwards when it
  runs in the main process (so model randomness such as dropout is untouched).
"""

from __future__ import annotations

import math
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info


def _mix(*numbers: int) -> int:
    """A 63-bit seed from several integers (numpy's SeedSequence spreads them well)."""
    return int(np.random.SeedSequence([int(n) % (2**63) for n in numbers]).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochSampler(Sampler[int]):
    """Indices of one process for one epoch.

    Args:
        num_samples: dataset length.
        shuffle: permute (training) or keep order (testing).
        seed: base seed; the permutation of epoch e depends only on (seed, e).
        num_replicas, rank: processes and this process's index; each gets ceil(N / num_replicas) indices
            (the permutation is padded by wrapping around, as DistributedSampler does).
    """

    def __init__(self, num_samples: int, shuffle: bool, seed: int, num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.num_samples_total = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.per_replica = math.ceil(num_samples / num_replicas) if num_samples else 0
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation; also rewinds to its beginning."""
        self.epoch = epoch
        self.start = 0

    def set_start(self, position: int) -> None:
        """Skip the first `position` indices of this process's share (resuming mid-epoch)."""
        self.start = max(0, min(position, self.per_replica))

    def epoch_indices(self) -> list[int]:
        """This process's full index list for the current epoch."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(self.num_samples_total, generator=generator).tolist()
        else:
            order = list(range(self.num_samples_total))
        total = self.per_replica * self.num_replicas
        if order and len(order) < total:
            order += (order * math.ceil(total / len(order)))[: total - len(order)]
        return order[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start:])

    def __len__(self) -> int:
        return self.per_replica - self.start


class PerSampleSeeded(Dataset):
    """`dataset[index]` with its random augmentation seeded by (seed, epoch, index).

    Attribute access falls through to the wrapped dataset, so `collate_fn` and dataset-specific helpers stay
    reachable. `epoch` lives in shared memory: loader workers, persistent ones included, read the value the main
    process last set (set it before the epoch's iterator is created).
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(value)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name in ("dataset", "_epoch"):  # not yet set (during unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: int | tuple[int, int]):
        # A short-cycle key (index, cycle position) is seeded by its index alone.
        index = key[0] if isinstance(key, tuple) else key
        seed = _mix(self.seed, self.epoch, index)
        in_main_process = get_worker_info() is None
        if in_main_process:
            saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)
        try:
            return self.dataset[key]
        finally:
            if in_main_process:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])
