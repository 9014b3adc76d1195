"""UCF101-24 and JHMDB-21 from an ACT ground-truth pickle, registered as "ucf24" and "jhmdb".

Samples (one per keyframe, ACT.SPLIT's video list; datasets/act_convert.py makes the pickle):
- train: the annotated frames of every train video, every ACT.TRAIN_FRAME_STRIDE-th of each video's sorted list;
- val / test: the annotated frames of every test video (with ACT.TEST_ALL_FRAMES, all its frames), every
  ACT.TEST_FRAME_STRIDE-th. `keyframes` lists them as (video_idx, frame) for the evaluator.
Every person whose tube covers the keyframe is a target: an actor (True) with a one-hot label over
MODEL.NUM_CLASSES (the tube's label).

Clips: DATA.NUM_FRAMES frames every DATA.SAMPLING_RATE centred on the keyframe (PySlowFast's rule, see
frame_io.clip_frame_indices), clamped to the video; then `DetectionTransform` (transforms.py). Frames come from
JPEG folders (ACT.SOURCE "frames": ACT.FRAME_DIR/<Class>/<video>/ACT.FRAME_PATTERN, read with frame_io's
missing / unreadable-frame policy) or are decoded from video files with PyAV (ACT.SOURCE "videos",
ACT.FRAME_DIR/<Class>/<video>ACT.VIDEO_EXT or ACT.FRAME_DIR/<video>ACT.VIDEO_EXT; see video_io.py).

Boxes are in pixels of the annotation resolution (ACT "resolution", 320x240 for both datasets). They are normalised
by that resolution, so they land on the same image content whatever size the frames are stored at (e.g. the 340x256
re-encoded UCF clips: x scales by 340/320, y by 256/240). meta["orig_size"] is the annotation resolution, so
predictions normalised to the frame map back to annotation pixels for frame-mAP.
A video file with fewer frames than the annotation's nframes is clamped to its frames (a warning per video); a
keyframe past its end raises `VideoReadError` unless DATA.ON_BAD_FRAME is "skip" (then its last frame is used and
counted). Video frames are numbered by time (video_io.py): frames lost in the middle of a file are missing, not
shifted. With DATA.ON_BAD_FRAME "error" the first read of such a video raises `VideoReadError` naming the file and
its first missing frame; with "skip" every video is indexed when the dataset is built and the keyframes whose clip
needs a missing frame are left out, counted and warned about (`keyframes_skipped`; at test time their ground truth
still counts, as missed).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.evaluation.act_groundtruth import load_act_pickle

from .act_convert import annotated_frames
from .build import DATASET_REGISTRY
from .keyframe_dataset import KeyframeClipDataset
from .frame_io import FrameReader, clip_frame_indices
from .transforms import DetectionTransform
from .video_io import VideoReader, VideoReadError

logger = logging.getLogger(__name__)


class ActDataset(KeyframeClipDataset):
    """Keyframe clips of an ACT-format dataset; samples follow the contract of datasets/collate.py."""

    def __init__(self, cfg, split: str, **options) -> None:
        super().__init__(cfg, split, **options)
        self.source = cfg.ACT.SOURCE

        if not cfg.ACT.GT_FILE:
            raise ConfigError("ACT.GT_FILE: no ground-truth pickle given (convert one with tools/convert_ucf24.py "
                              "or tools/convert_jhmdb.py)")
        self.gt = load_act_pickle(cfg.ACT.GT_FILE)
        self.labels: list[str] = list(self.gt["labels"])
        if len(self.labels) != self.num_classes:
            raise ConfigError(f"MODEL.NUM_CLASSES: {self.num_classes}, but {cfg.ACT.GT_FILE} has "
                              f"{len(self.labels)} classes")
        splits = self.gt["train_videos" if self.is_train else "test_videos"]
        if not 1 <= cfg.ACT.SPLIT <= len(splits):
            raise ConfigError(f"ACT.SPLIT: {cfg.ACT.SPLIT} outside 1..{len(splits)} (splits in {cfg.ACT.GT_FILE})")
        self.video_names: list[str] = list(splits[cfg.ACT.SPLIT - 1])
        if not self.video_names:
            raise ValueError(f"ACT.GT_FILE: {cfg.ACT.GT_FILE} has no {'train' if self.is_train else 'test'} videos "
                             f"in split {cfg.ACT.SPLIT}")
        self.keyframes = self._select_keyframes()
        self.media_paths = self._locate_media()
        self.transform = DetectionTransform.from_cfg(cfg, split)
        self.frame_reader = FrameReader(cfg.DATA.ON_BAD_FRAME)
        self.video_reader = VideoReader(cfg.ACT.DECODED_FRAME_CACHE, cfg.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE)
        self.num_keyframes_past_video_end = 0
        self._short_videos_reported: set[int] = set()
        # (video_idx, frame) of the keyframes left out because their clip needs frames missing from the video file
        self.keyframes_skipped = np.zeros((0, 2), np.int64)
        if self.source == "videos" and cfg.DATA.ON_BAD_FRAME == "skip":
            self._skip_keyframes_on_missing_frames()

    # ------------------------------------------------------------------------------------------------------ loading
    def _select_keyframes(self) -> np.ndarray:
        """int64 [S, 2] (video_idx, 1-based frame) of the split's samples."""
        stride = self.cfg.ACT.TRAIN_FRAME_STRIDE if self.is_train else self.cfg.ACT.TEST_FRAME_STRIDE
        key = "ACT.TRAIN_FRAME_STRIDE" if self.is_train else "ACT.TEST_FRAME_STRIDE"
        if stride < 1:
            raise ConfigError(f"{key}: must be >= 1, got {stride}")
        all_frames = not self.is_train and self.cfg.ACT.TEST_ALL_FRAMES
        rows = []
        for video_idx, video in enumerate(self.video_names):
            if all_frames:
                frames = np.arange(1, int(self.gt["nframes"][video]) + 1)
            else:
                frames = annotated_frames(self.gt["gttubes"][video])
            frames = frames[::stride]
            rows.append(np.stack([np.full(len(frames), video_idx), frames], axis=1))
        keyframes = np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)
        logger.info("%s %s split %d: %d videos, %d keyframes (%s, stride %d)", type(self).__name__, self.split,
                    self.cfg.ACT.SPLIT, len(self.video_names), len(keyframes),
                    "all frames" if all_frames else "annotated frames", stride)
        return keyframes

    def _locate_media(self) -> list[str]:
        """Per video: its frame folder ("frames") or video file ("videos"); all must exist."""
        root = self.cfg.ACT.FRAME_DIR
        paths, missing = [], []
        for video in self.video_names:
            if self.source == "frames":
                candidates = [os.path.join(root, video)]
                found = [c for c in candidates if os.path.isdir(c)]
            else:
                ext = self.cfg.ACT.VIDEO_EXT
                candidates = [os.path.join(root, video + ext), os.path.join(root, os.path.basename(video) + ext)]
                found = [c for c in candidates if os.path.isfile(c)]
            if found:
                paths.append(found[0])
            else:
                missing.append(" or ".join(candidates))
        if missing:
            what = "frame folder" if self.source == "frames" else "video file"
            raise FileNotFoundError(f"ACT.FRAME_DIR: {len(missing)} of the {len(self.video_names)} {self.split} "
                                    f"videos have no {what} (ACT.SOURCE {self.source}); first: {missing[0]}")
        return paths

    def _skip_keyframes_on_missing_frames(self) -> None:
        """Index every video; drop (and count) the keyframes whose clip needs a frame missing from the file."""
        skip = np.zeros(len(self.keyframes), dtype=bool)
        damaged = []
        for video_idx, path in enumerate(tqdm(self.media_paths, desc="indexing videos", leave=False,
                                              dynamic_ncols=True)):
            index = self.video_reader.index(path)
            missing = index.missing_frames
            if not len(missing):
                continue
            damaged.append((path, int(missing[0])))
            for row in np.flatnonzero(self.keyframes[:, 0] == video_idx):
                clip = self._clip_frames(video_idx, int(self.keyframes[row, 1]), index.num_frames)
                skip[row] = bool(np.isin(clip, missing).any())
        if skip.any():
            self.keyframes_skipped = self.keyframes[skip]
            self.keyframes = self.keyframes[~skip]
            path, first = damaged[0]
            index = self.video_reader.index(path)
            logger.warning("%s %s: skipped %d of %d keyframes whose clips need frames missing from %d damaged video "
                           "file(s) (DATA.ON_BAD_FRAME skip; their ground truth still counts); first: %s, %s (%s)",
                           type(self).__name__, self.split, int(skip.sum()), len(skip), len(damaged), path,
                           index.describe_gap(first), index.missing_cause())
        if not len(self.keyframes):
            raise VideoReadError(f"{self.split}: every keyframe's clip needs frames missing from its video file")

    # ------------------------------------------------------------------------------------------------------ samples
    def __len__(self) -> int:
        return len(self.keyframes)

    def boxes_at(self, video_idx: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground truth of one frame: boxes float32 [n, 4] (x1, y1, x2, y2, annotation pixels), labels int64 [n]."""
        boxes, labels = [], []
        for label, tubes in sorted(self.gt["gttubes"][self.video_names[video_idx]].items()):
            for tube in tubes:
                rows = np.flatnonzero(tube[:, 0] == frame)
                if len(rows):
                    boxes.append(tube[rows[0], 1:5])
                    labels.append(label)
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        video_idx, frame = (int(v) for v in self.keyframes[index])
        video = self.video_names[video_idx]
        frames = self._read_clip(video_idx, frame)

        height, width = (int(v) for v in self.gt["resolution"][video])
        boxes, labels = self.boxes_at(video_idx, frame)
        ori_boxes = np.clip(boxes / np.array([width, height, width, height], np.float32), 0.0, 1.0)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()))) if self.is_train else None
        clip = self.transform(frames, ori_boxes, rng)
        if not clip.keep.all():
            self._count_cropped_away(int((~clip.keep).sum()))

        keep = torch.from_numpy(clip.keep)
        one_hot = torch.zeros((len(labels), self.num_classes), dtype=torch.float32)
        one_hot[torch.arange(len(labels)), torch.from_numpy(labels)] = 1.0
        one_hot = one_hot[keep]
        return {
            "inputs": clip.inputs,
            "boxes": torch.from_numpy(clip.boxes).float(),
            "labels": one_hot,
            "actor": torch.ones(len(one_hot), dtype=torch.bool),
            "ori_boxes": torch.from_numpy(ori_boxes)[keep],
            "meta": {
                "video": video,
                "video_idx": video_idx,
                "sec": None,
                "frame": frame,
                "orig_size": (height, width),
                "crop_box": clip.crop_box,
            },
        }

    def _read_clip(self, video_idx: int, frame: int) -> np.ndarray:
        """uint8 RGB [T, H, W, 3] of the clip centred on 1-based `frame`."""
        nframes = int(self.gt["nframes"][self.video_names[video_idx]])
        path = self.media_paths[video_idx]
        if self.source == "frames":
            pattern = self.cfg.ACT.FRAME_PATTERN
            frame_paths = [os.path.join(path, pattern.format(k)) for k in range(1, nframes + 1)]
            indices = clip_frame_indices(frame - 1, self.num_frames, self.sampling_rate, nframes)
            return self.frame_reader.read_clip(frame_paths, indices)

        index = self.video_reader.index(path)
        missing = index.missing_frames
        if len(missing) and self.cfg.DATA.ON_BAD_FRAME == "error":
            raise VideoReadError(f"{path}: {index.describe_gap(int(missing[0]))} ({index.missing_cause()}; first "
                                 f"missing frame {int(missing[0])} of {self.video_names[video_idx]}); replace the "
                                 f"video, or set DATA.ON_BAD_FRAME skip to skip the keyframes whose clips need "
                                 f"missing frames")
        available = index.num_frames
        if available < nframes:
            self._report_short_video(video_idx, path, available, nframes)
            if frame > available:
                if self.cfg.DATA.ON_BAD_FRAME == "error":
                    raise VideoReadError(f"{path} has {available} frames but keyframe {frame} of "
                                         f"{self.video_names[video_idx]} is annotated (nframes {nframes} in "
                                         f"ACT.GT_FILE); set DATA.ON_BAD_FRAME skip to use its last frame")
                self.num_keyframes_past_video_end += 1
                logger.warning("%s: keyframe %d past the video's %d frames; using its last frame (%d so far)",
                               path, frame, available, self.num_keyframes_past_video_end)
        return self.video_reader.read(path, self._clip_frames(video_idx, frame, available))

    def _clip_frames(self, video_idx: int, frame: int, available: int) -> np.ndarray:
        """1-based frames of a video file of `available` frames that the clip centred on `frame` reads (a keyframe
        past the file's end is replaced by its last frame)."""
        nframes = int(self.gt["nframes"][self.video_names[video_idx]])
        frame = min(frame, available)
        return clip_frame_indices(frame - 1, self.num_frames, self.sampling_rate, min(available, nframes)) + 1

    def keyframe_image(self, meta: dict[str, Any]) -> np.ndarray:
        """uint8 RGB [H, W, 3] of a sample's keyframe at the media's own resolution (for drawings)."""
        video_idx, frame = int(meta["video_idx"]), int(meta["frame"])
        path = self.media_paths[video_idx]
        if self.source == "frames":
            return self.frame_reader.read_clip([os.path.join(path, self.cfg.ACT.FRAME_PATTERN.format(frame))],
                                               np.array([0]))[0]
        last = self.video_reader.num_frames(path)
        return self.video_reader.read(path, np.array([min(frame, last)]))[0]

    def _report_short_video(self, video_idx: int, path: str, available: int, nframes: int) -> None:
        if video_idx not in self._short_videos_reported:
            self._short_videos_reported.add(video_idx)
            logger.warning("%s has %d frames, fewer than the annotation's %d: clips are clamped to its frames",
                           path, available, nframes)


@DATASET_REGISTRY.register()
class Ucf24(ActDataset):
    """UCF101-24 (24 classes, split 1), e.g. converted with tools/convert_ucf24.py."""


@DATASET_REGISTRY.register()
class Jhmdb(ActDataset):
    """JHMDB-21 (21 classes, splits 1-3), e.g. converted with tools/convert_jhmdb.py."""
