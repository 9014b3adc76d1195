"""A trained detector on any video: keyframe clips, actor tracks, an annotated video and the detections as files.

One pass over the input, in constant memory whatever its length:
1. frames are decoded one by one (datasets/frame_stream.py) and resized as the model was tested
   (`DetectionTransform.from_cfg(cfg, "test")`: DATA.RESIZE_MODE, DATA.TEST_CROP_SIZE); only the resized frames of
   the next clip's window (DATA.NUM_FRAMES x DATA.SAMPLING_RATE frames) are kept;
2. a clip is centred on every DEMO.STRIDE-th frame (keyframes 0, STRIDE, 2 STRIDE, ...; PySlowFast's clip rule
   `clip_frame_indices`, edge frames repeated), clips are batched by TEST.BATCH_SIZE and go through the test's
   forward and post-processing (TEST.FLIP_AVERAGE, then the triplets with p(actor) > BMVIT.ACTOR_THRESH, NMS and
   TOP_K: postprocess.py); the forward runs on the GPU under bf16 autocast when NUM_GPUS > 0, whatever
   TRAIN.MIXED_PRECISION says (amp.demo_autocast), and in float32 on the CPU;
3. the persons of successive keyframes are linked into tracks (evaluation/tubes.py's greedy linker, class
   agnostic, pairs taken by IoU with the track's last box; DEMO.TRACK_IOU, DEMO.TRACK_MAX_GAP keyframes), so each
   person keeps an id;
4. a second decoder of the same input follows one keyframe behind and draws every frame: the box of each track
   and its DEMO.TOP_K_ACTIONS actions, box and scores linearly interpolated between the two keyframes around the
   frame (a track seen at one of them only is drawn on the frames nearer to it), then encodes it (H.264).
Outputs, in the output folder: `annotated.mp4` (the input's frame count, size and rate), `detections.csv` (AVA rows
video, time in seconds, x1, y1, x2, y2 as fractions of the frame, action id, score, plus the track id; one row per
person and action scored >= DEMO.ACTION_SCORE_THRESH) and `detections.json` (per keyframe: frame, time, and per
person its track, box, p(actor) and actions), both written as the keyframes are processed.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.datasets.frame_io import clip_frame_indices
from slowfast_bmvit.datasets.frame_stream import FrameSource
from slowfast_bmvit.datasets.transforms import ClipGeometry, DetectionTransform, to_normalized_tensor
from slowfast_bmvit.evaluation.tubes import GreedyLinker
from slowfast_bmvit.models import unwrap_model
from slowfast_bmvit.models.flip_average import test_time_outputs
from slowfast_bmvit.models.postprocess import postprocess_from_cfg
from slowfast_bmvit.visualization.tracks import draw_tracks
from slowfast_bmvit.visualization.video_writer import H264Writer

from .amp import demo_autocast
from .task import uses_input_boxes

logger = logging.getLogger(__name__)

VIDEO_NAME = "annotated.mp4"
CSV_NAME = "detections.csv"
JSON_NAME = "detections.json"


# ------------------------------------------------------------------------------------------------ keyframe clips
def keyframe_clips(frames: Iterable[np.ndarray], num_frames: int, sampling_rate: int, stride: int
                   ) -> Iterator[tuple[int, np.ndarray]]:
    """(keyframe, clip frames [num_frames, ...]) for keyframes 0, stride, 2 stride, ... of a frame stream.

    The clip of keyframe c holds frames c - (num_frames * sampling_rate) // 2 + i * sampling_rate, clamped to the
    video (`clip_frame_indices`); its centre frame (i = num_frames // 2) is c. Only frames inside the next clip's
    window are kept (at most num_frames * sampling_rate), and a clip is given as soon as its last frame has
    arrived; at the end of the stream the remaining keyframes get clips clamped to the last frame.
    """
    half = (num_frames * sampling_rate) // 2
    window: dict[int, np.ndarray] = {}
    next_key, count = 0, 0
    for index, frame in enumerate(frames):
        count = index + 1
        if index >= next_key - half:
            window[index] = frame
        while next_key - half + (num_frames - 1) * sampling_rate <= index:
            indices = np.maximum(next_key - half + np.arange(num_frames) * sampling_rate, 0)
            yield next_key, np.stack([window[int(i)] for i in indices])
            next_key += stride
            for old in [i for i in window if i < next_key - half]:
                del window[old]
    while next_key < count:
        indices = clip_frame_indices(next_key, num_frames, sampling_rate, count)
        yield next_key, np.stack([window[int(i)] for i in indices])
        next_key += stride


# ------------------------------------------------------------------------------------------------ keyframe results
@dataclass
class KeyframeResult:
    """The tracked persons of one keyframe.

    frame: 0-based frame index; boxes [k, 4] (x1, y1, x2, y2) fractions of the frame; track_ids [k];
    actor_scores [k] p(actor); scores [k, M] the row scores of the M named classes (`DemoLabels.columns`).
    """

    frame: int
    boxes: np.ndarray
    track_ids: np.ndarray
    actor_scores: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class DemoLabels:
    """The classes the demo reports: score columns that have a name, their AVA-style ids (column + 1), names, and
    short names for drawing (without AVA's parenthesised examples)."""

    columns: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def from_column_names(cls, column_names: Sequence[str]) -> "DemoLabels":
        columns = np.array([c for c, name in enumerate(column_names) if name], dtype=np.int64)
        if not len(columns):
            raise ConfigError("TEST.DATASET: its label map names none of the MODEL.NUM_CLASSES score columns")
        return cls(columns, tuple(column_names[c] for c in columns))

    @property
    def ids(self) -> np.ndarray:
        return self.columns + 1

    def short_name(self, index: int) -> str:
        return self.names[index].split(" (")[0]


def interpolate_keyframes(before: KeyframeResult, after: KeyframeResult | None, frame: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes [k, 4], track ids [k], scores [k, M]) of the tracks shown at `frame`, before.frame <= frame.

    A track at both keyframes gets its box and scores interpolated linearly; a track at one of them only is shown
    on the frames nearer to that keyframe (ties go to `after`). Without `after` (past the last keyframe) the tracks
    of `before` are held.
    """
    if after is None or frame == before.frame:
        return before.boxes, before.track_ids, before.scores
    weight = (frame - before.frame) / (after.frame - before.frame)
    where_after = {int(t): i for i, t in enumerate(after.track_ids)}
    boxes, ids, scores = [], [], []
    for i, track in enumerate(before.track_ids):
        j = where_after.pop(int(track), None)
        if j is not None:
            boxes.append((1 - weight) * before.boxes[i] + weight * after.boxes[j])
            scores.append((1 - weight) * before.scores[i] + weight * after.scores[j])
            ids.append(int(track))
        elif weight < 0.5:
            boxes.append(before.boxes[i]), scores.append(before.scores[i]), ids.append(int(track))
    if weight >= 0.5:
        for track, j in where_after.items():
            boxes.append(after.boxes[j]), scores.append(after.scores[j]), ids.append(track)
    num_classes = before.scores.shape[1]
    return (np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(ids, dtype=np.int64),
            np.array(scores, dtype=np.float64).reshape(-1, num_classes))


def action_lines(scores: np.ndarray, labels: DemoLabels, top_k: int, thresh: float) -> list[str]:
    """"name score" lines of the top_k classes scored >= thresh, best first."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [f"{labels.short_name(i)} {scores[i]:.2f}" for i in order if scores[i] >= thresh]


# ------------------------------------------------------------------------------------------------ outputs
class DetectionFiles:
    """detections.csv and detections.json, written keyframe by keyframe (see the module docstring)."""

    def __init__(self, output_dir: Path, source: FrameSource, labels: DemoLabels, stride: int, thresh: float,
                 checkpoint: str | None):
        self.source, self.labels, self.thresh = source, labels, thresh
        self._csv_file = open(output_dir / CSV_NAME, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._json = open(output_dir / JSON_NAME, "w", encoding="utf-8")
        header = {"video": source.name, "input": source.path, "fps": float(source.fps),
                  "num_frames": source.num_frames, "height": source.height, "width": source.width, "stride": stride,
                  "checkpoint": checkpoint, "box_format": "x1, y1, x2, y2 as fractions of the frame",
                  "classes": {int(i): name for i, name in zip(labels.ids, labels.names)}}
        self._json.write(json.dumps(header)[:-1] + ', "keyframes": [')
        self._first = True

    def add(self, result: KeyframeResult) -> None:
        seconds = result.frame / float(self.source.fps)
        persons = []
        for box, track, actor, scores in zip(result.boxes, result.track_ids, result.actor_scores, result.scores):
            kept = np.flatnonzero(scores >= self.thresh)
            kept = kept[np.argsort(-scores[kept], kind="stable")]
            for index in kept:
                self._csv.writerow([self.source.name, f"{seconds:.3f}", *(f"{v:.4f}" for v in box),
                                    int(self.labels.ids[index]), f"{scores[index]:.6f}", int(track)])
            persons.append({"track": int(track), "box": [round(float(v), 5) for v in box],
                            "actor_score": round(float(actor), 5),
                            "actions": [{"id": int(self.labels.ids[i]), "name": self.labels.names[i],
                                         "score": round(float(scores[i]), 5)} for i in kept]})
        record = {"frame": result.frame, "time": round(seconds, 4), "persons": persons}
        self._json.write(("" if self._first else ", ") + json.dumps(record))
        self._first = False

    def close(self) -> None:
        self._json.write("]}\n")
        self._json.close()
        self._csv_file.close()


class AnnotatedVideo:
    """Draws and encodes the frames of a second pass over the input, one keyframe behind the detections."""

    def __init__(self, path: Path, source: FrameSource, labels: DemoLabels, top_k: int, thresh: float, crf: int,
                 progress: tqdm):
        self.labels, self.top_k, self.thresh, self.progress = labels, top_k, thresh, progress
        self._frames = enumerate(source.frames())
        self._writer = H264Writer(path, source.width, source.height, source.fps, crf)
        self._previous: KeyframeResult | None = None

    def _draw_until(self, end: int | None, after: KeyframeResult | None) -> None:
        """Draw and encode the frames before `end` (all remaining frames when None)."""
        while end is None or (self._previous is not None and self._writer.num_frames < end):
            item = next(self._frames, None)
            if item is None:
                return
            index, image = item
            if self._previous is None:
                boxes, ids, scores = np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros((0, len(self.labels.columns)))
            else:
                boxes, ids, scores = interpolate_keyframes(self._previous, after, index)
            lines = [action_lines(row, self.labels, self.top_k, self.thresh) for row in scores]
            self._writer.write(draw_tracks(image, boxes, ids, lines))
            self.progress.update(1)

    def add(self, result: KeyframeResult) -> None:
        self._draw_until(result.frame, result)
        self._previous = result

    def close(self) -> int:
        """Draw the frames after the last keyframe, finish the file; returns the number of frames written."""
        self._draw_until(None, None)
        self._writer.close()
        return self._writer.num_frames

    def abort(self) -> None:
        self._writer.abort()


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class DemoSummary:
    """What a demo run produced."""

    video: str
    frames_in: int
    frames_out: int
    keyframes: int
    tracks: int
    detections: int
    seconds: float
    output_dir: str
    files: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        rate = self.keyframes / self.seconds if self.seconds > 0 else float("nan")
        return (f"{self.video}: {self.frames_out} frames, {self.keyframes} keyframes ({rate:.2f} clips/s), "
                f"{self.detections} person detections in {self.tracks} tracks -> {self.output_dir}")


class _ClipBatches:
    """Keyframe clips of a stream, transformed for the model and grouped into batches."""

    def __init__(self, cfg, source: FrameSource):
        transform = DetectionTransform.from_cfg(cfg, "test")
        self.geometry: ClipGeometry = transform.geometry(source.height, source.width, None)
        self.mean, self.std, self.bgr = transform.mean, transform.std, transform.bgr
        self.source = source
        self.num_frames, self.rate = cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE
        self.stride, self.batch_size = cfg.DEMO.STRIDE, cfg.TEST.BATCH_SIZE

    def __iter__(self) -> Iterator[tuple[list[int], torch.Tensor]]:
        resized = (self.geometry.apply_to_frames(frame[None])[0] for frame in self.source.frames())
        keys, clips = [], []
        for key, frames in keyframe_clips(resized, self.num_frames, self.rate, self.stride):
            keys.append(key)
            clips.append(to_normalized_tensor(frames, self.mean, self.std, self.bgr))
            if len(keys) == self.batch_size:
                yield keys, torch.stack(clips)
                keys, clips = [], []
        if keys:
            yield keys, torch.stack(clips)


@torch.no_grad()
def run_demo(cfg, model: nn.Module, source: FrameSource, output_dir: str | os.PathLike, column_names: Sequence[str],
             checkpoint: str | None = None, show_progress: bool = True) -> DemoSummary:
    """Run a trained set-prediction detector (BMViT) over `source`; write the three outputs to `output_dir`.

    Args:
        model: in eval mode on its device (the CPU, or the GPU when cfg.NUM_GPUS > 0); weights already loaded.
        column_names: MODEL.NUM_CLASSES class names ("" for unused columns), e.g. `column_names_from_cfg(cfg)`.
        checkpoint: recorded in detections.json.
    """
    if uses_input_boxes(model):
        raise ConfigError(f"MODEL.MODEL_NAME: {cfg.MODEL.MODEL_NAME} needs person boxes as input; the demo runs "
                          f"set-prediction models (BMViT), which find the persons themselves")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    labels = DemoLabels.from_column_names(column_names)
    device = next(model.parameters()).device
    demo = cfg.DEMO
    linker = GreedyLinker(demo.TRACK_IOU, demo.TRACK_MAX_GAP, plus_one=False, keep_rows=False, by="iou")
    model.eval()
    start = time.perf_counter()
    keyframes, detections, track_ids = 0, 0, set()
    progress = tqdm(total=source.num_frames, desc=source.name, unit="frame", dynamic_ncols=True,
                    disable=not show_progress)
    files = DetectionFiles(output_dir, source, labels, demo.STRIDE, demo.ACTION_SCORE_THRESH, checkpoint)
    video = AnnotatedVideo(output_dir / VIDEO_NAME, source, labels, demo.TOP_K_ACTIONS, demo.ACTION_SCORE_THRESH,
                           demo.VIDEO_CRF, progress)
    try:
        batches = _ClipBatches(cfg, source)
        meta = [{"crop_box": batches.geometry.crop_box}] * cfg.TEST.BATCH_SIZE
        for keys, inputs in batches:
            with demo_autocast(device):
                outputs = test_time_outputs(unwrap_model(model), inputs.to(device), cfg)
            outputs = {key: value.float().cpu() for key, value in outputs.items()}
            for key, clip in zip(keys, postprocess_from_cfg(outputs, meta[:len(keys)], cfg)):
                boxes = clip["boxes"].double().numpy()
                actor = clip["actor_scores"].double().numpy()
                rows = np.column_stack([np.full(len(boxes), keyframes), boxes, actor])
                ids = linker.step(keyframes, rows)
                scores = clip["class_scores"].double().numpy()[:, labels.columns]
                result = KeyframeResult(key, boxes, ids, actor, scores)
                files.add(result)
                video.add(result)
                keyframes += 1
                detections += len(boxes)
                track_ids.update(ids.tolist())
        frames_out = video.close()
    except BaseException:
        video.abort()
        raise
    finally:
        files.close()
        progress.close()
    return DemoSummary(source.name, source.num_frames, frames_out, keyframes, len(track_ids), detections,
                       time.perf_counter() - start, str(output_dir),
                       {"video": str(output_dir / VIDEO_NAME), "csv": str(output_dir / CSV_NAME),
                        "json": str(output_dir / JSON_NAME)})
