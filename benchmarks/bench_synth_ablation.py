#!/usr/bin/env python3
"""SynthAVA ablation: token arrangements, box reference, and BMViT vs the two-stage baseline, same budget.

Each variant trains the small BMViT recipe of configs/SYNTH/BMViT_ablation.yaml (the demo config as it was when the
table was measured, kept fixed since) from scratch on the same SynthAVA for the same number of epochs through
tools/run_net.py, then tests on SynthAVA val with the AVA protocol; GFLOPs come from tools/model_stats.py. The table
(mAP, GFLOPs, wall time, date, command; the machines by date) goes to benchmarks/results/synth_ablation.md.

    .venv/bin/python benchmarks/bench_synth_ablation.py [--epochs N] [--only NAME ...] [--seeds S ...] [--rerun]
        [--config configs/SYNTH/BMViT_demo.yaml]

`--config` runs the same variants on top of another recipe, into a table of its own
(benchmarks/results/synth_ablation_<config name>.md, runs under output/synth_ablation_<config name>/).

Every (variant, RNG_SEED) run saves its row and later invocations reuse it, so seeds can be added over time (and
run side by side: `OMP_NUM_THREADS=1 ... --only center --seeds 1 &` next to `... --seeds 2`); the table shows, per
variant, the mean over the seeds run so far and each seed's mAP. At the demo budget the seed alone moves mAP by a
factor of up to three (benchmarks/results/demo.md), so one seed per variant does not settle a comparison.

SynthAVA is built so that actions need time (stand / walk / run differ by motion only; get up is fall down
reversed), so class tokens from the central slice alone should trail temporally pooled ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from provenance import machine_description, software_description, today

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A config of its own rather than the demo's: the demo recipe keeps changing, and saved rows must stay comparable
# with new runs.
CONFIG = os.path.join("configs", "SYNTH", "BMViT_ablation.yaml")
DEMO_CONFIG = os.path.join("configs", "SYNTH", "BMViT_demo.yaml")
# What the table says about the recipe its rows start from.
RECIPE_NOTES = {
    CONFIG: ["Every run starts from configs/SYNTH/BMViT_ablation.yaml: the `make demo` config as it was when these",
             "rows were measured (upstream's patch embedding, no convolutional stem, LOSS_CLASS 8), kept",
             "fixed; the demo itself has moved on (benchmarks/results/demo.md)."],
    DEMO_CONFIG: ["Every run starts from configs/SYNTH/BMViT_demo.yaml, the current `make demo` recipe (convolutional",
                  "stem, dense auxiliary term with NMS, flip-averaged test; benchmarks/results/demo.md).",
                  "Chance level on its val split: random class scores on the 137 ground-truth actor boxes score each",
                  "class's frequency among them (stand 0.53 ... hand wave 0.04), mAP 0.149."],
}

# name -> config overrides on top of the recipe config
VARIANTS: dict[str, list[str]] = {
    "center_tpool (recipe)": ["BMVIT.TOKEN_ARRANGEMENT", "center_tpool"],
    "center": ["BMVIT.TOKEN_ARRANGEMENT", "center"],
    "two_halves": ["BMVIT.TOKEN_ARRANGEMENT", "two_halves"],
    "all": ["BMVIT.TOKEN_ARRANGEMENT", "all"],
    "all_tpool": ["BMVIT.TOKEN_ARRANGEMENT", "all_tpool"],
    "center_tpool, absolute boxes": ["BMVIT.TOKEN_ARRANGEMENT", "center_tpool", "BMVIT.BOX_REFERENCE", "none"],
    "two-stage MViTRoI (GT boxes at test)": ["MODEL.MODEL_NAME", "MViTRoI", "AVA.TEST_USE_GT_BOXES", "True"],
    "two-stage MViTRoI (predicted boxes)": ["MODEL.MODEL_NAME", "MViTRoI", "AVA.TEST_USE_GT_BOXES", "False",
                                            "AVA.DETECTION_SCORE_THRESH", "0.5"],
}


# Variants that swap the recipe for a config built on it (the config's _BASE_ is the recipe): name -> (recipe,
# config). They run only on that recipe, with the config's own keys and no further overrides.
CONFIG_VARIANTS: dict[str, tuple[str, str]] = {
    "small ViT, cross-attention class head": (DEMO_CONFIG, os.path.join("configs", "SYNTH", "BMViT_ViT_demo.yaml")),
    "small Hiera backbone": (DEMO_CONFIG, os.path.join("configs", "SYNTH", "BMViT_Hiera_demo.yaml")),
}


def variant_runs(recipe: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (config, overrides) of every variant that applies to `recipe`."""
    runs = {name: (recipe, overrides) for name, overrides in VARIANTS.items()}
    runs.update({name: (config, []) for name, (base, config) in CONFIG_VARIANTS.items() if base == recipe})
    return runs


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def run_dir(output_root: str, name: str, seed: int) -> str:
    # Seed 0 keeps the folder of the rows measured before seeds were an option.
    return os.path.join(output_root, slug(name) + (f"__seed{seed}" if seed else ""))


