"""UCF101-24 and JHMDB-21 annotations -> the ACT ground-truth dict, and that dict's pickle writer.

The ACT ground truth (docs/EVALUATION.md; its layout, pickle reader `load_act_pickle` and validator
`validate_act_gt` are evaluation/act_groundtruth.py's) is a dict of labels, train_videos, test_videos, nframes,
resolution and gttubes {video: {label: [float32 array [T, 5] of (frame 1-based, x1, y1, x2, y2) in pixels]}}.

Sources:
- corrected UCF101-24 (Singh et al.): `pyannot.pkl` ({video: {numf, label, annotations: [{label 0-23, sf 0-based,
  ef exclusive, boxes [ef - sf, 4] as x, y, w, h}]}}, numbers stored as uint8/uint16) and `finalAnnots.mat`
  (the same tubes with 1-based inclusive sf/ef and class 1..24). Both give identical boxes for every video.
- per-frame text ground truth (YOWO's export of JHMDB-21): one file per annotated frame, flat
  `<Class>_<video>_<frame:05d>.txt` or nested `<Class>/<video>/<frame:05d>.txt`, lines `cls x1 y1 x2 y2` with cls
  1-based.

Box convention. The UCF101-24 boxes are stored as x, y, w, h and converted to (x1, y1, x2, y2) = (x, y, x + w,
y + h). Coordinates are 1-based pixel indices of the box's first and last column/row: over the 573,862 boxes x and
y are never 0, x + w never exceeds 320 and y + h never exceeds 240, and boxes clipped at the frame border run from
x = 1 to x + w = 320. Under the ACT evaluation's +1-pixel convention (area = (x2 - x1 + 1) * (y2 - y1 + 1)) such a box
covers exactly the 320 columns of the frame; x + w - 1 would make it 319 wide and never touch the last column.
x + w is also what the annotation authors' own loader (ROAD) uses, and JHMDB's per-frame files follow the same
1-based inclusive convention (x2 up to 320, y2 up to 240). Frame numbers are 1-based: frame = sf + 1 + i for the i-th
box of a pyannot tube (= the finalAnnots sf + i).

Splits (UCF101-24 has split 1 only). With a test list, its videos are the test set and every other annotated video
is training; list entries may carry an extension or a trailing label (UCF101's own list format) and entries without
annotation are counted and logged; a list that is empty, not text, or names no annotated video is an error.
Without a test list, UCF101's official split-1 rule is used: groups g01-g07 are test, g08-g25 train (it reproduces
testlist01.txt exactly: 910 test, 2284 train videos). Per-frame text ground truth carries no split: without a test
list every video goes to test (YOWO's JHMDB export is the split-1 test set).
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from slowfast_bmvit.evaluation.act_groundtruth import ActAnnotationError, validate_act_gt

logger = logging.getLogger(__name__)

UCF24_RESOLUTION = (240, 320)
JHMDB_RESOLUTION = (240, 320)
JHMDB_CLASSES = (
    "brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour", "pullup", "push",
    "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand", "swing_baseball", "throw", "walk", "wave",
)
# UCF101 split 1 tests on the videos of groups 1-7 (of 25).
UCF101_SPLIT1_TEST_GROUPS = range(1, 8)

_UCF_GROUP = re.compile(r"_g(\d+)_c\d+$")


# ----------------------------------------------------------------------------------------------------------------
# Pickle writing
# ----------------------------------------------------------------------------------------------------------------
def save_act_pickle(gt: Mapping[str, Any], path: str | Path) -> None:
    """Validate `gt` and write it as a pickle (creating the parent folder)."""
    path = Path(path)
    validate_act_gt(gt, source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(dict(gt), file, protocol=pickle.HIGHEST_PROTOCOL)
    logger.info("wrote %s: %s", path, describe_act_gt(gt))


def describe_act_gt(gt: Mapping[str, Any]) -> str:
    """One line: classes, videos per split, annotated frames and tubes."""
    test = [video for split in gt["test_videos"][:1] for video in split]
    train = [video for split in gt["train_videos"][:1] for video in split]
    return (
        f"{len(gt['labels'])} classes, split 1: {len(train)} train / {len(test)} test videos, "
        f"{count_annotated_frames(gt, test)} annotated test frames, "
        f"{sum(len(t) for v in gt['gttubes'].values() for t in v.values())} tubes"
    )


def subset_act_gt(gt: Mapping[str, Any], videos: Iterable[str]) -> dict[str, Any]:
    """The ground truth restricted to `videos` (split lists keep their order), e.g. to test on the clips one has."""
    keep = set(videos)
    unknown = keep - set(gt["gttubes"])
    if unknown:
        raise KeyError(f"videos not in the ground truth: {sorted(unknown)[:5]}")
    return {
        "labels": list(gt["labels"]),
        "train_videos": [[v for v in split if v in keep] for split in gt["train_videos"]],
        "test_videos": [[v for v in split if v in keep] for split in gt["test_videos"]],
        **{key: {v: x for v, x in gt[key].items() if v in keep} for key in ("nframes", "resolution", "gttubes")},
    }


def annotated_frames(tubes: Mapping[int, Sequence[np.ndarray]]) -> np.ndarray:
    """Sorted unique 1-based frames covered by at least one of a video's tubes (int64 [F])."""
    frames = [np.asarray(tube)[:, 0] for label_tubes in tubes.values() for tube in label_tubes]
    if not frames:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(frames).astype(np.int64))


