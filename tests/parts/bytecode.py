"""The package's bytecode, written once a run for the processes the tests start.

Where ``PYTHONDONTWRITEBYTECODE`` is set (as on the machines CI runs on), no process
writes its bytecode, so every ``python -m etl`` a test starts compiled the package's
hundred modules anew: about 0.1 s of CPU a process, and the suite starts hundreds. Written
here, in the run's first process, every later one reads it; Python checks each file
against its source, so an edit between runs is never read stale.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("etl", "zendesk_sim", "migrations")  # what the tests' processes import


def compile_once(config: pytest.Config) -> None:
    """In the controller only (xdist's workers start after it); quietly, as a checkout
    that cannot be written to only loses the time."""
    if hasattr(config, "workerinput"):
        return
    for name in PACKAGES:
        compileall.compile_dir(ROOT / name, quiet=2, workers=1)
