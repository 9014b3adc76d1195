"""Per-class AP plots: bars, two-run differences coloured by sign with the value above each bar, PR curves."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from slowfast_bmvit.visualization import ap_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bars_of(fig):
    ax = fig.axes[0]
    return ax, list(ax.patches)


def test_difference_bars_are_coloured_by_sign_and_labelled_with_the_difference():
    run_a = {"ride": 0.40, "talk": 0.70, "sit": 0.50, "eat": 0.20}
    run_b = {"ride": 0.55, "talk": 0.62, "sit": 0.50, "eat": 0.21}
    fig = ap_plots.ap_difference_figure(run_a, run_b, label_a="two-stage", label_b="BMViT")
    ax, bars = bars_of(fig)
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["ride", "eat", "sit", "talk"]  # sorted by difference, largest first
    heights = [b.get_height() for b in bars]
    np.testing.assert_allclose(heights, [15.0, 1.0, 0.0, -8.0], atol=1e-9)  # AP points
    colors = [to_hex(b.get_facecolor()) for b in bars]
    assert colors[0] == colors[1] == ap_plots.POSITIVE_COLOR
    assert colors[3] == ap_plots.NEGATIVE_COLOR
    assert colors[2] not in (ap_plots.POSITIVE_COLOR, ap_plots.NEGATIVE_COLOR)
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["+15.0", "+1.0", "+0.0", "-8.0"]
    # each label sits above a positive bar and below a negative one
    for text, bar in zip(ax.texts, bars):
        assert text.get_position()[0] == pytest.approx(bar.get_x() + bar.get_width() / 2)
        assert (text.get_position()[1] >= bar.get_height()) == (bar.get_height() >= 0)
    assert "BMViT - two-stage" in ax.get_ylabel()


def test_difference_requires_the_same_classes():
    with pytest.raises(ValueError, match=r"only in A: \['b'\]; only in B: \['c'\]"):
        ap_plots.ap_difference_figure({"a": 0.1, "b": 0.2}, {"a": 0.1, "c": 0.3})


def test_per_class_bars_sorted_with_mean_line():
    per_class = {"a": 0.2, "b": 0.9, "c": 0.4}
    fig = ap_plots.per_class_ap_figure(per_class)
    ax, bars = bars_of(fig)
    np.testing.assert_allclose([b.get_height() for b in bars], [90.0, 40.0, 20.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["b", "c", "a"]
    mean_line = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(mean_line) == 1 and mean_line[0].get_ydata()[0] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="empty"):
        ap_plots.per_class_ap_figure({})


def test_pr_curves_one_line_per_class_and_subsampled():
    recall = np.linspace(0, 1, 10_000)
    curves = {"a": {"precision": 1 - recall / 2, "recall": recall},
              "b": {"precision": [1.0, 0.5], "recall": [0.1, 0.2]}}
    fig = ap_plots.pr_curves_figure(curves, max_points=500)
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert len(lines[0].get_xdata()) <= 500 and lines[0].get_xdata()[-1] == 1.0
    with pytest.raises(ValueError, match=r"no curve for class\(es\) \['z'\]"):
        ap_plots.pr_curves_figure(curves, classes=["z"])


def test_plot_functions_write_image_files(tmp_path):
    per_class = {f"class {i}": i / 25 for i in range(20)}
    other = {k: min(1.0, v + (0.05 if i % 2 else -0.03)) for i, (k, v) in enumerate(per_class.items())}
    paths = [
        ap_plots.plot_per_class_ap(per_class, tmp_path / "bars.png", title="run"),
        ap_plots.plot_ap_difference(per_class, other, tmp_path / "sub" / "diff.png"),
        ap_plots.plot_pr_curves({"a": {"precision": [1, 0.5], "recall": [0.5, 1]}}, tmp_path / "pr.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000
    svg = ap_plots.plot_per_class_ap(per_class, tmp_path / "bars.svg")
    assert svg.read_text().lstrip().startswith("<?xml")
