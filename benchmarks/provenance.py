"""When and where a benchmark ran, and where its table goes (`publish`): the machine and date line of the results
tables in benchmarks/results/, e.g.

    Measured 2026-12-04 on AMD EPYC, 2 logical CPUs; Python 3.11.7, torch 2.13.0+cpu, 1 torch thread(s),
    OMP_NUM_THREADS=1.

(one line in a table, wrapped here). The scripts in benchmarks/ run as `python benchmarks/<script>.py`, which puts
benchmarks/ first on sys.path, so they import this module as `provenance`. torch is optional: without it the line
names Python only.
"""

from __future__ import annotations

import datetime
import os
import platform


def today() -> str:
    """Today's date, ISO 8601 (YYYY-MM-DD)."""
    return datetime.date.today().isoformat()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform module reports."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_name() -> str | None:
    """The name of CUDA device 0 when torch sees one, else None."""
    torch = _torch()
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def machine_description() -> str:
    """CPU model, logical CPU count and CUDA device 0, e.g. 'AMD EPYC, 2 logical CPUs' or
    '..., 16 logical CPUs, GPU NVIDIA H200'."""
    text = f"{cpu_model()}, {os.cpu_count()} logical CPUs"
    gpu = gpu_name()
    return text + (f", GPU {gpu}" if gpu else "")


def software_description(threads: int | None = None) -> str:
    """Python and torch versions, torch's intra-op threads and OMP_NUM_THREADS.

    `threads` replaces this process's torch thread count where the timed code ran elsewhere with its own setting
    (e.g. in subprocesses started with `--threads`).
    """
    parts = [f"Python {platform.python_version()}"]
    torch = _torch()
    if torch is not None:
        parts += [f"torch {torch.__version__}", f"{threads or torch.get_num_threads()} torch thread(s)"]
    parts.append(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    return ", ".join(parts)


def provenance_line(extra: str = "", threads: int | None = None) -> str:
    """One Markdown line: 'Measured <date> on <machine>; <software>.' followed by `extra` (a sentence) if given."""
    line = f"Measured {today()} on {machine_description()}; {software_description(threads)}."
    return f"{line} {extra}" if extra else line


def publish(text: str, out: str | None) -> None:
    """Print a results table and, when `out` is given, write it to that file (replacing it)."""
    print(text)
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
