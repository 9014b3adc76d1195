"""Evaluation results as JSON files: the one conversion shared by the evaluators' `--json` and the engine's
test_results.json.

JSON has no NaN (an AP of a class without ground truth) and no numpy types: `json_ready` turns a result into plain
Python values, NaN and infinities into null.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any


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
