"""AVA v2.2 files: label maps, exclusions, ground-truth / detection CSVs (readers and writers).

Formats (https://research.google.com/ava/download.html):
- label map pbtxt: ``item { name: ".." id: N }`` (60-class ActivityNet list) or
  ``label { name: ".." label_id: N label_type: T }`` (80-class list);
- ground truth CSV, no header: ``video_id,timestamp,x1,y1,x2,y2,action_id,person_id``, one row per (box, action),
  box corners normalised to [0, 1]; a 2-column row ``video_id,timestamp`` lists an image with no action (as the
  ActivityNet challenge script reads it);
- detections CSV: the same with a score in the last column (7 columns: score 1.0);
- exclusions CSV: ``video_id,timestamp``.
An image key is ``(video_id, integer second)``.

The CSV reader parses with pandas' C engine; when that fails (or sees anything irregular) a line-by-line parser
finds the offending row and raises ``ValueError("<path>:<line>: <what is wrong>")``.  torch is never imported.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Literal, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "AvaRows",
    "read_labelmap",
    "read_exclusions",
    "read_ava_csv",
    "read_groundtruth_csv",
    "read_detections_csv",
    "write_detections_csv",
    "write_groundtruth_csv",
    "write_exclusions_csv",
]

CsvKind = Literal["groundtruth", "detections"]
_INT_RE = re.compile(r"^\s*[+-]?\d+\s*$")


@dataclass
class AvaRows:
    """Rows of an AVA CSV as parallel arrays, in file order (N rows, one per (box, action)).

    video:  [N] object array of str, the video id.
    sec:    [N] int64, the keyframe timestamp in integer seconds.
    boxes:  [N, 4] float64, (x1, y1, x2, y2) normalised to [0, 1].
    action: [N] int64, the AVA action id (1-based).
    score:  [N] float64, detection score (1.0 for ground truth).
    person: [N] int64 person id (ground truth only; -1 where absent or malformed), else None.
    num_dropped: rows removed because their action id was not in the requested class set.
    empty_images: image keys (video_id, second) the file lists without a row kept here: its 2-column rows
        (``video_id,timestamp``, an image with no action) and, after :meth:`only_classes`, images whose rows were all
        dropped.  The file's image keys are the rows' keys plus these.
    """

    video: np.ndarray
    sec: np.ndarray
    boxes: np.ndarray
    action: np.ndarray
    score: np.ndarray
    person: np.ndarray | None = None
    num_dropped: int = 0
    source: str = field(default="<memory>", compare=False)
    empty_images: frozenset = frozenset()

    def __post_init__(self) -> None:
        self.video = np.asarray(self.video, dtype=object).reshape(-1)
        self.sec = np.asarray(self.sec, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.action = np.asarray(self.action, dtype=np.int64).reshape(-1)
        self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        n = len(self.video)
        lengths = {len(self.sec), len(self.boxes), len(self.action), len(self.score)}
        if self.person is not None:
            self.person = np.asarray(self.person, dtype=np.int64).reshape(-1)
            lengths.add(len(self.person))
        if lengths != {n}:
            raise ValueError(f"{self.source}: AvaRows fields have different lengths: {sorted(lengths | {n})}")
        self.empty_images = frozenset((str(video), int(sec)) for video, sec in self.empty_images)

    def __len__(self) -> int:
        return len(self.video)

    @classmethod
    def empty(cls, source: str = "<memory>") -> "AvaRows":
        return cls(np.empty(0, object), np.empty(0, np.int64), np.empty((0, 4)), np.empty(0, np.int64),
                   np.empty(0), source=source)

    def select(self, mask: np.ndarray) -> "AvaRows":
        """The rows where ``mask`` ([N] bool or an index array) holds, keeping order, counters and empty images."""
        return AvaRows(self.video[mask], self.sec[mask], self.boxes[mask], self.action[mask], self.score[mask],
                       None if self.person is None else self.person[mask], self.num_dropped, self.source,
                       self.empty_images)

    def select_seconds(self, keep) -> "AvaRows":
        """The rows and empty images whose second satisfies ``keep`` (a vectorised predicate: int64 [N] -> bool [N])."""
        out = self.select(np.asarray(keep(self.sec), dtype=bool))
        seconds = np.array([sec for _, sec in self.empty_images], dtype=np.int64)
        kept = np.asarray(keep(seconds), dtype=bool) if len(seconds) else np.zeros(0, bool)
        out.empty_images = frozenset(key for key, ok in zip(self.empty_images, kept) if ok)
        return out

    def only_classes(self, class_ids: Iterable[int]) -> "AvaRows":
        """Drop rows whose action id is not in ``class_ids``; the count is added to ``num_dropped`` and logged.

        An image whose rows are all dropped stays listed in ``empty_images``.
        """
        keep = np.isin(self.action, np.fromiter(class_ids, dtype=np.int64))
        dropped = int(len(keep) - keep.sum())
        out = self.select(keep)
        out.num_dropped = self.num_dropped + dropped
        if dropped:
            logger.warning("%s: dropped %d row(s) whose action id is not in the label map", self.source, dropped)
            out.empty_images = self.empty_images | _keys_only_in(self.select(~keep), out)
        return out


def _keys_only_in(rows: AvaRows, others: AvaRows) -> frozenset:
    """Image keys of ``rows`` that no row of ``others`` has (vectorised: both may have millions of rows)."""
    import pandas as pd

    if len(rows) == 0:
        return frozenset()
    mine = pd.MultiIndex.from_arrays([rows.video, rows.sec]).unique()
    theirs = pd.MultiIndex.from_arrays([others.video, others.sec]).unique()
    return frozenset((str(video), int(sec)) for video, sec in mine.difference(theirs))


# ----------------------------------------------------------------------------------------------- label map / exclusions
def _require_file(path: str | os.PathLike, what: str) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_labelmap(path: str | os.PathLike) -> tuple[list[dict], set[int]]:
    """Parse an AVA label map pbtxt (both the ``item {name id}`` and ``label {name label_id label_type}`` styles).

    Returns ``(categories, class_ids)``: categories in file order, each ``{"id": int, "name": str}`` plus
    ``"label_type": str`` when the file gives one; class_ids is the set of ids.
    Raises FileNotFoundError for a missing file and ValueError (naming the path) for a file without classes,
    a non-integer id or a repeated id.
    """
    path = _require_file(path, "label map")
    categories: list[dict] = []
    name: str | None = None
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if text.startswith("name:"):
                parts = text.split('"')
                name = parts[1] if len(parts) >= 3 else text[len("name:"):].strip()
            elif text.startswith("id:") or text.startswith("label_id:"):
                value = text.split(":", 1)[1].strip()
                if not _INT_RE.match(value):
                    raise ValueError(f"{path}:{lineno}: class id {value!r} is not an integer")
                if name is None:
                    raise ValueError(f"{path}:{lineno}: class id {value} has no preceding name")
                categories.append({"id": int(value), "name": name})
                name = None
            elif text.startswith("label_type:") and categories:
                categories[-1]["label_type"] = text.split(":", 1)[1].strip().strip('"')
    if not categories:
        raise ValueError(f"{path}: no classes found (expected `name:` lines followed by `id:` or `label_id:`)")
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path}: repeated class id(s) {dup}")
    return categories, set(ids)


def read_exclusions(path: str | os.PathLike | None) -> set[tuple[str, int]]:
    """Read ``video_id,timestamp`` rows into a set of image keys ``(video_id, second)``; None gives an empty set."""
    if path is None:
        return set()
    path = _require_file(path, "exclusions file")
    out: set[tuple[str, int]] = set()
    with open(path, "r", newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{lineno}: expected 2 columns (video_id,timestamp), got {len(row)}")
            if not row[0].strip():
                raise ValueError(f"{path}:{lineno}: empty video id")
            if not _INT_RE.match(row[1]):
                raise ValueError(f"{path}:{lineno}: timestamp {row[1]!r} is not an integer second")
            out.add((row[0].strip(), int(row[1])))
    return out


# ---------------------------------------------------------------------------------------------------------- CSV reading
def read_ava_csv(path: str | os.PathLike, kind: CsvKind, class_ids: Iterable[int] | None = None) -> AvaRows:
    """Read an AVA ground-truth or detection CSV into :class:`AvaRows` (file order).

    kind: "groundtruth" (8th column = person id, unused by the metric: a malformed one is logged with a count,
    not fatal; a 2-column row ``video_id,timestamp`` lists an image without action, see ``AvaRows.empty_images``)
    or "detections" (8th column = score; 7-column rows get score 1.0).
    class_ids: if given, rows with another action id are dropped and counted in ``num_dropped`` (and logged).
    A malformed row in a field the metric uses raises ``ValueError("<path>:<line>: <what>")``.
    An empty file gives zero rows.
    """
    if kind not in ("groundtruth", "detections"):
        raise ValueError(f"kind must be 'groundtruth' or 'detections', got {kind!r}")
    path = _require_file(path, f"{kind} CSV")
    rows = _read_fast(path, kind)
    if rows is None:
        rows = _read_slow(path, kind)
    if class_ids is not None:
        rows = rows.only_classes(class_ids)
    return rows


def read_groundtruth_csv(path: str | os.PathLike, class_ids: Iterable[int] | None = None) -> AvaRows:
    """:func:`read_ava_csv` with ``kind="groundtruth"``."""
    return read_ava_csv(path, "groundtruth", class_ids)


def read_detections_csv(path: str | os.PathLike, class_ids: Iterable[int] | None = None) -> AvaRows:
    """:func:`read_ava_csv` with ``kind="detections"``."""
    return read_ava_csv(path, "detections", class_ids)


def _read_fast(path: str, kind: CsvKind) -> AvaRows | None:
    """pandas C-engine parse; None when the file has anything irregular (the slow parser then explains it)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a declared dependency; the slow parser still works
        return None
    if os.path.getsize(path) == 0:
        return AvaRows.empty(source=path)
    last = str if kind == "groundtruth" else np.float64
    dtypes = {0: str, 1: np.int64, 2: np.float64, 3: np.float64, 4: np.float64, 5: np.float64, 6: np.int64, 7: last}
    try:
        df = pd.read_csv(path, header=None, dtype=dtypes, na_filter=False, skip_blank_lines=False, engine="c")
    except (ValueError, TypeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if df.shape[1] not in (7, 8) or len(df) == 0:
        return None
    video = df[0].to_numpy(dtype=object)
    boxes = df[[2, 3, 4, 5]].to_numpy(dtype=np.float64)
    if not np.isfinite(boxes).all() or any(not v.strip() for v in pd.unique(video)):
        return None
    if kind == "detections":
        score = df[7].to_numpy(dtype=np.float64) if df.shape[1] == 8 else np.ones(len(df))
        if not np.isfinite(score).all():
            return None
        person = None
    else:
        score = np.ones(len(df))
        person = _parse_person_ids(df[7].to_numpy(dtype=object) if df.shape[1] == 8 else None, len(df), path)
    return AvaRows(video, df[1].to_numpy(np.int64), boxes, df[6].to_numpy(np.int64), score, person, source=path)


def _parse_person_ids(raw: np.ndarray | None, n: int, path: str) -> np.ndarray:
    """[N] int64 person ids; malformed ones become -1 and are reported in one counted warning."""
    if raw is None:
        return np.full(n, -1, dtype=np.int64)
    import pandas as pd

    series = pd.Series(raw, dtype=object).astype(str)
    bad = ~series.str.fullmatch(_INT_RE.pattern[1:-1]).to_numpy(dtype=bool)
    if bad.any():
        lines = np.flatnonzero(bad) + 1
        logger.warning("%s: %d row(s) with a malformed person_id (not used by the metric; kept with -1), "
                       "first at line %d: %r", path, int(bad.sum()), int(lines[0]), raw[lines[0] - 1])
    values = pd.to_numeric(series.where(~bad, "-1")).to_numpy()
    return values.astype(np.int64)


def _read_slow(path: str, kind: CsvKind) -> AvaRows:
    """Line-by-line parse with exact error locations; blank lines are skipped."""
    video, sec, boxes, action, score, person = [], [], [], [], [], []
    empty_images: set[tuple[str, int]] = set()
    bad_person: list[tuple[int, str]] = []
    with open(path, "r", newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{path}:{lineno}"
            if len(row) not in ((2, 7, 8) if kind == "groundtruth" else (7, 8)):
                expected = "2, 7 or 8 columns (video_id,timestamp or " if kind == "groundtruth" else "7 or 8 columns ("
                raise ValueError(f"{where}: expected {expected}video_id,timestamp,x1,y1,x2,y2,action_id"
                                 f"[,person_id|score]), got {len(row)}")
            if not row[0].strip():
                raise ValueError(f"{where}: empty video id")
            if not _INT_RE.match(row[1]):
                raise ValueError(f"{where}: timestamp {row[1]!r} is not an integer second")
            if len(row) == 2:  # an image without action
                empty_images.add((row[0], int(row[1])))
                continue
            box = []
            for name, text in zip(("x1", "y1", "x2", "y2"), row[2:6]):
                value = _parse_float(text)
                if value is None:
                    raise ValueError(f"{where}: {name} {text!r} is not a finite number")
                box.append(value)
            if not _INT_RE.match(row[6]):
                raise ValueError(f"{where}: action_id {row[6]!r} is not an integer")
            s, p = 1.0, -1
            if len(row) == 8:
                if kind == "detections":
                    value = _parse_float(row[7])
                    if value is None:
                        raise ValueError(f"{where}: score {row[7]!r} is not a finite number")
                    s = value
                elif _INT_RE.match(row[7]):
                    p = int(row[7])
                else:
                    bad_person.append((lineno, row[7]))
            video.append(row[0])
            sec.append(int(row[1]))
            boxes.append(box)
            action.append(int(row[6]))
            score.append(s)
            person.append(p)
    if bad_person:
        logger.warning("%s: %d row(s) with a malformed person_id (not used by the metric; kept with -1), "
                       "first at line %d: %r", path, len(bad_person), bad_person[0][0], bad_person[0][1])
    if not video:
        out = AvaRows.empty(source=path)
        out.empty_images = frozenset(empty_images)
        return out
    out = AvaRows(np.array(video, dtype=object), sec, np.array(boxes), action, score,
                  person if kind == "groundtruth" else None, source=path)
    out.empty_images = frozenset(empty_images - set(zip(video, sec)))
    return out


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


# ---------------------------------------------------------------------------------------------------------- CSV writing
def write_detections_csv(path: str | os.PathLike, video: Sequence[str], sec: Sequence[int], boxes: np.ndarray,
                         action: Sequence[int], score: Sequence[float], *, box_fmt: str = "%.3f",
                         score_fmt: str = "%.6f") -> None:
    """Write detection rows ``video,%04d sec,x1,y1,x2,y2,action_id,score`` (N rows; boxes [N, 4] normalised)."""
    rows = AvaRows(video, sec, boxes, action, score, source=os.fspath(path))
    line = f"%s,%04d,{box_fmt},{box_fmt},{box_fmt},{box_fmt},%d,{score_fmt}\n"
    _write_lines(path, line, rows.video, rows.sec, rows.boxes, rows.action, rows.score)


def write_groundtruth_csv(path: str | os.PathLike, video: Sequence[str], sec: Sequence[int], boxes: np.ndarray,
                          action: Sequence[int], person: Sequence[int] | None = None, *,
                          box_fmt: str = "%.3f") -> None:
    """Write ground-truth rows ``video,%04d sec,x1,y1,x2,y2,action_id,person_id`` (person id 0 when not given)."""
    n = len(video)
    person_arr = np.zeros(n, np.int64) if person is None else np.asarray(person, np.int64)
    rows = AvaRows(video, sec, boxes, action, np.ones(n), person_arr, source=os.fspath(path))
    line = f"%s,%04d,{box_fmt},{box_fmt},{box_fmt},{box_fmt},%d,%d\n"
    _write_lines(path, line, rows.video, rows.sec, rows.boxes, rows.action, rows.person)


def write_exclusions_csv(path: str | os.PathLike, keys: Iterable[tuple[str, int]]) -> None:
    """Write image keys as ``video_id,%04d`` rows."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines("%s,%04d\n" % (v, int(s)) for v, s in keys)


def _write_lines(path, line: str, video, sec, boxes, action, last, chunk: int = 200_000) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, len(video), chunk):
            sl = slice(start, start + chunk)
            b = boxes[sl].tolist()
            f.write("".join(line % (v, s, *bb, a, x) for v, s, bb, a, x in
                            zip(video[sl].tolist(), sec[sl].tolist(), b, action[sl].tolist(), last[sl].tolist())))
