#!/usr/bin/env python3
"""Compare the per-class AP of two test runs (the BMViT supplement's Fig. 2).

    python tools/compare_runs.py RUN_A RUN_B [--labels A B] [--output DIR] [--sort b|difference|none]

RUN_A and RUN_B are test_results.json files or the OUTPUT_DIRs holding them (tools/run_net.py writes one after
testing). Writes DIR/ap_comparison.png (the two runs' AP per class side by side, B - A above each pair in green or
red), DIR/ap_difference.png (B - A alone) and DIR/ap_comparison.md (the Markdown table, also printed). Classes
without an AP in either run (no ground truth) are left out, and listed.
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RESULTS_NAME = "test_results.json"


class RunError(ValueError):
    """A run that cannot be read; the message names the file."""


def read_run(path: str) -> tuple[str, dict[str, float], float | None]:
    """(results file, per-class AP {name: AP in [0, 1]} without missing values, the run's mAP or None)."""
    file = os.path.join(path, RESULTS_NAME) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise RunError(f"{file}: no such file (give a {RESULTS_NAME} or the OUTPUT_DIR of a tested run)")
    try:
        with open(file, encoding="utf-8") as handle:
            result = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"{file}: not a JSON file ({err})") from None
    per_class = result.get("per_class") if isinstance(result, dict) else None
    if not isinstance(per_class, dict) or not per_class:
        raise RunError(f"{file}: has no \"per_class\" AP table (is it a test_results.json?)")
    aps = {}
    for name, value in per_class.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise RunError(f"{file}: AP of {name!r} is {value!r}, not a fraction in [0, 1]")
        aps[name] = float(value)
    mean = result.get("mAP")
    return file, aps, float(mean) if isinstance(mean, (int, float)) else None


def run_label(file: str) -> str:
    folder = os.path.dirname(os.path.abspath(file))
    return os.path.basename(folder) or folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Per-class AP of two test runs side by side (Fig. 2 of the BMViT "
                                     "supplement), with a Markdown table.")
    parser.add_argument("run_a", metavar="RUN_A", help="test_results.json, or the OUTPUT_DIR holding it (baseline)")
    parser.add_argument("run_b", metavar="RUN_B", help="test_results.json, or the OUTPUT_DIR holding it (compared)")
    parser.add_argument("--labels", nargs=2, metavar=("A", "B"), default=None,
                        help="names of the runs in the figure and table (default: their folder names)")
    parser.add_argument("--output", default="ap_comparison", metavar="DIR", help="output folder")
    parser.add_argument("--sort", choices=("b", "difference", "none"), default="b",
                        help="order of the classes: by RUN_B's AP (default), by the difference, or as RUN_A lists them")
    args = parser.parse_args(argv)

    from slowfast_bmvit.visualization.ap_plots import ap_comparison_table, plot_ap_comparison, plot_ap_difference

    try:
        file_a, aps_a, _ = read_run(args.run_a)
        file_b, aps_b, _ = read_run(args.run_b)
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    label_a, label_b = args.labels or (run_label(file_a), run_label(file_b))
    if label_a == label_b:
        label_a, label_b = f"A: {label_a}", f"B: {label_b}"
    common = [name for name in aps_a if name in aps_b]
    if not common:
        print(f"error: {file_a} and {file_b} share no class with an AP", file=sys.stderr)
        raise SystemExit(2)
    left_out = sorted(set(aps_a) ^ set(aps_b))
    aps_a = {name: aps_a[name] for name in common}
    aps_b = {name: aps_b[name] for name in common}

    os.makedirs(args.output, exist_ok=True)
    labels = {"label_a": label_a, "label_b": label_b}
    comparison = plot_ap_comparison(aps_a, aps_b, os.path.join(args.output, "ap_comparison.png"), sort=args.sort,
                                    **labels)
    difference = plot_ap_difference(aps_a, aps_b, os.path.join(args.output, "ap_difference.png"), **labels)
    table = ap_comparison_table(aps_a, aps_b, sort=args.sort, **labels)
    header = f"Per-class AP, {label_a} = {file_a}, {label_b} = {file_b}"
    if left_out:
        header += f"; left out (no AP in one run): {', '.join(left_out)}"
    markdown = os.path.join(args.output, "ap_comparison.md")
    with open(markdown, "w", encoding="utf-8") as handle:
        handle.write(f"{header}\n\n{table}")
    print(table, end="")
    print(f"wrote {comparison}, {difference} and {markdown}")


if __name__ == "__main__":
    main()