def is_inside(path: str, folder: str) -> bool:
    """Whether `path` lies in `folder` (both made absolute)."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return os.path.commonpath([path, folder]) == folder


def run_variant(name: str, overrides: list[str], epochs: int, output_root: str, seed: int = 0,
                config: str = CONFIG) -> dict:
    """Train and test one variant at one RNG_SEED; its row is also saved to <run dir>/bench_row.json, with the date,
    machine and software it was measured on."""
    # Inside the repository the run folder is given relative to it, so that the recorded command runs in any clone.
    output_dir = run_dir(os.path.relpath(output_root, REPO) if is_inside(output_root, REPO) else output_root,
                         name, seed)
    seed_opts = ["RNG_SEED", str(seed)] if seed else []
    opts = [*overrides, *seed_opts, "SOLVER.MAX_EPOCH", str(epochs), "OUTPUT_DIR", output_dir,
            "TRAIN.AUTO_RESUME", "False"]
    command = [sys.executable, "tools/run_net.py", "--cfg", config, *opts]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    with open(os.path.join(REPO, output_dir, "test_results.json")) as handle:
        result = json.load(handle)
    stats = subprocess.run([sys.executable, "tools/model_stats.py", "--cfg", config, *overrides], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout.split()
    gflops = float(stats[stats.index("gflops:") + 1])
    row = {"name": name, "map": result["mAP"], "per_class": result.get("per_class", {}), "gflops": gflops,
           "seconds": seconds, "epochs": epochs, "seed": seed, "command": " ".join(["python", *command[1:]]),
           "date": today(), "machine": machine_description(), "software": software_description()}
    with open(os.path.join(REPO, output_dir, "bench_row.json"), "w") as handle:
        json.dump(row, handle, indent=1)
    return row


def saved_row(name: str, epochs: int, output_root: str, seed: int = 0) -> dict | None:
    """The row a previous invocation saved for this variant, budget and seed, if any."""
    path = os.path.join(run_dir(output_root, name, seed), "bench_row.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        row = json.load(handle)
    return row if row.get("epochs") == epochs and row.get("seed", 0) == seed else None


def saved_seeds(name: str, output_root: str) -> set[int]:
    """The non-zero seeds with a run folder of this variant under output_root."""
    prefix = slug(name) + "__seed"
    folders = os.listdir(output_root) if os.path.isdir(output_root) else []
    return {int(f[len(prefix):]) for f in folders if f.startswith(prefix) and f[len(prefix):].isdigit()}


def table_row(name: str, rows: list[dict]) -> str:
    """One variant's line of the table from its saved rows (one per seed)."""
    done = sorted(rows, key=lambda r: r.get("seed", 0))
    first = done[0]
    mean = sum(r["map"] for r in done) / len(done)
    per_seed = ", ".join(f"{r.get('seed', 0)}: {r['map']:.4f}" for r in done)
    # Rows saved before dates were recorded have none.
    dates = ", ".join(sorted({r["date"] for r in done if r.get("date")})) or "not recorded"
    return (f"| {name} | {mean:.4f} | {per_seed} | {first['gflops']:.3f} | {first['seconds']:.0f} | {dates} | "
            f"`{first['command']}` |")


def machines_by_date(rows: list[dict]) -> list[str]:
    """'- <date>: <machine>; <software>' for every distinct (date, machine, software) among the rows, by date."""
    seen = sorted({(r["date"], r.get("machine") or "machine not recorded", r.get("software") or "")
                   for r in rows if r.get("date")})
    return [f"- {date}: {machine}" + (f"; {software}" if software else "") for date, machine, software in seen]


