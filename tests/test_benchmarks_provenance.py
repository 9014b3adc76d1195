"""The machine and date line of the benchmark tables (benchmarks/provenance.py), and the dated rows of
benchmarks/bench_synth_ablation.py's table (rendered from hand-made rows; nothing is trained)."""

import datetime
import importlib
import os
import re

import pytest


@pytest.fixture
def benchmarks(repo_root, monkeypatch):
    """Import benchmark scripts as they import each other: with benchmarks/ first on sys.path."""
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    return importlib.import_module


def test_provenance_line_names_today_the_cpu_count_and_the_cpu(benchmarks):
    line = benchmarks("provenance").provenance_line("Load average 1.0.")
    assert "\n" not in line
    assert line.startswith(f"Measured {datetime.date.today().isoformat()} on ")
    assert f", {os.cpu_count()} logical CPUs" in line
    assert "OMP_NUM_THREADS=" in line and line.endswith(". Load average 1.0.")
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as handle:
            model = re.search(r"^model name\s*:\s*(.+)$", handle.read(), re.MULTILINE)
        if model:
            assert f" on {model.group(1).strip()}, " in line


def test_provenance_line_reports_the_given_thread_count(benchmarks):
    assert "7 torch thread(s)" in benchmarks("provenance").provenance_line(threads=7)


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_synth_ablation_table_shows_each_variants_dates_and_the_machines(benchmarks):
    ablation = benchmarks("bench_synth_ablation")
    row = {"name": "center", "map": 0.5, "gflops": 0.26, "seconds": 600.0, "epochs": 10, "seed": 0,
           "command": "python tools/run_net.py", "date": "2026-11-22", "machine": "a 2-core Intel Xeon @ 2.50GHz VM"}
    later_seed = {**row, "seed": 1, "map": 0.3, "date": "2026-12-04", "machine": "AMD EPYC, 2 logical CPUs",
                  "software": "Python 3.11.7, torch 2.13.0+cpu"}
    undated = {key: value for key, value in row.items() if key not in ("date", "machine")}
    text = ablation.render_table(ablation.CONFIG, 10, {"center": [later_seed, row], "all": [undated],
                                                       "two_halves": []})
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| variant "))
    column = _cells(header).index("measured")
    center = _cells(next(line for line in lines if line.startswith("| center ")))
    assert center[column] == "2026-11-22, 2026-12-04"
    assert center[1] == "0.4000" and center[2] == "0: 0.5000, 1: 0.3000"
    assert _cells(next(line for line in lines if line.startswith("| all ")))[column] == "not recorded"
    assert "- 2026-11-22: a 2-core Intel Xeon @ 2.50GHz VM" in lines
    assert "- 2026-12-04: AMD EPYC, 2 logical CPUs; Python 3.11.7, torch 2.13.0+cpu" in lines
    assert lines[-1] == "Not run yet at this budget: two_halves."
