"""SynthAVA: a generated dataset in AVA's exact on-disk format, and the "synthava" dataset that reads it.

Layout under the root (what `generate_synth_ava` writes, deterministic per seed: identical bytes for a seed):
    frames/<video>/<video>_%06d.jpg          30 fps JPEG frames (quality 90); file k is frame index k - 1
    frame_lists/train.csv, val.csv           PySlowFast frame lists
    annotations/synthava_train_v2.2.csv      ground truth (video,sec,x1,y1,x2,y2,action_id,person_id)
    annotations/synthava_val_v2.2.csv        ground truth of val, directly usable by the AVA evaluator
    annotations/synthava_val_predicted_boxes.csv   person boxes with scores (two-stage baseline), empty action
    annotations/synthava_action_list_v2.2.pbtxt     label map: real AVA ids and names of the 9 evaluated classes
    annotations/synthava_val_excluded_timestamps_v2.2.csv   excluded val keyframes (their GT is not written)
    synthava.json                            generation parameters and counts (written last: marks completion)
Time convention (AVA's): a video of S seconds has frames 0 .. 30*S - 1, frame index of second s is (s - 900) * 30;
keyframes are seconds 902 .. 900 + S - 2, so a 16x4 clip (+-32 frames) never leaves the video. Every keyframe is
annotated: validate with AVA.FULL_TEST_ON_VAL True (upstream's default keeps only sec % 4 == 0 on val).
The GT files also hold unevaluated actions (crouch/kneel, lie/sleep, listen to), as the real AVA files hold all 80
classes: persons with none of the 9 evaluated ones are the non-actors.
See synthetic_render.py for the scenes and actions.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from slowfast_bmvit.config import ConfigError
from slowfast_bmvit.evaluation.ava_io import write_exclusions_csv, write_groundtruth_csv

from . import synthetic_render as render
from .ava import Ava
from .build import DATASET_REGISTRY

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
FIRST_KEYFRAME_SEC = 902
JPEG_QUALITY = 90
_SPLIT_CODES = {"train": 0, "val": 1}
# Person boxes smaller than this many pixels on a side at a keyframe (a person leaving the frame) are not annotated.
_MIN_ANNOTATED_SIDE_PX = 3.0


@dataclass(frozen=True)
class SynthAvaPaths:
    """Where a generated SynthAVA lives (absolute paths; file names relative to their folder for the AVA keys)."""

    root: str
    frame_dir: str
    frame_list_dir: str
    annotation_dir: str
    train_list: str = "train.csv"
    val_list: str = "val.csv"
    train_groundtruth: str = "synthava_train_v2.2.csv"
    val_groundtruth: str = "synthava_val_v2.2.csv"
    val_predicted_boxes: str = "synthava_val_predicted_boxes.csv"
    label_map: str = "synthava_action_list_v2.2.pbtxt"
    exclusions: str = "synthava_val_excluded_timestamps_v2.2.csv"
    manifest: str = "synthava.json"

    @classmethod
    def under(cls, root: str) -> "SynthAvaPaths":
        root = os.path.abspath(root)
        return cls(root, os.path.join(root, "frames"), os.path.join(root, "frame_lists"),
                   os.path.join(root, "annotations"))


def keyframe_seconds(video_seconds: int) -> list[int]:
    """AVA seconds of the keyframes of a `video_seconds`-long SynthAVA video: 902 .. 900 + video_seconds - 2."""
    if video_seconds < 4:
        raise ValueError(f"SYNTH.VIDEO_SECONDS must be >= 4 (keyframes need 2 s of context), got {video_seconds}")
    return list(range(FIRST_KEYFRAME_SEC, 900 + video_seconds - 1))


def video_name(split: str, index: int) -> str:
    return f"{split}_{index:04d}"


def _video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # One stream per video: the bytes of a video do not depend on worker count or generation order.
    return np.random.default_rng([seed, _SPLIT_CODES[split], index])


@dataclass
class _VideoAnnotations:
    name: str
    num_frames: int
    gt_rows: list  # (sec, box[4], action_id, person_id)
    predicted_rows: list  # (sec, box[4], score)
    excluded: list  # secs
    num_unannotated: int


def _write_video(task: tuple[str, int, int, str, int, int, int, bool, render.SceneStyle]) -> _VideoAnnotations:
    """Render, write and annotate one video (runs in a worker process)."""
    split, index, seed, frame_dir, video_seconds, height, width, exclude_one, style = task
    rng = _video_rng(seed, split, index)
    scene = render.random_scene(rng, height, width, video_seconds, style)
    name = video_name(split, index)
    folder = os.path.join(frame_dir, name)
    os.makedirs(folder, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for frame in range(scene.num_frames):
        path = os.path.join(folder, f"{name}_{frame + 1:06d}.jpg")
        if not cv2.imwrite(path, scene.render(frame), params):
            raise OSError(f"cannot write {path}")

    secs = keyframe_seconds(video_seconds)
    excluded = [int(rng.choice(secs))] if exclude_one and rng.random() < 0.25 else []
    gt_rows, predicted_rows, unannotated = [], [], 0
    for sec in secs:
        k = sec - 900
        for person, actor in enumerate(scene.actors):
            box = scene.box(person, render.FPS * k)
            if min((box[2] - box[0]) * width, (box[3] - box[1]) * height) < _MIN_ANNOTATED_SIDE_PX:
                unannotated += 1
                continue
            if split == "val":
                noise = rng.normal(0.0, 0.01, 4)
                predicted_rows.append((sec, np.clip(box + noise, 0, 1), float(rng.uniform(0.85, 1.0))))
            if sec in excluded:
                continue
            for action in actor.segments[k].labels():
                gt_rows.append((sec, box, action, person))
        if split == "val" and rng.random() < 0.3:  # a low-scoring false positive, below the usual thresholds
            x, y = rng.uniform(0, 0.7, 2)
            predicted_rows.append((sec, np.array([x, y, x + 0.2, y + 0.3]), float(rng.uniform(0.1, 0.6))))
    return _VideoAnnotations(name, scene.num_frames, gt_rows, predicted_rows, excluded, unannotated)


def write_label_map(path: str) -> None:
    """The evaluated SynthAVA classes in the 80-class AVA style (`label { name label_id label_type }`)."""
    with open(path, "w", encoding="utf-8") as f:
        for action_id, name, label_type in render.EVALUATED_CLASSES:
            f.write(f'label {{\n  name: "{name}"\n  label_id: {action_id}\n  label_type: {label_type}\n}}\n')


def _write_split(paths: SynthAvaPaths, split: str, videos: Sequence[_VideoAnnotations]) -> dict:
    list_path = os.path.join(paths.frame_list_dir, paths.train_list if split == "train" else paths.val_list)
    with open(list_path, "w", encoding="utf-8") as f:
        f.write("original_vido_id video_id frame_id path labels\n")
        for video_idx, video in enumerate(videos):
            f.writelines(f'{video.name} {video_idx} {frame} {video.name}/{video.name}_{frame + 1:06d}.jpg ""\n'
                         for frame in range(video.num_frames))
    rows = [(v.name, *row) for v in videos for row in v.gt_rows]
    gt_name = paths.train_groundtruth if split == "train" else paths.val_groundtruth
    write_groundtruth_csv(os.path.join(paths.annotation_dir, gt_name), [r[0] for r in rows], [r[1] for r in rows],
                          np.array([r[2] for r in rows]).reshape(-1, 4), [r[3] for r in rows], [r[4] for r in rows])
    if split == "val":
        with open(os.path.join(paths.annotation_dir, paths.val_predicted_boxes), "w", encoding="utf-8") as f:
            for video in videos:
                f.writelines("%s,%04d,%.3f,%.3f,%.3f,%.3f,,%.6f\n" % (video.name, sec, *box, score)
                             for sec, box, score in video.predicted_rows)
        write_exclusions_csv(os.path.join(paths.annotation_dir, paths.exclusions),
                             [(v.name, sec) for v in videos for sec in v.excluded])
    return {"videos": len(videos), "gt_rows": len(rows),
            "persons_not_annotated_out_of_frame": sum(v.num_unannotated for v in videos)}


class _InProcess:
    """The `map` of an executor, run in this process (num_workers <= 1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    @staticmethod
    def map(function, items):
        return map(function, items)


def generate_synth_ava(root: str, seed: int = 0, num_train_videos: int = 24, num_val_videos: int = 8,
                       video_seconds: int = 12, frame_size: Sequence[int] = (128, 160), num_workers: int = 1,
                       progress: bool = True, style: render.SceneStyle = render.SceneStyle()) -> SynthAvaPaths:
    """Write a complete SynthAVA dataset at `root` (which must not exist) and return its paths.

    The dataset is built in a temporary sibling folder and moved into place when complete, so an interrupted run
    leaves no half dataset and concurrent processes (e.g. several ranks) cannot read a partial one.
    Args:
        frame_size: (height, width) in pixels. num_workers: processes rendering videos (1: in this process).
        style: how cluttered the scenes are, limb thickness, people per video, occluders (SYNTH.CLUTTER, ...).
    """
    height, width = (int(v) for v in frame_size)
    if min(height, width) < 32:
        raise ValueError(f"SYNTH.FRAME_SIZE must be at least 32 pixels a side, got {list(frame_size)}")
    keyframe_seconds(video_seconds)  # validates the length
    if num_train_videos < 1 or num_val_videos < 1:
        raise ValueError("SynthAVA needs at least one train and one val video")
    final = SynthAvaPaths.under(root)
    if os.path.exists(final.root):
        raise FileExistsError(f"SynthAVA root already exists: {final.root}")
    parent = os.path.dirname(final.root)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=os.path.basename(final.root) + ".partial-", dir=parent)
    try:
        paths = SynthAvaPaths.under(staging)
        for folder in (paths.frame_dir, paths.frame_list_dir, paths.annotation_dir):
            os.makedirs(folder)
        tasks = [(split, i, seed, paths.frame_dir, video_seconds, height, width, split == "val", style)
                 for split, count in (("train", num_train_videos), ("val", num_val_videos)) for i in range(count)]
        videos = []
        with tqdm(total=len(tasks), desc="SynthAVA videos", unit="video", disable=not progress) as bar:
            with ProcessPoolExecutor(num_workers) if num_workers > 1 else _InProcess() as pool:
                for video in pool.map(_write_video, tasks):
                    videos.append(video)
                    bar.update(1)
        write_label_map(os.path.join(paths.annotation_dir, paths.label_map))
        stats = {split: _write_split(paths, split, [v for t, v in zip(tasks, videos) if t[0] == split])
                 for split in ("train", "val")}
        manifest = {"format_version": FORMAT_VERSION, **_generation_params(seed, num_train_videos, num_val_videos,
                                                                            video_seconds, (height, width), style),
                    "keyframe_seconds": keyframe_seconds(video_seconds),
                    "classes": [{"id": i, "name": n, "label_type": t} for i, n, t in render.EVALUATED_CLASSES],
                    "stats": stats}
        with open(os.path.join(staging, paths.manifest), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        try:
            os.rename(staging, final.root)
        except OSError:
            if not os.path.isfile(os.path.join(final.root, final.manifest)):
                raise
            logger.info("another process generated %s first; using it", final.root)
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("SynthAVA written to %s: %s", final.root, stats)
    return final


def _generation_params(seed, num_train_videos, num_val_videos, video_seconds, frame_size,
                       style: render.SceneStyle) -> dict:
    return {"seed": int(seed), "num_train_videos": int(num_train_videos), "num_val_videos": int(num_val_videos),
            "video_seconds": int(video_seconds), "frame_size": [int(v) for v in frame_size],
            "style": dataclasses.asdict(style)}


def scene_style(synth_cfg) -> render.SceneStyle:
    """The SceneStyle of the SYNTH.* keys (a ConfigError naming the key on a bad value)."""
    values = {"clutter": float(synth_cfg.CLUTTER), "limb_thickness": float(synth_cfg.LIMB_THICKNESS),
              "max_people": int(synth_cfg.MAX_PEOPLE), "occluder_probability": float(synth_cfg.OCCLUDER_PROBABILITY)}
    try:
        return render.SceneStyle(**values)
    except ValueError as err:
        message = str(err).removeprefix("SceneStyle: ")
        for field in values:
            message = message.replace(f"{field} must", f"SYNTH.{field.upper()} must")
        raise ConfigError(message) from None


def ensure_synth_ava(cfg) -> SynthAvaPaths:
    """The SynthAVA of cfg.SYNTH: generated at SYNTH.ROOT when missing (SYNTH.GENERATE_IF_MISSING), else checked.

    Raises ConfigError when SYNTH.ROOT holds a dataset generated with other SYNTH.* values, or is not a SynthAVA.
    """
    synth = cfg.SYNTH
    paths = SynthAvaPaths.under(synth.ROOT)
    style = scene_style(synth)
    wanted = _generation_params(synth.SEED, synth.NUM_TRAIN_VIDEOS, synth.NUM_VAL_VIDEOS, synth.VIDEO_SECONDS,
                                synth.FRAME_SIZE, style)
    manifest_path = os.path.join(paths.root, paths.manifest)
    if not os.path.exists(paths.root):
        if not synth.GENERATE_IF_MISSING:
            raise FileNotFoundError(f"SYNTH.ROOT: no SynthAVA at {paths.root} and SYNTH.GENERATE_IF_MISSING is False "
                                    f"(generate it with tools/make_synth_ava.py --root {synth.ROOT})")
        workers = min(4, os.cpu_count() or 1)  # the bytes do not depend on it
        logger.info("generating SynthAVA at %s (%s) with %d process(es)", paths.root, wanted, workers)
        return generate_synth_ava(paths.root, synth.SEED, synth.NUM_TRAIN_VIDEOS, synth.NUM_VAL_VIDEOS,
                                  synth.VIDEO_SECONDS, synth.FRAME_SIZE, num_workers=workers, style=style)
    if not os.path.isfile(manifest_path):
        raise ConfigError(f"SYNTH.ROOT: {paths.root} exists but has no {paths.manifest}: not a complete SynthAVA")
    with open(manifest_path, "r", encoding="utf-8") as f:
        manifest = json.load(f)
    found = {key: manifest.get(key) for key in wanted}
    if found["style"] is None:  # written before scene styles existed: the original look
        found["style"] = dataclasses.asdict(render.SceneStyle())
    if found != wanted or manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"SYNTH.ROOT: {paths.root} was generated with {found} (format "
                          f"{manifest.get('format_version')}), the config asks {wanted} (format {FORMAT_VERSION}); "
                          f"delete the folder or point SYNTH.ROOT elsewhere")
    return paths


