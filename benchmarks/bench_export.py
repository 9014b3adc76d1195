"""Benchmark: tools/export_model.py on the demo model and on the AVA MViTv2-S config (16x256): ONNX and TorchScript
files against the eager model, and how long export and inference take.

For each config the tool runs as users run it (a fresh process per format) on a trained checkpoint: the demo's
(`make demo`, OUTPUT_DIR of configs/SYNTH/BMViT_demo.yaml) and, for configs without one, a randomly initialised
model saved as a checkpoint (export exactness does not depend on the weights being trained). The tool prints the
largest absolute difference between the exported and the eager outputs on a random clip (boxes, p(actor), class
probabilities); this script adds the time of each export and of one forward pass of a batch-1 clip through the eager
model, the TorchScript file and the ONNX file (onnxruntime, CPU).

    python benchmarks/bench_export.py                      # demo model and configs/AVA/BMViT_MViTv2_S.yaml
    python benchmarks/bench_export.py --out benchmarks/results/export.md
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from provenance import provenance_line, publish

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

DEMO = os.path.join(REPO, "configs", "SYNTH", "BMViT_demo.yaml")
AVA = os.path.join(REPO, "configs", "AVA", "BMViT_MViTv2_S.yaml")


def random_checkpoint(cfg_file: str, output_dir: str) -> None:
    """A randomly initialised model of the config, saved where load_trained_checkpoint finds it."""
    import torch

    from slowfast_bmvit.config import assert_and_infer_cfg, load_config
    from slowfast_bmvit.models import build_model

    cfg = assert_and_infer_cfg(load_config(cfg_file, ["NUM_GPUS", "0", "OUTPUT_DIR", output_dir]))
    torch.manual_seed(0)
    model = build_model(cfg)
    os.makedirs(os.path.join(output_dir, "checkpoints"), exist_ok=True)
    torch.save({"epoch": 0, "model_state": model.state_dict(), "cfg": cfg.dump()},
               os.path.join(output_dir, "checkpoints", "checkpoint_epoch_00001.pyth"))


def forward_times(cfg_file: str, opts: list[str], files: dict[str, str]) -> dict[str, float]:
    """Seconds of one batch-1 forward pass (after one warm-up) through the eager model and each exported file."""
    import torch

    from slowfast_bmvit.config import assert_and_infer_cfg, load_config
    from slowfast_bmvit.engine.trained_checkpoint import load_trained_checkpoint
    from slowfast_bmvit.engine.export import InferenceForm, example_clip, run_exported
    from slowfast_bmvit.models import build_model

    cfg = assert_and_infer_cfg(load_config(cfg_file, ["NUM_GPUS", "0", *opts]))
    model = build_model(cfg).eval()
    load_trained_checkpoint(cfg, model)
    form = InferenceForm.from_cfg(model, cfg)
    clip = example_clip(cfg, 1, seed=2)
    times = {}

    def timed(run) -> float:
        run()
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    with torch.no_grad():
        times["eager"] = timed(lambda: form(clip))
    for fmt, path in files.items():
        times[fmt] = timed(lambda: run_exported(path, fmt, clip))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=[DEMO, AVA])
    parser.add_argument("--out", default=None, help="write the Markdown table here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for cfg_file in args.configs:
            name = os.path.relpath(cfg_file, os.path.join(REPO, "configs"))
            stem = re.sub(r"\W", "_", name)
            opts, weights = [], "trained (`make demo`)"
            if cfg_file != DEMO:
                output_dir = os.path.join(folder, stem)
                random_checkpoint(cfg_file, output_dir)
                opts, weights = ["OUTPUT_DIR", output_dir], "random init"
            files = {}
            for fmt in ("torchscript", "onnx"):
                path = os.path.join(folder, f"{stem}.{fmt}")
                command = [sys.executable, os.path.join(REPO, "tools", "export_model.py"), "--cfg", cfg_file,
                           "--format", fmt, "--output", path, *opts]
                start = time.perf_counter()
                result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
                seconds = time.perf_counter() - start
                if result.returncode != 0:
                    raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
                line = result.stdout.strip().splitlines()[-1]
                diffs = dict(re.findall(r"(boxes|actor_prob|class_prob) ([0-9.e+-]+)", line))
                files[fmt] = path
                rows.append({"config": name, "weights": weights, "format": fmt, "export_s": seconds,
                             "size_mb": os.path.getsize(path) / 2**20, **{k: float(v) for k, v in diffs.items()}})
                print(rows[-1], flush=True)
            times = forward_times(cfg_file, opts, files)
            for row in rows[-2:]:
                row["forward_s"], row["eager_s"] = times[row["format"]], times["eager"]
    lines = ["| config | weights | format | export s (tool run) | file MB | max abs diff boxes | p(actor) | "
             "p(class) | forward s, batch 1 (eager) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['weights']} | {r['format']} | {r['export_s']:.0f} | {r['size_mb']:.0f} | "
                     f"{r['boxes']:.1e} | {r['actor_prob']:.1e} | {r['class_prob']:.1e} | "
                     f"{r['forward_s']:.2f} ({r['eager_s']:.2f}) |")
    worst = max(max(r["boxes"], r["actor_prob"], r["class_prob"]) for r in rows)
    header = [
        "# tools/export_model.py: exported files against the eager model",
        "",
        "Each row is one run of the tool (a fresh process: build, load the checkpoint, export, then run the file on "
        "a random clip and compare with the eager model); the differences are the tool's printed maxima. Forward "
        "times: one batch-1 clip after a warm-up, eager model vs the file (TorchScript in torch, ONNX in "
        "onnxruntime on the CPU).",
        "",
        f"Command: `python benchmarks/bench_export.py {' '.join(sys.argv[1:])}`".rstrip(),
        provenance_line(),
    ]
    within = "within" if worst <= 1e-4 else "NOT within"
    verdict = f"Largest difference from the eager model over all rows: {worst:.1e} ({within} 1e-4)."
    text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n\n" + verdict + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
