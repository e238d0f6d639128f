"""``reconcile`` from the command line after a real ``sync`` against the simulator, on each
database: a complete copy matches; a deleted, forged or edited row and a record Zendesk
added later are each named by id; a failed run resumes without reading its finished days
again; nothing is written to the records."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import CliProcess, one_error_line, run_cli
from parts.configs import write_config
from parts.simulators import Simulators, history
from support import SIM_OAUTH_TOKEN, audit_record, execute, recent

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import ledger, reconcile_days
from etl.storage.schema.logs import access_logs, audit_logs
from zendesk_sim import AccessSource, Fault, SimulatedZendesk

RECORDS = 400
SINCE = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d")


def synced(tmp_path: Path, db_url: str, make_sim: Simulators) -> tuple[Path, SimulatedZendesk]:
    sim = make_sim(history(RECORDS, days=2, seed=3))
    path = write_config(tmp_path, db_url, sim.url, database={"auto_migrate": True})
    result = run_cli("--config", str(path), "sync")
    assert result.returncode == 0, result.stderr
    return path, sim


def reconcile(path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("--config", str(path), "reconcile", "--since", SINCE, "--json", *args)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def ids(report: dict[str, Any], kind: str) -> set[int]:
    return {i for a in report["accounts"] for day in a["days"] for i in day[kind]}


def table_state(db_url: str) -> tuple[int, int, int, int]:
    """Rows, their highest stored_seq, ledger entries, and reconcile progress rows."""
    engine = open_engine(db_url)
    with engine.connect() as conn:
        rows, seq = conn.execute(
            sa.select(sa.func.count(), sa.func.max(audit_logs.c.stored_seq))
        ).one()
        entries = conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one()
        progress = conn.execute(sa.select(sa.func.count()).select_from(reconcile_days)).scalar_one()
    engine.dispose()
    return rows, seq, entries, progress


def test_a_complete_copy_matches_and_nothing_is_written(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, _ = synced(tmp_path, migrated_url, make_sim)
    before = table_state(migrated_url)
    code, report = reconcile(path)
    assert code == ExitCode.OK, report
    assert table_state(migrated_url) == before  # no row, seq, entry or progress left
    assert report["matches"] is True and "end-user activity" in report["coverage"]
    (account,) = report["accounts"]
    assert account["account"] == "acme" and account["since"] == f"{SINCE}T00:00:00Z"
    assert account["until"] == account["scope"]["watermark"]  # by default, the watermark
    assert account["scope"]["filters"] == {} and account["scope"]["start_time"] is None
    assert account["scope"]["host"] == "127.0.0.1"  # the Zendesk host the period is read from
    assert account["totals"]["at_zendesk"] == account["totals"]["stored"] == RECORDS
    assert len(account["days"]) >= 3 and account["days_resumed"] == 0
    day = account["days"][0]
    assert set(day) >= {
        "day", "start", "end", "at_zendesk", "stored", "missing", "extra", "differ",
        "rejected", "requests", "checked_at", "version", "checkpoint", "matches",
    }  # fmt: skip
    # sync made an unsigned checkpoint (no key configured): no signed one covers a day
    assert all(d["checkpoint"] is None for d in account["days"])
    text = run_cli("--config", str(path), "reconcile", "--since", SINCE)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[-2].startswith("account acme ") and ": complete: " in lines[-2]
    assert ", host 127.0.0.1, filters {}, start_time None, " in lines[0]
    assert sum(" matches: " in line for line in lines) == len(account["days"])


def test_deleted_forged_and_edited_rows_are_named(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, _ = synced(tmp_path, migrated_url, make_sim)
    engine = open_engine(migrated_url)
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(audit_logs.c.id, audit_logs.c.raw, audit_logs.c.created_at)
            .order_by(audit_logs.c.id)
            .limit(2)
        ).all()
    engine.dispose()
    (edited, raw, _), (deleted, _, when) = stored
    forged: dict[str, Any] = {c.name: None for c in audit_logs.columns}
    forged.update(
        account="acme", id=5, raw={**raw, "id": 5}, synced_at=recent(0), created_at=when,
        stored_seq=10**9,
    )  # fmt: skip
    execute(
        migrated_url,
        sa.update(audit_logs)
        .where(audit_logs.c.id == edited)
        .values(raw={**raw, "actor_name": "Nobody"}),
        sa.delete(audit_logs).where(audit_logs.c.id == deleted),
        sa.insert(audit_logs).values(forged),
    )
    code, report = reconcile(path)
    assert code == ExitCode.FINDINGS
    assert (ids(report, "missing"), ids(report, "extra"), ids(report, "differ")) == (
        {deleted},
        {5},
        {edited},
    )
    assert report["matches"] is False and report["accounts"][0]["totals"]["days_differing"] >= 1
    text = run_cli("--config", str(path), "reconcile", "--since", SINCE)
    assert text.returncode == ExitCode.FINDINGS
    lines = text.stdout.splitlines()
    assert any(f"1 missing ({deleted})" in line and "DIFFERS" in line for line in lines)


def test_a_record_zendesk_added_after_the_sync_is_missing(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, sim = synced(tmp_path, migrated_url, make_sim)
    sim.add_records([audit_record(9_300_000_000_001, recent(45))])
    before = table_state(migrated_url)
    code, report = reconcile(path)
    assert code == ExitCode.FINDINGS
    assert ids(report, "missing") == {9_300_000_000_001}
    assert ids(report, "extra") == ids(report, "differ") == set()
    assert table_state(migrated_url) == before


def _lower_bounds(sim: SimulatedZendesk) -> set[str]:
    return {
        r.query["filter[created_at][]"][0]
        for r in sim.requests
        if r.path.startswith("/api/v2/audit_logs")
    }


def test_a_failed_reconcile_resumes_without_reading_finished_days_again(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, sim = synced(tmp_path, migrated_url, make_sim)
    _, whole = reconcile(path)
    days, total = whole["accounts"][0]["days"], whole["accounts"][0]["requests"]
    # One query for the period: Zendesk fails its last request, so the days the pages
    # before it passed are finished and kept, the one still open is not.
    sim.inject(Fault("status", status=401, skip=total - 1))
    failed = run_cli("--config", str(path), "reconcile", "--since", SINCE)
    assert failed.returncode == ExitCode.AUTH, failed.stderr
    one_error_line(failed)
    kept = table_state(migrated_url)[3]
    assert 1 <= kept < len(days)
    sim.clear_faults()
    sim.clear_log()
    code, resumed = reconcile(path)
    assert code == ExitCode.OK, resumed
    account = resumed["accounts"][0]
    assert account["days_resumed"] == kept
    assert 1 <= account["requests"] <= total
    # One query, from the first unfinished day: no finished day read again.
    assert _lower_bounds(sim) == {days[kept]["start"]}
    assert [d["day"] for d in account["days"]] == [d["day"] for d in days]
    assert table_state(migrated_url)[3] == 0  # complete: its progress forgotten


def _fails(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli("--config", str(path), "reconcile", *args)
    assert result.returncode == ExitCode.CONFIG, result
    return result


def test_bad_periods_are_one_line_errors(tmp_path: Path, sqlite_url: str) -> None:
    path = write_config(tmp_path, sqlite_url, database={"auto_migrate": True})
    assert "--since" in one_error_line(_fails(path, "--since", "yesterday-ish"))
    assert "--until" in one_error_line(_fails(path, "--since", SINCE, "--until", "2026-13-01"))
    assert "is after --until" in one_error_line(
        _fails(path, "--since", "2026-12-05", "--until", "2026-12-01")
    )
    assert "no watermark" in one_error_line(_fails(path, "--since", SINCE))
    assert "--since" in one_error_line(_fails(path))


def test_each_day_names_the_signed_checkpoint_that_covers_it(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    key = tmp_path / "ledger.key"
    made = run_cli("keygen", str(key))
    assert made.returncode == 0, made.stderr
    key_id = made.stdout.split("key id: ")[1].split()[0]
    sim = make_sim(history(RECORDS, days=2, seed=3))
    signed = f'[ledger]\nsigning_key_file = "{key}"\n'
    path = write_config(tmp_path, migrated_url, sim.url, database={"auto_migrate": True},
                        text=signed)  # fmt: skip
    assert run_cli("--config", str(path), "sync").returncode == 0
    # A later record stored by a run without the key: its day has no signed checkpoint yet.
    late = recent(8)  # inside the next sync's overlap: it stores it
    sim.add_records([audit_record(9_300_000_000_002, late)])
    path = write_config(tmp_path, migrated_url, sim.url, database={"auto_migrate": True})
    assert run_cli("--config", str(path), "sync").returncode == 0
    code, report = reconcile(path)
    assert code == ExitCode.OK, report
    days = {d["day"]: d for d in report["accounts"][0]["days"]}
    assert days.pop(late.strftime("%Y-%m-%d"))["checkpoint"] is None
    covered = [d["checkpoint"] for d in days.values() if d["stored"]]
    assert covered and all(c is not None and c["key_id"] == key_id for c in covered)
    assert all(c["size"] == RECORDS for c in covered)  # the first sync's ledger


def test_the_scope_filters_both_sides(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    """Rows of other actions (stored before the filter was set) are outside the scope: not
    extra. The scope is in the report."""
    path, sim = synced(tmp_path, migrated_url, make_sim)
    actions = {r["action"] for r in sim.visible_records()}
    assert "create" in actions and len(actions) > 1
    filtered = write_config(tmp_path, migrated_url, sim.url, database={"auto_migrate": True},
                            text='[sync.filters]\naction = ["create"]\n')  # fmt: skip
    code, report = reconcile(filtered, "--until", report_until(path))
    assert code == ExitCode.OK, report
    account = report["accounts"][0]
    creates = sum(r["action"] == "create" for r in sim.visible_records())
    assert account["totals"]["at_zendesk"] == account["totals"]["stored"] == creates
    assert account["scope"]["filters"] == {"action": ["create"]}


def report_until(path: Path) -> str:
    """The watermark of the account's sync (reconcile's default --until)."""
    _, report = reconcile(path)
    return str(report["accounts"][0]["until"])


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_reconcile_resumes_at_its_first_unfinished_day(
    tmp_path: Path, migrated_url: str, make_sim: Simulators, how: signal.Signals
) -> None:
    path, sim = synced(tmp_path, migrated_url, make_sim)
    # Paced at one request a second, so the kill lands after the first day, mid-period.
    slow = write_config(tmp_path, migrated_url, sim.url, zendesk={"requests_per_minute": 60},
                        filename="slow.toml")  # fmt: skip
    running = CliProcess(slow, "reconcile", "--since", SINCE)
    running.wait_for_line(f"account acme audit_logs: {SINCE} matches")
    running.proc.send_signal(how)
    code = running.finish()
    if how == signal.SIGTERM:  # stopped at once, one line, the finished days kept
        assert code == ExitCode.INTERRUPTED, running.stderr
        errors = [line for line in running.lines if line.startswith("zendesk-audit-etl: error")]
        assert len(errors) == 1 and "Traceback" not in running.stderr, running.stderr
    else:
        assert code == -signal.SIGKILL
    kept = table_state(migrated_url)[3]
    assert kept >= 1
    sim.clear_log()
    code, report = reconcile(path)
    assert code == ExitCode.OK, report
    account = report["accounts"][0]
    assert account["days_resumed"] == kept
    read_again = _lower_bounds(sim)
    assert all(d["start"] not in read_again for d in account["days"][:kept])
    assert table_state(migrated_url)[3] == 0


def test_an_account_that_fails_keeps_the_finished_accounts_days(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    """Two accounts: the second's failure stops the command before the report; the first's
    days stay saved and the next run reports them without a request for it."""
    first, second = (make_sim(history(100, days=1, seed=s)) for s in (4, 5))
    path = tmp_path / "two.toml"
    path.write_text(
        "".join(
            f'[[accounts]]\nbase_url = "{sim.url}"\nname = "{name}"\n'
            f'requests_per_minute = 2500\noauth_token = "{SIM_OAUTH_TOKEN}"\n'
            for name, sim in (("one", first), ("two", second))
        )
        + f'[database]\nurl = "{migrated_url}"\nauto_migrate = true\n'
    )
    path.chmod(0o600)
    assert run_cli("--config", str(path), "sync").returncode == 0
    second.inject(Fault("status", status=401))
    failed = run_cli("--config", str(path), "reconcile", "--since", SINCE)
    assert failed.returncode == ExitCode.AUTH and "account" not in failed.stdout
    first.clear_log()
    code, report = reconcile(path)
    assert code == ExitCode.OK, report
    one, two = report["accounts"]
    assert one["requests"] == 0 and one["days_resumed"] == len(one["days"])
    assert first.requests == [] and two["days_resumed"] == 0


def test_the_access_log_is_reconciled_too_when_the_account_copies_it(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    end = recent(30)
    sim = make_sim(
        history(RECORDS, days=2, seed=3),
        access_records=AccessSource(300, start=end - timedelta(days=2), end=end, seed=8),
    )
    key = tmp_path / "ledger.key"
    assert run_cli("keygen", str(key)).returncode == 0
    both = '[sync]\nstreams = ["audit_logs", "access_logs"]\n'
    both += f'[ledger]\nsigning_key_file = "{key}"\n'
    path = write_config(tmp_path, migrated_url, sim.url, database={"auto_migrate": True},
                        text=both)  # fmt: skip
    assert run_cli("--config", str(path), "sync").returncode == 0
    code, report = reconcile(path)
    assert code == ExitCode.OK, report
    audit, access = report["accounts"]
    assert (audit["stream"], access["stream"]) == ("audit_logs", "access_logs")
    assert access["totals"]["at_zendesk"] == access["totals"]["stored"] == 300
    # The access log's rows are in the one ledger: the run's signed checkpoint covers them.
    stored_days = [d for d in access["days"] if d["stored"]]
    assert stored_days and all(d["checkpoint"] is not None for d in stored_days)
    engine = open_engine(migrated_url)
    with engine.connect() as conn:
        (gone, _), (edited, raw) = conn.execute(
            sa.select(access_logs.c.id, access_logs.c.raw).order_by(access_logs.c.id).limit(2)
        ).all()
    engine.dispose()
    execute(
        migrated_url,
        sa.delete(access_logs).where(access_logs.c.id == gone),
        sa.update(access_logs).where(access_logs.c.id == edited).values(raw={**raw, "status": 1}),
    )
    code, report = reconcile(path)
    assert code == ExitCode.FINDINGS
    access = report["accounts"][1]
    assert access["totals"] | {"days": 0, "days_differing": 0} == {
        "days": 0, "days_differing": 0, "at_zendesk": 300, "stored": 299, "missing": 1,
        "extra": 0, "differ": 1, "rejected": 0,
    }  # fmt: skip
    assert ids(report, "missing") == {gone} and ids(report, "differ") == {edited}
    assert report["accounts"][0]["matches"] is True
