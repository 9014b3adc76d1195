"""Shared pytest fixtures: repository paths and the real data folder beside the repository."""

import logging
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder (../shared/data); tests using it carry "real" in their name."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repository in CI)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _package_log_handlers_end_with_the_test():
    """The engine's setup_logging attaches a stdout handler to the root logger; pytest gives each test its own
    captured stdout and closes it afterwards, so a handler left behind would write later tests' records to a closed
    stream. Remove (and close) the package's handlers after every test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_slowfast_bmvit", False):
            root.removeHandler(handler)
            handler.close()
