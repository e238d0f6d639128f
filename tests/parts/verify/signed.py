"""A store synced from a simulator whose records include a reject, with a signed ledger
(``keygen``, ``config``, ``synced``), and ``verify --json``'s exit code, report and findings
(``verify``, ``found``), all through the command line in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support import audit_record, recent

from etl.integrity.findings import AccountReport
from etl.integrity.verify import VerifyOptions, verify_account
from etl.storage.engine import open_engine
from parts.cli import cli
from zendesk_sim import SimulatedZendesk, generate_records

RECORDS = 600


@pytest.fixture
def zendesk() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    records = generate_records(RECORDS, start=end - timedelta(days=2), end=end, seed=7)
    with SimulatedZendesk(records) as sim:
        # One record no database can keep (too long an action): a reject, chained too.
        sim.add_records(
            [audit_record(9_000_000_000_001, end - timedelta(hours=1), action="x" * 300)]
        )
        yield sim


def config(tmp_path: Path, sim: SimulatedZendesk, db_url: str, key: Path | None) -> Path:
    path = tmp_path / "config.toml"
    signing = f'signing_key_file = "{key}"\n' if key else ""
    path.write_text(
        f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
        f'[ledger]\n{signing}checkpoint_dir = "{tmp_path / "checkpoints"}"\n'
    )
    (tmp_path / "checkpoints").mkdir(exist_ok=True)
    return path


def keygen(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A new key (its path) and its public key's PEM file."""
    key = tmp_path / name
    made = cli(None, "keygen", str(key))
    assert made.returncode == 0, made.stderr
    pem = made.stdout[
        made.stdout.index("-----BEGIN") : made.stdout.index(
            "-----\n", made.stdout.index("-----END")
        )
        + 6
    ]
    public = tmp_path / f"{name}.pub"
    public.write_text(pem)
    return key, public


def synced(tmp_path: Path, sim: SimulatedZendesk, db_url: str, key: Path | None) -> Path:
    path = config(tmp_path, sim, db_url, key)
    result = cli(path, "sync")
    assert result.returncode == 0, result.stderr
    return path


def verify(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli(path, "verify", "--json", *args)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def verified_in_process(db_url: str) -> AccountReport:
    """verify's report on the account, run in this process (tests that patch its pages):
    it verified some records."""
    engine = open_engine(db_url)
    try:
        report = verify_account(engine, "acme", VerifyOptions())
    finally:
        engine.dispose()
    assert report.records > 0
    return report


def found(report: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(f["kind"], f["record_id"]) for a in report["accounts"] for f in a["findings"]}
