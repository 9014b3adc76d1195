"""Multigrid's short cycle on the data side: batches whose crop size and batch size cycle every iteration.

Under MULTIGRID.SHORT_CYCLE the training loader (datasets/build.py `construct_loader`) yields three kinds of batch in
turn: crops SHORT_CYCLE_FACTORS[0] x DEFAULT_S and SHORT_CYCLE_FACTORS[1] x DEFAULT_S with the batch enlarged by
(S / crop)^2 each, then the current crop S with the configured batch, so that B x S^2 stays about constant (Wu et
al., CVPR 2020; PySlowFast's numbers). The schedule side (epochs, LR stages, long cycle) is engine/multigrid.py.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler


def short_cycle_batch_factors(cfg) -> list[int]:
    """Batch multipliers of the three short-cycle positions: round((S / (f x DEFAULT_S))^2) for each f in
    SHORT_CYCLE_FACTORS, then 1 (S = the current DATA.TRAIN_CROP_SIZE)."""
    crop, default_crop = cfg.DATA.TRAIN_CROP_SIZE, cfg.MULTIGRID.DEFAULT_S or cfg.DATA.TRAIN_CROP_SIZE
    return [int(round((crop / (f * default_crop)) ** 2)) for f in cfg.MULTIGRID.SHORT_CYCLE_FACTORS] + [1]


def short_cycle_crop_sizes(cfg) -> list[int]:
    """Crop sizes (pixels) of the three short-cycle positions: round(f x DEFAULT_S) for each f, then the current
    DATA.TRAIN_CROP_SIZE."""
    default_crop = cfg.MULTIGRID.DEFAULT_S or cfg.DATA.TRAIN_CROP_SIZE
    return [int(round(f * default_crop)) for f in cfg.MULTIGRID.SHORT_CYCLE_FACTORS] + [cfg.DATA.TRAIN_CROP_SIZE]


class ShortCycleBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (dataset index, short-cycle position) keys, the batch size following the short cycle.

    Positions 0, 1, 2 repeat batch after batch with batch sizes batch_size x `short_cycle_batch_factors(cfg)`.
    `construct_loader` wires it with `ShortCycleDataset` under MULTIGRID.SHORT_CYCLE; `set_start_batch(k)` skips
    the first k batches of the epoch (resuming mid-epoch keeps every batch's position in the cycle).
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, cfg):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.sampler = sampler
        self.drop_last = drop_last
        self.batch_sizes = [batch_size * factor for factor in short_cycle_batch_factors(cfg)]
        self.start_batch = 0

    def set_start_batch(self, count: int) -> None:
        """Skip the first `count` batches of the next iterations (the sampler itself must start at its beginning)."""
        if count < 0:
            raise ValueError(f"cannot skip a negative number of batches ({count})")
        self.start_batch = count

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        position, batch, produced = 0, [], 0
        for index in self.sampler:
            batch.append((index, position))
            if len(batch) == self.batch_sizes[position]:
                if produced >= self.start_batch:
                    yield batch
                produced += 1
                position, batch = (position + 1) % 3, []
        if batch and not self.drop_last and produced >= self.start_batch:
            yield batch

    def _full_length(self) -> int:
        # Exact count of the batches of a whole pass over a sampler of this length.
        remaining, position = len(self.sampler), 0
        full_cycle = sum(self.batch_sizes)
        count, remaining = 3 * (remaining // full_cycle), remaining % full_cycle
        while remaining >= self.batch_sizes[position]:
            remaining -= self.batch_sizes[position]
            count += 1
            position += 1
        return count + (1 if remaining and not self.drop_last else 0)

    def __len__(self) -> int:
        """Batches left to yield (all of them unless `set_start_batch` skipped some)."""
        return max(0, self._full_length() - self.start_batch)


def resize_clip(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Spatially resize a clip [C, T, H, W] to [C, T, size[0], size[1]] (bilinear, antialiased when shrinking)."""
    frames = clip.permute(1, 0, 2, 3)  # [T, C, H, W]: frames as a batch of images
    shrinking = size[0] < clip.shape[-2] or size[1] < clip.shape[-1]
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return resized.to(clip.dtype).permute(1, 0, 2, 3).contiguous()


class ShortCycleDataset(Dataset):
    """Wraps a detection/classification dataset so that `dataset[(index, position)]` returns the sample with its
    "inputs" clip [3, T, H, W] resized by crop_sizes[position] / DATA.TRAIN_CROP_SIZE (a plain index is passed
    through). Box coordinates in samples are fractions of the clip, so they need no change.
    """

    def __init__(self, dataset: Dataset, cfg):
        self.dataset = dataset
        self.crop_sizes = short_cycle_crop_sizes(cfg)
        self.reference_crop = cfg.DATA.TRAIN_CROP_SIZE
        self.collate_fn = getattr(dataset, "collate_fn", None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, position = key
        sample = self.dataset[index]
        crop = self.crop_sizes[position]
        if crop == self.reference_crop:
            return sample
        clip = sample["inputs"]
        height, width = clip.shape[-2:]
        size = (int(round(height * crop / self.reference_crop)), int(round(width * crop / self.reference_crop)))
        return {**sample, "inputs": resize_clip(clip, size)}
