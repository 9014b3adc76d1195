"""The ACT ground truth of UCF101-24 and JHMDB-21: its pickle reader and the one check of its structure.

The ACT ground truth (docs/EVALUATION.md) is a dict:
    labels        list of class names; a label is the 0-based index in it
    train_videos  list (one entry per split) of lists of video names "<Class>/<video>"
    test_videos   the same for test
    nframes       {video: number of frames}
    resolution    {video: (height, width)} of the annotation, in pixels
    gttubes       {video: {label: [float array [T, 5] of (frame 1-based, x1, y1, x2, y2) in pixels]}}

`load_act_pickle` reads such a pickle (ours, written by datasets/act_convert.py, or ACT's own Python-2 files) and
`validate_act_gt` checks it; the evaluation CLI, the datasets and the converters all go through them, so a file
one of them refuses is refused by all, with one line naming the file and the first offending key, video or tube.
"""

from __future__ import annotations

import numbers
import os
import pickle
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ACT_KEYS", "ActAnnotationError", "load_act_pickle", "validate_act_gt"]

ACT_KEYS = ("labels", "train_videos", "test_videos", "nframes", "resolution", "gttubes")


class ActAnnotationError(ValueError):
    """A malformed annotation file; the message names the file and the offending key, video or line."""


def load_act_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an ACT ground-truth pickle (ours or ACT's own Python-2 files, read with latin1).

    Raises:
        FileNotFoundError: no file at `path`.
        ActAnnotationError: not a pickle, or not a valid ACT ground truth (see `validate_act_gt`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ACT ground-truth file not found: {path}")
    try:
        with open(path, "rb") as file:
            gt = pickle.load(file, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, IndexError) as error:
        raise ActAnnotationError(f"{path}: not a readable ACT ground-truth pickle ({error}); make one with "
                                 f"tools/convert_ucf24.py or tools/convert_jhmdb.py") from None
    validate_act_gt(gt, source=path)
    return dict(gt)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _whole_number(value: Any) -> int | None:
    """`value` as an int when it is a whole number (an integer, or a float without a fraction), else None."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    return None


def validate_act_gt(gt: Any, source: str = "<ACT ground truth>") -> None:
    """Check the ACT structure: the six keys, split lists, an nframes / resolution / gttubes entry for every listed
    video, labels in range, tubes [T, 5] with frames inside 1..nframes.

    Raises:
        ActAnnotationError: naming `source` and the first offending key, video or tube.
    """

    def fail(message: str) -> None:
        raise ActAnnotationError(f"{source}: {message}")

    if not isinstance(gt, Mapping):
        fail(f"expected a dict with keys {', '.join(ACT_KEYS)}, got {type(gt).__name__}")
    missing = [key for key in ACT_KEYS if key not in gt]
    if missing:
        names = ", ".join(repr(key) for key in missing)
        fail(f"missing key(s) {names} (an ACT ground truth has {', '.join(ACT_KEYS)})")
    if not _is_list(gt["labels"]):
        fail(f"'labels' must be a list of class names, got {type(gt['labels']).__name__}")
    num_labels = len(gt["labels"])
    for key in ("nframes", "resolution", "gttubes"):
        if not isinstance(gt[key], Mapping):
            fail(f"{key!r} must be a dict {{video: ...}}, got {type(gt[key]).__name__}")
    for key in ("train_videos", "test_videos"):
        if not _is_list(gt[key]) or not all(_is_list(split) for split in gt[key]):
            fail(f"{key!r} must be a list with one list of video names per split")
    nframes_of = {}
    for video, value in gt["nframes"].items():
        nframes_of[video] = _whole_number(value)
        if nframes_of[video] is None or nframes_of[video] < 1:
            fail(f"nframes[{video!r}]: {value!r} is not a number of frames (a positive integer)")
    for video in sorted({video for key in ("train_videos", "test_videos") for split in gt[key] for video in split}):
        for key in ("nframes", "resolution", "gttubes"):
            if video not in gt[key]:
                fail(f"video {video!r} is listed in a split but has no entry in {key!r}")
    for video, tubes in gt["gttubes"].items():
        if video not in gt["nframes"]:
            fail(f"video {video!r} has tubes in 'gttubes' but no entry in 'nframes'")
        if not isinstance(tubes, Mapping):
            fail(f"gttubes[{video!r}] must be a dict {{label: [tubes]}}, got {type(tubes).__name__}")
        nframes = nframes_of[video]
        for label, label_tubes in tubes.items():
            index = _whole_number(label)
            if index is None:
                fail(f"gttubes[{video!r}]: label {label!r} is not a class index (an integer 0..{num_labels - 1} "
                     f"into 'labels')")
            if not 0 <= index < num_labels:
                fail(f"gttubes[{video!r}]: label {label} outside 0..{num_labels - 1}")
            for index, tube in enumerate(label_tubes):
                tube = np.asarray(tube)
                where = f"gttubes[{video!r}][{label}][{index}]"
                if tube.ndim != 2 or tube.shape[1] != 5 or not np.issubdtype(tube.dtype, np.number):
                    fail(f"{where}: expected a numeric array [T, 5] of (frame, x1, y1, x2, y2), got {tube.dtype} "
                         f"shape {tube.shape}")
                if len(tube) and not (tube[:, 0].min() >= 1 and tube[:, 0].max() <= nframes):
                    fail(f"{where}: frames {tube[:, 0].min():g}..{tube[:, 0].max():g} outside 1..{nframes} (nframes)")
