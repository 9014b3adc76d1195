"""AVA v2.2 in PySlowFast's layout (frame lists + box CSVs), registered as "ava".

Which keyframes and boxes each split reads
- train: AVA.TRAIN_GT_BOX_LISTS (ground truth) + AVA.TRAIN_PREDICT_BOX_LISTS (score >= DETECTION_SCORE_THRESH).
- val / test, model that reads person boxes (the two-stage baseline, `model_reads_boxes`): AVA.TEST_PREDICT_BOX_LISTS
  (score-thresholded person detections, upstream's behaviour), or with AVA.TEST_USE_GT_BOXES the ground truth
  AVA.GROUNDTRUTH_FILE.
- val / test, model that finds the persons itself (BMViT): every keyframe of AVA.GROUNDTRUTH_FILE, whatever
  AVA.TEST_USE_GT_BOXES says: its test set must not depend on a person detector (the boxes only give the labels of
  a validation loss).
  The val split keeps seconds with sec % 4 == 0 unless AVA.FULL_TEST_ON_VAL; val/test skip AVA.EXCLUSION_FILE keys.
A keyframe exists when its (video, sec) has at least one box and the video is in the frame lists (a ground-truth
`video,sec` row without a box, as in the ActivityNet challenge files, makes a test keyframe without persons for a
model that finds the persons itself; training and box-reading models leave it out); a keyframe whose
frame (sec - 900) * 30 lies outside its video's frames is skipped and counted in a warning (on val/test its
ground truth still counts as missed by the evaluator).

Labels are multi-hot over MODEL.NUM_CLASSES (index = action id - 1), keeping only the label map's (evaluated) ids.
A person with none of them is a non-actor (actor False): still returned, so a box loss may use it.
Clips: DATA.NUM_FRAMES frames every DATA.SAMPLING_RATE around frame (sec - 900) * 30, clamped to the video; then
`DetectionTransform` (see transforms.py). Persons whose box is cropped away are dropped and counted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.evaluation.ava_io import read_exclusions, read_labelmap

from . import ava_helper
from .build import DATASET_REGISTRY
from .keyframe_dataset import KeyframeClipDataset
from .frame_io import FrameReader, clip_frame_indices
from .transforms import DetectionTransform

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Keyframe:
    """One sample: video_idx, sec, boxes float32 [n, 4] (original-normalised), actions: n tuples of action ids."""

    video_idx: int
    sec: int
    boxes: np.ndarray
    actions: tuple[tuple[int, ...], ...]


def _annotation_path(cfg, key: str, name: str) -> str:
    path = os.path.join(cfg.AVA.ANNOTATION_DIR, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"AVA.{key}: file not found: {path} (inside AVA.ANNOTATION_DIR)")
    return path


@DATASET_REGISTRY.register()
class Ava(KeyframeClipDataset):
    """AVA keyframe clips with their persons; samples follow the contract of datasets/collate.py."""

    def __init__(self, cfg, split: str, model_reads_boxes: bool = True) -> None:
        super().__init__(cfg, split, model_reads_boxes)

        self.categories, self.class_ids = read_labelmap(_annotation_path(cfg, "LABEL_MAP_FILE", cfg.AVA.LABEL_MAP_FILE))
        too_large = sorted(i for i in self.class_ids if not 1 <= i <= self.num_classes)
        if too_large:
            raise ConfigError(f"MODEL.NUM_CLASSES: {self.num_classes} cannot hold label map ids {too_large}")

        list_names = cfg.AVA.TRAIN_LISTS if self.is_train else cfg.AVA.TEST_LISTS
        self.frame_lists = ava_helper.load_frame_lists(
            [os.path.join(cfg.AVA.FRAME_LIST_DIR, name) for name in list_names], cfg.AVA.FRAME_DIR)
        self.keyframes = self._load_keyframes()
        self._check_frame_folders()
        self.transform = DetectionTransform.from_cfg(cfg, split)
        self.reader = FrameReader(cfg.DATA.ON_BAD_FRAME)

    # ------------------------------------------------------------------------------------------------------ loading
    def _box_files(self) -> list[tuple[str, bool]]:
        ava = self.cfg.AVA
        if self.is_train:
            return [(_annotation_path(self.cfg, "TRAIN_GT_BOX_LISTS", n), True) for n in ava.TRAIN_GT_BOX_LISTS] + \
                [(_annotation_path(self.cfg, "TRAIN_PREDICT_BOX_LISTS", n), False) for n in ava.TRAIN_PREDICT_BOX_LISTS]
        if ava.TEST_USE_GT_BOXES or not self.model_reads_boxes:
            if not ava.TEST_USE_GT_BOXES:
                logger.info("AVA %s: the model finds the persons itself, so every keyframe of AVA.GROUNDTRUTH_FILE "
                            "is tested (AVA.TEST_PREDICT_BOX_LISTS serves models that read person boxes)", self.split)
            return [(_annotation_path(self.cfg, "GROUNDTRUTH_FILE", ava.GROUNDTRUTH_FILE), True)]
        return [(_annotation_path(self.cfg, "TEST_PREDICT_BOX_LISTS", n), False) for n in ava.TEST_PREDICT_BOX_LISTS]

    def _load_keyframes(self) -> list[Keyframe]:
        files = self._box_files()
        if not files:
            raise ConfigError("AVA.TRAIN_GT_BOX_LISTS: no box list for the train split" if self.is_train else
                              "AVA.TEST_PREDICT_BOX_LISTS: no box list for testing (or set AVA.TEST_USE_GT_BOXES)")
        keep_sec = None
        if self.split == "val" and not self.cfg.AVA.FULL_TEST_ON_VAL:
            keep_sec = lambda sec: sec % 4 == 0  # noqa: E731  (PySlowFast's "mini" validation)
        boxes = ava_helper.load_box_csvs(files, self.cfg.AVA.DETECTION_SCORE_THRESH, keep_sec)
        excluded = set()
        if not self.is_train and self.cfg.AVA.EXCLUSION_FILE:
            excluded = read_exclusions(_annotation_path(self.cfg, "EXCLUSION_FILE", self.cfg.AVA.EXCLUSION_FILE))

        video_index = self.frame_lists.index_of()
        keyframes: list[Keyframe] = []
        unlisted_videos: set[str] = set()
        outside: list[tuple[str, int, int, int]] = []  # (video, sec, frame, video length)
        num_excluded = num_unevaluated_actions = num_without_persons = 0
        for (video, sec), persons in sorted(boxes.items()):
            if video not in video_index:
                unlisted_videos.add(video)
                continue
            if (video, sec) in excluded:
                num_excluded += 1
                continue
            length = len(self.frame_lists.frame_paths[video_index[video]])
            if not 0 <= ava_helper.sec_to_frame(sec) < length:
                # Clamping would train and test on the video's edge frame with this keyframe's boxes.
                outside.append((video, sec, ava_helper.sec_to_frame(sec), length))
                continue
            if not persons and (self.is_train or self.model_reads_boxes):
                # A keyframe annotated without persons (a `video,sec` row) is a test keyframe of a model that finds
                # the persons itself; it has nothing to train on, nor boxes for a model that reads them.
                num_without_persons += 1
                continue
            actions = []
            for person in persons.values():
                evaluated = tuple(a for a in person.actions if a in self.class_ids)
                num_unevaluated_actions += len(person.actions) - len(evaluated)
                actions.append(evaluated)
            person_boxes = np.array([p.box for p in persons.values()], dtype=np.float32).reshape(-1, 4)
            keyframes.append(Keyframe(video_index[video], sec, person_boxes, tuple(actions)))

        if unlisted_videos:
            logger.warning("%s: %d keyframe video(s) absent from the frame lists skipped (e.g. %s)", self.split,
                           len(unlisted_videos), sorted(unlisted_videos)[0])
        if outside:
            video, sec, frame, length = outside[0]
            logger.warning("%s: %d keyframe(s) outside their video's frames skipped (e.g. %s sec %d: frame %d, the "
                           "frame list has frames 0..%d)%s", self.split, len(outside), video, sec, frame, length - 1,
                           "" if self.is_train else "; their ground truth still counts as missed")
        if num_without_persons:
            logger.info("%s: %d keyframe(s) annotated without persons left out (nothing to %s)", self.split,
                        num_without_persons, "train on" if self.is_train else "read boxes from")
        self.num_outside_keyframes = len(outside)
        if not keyframes:
            raise ValueError(f"{self.split}: no keyframe with boxes in {', '.join(p for p, _ in files)} matches a "
                             f"video of the frame lists")
        num_persons = sum(len(k.actions) for k in keyframes)
        num_actors = sum(1 for k in keyframes for a in k.actions if a)
        logger.info("AVA %s: %d keyframes, %d persons (%d actors, %d non-actors); %d excluded keyframes skipped; "
                    "%d action labels outside the label map ignored", self.split, len(keyframes), num_persons,
                    num_actors, num_persons - num_actors, num_excluded, num_unevaluated_actions)
        return keyframes

    def _check_frame_folders(self) -> None:
        """Before any training: every keyframe's video has its frames on disk up to its last keyframe (the frames a
        clip needs past the video's end are clamped, as upstream). A ConfigError names AVA.FRAME_DIR otherwise,
        a warning under DATA.ON_BAD_FRAME skip."""
        needed: dict[str, int] = {}
        for keyframe in self.keyframes:
            video = self.frame_lists.video_names[keyframe.video_idx]
            needed[video] = max(needed.get(video, 0), ava_helper.sec_to_frame(keyframe.sec) + 1)
        paths = dict(zip(self.frame_lists.video_names, self.frame_lists.frame_paths))
        check = ava_helper.check_frames(paths, needed)
        if check.ok:
            return
        message = (f"AVA.FRAME_DIR: {check.summary()} for the {self.split} keyframes in {self.cfg.AVA.FRAME_DIR} "
                   f"(tools/prepare_ava.py extracts and checks them)")
        if self.cfg.DATA.ON_BAD_FRAME != "skip":
            raise ConfigError(message)
        logger.warning("%s; DATA.ON_BAD_FRAME skip: reading the nearest frames instead", message)

    @property
    def evaluation_files(self) -> dict[str, str]:
        """Paths the AVA evaluator needs for this dataset: labelmap, groundtruth, exclusions ("" if none)."""
        ava = self.cfg.AVA
        join = lambda name: os.path.join(ava.ANNOTATION_DIR, name) if name else ""  # noqa: E731
        return {"labelmap": join(ava.LABEL_MAP_FILE), "groundtruth": join(ava.GROUNDTRUTH_FILE),
                "exclusions": join(ava.EXCLUSION_FILE)}

    # ------------------------------------------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self.keyframes)

    def __getitem__(self, index: int) -> dict:
        keyframe = self.keyframes[index]
        paths = self.frame_lists.frame_paths[keyframe.video_idx]
        center = ava_helper.sec_to_frame(keyframe.sec)
        frames = self.reader.read_clip(paths, clip_frame_indices(center, self.num_frames, self.sampling_rate,
                                                                 len(paths)))
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()))) if self.is_train else None
        clip = self.transform(frames, keyframe.boxes, rng)
        if not clip.keep.all():
            self._count_cropped_away(int((~clip.keep).sum()))

        labels = torch.zeros((len(keyframe.actions), self.num_classes), dtype=torch.float32)
        for person, actions in enumerate(keyframe.actions):
            for action in actions:
                labels[person, action - 1] = 1.0
        keep = torch.from_numpy(clip.keep)
        labels = labels[keep]
        return {
            "inputs": clip.inputs,
            "boxes": torch.from_numpy(clip.boxes).float(),
            "labels": labels,
            "actor": labels.sum(dim=1) > 0,
            "ori_boxes": torch.from_numpy(keyframe.boxes)[keep],
            "meta": {
                "video": self.frame_lists.video_names[keyframe.video_idx],
                "video_idx": keyframe.video_idx,
                "sec": keyframe.sec,
                "frame": None,
                "orig_size": tuple(frames.shape[1:3]),
                "crop_box": clip.crop_box,
            },
        }

    def keyframe_image(self, meta: dict) -> np.ndarray:
        """uint8 RGB [H, W, 3] of a sample's keyframe at the frames' own resolution (for drawings)."""
        paths = self.frame_lists.frame_paths[meta["video_idx"]]
        center = min(ava_helper.sec_to_frame(meta["sec"]), len(paths) - 1)
        return self.reader.read_clip(paths, np.array([center]))[0]