def render_table(config: str, epochs: int, runs: dict[str, list[dict]]) -> str:
    """The Markdown table of benchmarks/results/synth_ablation*.md: `runs` maps every variant of `config`, in table
    order, to its saved rows (empty where not run yet at this budget)."""
    missing = [name for name, rows in runs.items() if not rows]
    lines = [
        "# SynthAVA ablation (same backbone, data and budget)",
        "",
        f"Produced by `python benchmarks/bench_synth_ablation.py --epochs {epochs}"
        + ("" if config == CONFIG else f" --config {config}") + "` (rows are saved as they finish",
        "and reused by later invocations; `--only NAME` runs a subset, `--seeds S ...` more RNG_SEEDs). Each run",
        "trains from scratch on the CPU and tests on SynthAVA val (AVA protocol, mAP@0.5IOU). GFLOPs:",
        "tools/model_stats.py, one clip. mAP is the mean over the seeds run; the command is seed 0's (other seeds",
        "add `RNG_SEED s` and their own OUTPUT_DIR). Measured: the dates of the variant's runs.",
        *RECIPE_NOTES.get(config, [f"Every run starts from {config}."]),
        "",
        "| variant | mAP (mean) | mAP per RNG_SEED | GFLOPs | wall time, first seed (s) | measured | command |",
        "|---|---:|---|---:|---:|---|---|",
        *[table_row(name, rows) for name, rows in runs.items() if rows],
    ]
    machines = machines_by_date([row for rows in runs.values() for row in rows])
    if machines:
        lines += ["", "Machines, by date of the runs:", "", *machines]
    lines += [
        "",
        f"Variants: `center_tpool (recipe)` is {config} as it is; the others change only",
        "the keys in their command (or, where the command names another config, run that config, which is built",
        "on the recipe). The two-stage rows train MViTRoI (the same backbone with a RoIAlign head, BCE",
        "on the ground-truth boxes) for the same epochs. At test, `GT boxes` classifies the ground-truth boxes (no",
        "localisation error: an upper bound for the classification alone); `predicted boxes` classifies SynthAVA's",
        "val person boxes (ground truth jittered by about 1 % plus low-scoring false positives, standing in for a",
        "person detector) above AVA.DETECTION_SCORE_THRESH 0.5. GFLOPs exclude any person detector. Wall times",
        "include set-up and test and vary with the machine and its load. At this budget the seed alone moves a",
        "variant's mAP by up to 3x (benchmarks/results/demo.md): only differences that hold across seeds count.",
    ]
    if missing:
        lines += ["", "Not run yet at this budget: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per variant (default: the config's)")
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    parser.add_argument("--config", default=CONFIG, help=f"the recipe the variants change (default: {CONFIG})")
    parser.add_argument("--output-root", default=None, help="run folders (default: output/synth_ablation[_<config>])")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="RNG_SEED values to run (default: 0)")
    parser.add_argument("--rerun", action="store_true", help="train again even where a saved row exists")
    parser.add_argument("--out", default=None,
                        help="the table (default: benchmarks/results/synth_ablation[_<config>].md)")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    from slowfast_bmvit.config import load_config

    config = os.path.normpath(args.config)
    suffix = "" if config == CONFIG else "_" + os.path.splitext(os.path.basename(config))[0]
    args.output_root = args.output_root or os.path.join(REPO, "output", "synth_ablation" + suffix)
    args.out = args.out or os.path.join(REPO, "benchmarks", "results", f"synth_ablation{suffix}.md")
    epochs = args.epochs or load_config(os.path.join(REPO, config)).SOLVER.MAX_EPOCH
    variants = variant_runs(config)
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for name, (variant_config, overrides) in variants.items():
        # The seeds asked for now, plus those earlier invocations saved rows for.
        for seed in sorted(set(args.seeds) | {0} | saved_seeds(name, args.output_root)):
            selected = seed in args.seeds and (args.only is None or name in args.only)
            # --rerun retrains only the selected runs; the others keep their saved rows.
            row = None if args.rerun and selected else saved_row(name, epochs, args.output_root, seed)
            if row is None and selected:
                print(f"training {name} ({epochs} epochs, RNG_SEED {seed}) ...", flush=True)
                row = run_variant(name, overrides, epochs, args.output_root, seed, variant_config)
            if row is not None:
                runs[name].append(row)
    text = render_table(config, epochs, runs)
    with open(args.out, "w") as handle:
        handle.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