def count_annotated_frames(gt: Mapping[str, Any], videos: Iterable[str]) -> int:
    """Number of (video, frame) pairs with at least one ground-truth box."""
    return sum(len(annotated_frames(gt["gttubes"].get(video, {}))) for video in videos)


# ----------------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------------
def read_video_list(path: str | Path) -> list[str]:
    """Video names "<Class>/<video>" of a split list; an extension and a trailing label column are dropped.

    Raises ActAnnotationError for a file that is not UTF-8 text or that lists no video.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video list not found: {path}")
    data = path.read_bytes()
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ActAnnotationError(f"{path}: not a text video list (byte {error.start} is not UTF-8 text); expected "
                                 f"one <Class>/<video>[.avi] per line, like UCF101's testlist01.txt") from None
    videos = []
    for line in text.splitlines():
        if line.strip():
            name = line.split()[0]
            videos.append(re.sub(r"\.(avi|mp4|mkv|webm)$", "", name))
    if not videos:
        raise ActAnnotationError(f"{path}: the video list is empty")
    return videos


def is_ucf101_split1_test(video: str) -> bool:
    """True for videos of groups g01-g07, UCF101's split-1 test set."""
    match = _UCF_GROUP.search(video)
    if match is None:
        raise ActAnnotationError(f"video name {video!r} has no UCF101 group/clip suffix _gNN_cNN to assign its split "
                                 f"by; pass a test list instead")
    return int(match.group(1)) in UCF101_SPLIT1_TEST_GROUPS


def _split_videos(videos: Sequence[str], testlist_path: str | Path | None, default_is_test) -> tuple[list, list]:
    """(train, test) sorted video lists from a test list, or from `default_is_test(video)` without one."""
    if testlist_path is None:
        test = {video for video in videos if default_is_test(video)}
    else:
        listed = read_video_list(testlist_path)
        test = set(listed) & set(videos)
        if not test:
            raise ActAnnotationError(f"{testlist_path}: none of its {len(set(listed))} videos has an annotation "
                                     f"(listed e.g. {listed[0]!r}; annotated e.g. {sorted(videos)[0]!r}): a list of "
                                     f"another dataset or naming (<Class>/<video>)?")
        unknown = len(set(listed) - test)
        if unknown:
            logger.warning("%s: %d listed videos have no annotation and are left out", testlist_path, unknown)
    train = sorted(set(videos) - test)
    return train, sorted(test)


# ----------------------------------------------------------------------------------------------------------------
# UCF101-24
# ----------------------------------------------------------------------------------------------------------------
def _xywh_to_xyxy_tube(first_frame: int, boxes_xywh: np.ndarray) -> np.ndarray:
    """[T, 4] x, y, w, h (any integer dtype) starting at 1-based `first_frame` -> float32 [T, 5] ACT tube."""
    boxes = boxes_xywh.astype(np.float64)  # uint8/uint16 in the files: x + w would wrap around
    frames = first_frame + np.arange(len(boxes), dtype=np.float64)
    return np.stack(
        [frames, boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], axis=1
    ).astype(np.float32)


