"""tools/compare_runs.py and the two-run comparison of visualization/ap_plots.py (the supplement's Fig. 2)."""

import json
import sys
from pathlib import Path

import matplotlib.colors as mcolors
import pytest

from slowfast_bmvit.visualization.ap_plots import (NEGATIVE_COLOR, POSITIVE_COLOR, ap_comparison_figure,
                                                   ap_comparison_table)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import compare_runs  # noqa: E402

RUN_A = {"walk": 0.50, "stand": 0.80, "jump/leap": 0.30, "carry": 0.10}
RUN_B = {"walk": 0.70, "stand": 0.75, "jump/leap": 0.30, "carry": 0.45}


def write_run(folder: Path, per_class, extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    result = {"mAP": sum(v for v in per_class.values() if v is not None) / len(per_class), "per_class": per_class}
    (folder / "test_results.json").write_text(json.dumps({**result, **(extra or {})}))
    return folder


def test_figure_puts_the_difference_above_each_pair_in_green_or_red():
    figure = ap_comparison_figure(RUN_A, RUN_B, "two-stage", "BMViT")
    axes = figure.axes[0]
    labels = [tick.get_text() for tick in axes.get_xticklabels()]
    assert labels == ["stand", "walk", "carry", "jump/leap"]  # sorted by B's AP
    texts = {text.get_text(): mcolors.to_hex(text.get_color()) for text in axes.texts}
    assert texts["+20.0"] == POSITIVE_COLOR and texts["+35.0"] == POSITIVE_COLOR
    assert texts["-5.0"] == NEGATIVE_COLOR and texts["+0.0"] != POSITIVE_COLOR
    heights = sorted(round(patch.get_height(), 6) for patch in axes.patches)
    assert heights == sorted(round(100 * v, 6) for v in list(RUN_A.values()) + list(RUN_B.values()))
    assert "better on 2 of 4 classes" in axes.get_title()


def test_table_rows_and_means():
    table = ap_comparison_table(RUN_A, RUN_B, "A", "B", sort="difference").splitlines()
    assert table[0] == "| class | A (%) | B (%) | B - A |"
    assert table[2:6] == ["| carry | 10.0 | 45.0 | +35.0 |", "| walk | 50.0 | 70.0 | +20.0 |",
                          "| jump/leap | 30.0 | 30.0 | +0.0 |", "| stand | 80.0 | 75.0 | -5.0 |"]
    assert table[6] == "| **mean over 4 classes** | 42.5 | 55.0 | +12.5 |"


def test_command_line_writes_figures_and_table(tmp_path, capsys):
    run_a = write_run(tmp_path / "two_stage", {**RUN_A, "dance": None})  # no ground truth for dance in run A
    run_b = write_run(tmp_path / "bmvit", {**RUN_B, "dance": 0.2})
    compare_runs.main([str(run_a), str(run_b / "test_results.json"), "--output", str(tmp_path / "cmp")])
    out = capsys.readouterr().out
    assert "| walk | 50.0 | 70.0 | +20.0 |" in out and "dance" not in out.split("wrote")[0]
    for name in ("ap_comparison.png", "ap_difference.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 10_000
    markdown = (tmp_path / "cmp" / "ap_comparison.md").read_text()
    assert "two_stage (%)" in markdown and "left out (no AP in one run): dance" in markdown


def test_unreadable_runs_stop_with_one_line_naming_the_file(tmp_path, capsys):
    good = write_run(tmp_path / "good", RUN_A)
    bad = tmp_path / "bad.json"
    bad.write_text('{"mAP": 0.3}')
    for argv, named in (([str(tmp_path / "absent"), str(good)], tmp_path / "absent"),
                        ([str(good), str(bad)], bad)):
        with pytest.raises(SystemExit) as stop:
            compare_runs.main(argv + ["--output", str(tmp_path / "cmp")])
        assert stop.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(named) in lines[0]
