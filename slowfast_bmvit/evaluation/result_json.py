"""Evaluation results as JSON files: the one conversion shared by the evaluators' `--json` and the engine's
test_results.json, and the command-line frame the two evaluators (`python -m slowfast_bmvit.evaluation.ava|act`)
share: `run_evaluator_cli`.

JSON has no NaN (an AP of a class without ground truth) and no numpy types: `json_ready` turns a result into plain
Python values, NaN and infinities into null.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Any, Callable, Sequence


def json_ready(value: Any) -> Any:
    """`value` with dict keys as strings, sequences and arrays (numpy, torch) as lists, numpy scalars as Python
    numbers and non-finite floats as None, recursively."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_folder_error(path: str | None) -> str | None:
    """Why a JSON result could not be written to `path` (its folder is missing), checked before the work starts;
    None when it can be (or no path is given)."""
    if not path:
        return None
    folder = os.path.dirname(os.path.abspath(path))
    return None if os.path.isdir(folder) else f"folder {folder} does not exist"


def write_result_json(path: str, result: dict) -> None:
    """Write `json_ready(result)` to `path`, indented. Raises OSError when the file cannot be written."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(json_ready(result), handle, indent=2)


def run_evaluator_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                      evaluate: Callable[[argparse.Namespace], tuple[list[str], dict]]) -> int:
    """Run an evaluator's command line: add `--json OUT`, parse `argv`, then `evaluate(args)` -> (report lines, result),
    print the lines and write the result to OUT. The --json folder is checked before the evaluation starts, and the
    report is printed before the file is written, so that a failed write loses nothing.

    Returns the exit status: 0, or 2 after one `error: ...` line on stderr when --json's folder is missing,
    `evaluate` raises ValueError or FileNotFoundError (bad input), or OUT cannot be written.
    """
    parser.add_argument("--json", default=None, metavar="OUT", help="write the full result as JSON to OUT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder_error = json_folder_error(args.json)
    if folder_error:
        print(f"error: --json: {folder_error}", file=sys.stderr)
        return 2
    try:
        lines, result = evaluate(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines), flush=True)
    if args.json:
        try:
            write_result_json(args.json, result)
        except OSError as error:
            print(f"error: --json: cannot write {args.json}: {error}", file=sys.stderr)
            return 2
    return 0
