#!/usr/bin/env python3
"""MViTv2-S speed and memory on the CPU: SDPA vs explicit attention, forward and forward+backward.

    .venv/bin/python benchmarks/bench_mvit.py --iters 2 --warmup 1 --threads 1 --out benchmarks/results/mvit.md

Every (size, batch, attention, mode) runs in its own subprocess, so that the peak resident memory it reports is its
own: peak RSS during the timed runs minus the RSS before them (model and input already allocated), in MiB.
"forward" is eval mode under torch.no_grad (inference); "forward+backward" is train mode, loss = logits.sum().
Clips/s = batch / mean seconds per iteration, after `--warmup` untimed iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from provenance import provenance_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CONFIG = os.path.join(REPO, "configs", "Kinetics", "MViTv2_S_16x4.yaml")


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(size: int, batch: int, impl: str, mode: str, iters: int, warmup: int, threads: int) -> dict:
    """Time one configuration in this process; returns clips/s and peak memory."""
    import gc

    import torch

    from slowfast_bmvit.config import load_config
    from slowfast_bmvit.models.mvit import MViT

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(
        CONFIG, ["DATA.TRAIN_CROP_SIZE", str(size), "DATA.TEST_CROP_SIZE", str(size), "MVIT.ATTN_IMPL", impl]
    )
    model = MViT(cfg)
    clip = torch.randn(batch, 3, cfg.DATA.NUM_FRAMES, size, size)

    def step() -> None:
        if mode == "forward":
            with torch.no_grad():
                model(clip)
        else:
            model.zero_grad(set_to_none=True)
            model(clip).sum().backward()

    model.train(mode != "forward")
    gc.collect()
    rss_before = _rss_mib()
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    mean = sum(seconds) / len(seconds)
    return {
        "size": size,
        "batch": batch,
        "impl": impl,
        "mode": mode,
        "sec_per_iter": mean,
        "clips_per_s": batch / mean,
        "peak_mib": peak - rss_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--impls", nargs="+", default=["sdpa", "explicit"])
    parser.add_argument("--modes", nargs="+", default=["forward", "forward+backward"])
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="", help="write a markdown table here (also printed)")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args()

    if args.one:
        size, batch, impl, mode = args.one.split(",")
        print(json.dumps(run_one(int(size), int(batch), impl, mode, args.iters, args.warmup, args.threads)))
        return

    rows = []
    for mode in args.modes:
        for size in args.sizes:
            for batch in args.batches:
                for impl in args.impls:
                    command = [
                        sys.executable, os.path.abspath(__file__), "--one", f"{size},{batch},{impl},{mode}",
                        "--iters", str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads),
                    ]
                    result = subprocess.run(command, capture_output=True, text=True, check=True)
                    row = json.loads(result.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    print(
                        f"{mode:17s} 16x{size} batch {batch} {impl:8s} {row['clips_per_s']:.3f} clips/s "
                        f"({row['sec_per_iter']:.2f} s/iter), peak +{row['peak_mib']:.0f} MiB",
                        flush=True,
                    )

    lines = [
        "# MViTv2-S 16x4 on the CPU: SDPA vs explicit attention",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_mvit.py --iters {args.iters} --warmup {args.warmup} "
        f"--threads {args.threads}" + (f" --out {args.out}" if args.out else "") + "`",
        "",
        provenance_line(threads=args.threads),
        "Timings vary with other load on the machine: compare ratios within a row pair. "
        f"Model: MViTv2-S, 400 classes, config {os.path.relpath(CONFIG, REPO)}.",
        "Peak memory: peak RSS during the timed iterations minus RSS before them (model and input allocated).",
        "",
        "| mode | clip | batch | attention | clips/s | s/iter | peak MiB | speed-up vs explicit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["mode"], r["size"], r["batch"], r["impl"]): r for r in rows}
    for r in rows:
        explicit = by_key.get((r["mode"], r["size"], r["batch"], "explicit"))
        ratio = f"{r['clips_per_s'] / explicit['clips_per_s']:.2f}x" if explicit else "-"
        lines.append(
            f"| {r['mode']} | 16x{r['size']}x{r['size']} | {r['batch']} | {r['impl']} | {r['clips_per_s']:.3f} | "
            f"{r['sec_per_iter']:.2f} | {r['peak_mib']:.0f} | {ratio} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as handle:
            handle.write(table)


if __name__ == "__main__":
    main()
