"""Per-class AP plots: AP bars of one run, two runs compared (side by side with the difference above each pair, as in
the BMViT supplement's Fig. 2, also as a Markdown table), their per-class difference alone (coloured by sign) and
precision-recall curves.

Inputs are plain dicts (class name -> AP as a fraction in [0, 1], e.g. an evaluator's ``per_class``; curves as
{name: {"precision": [K], "recall": [K]}}).  Figures are drawn with matplotlib's Agg canvas (no display, no pyplot
state); each ``*_figure`` builder returns the Figure, each ``plot_*`` writes it to ``out_path`` (format from the
extension) and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "POSITIVE_COLOR",
    "NEGATIVE_COLOR",
    "per_class_ap_figure",
    "ap_difference_figure",
    "ap_comparison_figure",
    "ap_comparison_table",
    "pr_curves_figure",
    "plot_per_class_ap",
    "plot_ap_difference",
    "plot_ap_comparison",
    "plot_pr_curves",
]

POSITIVE_COLOR = "#2ca02c"
NEGATIVE_COLOR = "#d62728"
NEUTRAL_COLOR = "#1f77b4"


def _new_figure(num_bars: int, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(max(6.0, 0.28 * num_bars + 2.0), height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_path: str | os.PathLike) -> Path:
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    return out


def _check_same_classes(per_class_a: Mapping[str, float], per_class_b: Mapping[str, float], label_a: str,
                        label_b: str) -> None:
    only_a, only_b = sorted(set(per_class_a) - set(per_class_b)), sorted(set(per_class_b) - set(per_class_a))
    if only_a or only_b:
        raise ValueError(f"runs cover different classes: only in {label_a}: {only_a}; only in {label_b}: {only_b}")
    if not per_class_a:
        raise ValueError("per_class is empty: nothing to plot")


def _comparison_order(per_class_a: Mapping[str, float], per_class_b: Mapping[str, float], sort: str) -> list[str]:
    """Class names sorted by "b" (AP of b, descending), "difference" (b - a, descending) or "none" (a's order)."""
    if sort == "b":
        return sorted(per_class_b, key=lambda n: -per_class_b[n])
    if sort == "difference":
        return sorted(per_class_a, key=lambda n: -(per_class_b[n] - per_class_a[n]))
    if sort == "none":
        return list(per_class_a)
    raise ValueError(f"sort must be 'b', 'difference' or 'none', got {sort!r}")


def per_class_ap_figure(per_class: Mapping[str, float], title: str | None = None, sort: bool = True,
                        percent: bool = True) -> Figure:
    """Bars of AP per class (descending when ``sort``) with the mean as a dashed line."""
    if not per_class:
        raise ValueError("per_class is empty: nothing to plot")
    names = sorted(per_class, key=lambda n: -per_class[n]) if sort else list(per_class)
    scale = 100.0 if percent else 1.0
    values = np.array([per_class[n] for n in names], dtype=np.float64) * scale
    fig = _new_figure(len(names))
    ax = fig.add_subplot()
    ax.bar(np.arange(len(names)), values, color=NEUTRAL_COLOR)
    mean = float(np.mean(values))
    ax.axhline(mean, color="k", linestyle="--", linewidth=1,
               label=f"mean {mean:.1f}" if percent else f"mean {mean:.3f}")
    ax.set_xticks(np.arange(len(names)), names, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("AP (%)" if percent else "AP")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return fig


def ap_difference_figure(per_class_a: Mapping[str, float], per_class_b: Mapping[str, float],
                         label_a: str = "A", label_b: str = "B", title: str | None = None, sort: bool = True,
                         percent: bool = True, decimals: int = 1) -> Figure:
    """Bars of AP(b) - AP(a) per class, green where b is better, red where worse, the difference above each bar.

    Both runs must cover the same classes (a ValueError lists the ones that differ).
    """
    _check_same_classes(per_class_a, per_class_b, label_a, label_b)
    scale = 100.0 if percent else 1.0
    diff = {n: (per_class_b[n] - per_class_a[n]) * scale for n in per_class_a}
    names = sorted(diff, key=lambda n: -diff[n]) if sort else list(per_class_a)
    values = np.array([diff[n] for n in names])
    fig = _new_figure(len(names))
    ax = fig.add_subplot()
    colors = [POSITIVE_COLOR if v > 0 else NEGATIVE_COLOR if v < 0 else "0.5" for v in values]
    bars = ax.bar(np.arange(len(names)), values, color=colors)
    span = float(np.max(np.abs(values))) or 1.0
    for bar, value in zip(bars, values):
        offset = 0.02 * span if value >= 0 else -0.02 * span
        ax.text(bar.get_x() + bar.get_width() / 2, value + offset, f"{value:+.{decimals}f}", ha="center",
                va="bottom" if value >= 0 else "top", fontsize=6, rotation=90)
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_ylim(-1.25 * span if values.min() < 0 else -0.05 * span, 1.25 * span if values.max() > 0 else 0.05 * span)
    ax.set_xticks(np.arange(len(names)), names, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    unit = "AP points" if percent else "AP"
    ax.set_ylabel(f"{label_b} - {label_a} ({unit})")
    ax.set_title(title or f"Per-class AP difference: {label_b} vs {label_a} "
                          f"(mean {float(np.mean(values)):+.{decimals}f})")
    return fig


def ap_comparison_figure(per_class_a: Mapping[str, float], per_class_b: Mapping[str, float], label_a: str = "A",
                         label_b: str = "B", title: str | None = None, sort: str = "b", percent: bool = True,
                         decimals: int = 1) -> Figure:
    """The BMViT supplement's Fig. 2: per-class AP of two runs side by side (b's bar right of a's), and above each
    pair the difference b - a, green where b is better, red where worse. Sorted by b's AP (`sort` "b"), by the
    difference ("difference") or not ("none"). Both runs must cover the same classes."""
    _check_same_classes(per_class_a, per_class_b, label_a, label_b)
    names = _comparison_order(per_class_a, per_class_b, sort)
    scale = 100.0 if percent else 1.0
    values_a = np.array([per_class_a[n] for n in names], dtype=np.float64) * scale
    values_b = np.array([per_class_b[n] for n in names], dtype=np.float64) * scale
    fig = _new_figure(int(len(names) * 1.6), height=5.0)
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    width = 0.4
    ax.bar(positions - width / 2, values_a, width, color="0.65",
           label=f"{label_a} (mean {values_a.mean():.{decimals}f})")
    ax.bar(positions + width / 2, values_b, width, color=NEUTRAL_COLOR,
           label=f"{label_b} (mean {values_b.mean():.{decimals}f})")
    top = float(max(values_a.max(), values_b.max())) or 1.0
    for x, a, b in zip(positions, values_a, values_b):
        diff = b - a
        color = POSITIVE_COLOR if diff > 0 else NEGATIVE_COLOR if diff < 0 else "0.5"
        ax.text(x, max(a, b) + 0.02 * top, f"{diff:+.{decimals}f}", ha="center", va="bottom", fontsize=6,
                rotation=90, color=color, fontweight="bold")
    ax.set_ylim(0, 1.2 * top)
    ax.set_xticks(positions, names, rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("AP (%)" if percent else "AP")
    ax.legend(loc="upper right", fontsize=8)
    better = int(np.sum(values_b > values_a))
    ax.set_title(title or f"{label_b} vs {label_a}: better on {better} of {len(names)} classes", fontsize=10)
    return fig


def ap_comparison_table(per_class_a: Mapping[str, float], per_class_b: Mapping[str, float], label_a: str = "A",
                        label_b: str = "B", sort: str = "b", percent: bool = True, decimals: int = 1) -> str:
    """The comparison of `ap_comparison_figure` as a Markdown table (one row per class, then the means)."""
    _check_same_classes(per_class_a, per_class_b, label_a, label_b)
    names = _comparison_order(per_class_a, per_class_b, sort)
    scale = 100.0 if percent else 1.0
    unit = " (%)" if percent else ""

    def cell(value: float) -> str:
        return f"{value * scale:.{decimals}f}"

    lines = [f"| class | {label_a}{unit} | {label_b}{unit} | {label_b} - {label_a} |", "|---|---:|---:|---:|"]
    for name in names:
        lines.append(f"| {name} | {cell(per_class_a[name])} | {cell(per_class_b[name])} | "
                     f"{(per_class_b[name] - per_class_a[name]) * scale:+.{decimals}f} |")
    mean_a = float(np.mean([per_class_a[n] for n in names]))
    mean_b = float(np.mean([per_class_b[n] for n in names]))
    lines.append(f"| **mean over {len(names)} classes** | {cell(mean_a)} | {cell(mean_b)} | "
                 f"{(mean_b - mean_a) * scale:+.{decimals}f} |")
    return "\n".join(lines) + "\n"


def plot_ap_comparison(per_class_a: Mapping[str, float], per_class_b: Mapping[str, float],
                       out_path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`ap_comparison_figure` to ``out_path``."""
    return _save(ap_comparison_figure(per_class_a, per_class_b, **kwargs), out_path)


def pr_curves_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], classes: Sequence[str] | None = None,
                     title: str | None = None, max_points: int = 2000) -> Figure:
    """Precision-recall curves, one line per class (``classes`` selects and orders them); long curves are
    subsampled to ``max_points`` points for drawing."""
    names = list(classes) if classes is not None else list(curves)
    missing = [n for n in names if n not in curves]
    if missing:
        raise ValueError(f"no curve for class(es) {missing}")
    if not names:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(6.5, 5.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name in names:
        recall = np.asarray(curves[name]["recall"], dtype=np.float64)
        precision = np.asarray(curves[name]["precision"], dtype=np.float64)
        if len(recall) > max_points:
            keep = np.unique(np.linspace(0, len(recall) - 1, max_points).astype(np.int64))
            recall, precision = recall[keep], precision[keep]
        ax.plot(recall, precision, linewidth=1, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    if len(names) <= 20:
        ax.legend(fontsize=6, loc="lower left")
    if title:
        ax.set_title(title)
    return fig


def plot_per_class_ap(per_class: Mapping[str, float], out_path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`per_class_ap_figure` to ``out_path``."""
    return _save(per_class_ap_figure(per_class, **kwargs), out_path)


def plot_ap_difference(per_class_a: Mapping[str, float], per_class_b: Mapping[str, float],
                       out_path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`ap_difference_figure` to ``out_path``."""
    return _save(ap_difference_figure(per_class_a, per_class_b, **kwargs), out_path)


def plot_pr_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], out_path: str | os.PathLike,
                   **kwargs) -> Path:
    """Write :func:`pr_curves_figure` to ``out_path``."""
    return _save(pr_curves_figure(curves, **kwargs), out_path)
