"""``export`` from the real command line, after a real ``sync``: summary, status, metrics,
exit codes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support import recent
from test_cli import cli, one_error_line
from test_export import without_seq
from test_ocsf import valid

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.locking.lock import run_lock
from zendesk_sim import SimulatedZendesk, generate_records

ISO_SECONDS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


@pytest.fixture(scope="module")
def zendesk() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    with SimulatedZendesk(generate_records(1500, start=end - timedelta(days=3), end=end)) as s:
        yield s


def config_for(tmp_path: Path, base_url: str, db_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[zendesk]\nbase_url = "{base_url}"\nname = "acme"\nrequests_per_minute = 2500\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[monitoring]\nmetrics_file = "{tmp_path / "etl.prom"}"\n'
    )
    path.chmod(0o600)
    return path


def finished(stderr: str) -> dict[str, Any]:
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (event,) = [e for e in events if e.get("event") == "export_finished"]
    assert isinstance(event, dict)
    return event


def test_sync_then_export_to_a_file_and_to_stdout(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    config = config_for(tmp_path, zendesk.url, db_url)
    assert cli(config, "migrate").returncode == 0
    assert cli(config, "sync").returncode == 0
    out = tmp_path / "feed.jsonl"

    first = cli(
        config, "--log-format", "json", "export", "--consumer", "siem", "--output", str(out)
    )
    assert first.returncode == 0, first.stderr
    summary = finished(first.stderr)
    assert summary["rows"] == 1500 and summary["bytes"] == out.stat().st_size
    assert (summary["consumer"], summary["account"], summary["output"]) == (
        "siem",
        "acme",
        str(out),
    )
    assert summary["position_before"] == 0 and summary["position_after"] >= 1500
    lines = without_seq([json.loads(line) for line in out.read_text("utf-8").splitlines()])
    want = {int(r["id"]): {**r, "account": "acme"} for r in zendesk.visible_records()}
    assert {line["id"]: line for line in lines} == want and len(lines) == len(want)

    again = cli(config, "export", "--consumer", "siem", "--output", str(out))
    assert again.returncode == 0 and "0 rows" in again.stderr
    assert len(out.read_bytes().splitlines()) == 1500

    piped = cli(config, "--quiet", "export", "--consumer", "pipe", "--format", "ocsf")
    assert piped.returncode == 0, piped.stderr
    events = [json.loads(line) for line in piped.stdout.splitlines()]
    assert len(events) == 1500
    for event in events[:50]:
        valid(event)

    status = cli(config, "status", "--json")
    (account,) = json.loads(status.stdout)
    backlog = {c["consumer"]: c["backlog"] for c in account["export_consumers"]}
    assert backlog == {"pipe": 0, "siem": 0}
    text = cli(config, "status").stdout
    assert "export consumers" in text and "siem (acme)" in text and "backlog 0 rows" in text
    # every timestamp of status, the consumers' included, in one format (etl.cli.report.iso)
    for shown in (status.stdout, text):
        stamps = re.findall(r"\d{4}-\d\d-\d\d[T ][\d:.]+(?:Z|[+-]\d\d:\d\d)?", shown)
        assert len(stamps) > 2 and all(re.fullmatch(ISO_SECONDS, s) for s in stamps), stamps
    assert all(re.fullmatch(ISO_SECONDS, c["updated_at"]) for c in account["export_consumers"])
    metrics = (tmp_path / "etl_export.prom").read_text()
    assert 'zendesk_audit_etl_export_backlog_rows{consumer="siem",account="acme"} 0' in metrics


def test_export_exit_codes(tmp_path: Path, sqlite_url: str, zendesk: SimulatedZendesk) -> None:
    config = config_for(tmp_path, zendesk.url, sqlite_url)
    unmigrated = cli(config, "export", "--consumer", "siem")
    assert unmigrated.returncode == ExitCode.DATABASE
    assert "migrate" in one_error_line(unmigrated)
    assert cli(config, "migrate").returncode == 0
    bad = cli(config, "export", "--consumer", "a b")
    assert bad.returncode == ExitCode.CONFIG and "consumer name" in one_error_line(bad)
    engine = open_engine(sqlite_url)
    try:
        with run_lock(engine, "siem", namespace="export"):
            locked = cli(config, "export", "--consumer", "siem")
    finally:
        engine.dispose()
    assert locked.returncode == ExitCode.LOCKED
    assert "another export for consumer siem" in one_error_line(locked)
    unwritable = cli(config, "export", "--consumer", "siem", "--output", str(tmp_path / "no/x"))
    assert unwritable.returncode == ExitCode.CONFIG
    assert "cannot write the export file" in one_error_line(unwritable)


def test_since_and_account_from_the_command_line(
    tmp_path: Path, sqlite_url: str, zendesk: SimulatedZendesk
) -> None:
    config = config_for(tmp_path, zendesk.url, sqlite_url)
    assert cli(config, "migrate").returncode == 0
    assert cli(config, "sync").returncode == 0
    times = sorted(r["created_at"] for r in zendesk.visible_records())
    middle = times[len(times) // 2]  # Zendesk's own format: 2026-03-01T12:00:00Z
    out = tmp_path / "feed.jsonl"
    ran = cli(config, "export", "--consumer", "late", "--account", "acme", "--since", middle,
              "--output", str(out))  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    got = sorted(json.loads(line)["created_at"] for line in out.read_bytes().splitlines())
    assert got == [t for t in times if t >= middle] and 0 < len(got) < len(times)
    unknown = cli(config, "export", "--consumer", "late", "--account", "nosuch")
    assert unknown.returncode == ExitCode.CONFIG and "unknown account" in one_error_line(unknown)
    bad = cli(config, "export", "--consumer", "late", "--since", "yesterday-ish")
    assert bad.returncode == ExitCode.CONFIG
