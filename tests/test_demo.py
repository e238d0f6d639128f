"""`make demo`, the README's first command, runs to its end and proves its own claim: the
table holds every simulated record exactly once, late ones included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_runs_and_its_table_matches_the_simulated_account() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Demo complete: the table holds every record exactly once." in done.stdout
    assert "late records stored: 5 of 5" in done.stdout
    assert "Traceback" not in done.stderr
