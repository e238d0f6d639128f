"""The job as the no-false-alarm tests run it: a signing key (``keygen``), a config whose
checkpoints are signed and copied out (``ledger_config``), a quiet ``sync``, and verify's
verdict on the one account (``verify``, ``assert_clean``), through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etl.common.errors import ExitCode
from parts.cli import run_cli
from parts.configs import write_config
from zendesk_sim import SimulatedZendesk

ACCOUNT = "acme"


def keygen(tmp_path: Path) -> tuple[Path, Path]:
    """A new signing key (its path) and its public key's PEM file."""
    key = tmp_path / "ledger.key"
    made = run_cli("keygen", str(key))
    assert made.returncode == 0, made.stderr
    begin, end = made.stdout.index("-----BEGIN"), made.stdout.index("-----END")
    public = tmp_path / "ledger.pub"
    public.write_text(made.stdout[begin : made.stdout.index("-----\n", end) + 6])
    return key, public


def ledger_config(
    tmp_path: Path,
    db_url: str,
    sim: SimulatedZendesk,
    key: Path,
    *,
    zendesk: dict[str, Any] | None = None,
    sync_text: str = "",
    **sync: Any,
) -> Path:
    """The job's config: signed checkpoints, copied to ``tmp_path/checkpoints``."""
    directory = tmp_path / "checkpoints"
    directory.mkdir(exist_ok=True)
    return write_config(
        tmp_path,
        db_url,
        sim.url,
        zendesk=zendesk,
        sync=sync or None,
        text=f'[ledger]\nsigning_key_file = "{key}"\ncheckpoint_dir = "{directory}"\n' + sync_text,
    )


def verify(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``verify --json``: its exit code and its report (of the one account)."""
    result = run_cli("--config", str(path), "verify", "--json", "--account", ACCOUNT, *args)
    assert "Traceback" not in result.stderr
    assert result.returncode in (ExitCode.OK, ExitCode.FINDINGS) and result.stdout, result.stderr
    report = json.loads(result.stdout)
    assert [a["account"] for a in report["accounts"]] == [ACCOUNT]
    return result.returncode, report["accounts"][0]


def assert_clean(path: Path, public: Path, records: int) -> None:
    """Exit 0, no finding, every entry under a valid signed checkpoint, ``records`` rows."""
    code, report = verify(path, "--public-key", str(public))
    assert (code, report["findings"], report["notes"]) == (ExitCode.OK, [], []), report
    assert report["records_verified"] == records
    assert report["checkpoints_valid"] == report["checkpoints"] > 0


def sync(path: Path, *args: str) -> None:
    result = run_cli("--config", str(path), "--quiet", *(args or ("sync",)))
    assert result.returncode == 0, result.stderr
