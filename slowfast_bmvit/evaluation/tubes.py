"""Action tubes: spatio-temporal IoU, 3D NMS and linking per-frame detections into tubes (ACT conventions).

A tube is an array [T, 5+] of rows (frame, x1, y1, x2, y2[, score]) in pixels, frames 1-based and increasing;
a detected tube comes with a tube score: ``(tube, score)``.

Linking (per video and class; all knobs in :class:`LinkConfig`):
- ``greedy`` (default, online, as in ROAD / ACT-style linkers): frames in order; live tubes sorted by mean score;
  each live tube takes the highest-scoring unassigned detection of the new frame whose IoU with the tube's last box
  is >= ``link_iou``; a tube unmatched for more than ``max_gap`` frames ends; unassigned detections start new
  tubes.  Frames skipped inside a tube are filled by linear interpolation (so tubes are contiguous, as ACT's
  ST-IoU assumes).  :class:`GreedyLinker` is the same linking frame by frame (the demo's actor tracks use it).
- ``viterbi`` (Gkioxari & Malik): the path through one detection per frame maximising the sum of edge scores
  ``iou_weight * IoU(a, b) + s_a + s_b + product_weight * s_a * s_b``; its detections are removed and the search
  repeats, at most ``max_tubes`` tubes per class.
Both: tubes shorter than ``min_length`` frames or with score < ``min_score`` are dropped; tube score = mean score
of the linked detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from slowfast_bmvit.evaluation.iou import iou_matrix, iou_pairs

__all__ = ["LinkConfig", "GreedyLinker", "temporal_iou", "tube_iou", "nms3d", "link_tubes", "link_video", "link_all"]

Tube = tuple[np.ndarray, float]


@dataclass(frozen=True)
class LinkConfig:
    """Tube-linking parameters (defaults are the package's documented choice)."""

    method: str = "greedy"         # "greedy" or "viterbi"
    det_score_thresh: float = 0.01  # per-frame detections below this score are ignored
    top_k: int = 10                # at most this many detections per frame and class (highest scores)
    link_iou: float = 0.3          # greedy: min IoU between a tube's last box and the detection it takes
    max_gap: int = 5               # greedy: a tube unmatched for more than this many frames ends
    min_length: int = 15           # tubes with fewer frames are dropped
    min_score: float = 0.0         # tubes with a lower mean score are dropped
    max_tubes: int = 3             # viterbi: tubes per class and video
    iou_weight: float = 1.0        # viterbi edge: weight of IoU(a, b)
    product_weight: float = 0.5    # viterbi edge: weight of s_a * s_b
    plus_one: bool = True          # IoU in the ACT +1 pixel convention

    def __post_init__(self) -> None:
        if self.method not in ("greedy", "viterbi"):
            raise ValueError(f"LinkConfig.method must be 'greedy' or 'viterbi', got {self.method!r}")
        if self.max_gap < 0 or self.min_length < 0 or self.top_k < 1 or self.max_tubes < 1:
            raise ValueError(f"invalid LinkConfig {self}")


# ------------------------------------------------------------------------------------------------------- overlap
def temporal_iou(start_a: int, end_a: int, start_b: int, end_b: int) -> float:
    """IoU of two inclusive frame ranges: (min end - max start + 1) / (max end - min start + 1), 0 if disjoint."""
    inter = min(end_a, end_b) - max(start_a, start_b) + 1
    if inter <= 0:
        return 0.0
    return inter / (max(end_a, end_b) - min(start_a, start_b) + 1)


def tube_iou(a: np.ndarray, b: np.ndarray, plus_one: bool = True, spatial_only: bool = False) -> float:
    """Spatio-temporal IoU of tubes a [Ta, 5+], b [Tb, 5+]: temporal IoU x mean per-frame IoU on the overlap.

    The overlap is [max start, min end] (inclusive).  For contiguous tubes the mean runs over its frames, as in
    ACT; a frame inside the overlap that only one tube has counts as IoU 0.
    """
    fa, fb = a[:, 0], b[:, 0]
    lo, hi = max(fa[0], fb[0]), min(fa[-1], fb[-1])
    if hi < lo:
        return 0.0
    ia = np.flatnonzero((fa >= lo) & (fa <= hi))
    ib = np.flatnonzero((fb >= lo) & (fb <= hi))
    common, ca, cb = np.intersect1d(fa[ia], fb[ib], assume_unique=True, return_indices=True)
    frames = len(np.union1d(fa[ia], fb[ib]))
    spatial = 0.0
    if len(common):
        spatial = float(np.sum(iou_pairs(a[ia[ca], 1:5], b[ib[cb], 1:5], plus_one=plus_one))) / frames
    if spatial_only:
        return spatial
    return spatial * temporal_iou(int(fa[0]), int(fa[-1]), int(fb[0]), int(fb[-1]))


def nms3d(tubes: Sequence[Tube], thresh: float = 0.3, plus_one: bool = True) -> list[int]:
    """Indices of the tubes kept by 3D NMS, in descending score order.

    Repeatedly keep the best-scoring remaining tube and drop those whose ST-IoU with it is > ``thresh``
    (ACT's nms3dt).  Equal scores keep input order.
    """
    order = sorted(range(len(tubes)), key=lambda i: -tubes[i][1])
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(best)
        order = [i for i in order if tube_iou(tubes[i][0], tubes[best][0], plus_one) <= thresh]
    return keep


# ------------------------------------------------------------------------------------------------------- linking
def _per_frame(dets: np.ndarray, cfg: LinkConfig) -> dict[int, np.ndarray]:
    """frame -> [K, 6] (frame, x1, y1, x2, y2, score) of one class, score-sorted, thresholded, top-k."""
    dets = dets[dets[:, 5] >= cfg.det_score_thresh]
    out: dict[int, np.ndarray] = {}
    for frame, rows in _groups(dets[:, 0].astype(np.int64)).items():
        d = dets[rows]
        out[frame] = d[np.argsort(-d[:, 5], kind="stable")][: cfg.top_k]
    return out


def _finish(rows: list[np.ndarray], cfg: LinkConfig) -> Tube | None:
    """Rows of linked detections -> contiguous tube (gaps interpolated) and its mean score; None if dropped."""
    tube = np.stack(rows).astype(np.float64)
    score = float(tube[:, 5].mean())
    frames = np.arange(int(tube[0, 0]), int(tube[-1, 0]) + 1)
    if len(frames) != len(tube):
        tube = np.column_stack([frames] + [np.interp(frames, tube[:, 0], tube[:, j]) for j in range(1, 6)])
    if len(tube) < cfg.min_length or score < cfg.min_score:
        return None
    return tube, score


class GreedyLinker:
    """The greedy linker, online: feed it the frames in order, it tells which tube each detection continues.

    Each `step(frame, dets)` (dets [K, 6+] rows (frame, x1, y1, x2, y2, score, ...), score-sorted, descending)
    ends the live tubes unmatched for more than ``max_gap`` frames, continues live tubes with detections whose IoU
    with the tube's last box is >= ``link_iou``, starts a new tube for every other detection, and returns the tube id
    of every detection [K] (ids count from 0 in order of creation). Which detection continues which tube:
    - ``by="score"`` (ACT's rule, `link_tubes`): the live tubes, best mean score first, each take the
      highest-scoring eligible free detection;
    - ``by="iou"`` (identity tracking): the (tube, detection) pairs are taken in descending IoU, each when both are
      still free, so that of two overlapping persons each keeps its own tube.
    With ``keep_rows`` every tube keeps all its rows (`tubes()` returns them); without, only the last row and a
    running score sum, so that a linker over a long video holds memory for its live tubes only.
    """

    def __init__(self, link_iou: float, max_gap: int, plus_one: bool = True, keep_rows: bool = True,
                 by: str = "score"):
        if by not in ("score", "iou"):
            raise ValueError(f"GreedyLinker.by must be 'score' or 'iou', got {by!r}")
        self.link_iou, self.max_gap, self.plus_one, self.keep_rows, self.by = link_iou, max_gap, plus_one, keep_rows, by
        self._live: list[_LinkedTube] = []
        self._done: list[_LinkedTube] = []
        self._next_id = 0

    def step(self, frame: int, dets: np.ndarray) -> np.ndarray:
        dets = np.asarray(dets, dtype=np.float64)
        dets = dets.reshape(0, 6) if dets.size == 0 else dets
        ids = np.full(len(dets), -1, dtype=np.int64)
        free = np.ones(len(dets), dtype=bool)
        self._live.sort(key=lambda tube: -tube.mean_score)
        still: list[_LinkedTube] = []
        for tube in self._live:
            if frame - tube.last[0] - 1 > self.max_gap:
                if self.keep_rows:
                    self._done.append(tube)
                continue
            still.append(tube)
        if self.by == "score":
            for tube in still:
                if free.any():
                    ious = iou_pairs(dets[:, 1:5], tube.last[None, 1:5], plus_one=self.plus_one)
                    ok = np.flatnonzero(free & (ious >= self.link_iou))
                    if len(ok):  # dets are score-sorted: the first eligible is the best
                        self._continue(tube, dets, ok[0], free, ids)
        elif still and len(dets):
            ious = iou_matrix(np.array([tube.last[1:5] for tube in still]), dets[:, 1:5], self.plus_one)
            ious = np.nan_to_num(ious, nan=0.0)  # empty boxes
            taken = np.zeros(len(still), dtype=bool)
            for pair in np.argsort(-ious, axis=None, kind="stable"):
                t, d = np.unravel_index(pair, ious.shape)
                if ious[t, d] < self.link_iou:
                    break
                if not taken[t] and free[d]:
                    taken[t] = True
                    self._continue(still[t], dets, d, free, ids)
        for index in np.flatnonzero(free):
            tube = _LinkedTube(self._next_id, dets[index], self.keep_rows)
            self._next_id += 1
            ids[index] = tube.id
            still.append(tube)
        self._live = still
        return ids

    @staticmethod
    def _continue(tube: "_LinkedTube", dets: np.ndarray, index: int, free: np.ndarray, ids: np.ndarray) -> None:
        tube.append(dets[index])
        free[index] = False
        ids[index] = tube.id

    def tubes(self) -> list[tuple[int, list[np.ndarray]]]:
        """(id, rows) of every tube, ended ones first (in the order they ended), then the live ones (needs
        keep_rows)."""
        if not self.keep_rows:
            raise RuntimeError("GreedyLinker(keep_rows=False) keeps no rows")
        return [(tube.id, tube.rows) for tube in self._done + self._live]


class _LinkedTube:
    """One tube of a GreedyLinker: its id, last row, mean score and (optionally) all rows."""

    def __init__(self, tube_id: int, row: np.ndarray, keep_rows: bool):
        self.id = tube_id
        self.last = row
        self.rows = [row] if keep_rows else None
        self._score_sum, self._count = float(row[5]), 1

    def append(self, row: np.ndarray) -> None:
        self.last = row
        if self.rows is not None:
            self.rows.append(row)
        self._score_sum += float(row[5])
        self._count += 1

    @property
    def mean_score(self) -> float:
        if self.rows is not None:
            return float(np.mean([r[5] for r in self.rows]))
        return self._score_sum / self._count


def _link_greedy(per_frame: dict[int, np.ndarray], cfg: LinkConfig) -> list[Tube]:
    linker = GreedyLinker(cfg.link_iou, cfg.max_gap, cfg.plus_one)
    for frame in sorted(per_frame):
        linker.step(frame, per_frame[frame])
    tubes = [_finish(rows, cfg) for _, rows in linker.tubes()]
    return [t for t in tubes if t is not None]


def _link_viterbi(per_frame: dict[int, np.ndarray], cfg: LinkConfig) -> list[Tube]:
    frames = sorted(per_frame)
    pool = {f: per_frame[f].copy() for f in frames}
    tubes: list[Tube] = []
    for _ in range(cfg.max_tubes):
        steps = [f for f in frames if len(pool[f])]
        if not steps:
            break
        acc = np.zeros(len(pool[steps[0]]))
        back: list[np.ndarray] = []
        for prev, cur in zip(steps[:-1], steps[1:]):
            a, b = pool[prev], pool[cur]
            edge = (cfg.iou_weight * iou_matrix(a[:, 1:5], b[:, 1:5], cfg.plus_one) + a[:, 5:6] + b[None, :, 5]
                    + cfg.product_weight * a[:, 5:6] * b[None, :, 5])
            total = acc[:, None] + edge
            back.append(np.argmax(total, axis=0))
            acc = total.max(axis=0)
        path = [int(np.argmax(acc))]
        for ptr in reversed(back):
            path.append(int(ptr[path[-1]]))
        path.reverse()
        rows = [pool[f][i] for f, i in zip(steps, path)]
        for f, i in zip(steps, path):
            pool[f] = np.delete(pool[f], i, axis=0)
        tube = _finish(rows, cfg)
        if tube is not None:
            tubes.append(tube)
    return tubes


def link_tubes(frame_dets: np.ndarray, config: LinkConfig = LinkConfig()) -> list[Tube]:
    """Link one class's per-frame detections of one video, [M, 6] (frame, x1, y1, x2, y2, score), into tubes.

    Returns ``[(tube [T, 6], tube_score), ...]`` with contiguous frames.
    """
    frame_dets = np.asarray(frame_dets, dtype=np.float64).reshape(-1, 6)
    per_frame = _per_frame(frame_dets, config)
    if not per_frame:
        return []
    return _link_greedy(per_frame, config) if config.method == "greedy" else _link_viterbi(per_frame, config)


def _groups(keys: np.ndarray) -> dict[int, np.ndarray]:
    """key -> the row indices (in input order) of the rows with that integer key."""
    order = np.argsort(keys, kind="stable")
    values, starts = np.unique(keys[order], return_index=True)
    return {int(v): rows for v, rows in zip(values, np.split(order, starts[1:]))}


def link_video(detections: np.ndarray, num_classes: int, config: LinkConfig = LinkConfig()) -> dict[int, list[Tube]]:
    """Tubes of one video from its detections [N, 8] (video_index, frame, label, score, x1, y1, x2, y2).

    Returns {label: [(tube [T, 6], tube_score), ...]} for every label in 0..num_classes-1.
    """
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 8)
    by_label = _groups(detections[:, 2].astype(np.int64))
    out = {}
    for label in range(num_classes):
        rows = detections[by_label.get(label, np.zeros(0, np.int64))]
        out[label] = link_tubes(rows[:, [1, 4, 5, 6, 7, 3]], config)
    return out


def link_all(detections: np.ndarray, videos: Sequence[str], num_classes: int,
             config: LinkConfig = LinkConfig()) -> dict[str, dict[int, list[Tube]]]:
    """Tubes for every video: detections [N, 8] in the frame-mAP format -> {video: {label: [(tube, score)]}}."""
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 8)
    by_video = _groups(detections[:, 0].astype(np.int64))
    return {v: link_video(detections[by_video.get(i, np.zeros(0, np.int64))], num_classes, config)
            for i, v in enumerate(videos)}
