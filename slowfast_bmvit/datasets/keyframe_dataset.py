"""What every keyframe-clip detection dataset (AVA, UCF101-24, JHMDB) shares: split handling and counters."""

from __future__ import annotations

import logging

import torch

from .collate import detection_collate

logger = logging.getLogger(__name__)


class KeyframeClipDataset(torch.utils.data.Dataset):
    """Base of the detection datasets: clips centred on keyframes, samples per datasets/collate.py.

    Sets `cfg`, `split`, `is_train`, `num_frames` (DATA.NUM_FRAMES), `sampling_rate` (DATA.SAMPLING_RATE, or
    MULTIGRID.LONG_CYCLE_SAMPLING_RATE for training under the long cycle),
    `num_classes` (MODEL.NUM_CLASSES), `model_reads_boxes` and counts persons the clip transform crops away.

    model_reads_boxes: whether the model takes person boxes as input (the two-stage baseline; the engine passes
        `uses_input_boxes(model)`). A dataset whose val/test keyframes could come from a person detector (AVA's
        AVA.TEST_PREDICT_BOX_LISTS) uses them only then: a model that finds the persons itself is evaluated on
        every annotated keyframe.
    """

    collate_fn = staticmethod(detection_collate)

    def __init__(self, cfg, split: str, model_reads_boxes: bool = True) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.cfg = cfg
        self.split = split
        self.is_train = split == "train"
        self.num_frames = cfg.DATA.NUM_FRAMES
        self.sampling_rate = cfg.DATA.SAMPLING_RATE
        if cfg.MULTIGRID.LONG_CYCLE and cfg.MULTIGRID.LONG_CYCLE_SAMPLING_RATE > 0 and self.is_train:
            # Fewer frames at a larger stride keep the clip's temporal span under multigrid's long cycle.
            self.sampling_rate = cfg.MULTIGRID.LONG_CYCLE_SAMPLING_RATE
        self.num_classes = cfg.MODEL.NUM_CLASSES
        self.model_reads_boxes = model_reads_boxes
        self.num_cropped_away = 0

    def _count_cropped_away(self, count: int) -> None:
        before = self.num_cropped_away
        self.num_cropped_away += count
        # Log when the running count crosses a power of two: a record without flooding the log.
        if self.num_cropped_away.bit_length() > before.bit_length():
            logger.info("%s: %d person box(es) cropped away by the clip transform and dropped so far (this process)",
                        self.split, self.num_cropped_away)
