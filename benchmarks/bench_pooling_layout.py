#!/usr/bin/env python3
"""Benchmark: the MViT pooling ops on the CPU fed a channels-last grid (as `models.attention.pool_tokens` does) or an
NCDHW one (what it did before), whole-model forward and training step side by side.

    python benchmarks/bench_pooling_layout.py --threads 1 --out benchmarks/results/pooling_layout.md

Every pooling op of an MViT block (the depthwise Conv3d of q, k and v, the skip path's MaxPool3d) runs on a token
grid. "channels-last" is the shipped `pool_tokens`; "NCDHW" is the same function taking its other branch, the grid
made NCDHW-contiguous before the op (what it did for every op before; what it still does for a bfloat16 convolution
that trains). Its forward output equals the shipped one to the last bit in float32; the training step's gradients
differ by rounding. Both run on one model, their timed iterations interleaved; the columns are
medians. Models: "ava" (configs/AVA/BMViT_MViTv2_S.yaml, 16x256) and "demo" (configs/SYNTH/BMViT_demo.yaml, 8x112).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys

import torch

from bench_speed import MODELS, Trainer, forward, model_cfg, synthetic_batch, timed
from provenance import provenance_line, publish

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from slowfast_bmvit.models import attention  # noqa: E402
from slowfast_bmvit.models import get_model_class  # noqa: E402

SHIPPED_RULE = attention._channels_last_is_safe


@contextlib.contextmanager
def pooling_layout(layout: str):
    """Within the block, `pool_tokens` hands its CPU ops a channels-last grid where the shipped rule allows it
    ("channels-last") or always an NCDHW-contiguous one ("NCDHW", the rule's fallback)."""
    attention._channels_last_is_safe = SHIPPED_RULE if layout == "channels-last" else (lambda pool, x: False)
    try:
        yield
    finally:
        attention._channels_last_is_safe = SHIPPED_RULE


def measure(name: str, infer_batch: int, train_batch: int, iters: int) -> list[dict]:
    cpu = torch.device("cpu")
    cfg = model_cfg(name, cpu, False)
    torch.manual_seed(0)
    model = get_model_class(cfg.MODEL.MODEL_NAME)(cfg)
    layouts = ("channels-last", "NCDHW")
    rows = {layout: {"model": name, "layout": layout, "forward": [], "train": []} for layout in layouts}
    infer = synthetic_batch(cfg, infer_batch, cpu)
    tokens = {}
    model.eval()
    with torch.inference_mode():
        for layout in layouts:
            with pooling_layout(layout):
                tokens[layout] = model.backbone.forward_features(infer["inputs"])[0]  # also the warm-up
        for _ in range(iters):
            for layout in layouts:
                with pooling_layout(layout):
                    rows[layout]["forward"].append(timed(lambda: forward(model, infer), cpu)[0])
    rows["NCDHW"]["diff"] = float((tokens["NCDHW"] - tokens["channels-last"]).abs().max())
    rows["channels-last"]["diff"] = 0.0
    if train_batch:
        model.train()
        trainer = Trainer(cfg, model, cpu, torch.float32)
        batch = synthetic_batch(cfg, train_batch, cpu)
        for layout in layouts:
            with pooling_layout(layout):
                trainer.step(batch)  # warm-up
        for _ in range(iters):
            for layout in layouts:
                with pooling_layout(layout):
                    rows[layout]["train"].append(timed(lambda: trainer.step(batch), cpu)[0])
    for row in rows.values():
        row["infer_batch"], row["train_batch"] = infer_batch, train_batch
        row["forward_s"] = statistics.median(row.pop("forward"))
        times = row.pop("train")
        row["train_s"] = statistics.median(times) if times else None
        print(row, flush=True)
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=["ava", "demo"], default=["ava", "demo"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per layout (interleaved)")
    parser.add_argument("--out", help="write the Markdown table here (replacing the file)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # (inference batch, training batch): the AVA model at batch 1; the demo model at its training batch.
    batches = {"ava": (1, 1), "demo": (8, 8)}
    rows = [row for name in args.models for row in measure(name, *batches[name], args.iters)]
    lines = ["| model | pooling input | forward s (batch) | training step s (batch) | forward tokens vs channels-last: "
             "max abs diff |", "|---|---|---:|---:|---:|"]
    summary = []
    for fast, slow in zip(rows[::2], rows[1::2]):
        for r in (fast, slow):
            train = f"{r['train_s']:.3f} ({r['train_batch']})" if r["train_s"] is not None else "-"
            lines.append(f"| {r['model']} | {r['layout']} | {r['forward_s']:.3f} ({r['infer_batch']}) | {train} | "
                         f"{r['diff']:.1e} |")
        speedup = f"forward {slow['forward_s'] / fast['forward_s']:.2f}x"
        if fast["train_s"] is not None:
            speedup += f", training step {slow['train_s'] / fast['train_s']:.2f}x"
        summary.append(f"- {fast['model']} ({MODELS[fast['model']][1]}): channels-last pooling input {speedup} "
                       "as fast as NCDHW")
    header = [
        "# MViT pooling on the CPU: channels-last against NCDHW grids (benchmarks/bench_pooling_layout.py)",
        "",
        "One model per row pair, the two layouts' timed iterations interleaved; medians of "
        f"{args.iters}. Float32, eval mode for the forward, the trainer's full step (loss, backward, optimizer).",
        "",
        f"Command: `python benchmarks/bench_pooling_layout.py {' '.join(sys.argv[1:])}`".rstrip(),
        provenance_line(),
    ]
    text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