def synthava_config(cfg, paths: SynthAvaPaths):
    """A copy of `cfg` whose AVA.* file keys point at the SynthAVA in `paths` (other keys unchanged)."""
    cfg = cfg.clone()
    cfg.defrost()
    ava = cfg.AVA
    ava.FRAME_DIR, ava.FRAME_LIST_DIR, ava.ANNOTATION_DIR = paths.frame_dir, paths.frame_list_dir, paths.annotation_dir
    ava.TRAIN_LISTS, ava.TEST_LISTS = [paths.train_list], [paths.val_list]
    ava.TRAIN_GT_BOX_LISTS, ava.TRAIN_PREDICT_BOX_LISTS = [paths.train_groundtruth], []
    ava.TEST_PREDICT_BOX_LISTS = [paths.val_predicted_boxes]
    ava.GROUNDTRUTH_FILE, ava.LABEL_MAP_FILE, ava.EXCLUSION_FILE = (paths.val_groundtruth, paths.label_map,
                                                                    paths.exclusions)
    return cfg


@DATASET_REGISTRY.register()
class Synthava(Ava):
    """TRAIN.DATASET / TEST.DATASET "synthava": the AVA dataset over the SynthAVA of cfg.SYNTH (generated if needed).

    All AVA.* reading behaviour applies (TEST_USE_GT_BOXES, FULL_TEST_ON_VAL, ...); only the AVA.* paths are
    replaced. `evaluation_files` gives the label map, val GT and exclusions for the evaluator. The test split is val.
    """

    @staticmethod
    def prepare(cfg) -> None:
        """Generate the dataset when missing (called once, on the main process, before any loader is built)."""
        ensure_synth_ava(cfg)

    def __init__(self, cfg, split: str, **options) -> None:
        self.paths = ensure_synth_ava(cfg)
        if split == "val" and not cfg.AVA.FULL_TEST_ON_VAL:
            logger.warning("SynthAVA %s: AVA.FULL_TEST_ON_VAL is False, so only keyframes with sec %% 4 == 0 are used",
                           split)
        super().__init__(synthava_config(cfg, self.paths), split, **options)


