"""The wheel `make dist` builds, once per test run: tests/test_wheel.py reads its files,
tests/test_deploy.py installs it; the shipped systemd units pointed at this checkout's
installed command."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "systemd"
INSTALLED_BINARY = "/opt/zendesk-audit-etl/bin/zendesk-audit-etl"


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist`'s command, run once for the test run. Under xdist the workers share it
    (a folder beside theirs, named by the run; the first to take the lock builds)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = tmp_path_factory.getbasetemp()
    folder = base.parent / f"wheel-{run}" if run else base / "wheel"
    folder.mkdir(exist_ok=True)
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not list(folder.glob("*.whl")):
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                 "--no-build-isolation", "--wheel-dir", str(folder), str(ROOT)],
                check=True, capture_output=True, timeout=600,  # a hang guard, not a timing
            )  # fmt: skip
    (wheel,) = folder.glob("zendesk_audit_etl-*-py3-none-any.whl")
    return wheel


def units_with_real_binary(tmp_path: Path) -> Path:
    """Copies whose ExecStart points at this checkout's console script, which exists."""
    binary = Path(sys.executable).parent / "zendesk-audit-etl"
    assert binary.exists(), "install the package (make install) to get the console script"
    for unit in DEPLOY.rglob("*"):  # the units and their drop-in folders (NAME.service.d)
        copy = tmp_path / unit.relative_to(DEPLOY)
        if unit.is_dir():
            copy.mkdir()
        else:
            copy.write_text(unit.read_text().replace(INSTALLED_BINARY, str(binary)))
    # a template is verified through an instance of it
    shutil.copy(
        tmp_path / "zendesk-audit-etl@.service", tmp_path / "zendesk-audit-etl@acme.service"
    )
    shutil.copy(tmp_path / "zendesk-audit-etl@.timer", tmp_path / "zendesk-audit-etl@acme.timer")
    return tmp_path
