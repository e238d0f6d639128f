"""``export`` from the real command line, after a real ``sync``: summary, status, metrics,
exit codes."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from parts.cli import CLI_ENV, ROOT, cli, cli_command, one_error_line
from parts.databases import kind_of
from parts.exports import without_seq
from parts.ocsf import valid
from parts.simulators import Simulators
from support import audit_record, recent

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


def test_an_export_waiting_on_a_full_pipe_holds_no_write_lock(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    """An export to a pipe its reader has stopped reading waits mid-way; meanwhile a sync
    of the same database commits, even with a one-second busy timeout. (On SQLite the
    export used to write inside its write transaction, so a slow log shipper held the one
    write lock and every sync behind it failed with exit 6.)"""
    end = recent(30)
    sim = make_sim(generate_records(1500, start=end - timedelta(days=3), end=end))
    sqlite = kind_of(migrated_url) == "sqlite"
    url = f"{migrated_url}?timeout=1" if sqlite else migrated_url
    config = config_for(tmp_path, sim.url, url)
    assert cli(config, "sync").returncode == 0
    exporting = subprocess.Popen(
        cli_command(config, "--quiet", "export", "--consumer", "pipe"),
        env=CLI_ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert exporting.stdout is not None
        assert json.loads(exporting.stdout.readline())["id"]  # it writes, then the pipe fills
        sim.add_records([audit_record(9_100_000_000 + i, recent(5)) for i in range(3)])
        synced = cli(config, "sync")
        assert synced.returncode == 0, synced.stderr
        lines = 1 + len(exporting.stdout.read().splitlines())
        assert exporting.wait(timeout=120) == 0
    finally:
        if exporting.poll() is None:
            exporting.kill()
            exporting.wait()
    assert lines >= 1500  # what it began with, whatever the sync added meanwhile


def test_a_reader_that_stops_early_loses_no_row(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """``export | head -2``, as the demo suggests: the reader leaves mid-chunk, the write
    returns short, and the chunk's position must not commit (it did: the next export then
    began after rows nobody read). At least once: the next export writes them all."""
    config = config_for(tmp_path, zendesk.url, db_url)
    assert cli(config, "migrate").returncode == 0
    assert cli(config, "sync").returncode == 0
    head = subprocess.Popen(
        cli_command(config, "--quiet", "export", "--consumer", "head"),
        env=CLI_ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert head.stdout is not None
        assert json.loads(head.stdout.readline())["id"]  # one line read, then gone
        head.stdout.close()
        assert head.wait(timeout=120) == ExitCode.OK
    finally:
        if head.poll() is None:
            head.kill()
            head.wait()
    again = cli(config, "--quiet", "export", "--consumer", "head")
    assert again.returncode == 0, again.stderr
    assert len(again.stdout.splitlines()) == 1500
