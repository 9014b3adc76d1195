"""Batching of detection samples with a variable number of persons per clip.

A dataset's `__getitem__` returns one sample dict:
    inputs     float tensor [3, T, H, W], normalised (DATA.MEAN / DATA.STD)
    boxes      float tensor [n, 4] persons' boxes (x1, y1, x2, y2) normalised to the transformed clip, in [0, 1]
    labels     float tensor [n, C] multi-hot over MODEL.NUM_CLASSES (index = class id - 1; only evaluated classes)
    actor      bool tensor [n]: the person performs at least one evaluated action (False: annotated non-actor)
    ori_boxes  float tensor [n, 4] the same boxes in the original frame, normalised (x1, y1, x2, y2)
    meta       dict: video (str), video_idx (int), sec (AVA second or None), frame (1-based frame or None),
               orig_size (height, width) in pixels, crop_box (x0, y0, x1, y1): the clip's region in original
               normalised frame coordinates (maps clip-normalised predictions back to the frame)
`detection_collate` stacks B samples into the batch the engine and every detection model read.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


def detection_collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples into a batch.

    Returns a dict with:
        inputs     [B, 3, T, H, W]
        targets    list of B dicts {"boxes": [n, 4] (cx, cy, w, h) clip-normalised, "labels": [n, C],
                   "actor": [n] bool}: what the bipartite matching loss reads
        boxes      [R, 5] (batch index, x1, y1, x2, y2) in input pixels: RoIs for the two-stage model
        ori_boxes  [R, 5] (batch index, x1, y1, x2, y2) original-frame normalised
        labels     [R, C]
        metadata   [R, 2] (video_idx, sec or frame), PySlowFast's detection metadata
        meta       list of B per-clip meta dicts
    where R is the total number of persons in the batch.
    """
    inputs = torch.stack([s["inputs"] for s in samples])
    height, width = inputs.shape[-2:]
    scale = inputs.new_tensor([width, height, width, height])
    targets, rois, ori_rois, labels, metadata = [], [], [], [], []
    for index, sample in enumerate(samples):
        boxes = sample["boxes"].float()
        cxcywh = torch.stack(
            [(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
             boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]],
            dim=-1,
        ) if len(boxes) else boxes.new_zeros((0, 4))
        targets.append({"boxes": cxcywh, "labels": sample["labels"].float(), "actor": sample["actor"].bool()})
        batch_column = boxes.new_full((len(boxes), 1), float(index))
        rois.append(torch.cat([batch_column, boxes * scale], dim=1))
        ori_rois.append(torch.cat([batch_column, sample["ori_boxes"].float()], dim=1))
        labels.append(sample["labels"].float())
        meta = sample["meta"]
        second_or_frame = meta["sec"] if meta.get("sec") is not None else meta.get("frame", -1)
        metadata.append(boxes.new_tensor([[meta["video_idx"], second_or_frame]]).expand(len(boxes), 2))
    num_classes = samples[0]["labels"].shape[-1] if samples else 0
    return {
        "inputs": inputs,
        "targets": targets,
        "boxes": torch.cat(rois) if rois else inputs.new_zeros((0, 5)),
        "ori_boxes": torch.cat(ori_rois) if ori_rois else inputs.new_zeros((0, 5)),
        "labels": torch.cat(labels) if labels else inputs.new_zeros((0, num_classes)),
        "metadata": torch.cat(metadata) if metadata else inputs.new_zeros((0, 2)),
        "meta": [s["meta"] for s in samples],
    }
