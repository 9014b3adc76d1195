"""Running a detection model over a loader and gathering the detections of every process."""

from __future__ import annotations

from typing import Any

import torch
from tqdm import tqdm

from . import distributed as du
from .amp import autocast_context
from .task import DetectionTask, move_batch


@torch.no_grad()
def run_inference(cfg, loader, model, task: DetectionTask, desc: str = "test") -> list[dict[str, Any]]:
    """Per-clip detections of the whole split, in dataset order, on the main process ([] on the others).

    Under torch.distributed each process runs its shard; the shards are gathered and de-duplicated (the
    sampler pads the last shard by repeating clips).
    """
    model.eval()
    device = next(model.parameters()).device
    detections: list[dict[str, Any]] = []
    indices: list[int] = []
    sampler_indices = loader.sampler.epoch_indices() if hasattr(loader.sampler, "epoch_indices") else None
    position = 0
    for batch in tqdm(loader, desc=desc, disable=not du.is_master_proc(), leave=False, dynamic_ncols=True):
        batch = move_batch(batch, device)
        with autocast_context(cfg, device):
            clips = task.detections(model, batch)
        detections.extend(clips)
        count = len(clips)
        indices.extend(sampler_indices[position:position + count] if sampler_indices else
                       range(position, position + count))
        position += count
    if du.get_world_size() > 1:
        gathered = du.all_gather_objects(list(zip(indices, detections)))
        if not du.is_master_proc():
            return []
        unique = {index: clip for shard in gathered for index, clip in shard}
        return [unique[index] for index in sorted(unique)]
    return detections