# ---------------------------------------------------------------------------------------------- temporal probe
@dataclass
class SynthClip:
    """Rendered frames of one person around a keyframe.

    frames: uint8 RGB [F, H, W, 3]; keyframe_index: index of the keyframe in `frames`; box: [4] normalised
    (x1, y1, x2, y2) at the keyframe; labels: AVA action ids at the keyframe.
    """

    frames: np.ndarray
    keyframe_index: int
    box: np.ndarray
    labels: list[int]


def render_time_reversal_pair(seed: int = 0, frame_size: Sequence[int] = (128, 160)) -> tuple[SynthClip, SynthClip]:
    """A person falling down and the same person getting up, rendered independently by the generator's own motions.

    Returns (fall, get_up): 59 frames each (+-29 frames around the keyframe), the same background and person, no
    camera jitter. get_up.frames equals fall.frames reversed in time, so the two share the keyframe image exactly,
    but their labels are "fall down" (5) and "get up" (6): the keyframe alone cannot tell them apart.
    """
    height, width = (int(v) for v in frame_size)
    rng = np.random.default_rng(seed)
    background = render.make_background(rng, height + 2, width + 2)
    person_height = float(rng.uniform(0.5, 0.8) * height)
    look = render.random_appearance(rng, person_height, carries=False)
    rest = render.random_rest_pose(rng)
    fall_dir = int(rng.choice([-1, 1]))
    # Feet placed so that the lying body stays in the frame.
    lo, hi = (0.3 * person_height, width - 2 - person_height) if fall_dir > 0 else \
        (2 + person_height, width - 0.3 * person_height)
    x = float(rng.uniform(lo, max(lo, hi)))
    ground = float(rng.uniform(person_height + 0.02 * height, height - 1))
    facing = int(rng.choice([-1, 1]))
    seconds, keyframe = 2, render.FPS

    def clip(actions: list[str]) -> SynthClip:
        segments = [render.Segment(a, rest, fall_dir=fall_dir) for a in actions]
        state = render.PersonState(x=x, ground=ground, facing=facing)
        poses = render.simulate_person(state, segments, person_height, render.FPS * seconds)
        scene = render.Scene(background, 1, height, width, [render.Actor(look, poses, segments)], [],
                             np.zeros((render.FPS * seconds, 2), np.int64))
        frames = np.stack([scene.render(f)[:, :, ::-1] for f in range(1, 2 * keyframe)])
        return SynthClip(frames, keyframe - 1, scene.box(0, keyframe), segments[1].labels())

    return clip(["stand", "fall", "lie"]), clip(["lie", "getup", "stand"])


def describe(paths: SynthAvaPaths) -> dict:
    """The manifest of a generated SynthAVA (parameters, classes, counts)."""
    with open(os.path.join(paths.root, paths.manifest), "r", encoding="utf-8") as f:
        return json.load(f)


__all__ = ["SynthAvaPaths", "SynthClip", "Synthava", "generate_synth_ava", "ensure_synth_ava", "synthava_config",
           "scene_style", "render_time_reversal_pair", "keyframe_seconds", "write_label_map", "describe"]