def _ucf24_class_names(video_labels: Mapping[str, set[int]], source: str) -> list[str]:
    """Class names indexed by label, from the "<Class>/" folder of the videos that carry each label."""
    names: dict[int, set[str]] = defaultdict(set)
    for video, labels in video_labels.items():
        for label in labels:
            names[label].add(video.split("/")[0])
    if sorted(names) != list(range(len(names))):
        raise ActAnnotationError(f"{source}: labels {sorted(names)} are not 0..{len(names) - 1}")
    for label, folders in names.items():
        if len(folders) != 1:
            raise ActAnnotationError(f"{source}: label {label} is used by videos of classes {sorted(folders)}")
    class_names = [next(iter(names[label])) for label in range(len(names))]
    if len(set(class_names)) != len(class_names):
        raise ActAnnotationError(f"{source}: a class folder carries two labels: {class_names}")
    return class_names


def _ucf24_gt(
    tubes_by_video: Mapping[str, tuple[int, list[tuple[int, np.ndarray]]]],
    source: str,
    testlist_path: str | Path | None,
) -> dict[str, Any]:
    """ACT dict from {video: (numf, [(label 0-based, tube [T, 5])])}."""
    labels_of_video = {video: {label for label, _ in tubes} for video, (_, tubes) in tubes_by_video.items()}
    class_names = _ucf24_class_names(labels_of_video, source)
    gttubes: dict[str, dict[int, list[np.ndarray]]] = {}
    for video, (_, tubes) in tubes_by_video.items():
        per_label: dict[int, list[np.ndarray]] = defaultdict(list)
        for label, tube in tubes:
            per_label[label].append(tube)
        gttubes[video] = dict(per_label)
    train, test = _split_videos(sorted(tubes_by_video), testlist_path, is_ucf101_split1_test)
    gt = {
        "labels": class_names,
        "train_videos": [train],
        "test_videos": [test],
        "nframes": {video: numf for video, (numf, _) in tubes_by_video.items()},
        "resolution": {video: UCF24_RESOLUTION for video in tubes_by_video},
        "gttubes": gttubes,
    }
    validate_act_gt(gt, source)
    logger.info("%s: %s", source, describe_act_gt(gt))
    return gt


def _check_ucf_tube(source: str, video: str, index: int, sf: int, ef: int, numf: int, boxes: np.ndarray) -> None:
    """sf 0-based, ef exclusive."""
    where = f"{source}: video {video!r} tube {index}"
    if not 0 <= sf < ef <= numf:
        raise ActAnnotationError(f"{where}: frames sf={sf}, ef={ef} (0-based, exclusive) not inside 0..{numf}")
    if boxes.ndim != 2 or boxes.shape != (ef - sf, 4):
        raise ActAnnotationError(f"{where}: boxes have shape {boxes.shape}, expected ({ef - sf}, 4) for ef - sf")


