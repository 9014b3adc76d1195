"""Benchmark: AVA-format detection loader throughput (clips/s) for 16x4 clips at 256 px.

The data is a SynthAVA generated at an AVA-like frame size (default 360x480: short side 360, as AVA frames are
commonly extracted) into a temporary folder, then read through the "ava" dataset (frame lists, box CSVs, JPEG
decoding, clip sampling, transforms, normalisation, collation) by `construct_loader`, like training does.
For each setting the loader is iterated over `--batches` batches after one warm-up batch; the clock covers the
iteration only (worker start-up included in the warm-up).

    .venv/bin/python benchmarks/bench_loader.py                    # workers 0 and 2, square and short_side
    .venv/bin/python benchmarks/bench_loader.py --workers 0 --batches 4 --frame-size 240 320   # quick
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import torch

from provenance import provenance_line

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import get_cfg  # noqa: E402
from slowfast_bmvit.datasets import construct_loader  # noqa: E402
from slowfast_bmvit.datasets.synthetic import SynthAvaPaths, generate_synth_ava, synthava_config  # noqa: E402


def loader_cfg(root: str, workers: int, resize_mode: str, batch_size: int, crop: int):
    cfg = synthava_config(get_cfg(), SynthAvaPaths.under(root))
    cfg.NUM_GPUS = 0
    cfg.TRAIN.DATASET = "ava"
    cfg.TRAIN.BATCH_SIZE = batch_size
    cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE = 16, 4
    cfg.DATA.TRAIN_CROP_SIZE = crop
    cfg.DATA.TRAIN_JITTER_SCALES = [crop, int(crop * 1.25)]
    cfg.DATA.RESIZE_MODE = resize_mode
    cfg.DATA_LOADER.NUM_WORKERS = workers
    return cfg


def measure(cfg, batches: int) -> tuple[float, float, int]:
    """(clips per wall second, CPU ms per clip in this process, clips timed) over `batches` batches after a warm-up.

    The CPU time covers the whole pipeline only with 0 workers (with workers it is the collation side alone).
    """
    loader = construct_loader(cfg, "train")
    if len(loader) < batches + 1:
        raise SystemExit(f"only {len(loader)} batches per epoch: generate more --videos for --batches {batches}")
    iterator = iter(loader)
    next(iterator)
    clips = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        clips += next(iterator)["inputs"].shape[0]
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return clips / wall, 1000 * cpu / clips, clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--resize-modes", nargs="+", default=["square", "short_side"])
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[360, 480], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--videos", type=int, default=12, help="training videos generated (8 s, 5 keyframes each)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = os.path.join(tmp, "synthava")
        start = time.perf_counter()
        generate_synth_ava(root, seed=0, num_train_videos=args.videos, num_val_videos=1, video_seconds=8,
                           frame_size=args.frame_size, progress=False)
        print(f"generated {args.videos} x 8 s of {args.frame_size[0]}x{args.frame_size[1]} frames in "
              f"{time.perf_counter() - start:.1f} s")
        print(provenance_line(f"Load average before: {os.getloadavg()[0]:.1f}."))
        print("| workers | resize | clip | frames | clips/s (wall) | CPU ms/clip (workers 0) | clips timed |")
        print("|---|---|---|---|---|---|---|")
        for resize_mode in args.resize_modes:
            for workers in args.workers:
                cfg = loader_cfg(root, workers, resize_mode, args.batch_size, args.crop)
                rate, cpu_ms, clips = measure(cfg, args.batches)
                cpu = f"{cpu_ms:.0f}" if workers == 0 else "-"
                print(f"| {workers} | {resize_mode} | 16x4 @ {args.crop} | {args.frame_size[0]}x{args.frame_size[1]} "
                      f"| {rate:.1f} | {cpu} | {clips} |")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
