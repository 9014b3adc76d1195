"""Benchmark: AVA evaluation, this package vs the official PySlowFast code, on one AVA-val-sized synthetic case.

The case: ``--images`` keyframes over 64 videos, about 2.6 ground-truth persons per keyframe with 1-3 of the 60
evaluated actions each (>= 50,000 ground-truth boxes), ``--dets-per-image`` detected boxes per keyframe (jittered
ground truth plus background boxes) x 60 classes (>= 100,000 boxes -> >= 6,000,000 detection rows).  Both
evaluators read the same CSV files; times are wall-clock and process CPU time (CPU time is the fairer comparison when
other processes share the CPU), end to end (read + evaluate) and evaluation only.

    .venv/bin/python benchmarks/bench_ava_eval.py            # full size (the official code takes minutes)
    .venv/bin/python benchmarks/bench_ava_eval.py --images 2000 --dets-per-image 5   # quick

The official code (``pyslowfast==1.0``, ``slowfast.utils.ava_eval_helper``) needs the numpy aliases removed in
numpy 2 (``np.float``, ``np.NAN``); they are restored here, in this process only.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time

import numpy as np

from provenance import provenance_line

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.evaluation import ava, ava_io  # noqa: E402

LABELMAP_60 = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"


def synth_case(out_dir: str, num_images: int, dets_per_image: int, seed: int) -> tuple[str, str, str, dict]:
    """Write labelmap / ground truth / detections CSVs for one synthetic case; returns paths and sizes."""
    rng = np.random.default_rng(seed)
    class_ids = np.array([1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34,
                          36, 37, 38, 41, 43, 45, 46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64,
                          65, 66, 67, 68, 69, 70, 72, 73, 74, 76, 77, 78, 79, 80])
    labelmap = os.path.join(out_dir, LABELMAP_60)
    with open(labelmap, "w") as f:
        f.writelines(f'item {{\n  name: "action {c}"\n  id: {c}\n}}\n' for c in class_ids)

    videos = np.array([f"video{v:03d}xyz" for v in range(64)], dtype=object)
    img_video = rng.integers(0, 64, num_images)
    img_sec = 902 + rng.permutation(897 * 64)[:num_images] % 897  # distinct enough; duplicates merge
    n_person = rng.poisson(2.6, num_images)
    # ground-truth persons
    p_img = np.repeat(np.arange(num_images), n_person)
    xy = np.sort(rng.random((len(p_img), 2, 2)), axis=1)
    p_box = np.round(np.concatenate([xy[:, 0], xy[:, 1]], axis=1), 3)  # x1, y1, x2, y2
    popularity = rng.dirichlet(np.full(60, 0.7))  # long-tailed class frequencies
    n_act = rng.integers(1, 4, len(p_img))
    g_person = np.repeat(np.arange(len(p_img)), n_act)
    g_action = class_ids[rng.choice(60, len(g_person), p=popularity)]
    gt_path = os.path.join(out_dir, "groundtruth.csv")
    ava_io.write_groundtruth_csv(gt_path, videos[img_video[p_img[g_person]]], img_sec[p_img[g_person]],
                                 p_box[g_person], g_action, g_person % 7)

    # detected boxes: jittered ground-truth persons first, then background boxes
    n_det = num_images * dets_per_image
    d_img = np.sort(rng.integers(0, num_images, n_det))
    d_box = np.sort(rng.random((n_det, 2, 2)), axis=1)
    d_box = np.concatenate([d_box[:, 0], d_box[:, 1]], axis=1)
    from_gt = rng.random(n_det) < 0.6
    pick = rng.integers(0, len(p_img), n_det)
    d_box[from_gt] = np.clip(p_box[pick[from_gt]] + rng.normal(0, 0.03, (from_gt.sum(), 4)), 0, 1)
    d_img[from_gt] = p_img[pick[from_gt]]
    d_box = np.round(d_box, 3)
    # class scores: higher for the actions of the matched person
    probs = rng.random((n_det, 60)) ** 3
    person_act = {}
    for person, act in zip(g_person.tolist(), np.searchsorted(class_ids, g_action).tolist()):
        person_act.setdefault(person, []).append(act)
    for i in np.flatnonzero(from_gt):
        probs[i, person_act[int(pick[i])]] += 0.3 + 0.7 * rng.random()
    probs = np.minimum(probs, 1.0)
    rep = np.repeat(np.arange(n_det), 60)
    det_path = os.path.join(out_dir, "detections.csv")
    ava_io.write_detections_csv(det_path, videos[img_video[d_img[rep]]], img_sec[d_img[rep]], d_box[rep],
                                np.tile(class_ids, n_det), probs.reshape(-1), score_fmt="%.6f")
    sizes = {"images": num_images, "gt_boxes": len(p_img), "gt_rows": len(g_person), "det_boxes": n_det,
             "det_rows": n_det * 60}
    return labelmap, gt_path, det_path, sizes


class Clock:
    """Wall-clock and process CPU seconds since construction (CPU time is robust to other load on the machine)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def since(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_official(labelmap: str, gt_path: str, det_path: str) -> tuple[float, tuple, tuple]:
    """(mAP, end-to-end (wall, cpu) seconds, evaluation-only (wall, cpu) seconds) of pyslowfast's ava_eval_helper."""
    np.float = float  # aliases removed in numpy 2, used by the 2020 code
    np.NAN = np.nan
    from slowfast.utils import ava_eval_helper as helper

    total = Clock()
    categories, whitelist = helper.read_labelmap(labelmap)
    gt = helper.read_csv(gt_path, whitelist, load_score=False)
    det = helper.read_csv(det_path, whitelist, load_score=True)
    evaluation = Clock()
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = helper.run_evaluation(categories, gt, det, set())
    return float(metrics["PascalBoxes_Precision/mAP@0.5IOU"]), total.since(), evaluation.since()


def run_ours(labelmap: str, gt_path: str, det_path: str, protocol: str) -> tuple[float, tuple, tuple]:
    """(mAP, end-to-end (wall, cpu) seconds, evaluation-only (wall, cpu) seconds) of slowfast_bmvit's evaluator."""
    total = Clock()
    categories, _ = ava_io.read_labelmap(labelmap)
    gt = ava_io.read_groundtruth_csv(gt_path)
    det = ava_io.read_detections_csv(det_path)
    evaluation = Clock()
    result = ava.evaluate_ava(categories, gt, det, protocol=protocol)
    return result["mAP"], total.since(), evaluation.since()


def report(name: str, run: tuple[float, tuple, tuple]) -> str:
    (e2e_wall, e2e_cpu), (ev_wall, ev_cpu) = run[1], run[2]
    return (f"{name}: mAP {run[0]!r}  end-to-end {e2e_wall:.2f} s wall / {e2e_cpu:.2f} s cpu  "
            f"evaluation {ev_wall:.2f} s wall / {ev_cpu:.2f} s cpu")


def machine_line() -> str:
    return provenance_line(f"numpy {np.__version__}, load average {os.getloadavg()[0]:.1f} at the end.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20000, help="keyframes (default 20000)")
    parser.add_argument("--dets-per-image", type=int, default=5, help="detected boxes per keyframe (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-official", action="store_true", help="time this package only")
    parser.add_argument("--workdir", default=None, help="where to write the CSVs (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        t = time.perf_counter()
        labelmap, gt_path, det_path, sizes = synth_case(tmp, args.images, args.dets_per_image, args.seed)
        print(f"case: {sizes} (written in {time.perf_counter() - t:.1f} s)", flush=True)
        ours = run_ours(labelmap, gt_path, det_path, "pyslowfast")
        print(report("ours (pyslowfast)", ours), flush=True)
        print(report("ours (activitynet)", run_ours(labelmap, gt_path, det_path, "activitynet")), flush=True)
        if args.skip_official:
            print(machine_line())
            return
        official = run_official(labelmap, gt_path, det_path)
        print(report("official (pyslowfast 1.0)", official), flush=True)
    print(f"|mAP difference|: {abs(ours[0] - official[0]):.3g}")
    for what, i in (("end-to-end", 1), ("evaluation only", 2)):
        print(f"speed-up {what}: {official[i][0] / ours[i][0]:.1f}x wall, {official[i][1] / ours[i][1]:.1f}x cpu")
    print(machine_line())


if __name__ == "__main__":
    main()