def ucf24_from_pyannot(pyannot_path: str | Path, testlist_path: str | Path | None = None) -> dict[str, Any]:
    """ACT ground truth from the corrected UCF101-24 `pyannot.pkl` (split 1; see the module docstring)."""
    source = str(pyannot_path)
    if not Path(pyannot_path).is_file():
        raise FileNotFoundError(f"UCF101-24 annotation not found: {pyannot_path}")
    try:
        with open(pyannot_path, "rb") as file:
            database = pickle.load(file, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
        raise ActAnnotationError(f"{source}: not a readable pickle ({error})") from error
    if not isinstance(database, Mapping):
        raise ActAnnotationError(f"{source}: expected a dict {{video: annotation}}, got {type(database).__name__}")
    tubes_by_video = {}
    for raw_video, entry in tqdm(database.items(), desc="pyannot", leave=False):
        video = str(raw_video)
        for key in ("numf", "annotations"):
            if key not in entry:
                raise ActAnnotationError(f"{source}: video {video!r}: missing key {key!r}")
        numf = int(entry["numf"])
        tubes = []
        for index, tube in enumerate(entry["annotations"]):
            for key in ("label", "sf", "ef", "boxes"):
                if key not in tube:
                    raise ActAnnotationError(f"{source}: video {video!r} tube {index}: missing key {key!r}")
            sf, ef, boxes = int(tube["sf"]), int(tube["ef"]), np.asarray(tube["boxes"])
            _check_ucf_tube(source, video, index, sf, ef, numf, boxes)
            tubes.append((int(tube["label"]), _xywh_to_xyxy_tube(sf + 1, boxes)))
        tubes_by_video[video] = (numf, tubes)
    return _ucf24_gt(tubes_by_video, source, testlist_path)


def _mat_scalar(value: Any) -> int:
    return int(np.asarray(value).reshape(-1)[0])


def ucf24_from_final_annots(mat_path: str | Path, testlist_path: str | Path | None = None) -> dict[str, Any]:
    """ACT ground truth from the corrected UCF101-24 `finalAnnots.mat` (1-based sf/ef inclusive, class 1..24)."""
    from scipy.io import loadmat  # only this converter needs scipy

    source = str(mat_path)
    if not Path(mat_path).is_file():
        raise FileNotFoundError(f"UCF101-24 annotation not found: {mat_path}")
    try:
        annot = loadmat(str(mat_path))["annot"]
    except KeyError:
        raise ActAnnotationError(f"{source}: no variable 'annot' in the .mat file") from None
    except (ValueError, TypeError, OSError) as error:
        raise ActAnnotationError(f"{source}: not a readable MATLAB file ({error})") from error
    tubes_by_video = {}
    for index, entry in enumerate(tqdm(annot.reshape(-1), desc="finalAnnots", leave=False)):
        for key in ("name", "num_imgs", "tubes"):
            if key not in (entry.dtype.names or ()):
                raise ActAnnotationError(f"{source}: annot({index + 1}): missing field {key!r}")
        video = str(np.asarray(entry["name"]).reshape(-1)[0])
        numf = _mat_scalar(entry["num_imgs"])
        tubes = []
        for tube_index, tube in enumerate(np.asarray(entry["tubes"]).reshape(-1)):
            for key in ("sf", "ef", "class", "boxes"):
                if key not in (tube.dtype.names or ()):
                    raise ActAnnotationError(f"{source}: video {video!r} tube {tube_index}: missing field {key!r}")
            sf, ef = _mat_scalar(tube["sf"]) - 1, _mat_scalar(tube["ef"])  # -> 0-based sf, exclusive ef
            boxes = np.asarray(tube["boxes"])
            _check_ucf_tube(source, video, tube_index, sf, ef, numf, boxes)
            tubes.append((_mat_scalar(tube["class"]) - 1, _xywh_to_xyxy_tube(sf + 1, boxes)))
        tubes_by_video[video] = (numf, tubes)
    return _ucf24_gt(tubes_by_video, source, testlist_path)


# ----------------------------------------------------------------------------------------------------------------
# Per-frame text ground truth (JHMDB-21)
# ----------------------------------------------------------------------------------------------------------------
def _frame_txt_files(source: Path) -> Iterator[tuple[str, str]]:
    """(relative path, text) of every .txt file in a zip archive or a folder (recursively), sorted by path."""
    if source.is_dir():
        for path in sorted(source.rglob("*.txt")):
            yield path.relative_to(source).as_posix(), path.read_text()
    elif zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for name in sorted(n for n in archive.namelist() if n.endswith(".txt")):
                yield name, archive.read(name).decode("utf-8")
    elif source.exists():
        raise ActAnnotationError(f"{source}: neither a folder nor a zip archive of per-frame .txt files")
    else:
        raise FileNotFoundError(f"per-frame ground truth not found: {source}")


def _parse_frame_file_name(name: str, class_names: Sequence[str], source: Path) -> tuple[str, str, int]:
    """(class, video, 1-based frame) of `<Class>_<video>_<frame>.txt` or `.../<Class>/<video>/<frame>.txt`."""
    parts = name[: -len(".txt")].split("/")
    if parts[-1].isdigit() and len(parts) >= 3:
        return parts[-3], parts[-2], int(parts[-1])
    stem, _, frame = parts[-1].rpartition("_")
    # Longest class first: class names contain underscores and some prefix others (shoot_ball / shoot_bow).
    for class_name in sorted(class_names, key=len, reverse=True):
        if stem.startswith(class_name + "_") and frame.isdigit() and len(stem) > len(class_name) + 1:
            return class_name, stem[len(class_name) + 1 :], int(frame)
    raise ActAnnotationError(
        f"{source}: {name}: expected <Class>_<video>_<frame>.txt with <Class> one of the {len(class_names)} classes"
    )


def _parse_frame_boxes(text: str, where: str, num_classes: int) -> list[tuple[int, np.ndarray]]:
    """[(label 0-based, box [4])] from lines `cls x1 y1 x2 y2` (cls 1-based)."""
    boxes = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 5:
                raise ValueError(f"{len(fields)} fields")
            label, box = int(float(fields[0])) - 1, np.array([float(v) for v in fields[1:]], dtype=np.float64)
        except ValueError as error:
            raise ActAnnotationError(f"{where}, line {line_number}: expected 'cls x1 y1 x2 y2', got {line!r} ({error})")
        if not 0 <= label < num_classes:
            raise ActAnnotationError(f"{where}, line {line_number}: class {label + 1} outside 1..{num_classes}")
        if not (box[2] >= box[0] and box[3] >= box[1]):
            raise ActAnnotationError(f"{where}, line {line_number}: box {line!r} has x2 < x1 or y2 < y1")
        boxes.append((label, box))
    return boxes


def act_from_frame_txts(
    source: str | Path,
    class_names: Sequence[str],
    resolution: tuple[int, int],
    testlist_path: str | Path | None = None,
    nframes: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """ACT ground truth from per-frame text files (see the module docstring for the layouts).

    A frame's k-th box line belongs to the video's k-th tube of that class (the files carry no identities; JHMDB has
    one person per frame). `nframes` defaults to each video's last annotated frame (exact for JHMDB, whose every frame
    is annotated); pass the true counts when they are known. All videos share `resolution` (height, width).
    """
    source = Path(source)
    boxes_by_frame: dict[str, dict[int, list[tuple[int, np.ndarray]]]] = defaultdict(dict)
    empty_files = 0
    for name, text in tqdm(_frame_txt_files(source), desc="frame ground truth", leave=False):
        class_name, video_name, frame = _parse_frame_file_name(name, class_names, source)
        if class_name not in class_names:
            raise ActAnnotationError(f"{source}: {name}: class folder {class_name!r} is not a known class")
        where = f"{source}: {name}"
        boxes = _parse_frame_boxes(text, where, len(class_names))
        for label, _ in boxes:
            if class_names[label] != class_name:
                raise ActAnnotationError(f"{where}: class {label + 1} ({class_names[label]}) in a {class_name} file")
        if frame < 1:
            raise ActAnnotationError(f"{where}: frame number {frame} must be >= 1")
        empty_files += not boxes
        boxes_by_frame[f"{class_name}/{video_name}"][frame] = boxes
    if not boxes_by_frame:
        raise ActAnnotationError(f"{source}: no per-frame ground-truth .txt files found")
    if empty_files:
        logger.info("%s: %d frame files have no box (frames without a person)", source, empty_files)

    gttubes, video_nframes = {}, {}
    for video, frames in boxes_by_frame.items():
        tubes: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)  # (label, k-th box) -> rows
        for frame in sorted(frames):
            rank: dict[int, int] = defaultdict(int)
            for label, box in frames[frame]:
                tubes[label, rank[label]].append(np.concatenate([[frame], box]))
                rank[label] += 1
        per_label: dict[int, list[np.ndarray]] = defaultdict(list)
        for (label, _), rows in sorted(tubes.items()):
            per_label[label].append(np.asarray(rows, dtype=np.float32))
        gttubes[video] = dict(per_label)
        last_frame = max(frames)
        video_nframes[video] = int(nframes[video]) if nframes and video in nframes else last_frame
        if video_nframes[video] < last_frame:
            raise ActAnnotationError(f"{source}: video {video!r} has ground truth at frame {last_frame} "
                                     f"but nframes is {video_nframes[video]}")
    videos = sorted(gttubes)
    train, test = _split_videos(videos, testlist_path, default_is_test=lambda video: True)
    gt = {
        "labels": list(class_names),
        "train_videos": [train],
        "test_videos": [test],
        "nframes": video_nframes,
        "resolution": {video: tuple(resolution) for video in videos},
        "gttubes": gttubes,
    }
    validate_act_gt(gt, str(source))
    logger.info("%s: %s", source, describe_act_gt(gt))
    return gt


def jhmdb_from_frame_txts(
    source: str | Path,
    testlist_path: str | Path | None = None,
    nframes: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """ACT ground truth of JHMDB-21 (21 classes, 240x320) from YOWO's per-frame files (zip or folder)."""
    return act_from_frame_txts(source, JHMDB_CLASSES, JHMDB_RESOLUTION, testlist_path=testlist_path, nframes=nframes)
