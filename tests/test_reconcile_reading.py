"""How ``reconcile`` reads a period from the simulator, on each database: one query for
its unfinished days, grouped by day as the pages stream, so days without a record cost no
request; a day is saved only once it is proven read (a later day's record, or the query's
end), also when one second's records are split across pages; a failed or hostile answer
leaves the open day unsaved, and the next run reads from it, nothing finished again."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from parts.cli import one_error_line, run_cli
from parts.configs import write_config
from parts.simulators import Simulators
from support import audit_record

from etl.common.clock import format_time
from etl.common.errors import ExitCode
from zendesk_sim import Fault, SimulatedZendesk

PAGE_SIZE = 50
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
SINCE = TODAY - timedelta(days=60)
UNTIL = TODAY - timedelta(seconds=1)  # 60 whole days, none of them today
A, B, C = (TODAY - timedelta(days=n) for n in (50, 30, 10))


def _records() -> list[dict[str, Any]]:
    """120 records on day A; on day B 28, then three of B's last second, which the pages
    split (the 149th and 150th end page 3, the 151st begins page 4), and one at the next
    midnight; 40 on day C: 192 records on four days of sixty, four pages of 50."""
    times = [A + timedelta(hours=9, seconds=i) for i in range(120)]
    times += [B + timedelta(hours=9, seconds=i) for i in range(28)]
    times += [B + timedelta(days=1) - timedelta(seconds=1)] * 3 + [B + timedelta(days=1)]
    times += [C + timedelta(hours=9, seconds=i) for i in range(40)]
    return [audit_record(9_400_000_000_000 + i, moment) for i, moment in enumerate(times)]


RECORDS = _records()
PAGES = math.ceil(len(RECORDS) / PAGE_SIZE)
B_LAST = {r["id"] for r in RECORDS[-44:-41]}  # the last second's three, across pages


def _by_day() -> dict[str, set[int]]:
    days: dict[str, set[int]] = defaultdict(set)
    for record in RECORDS:
        days[record["created_at"][:10]].add(record["id"])
    return days


def _setup(tmp_path: Path, db_url: str, make_sim: Simulators) -> tuple[Path, SimulatedZendesk]:
    # Never synced: every record is missing, named in the day it is of. A refused answer
    # is retried within a second, not minutes.
    sim = make_sim(RECORDS)
    zendesk: dict[str, int | str] = {"page_size": PAGE_SIZE, "retry_budget": "1s"}
    path = write_config(tmp_path, db_url, sim.url, zendesk=zendesk, database={"auto_migrate": True})
    return path, sim


def _reconcile(path: Path) -> Any:
    since, until = SINCE.strftime("%Y-%m-%d"), format_time(UNTIL)
    return run_cli("--config", str(path), "reconcile", "--since", since, "--until", until,
                   "--json")  # fmt: skip


def _audit_requests(sim: SimulatedZendesk) -> list[Any]:
    return [r for r in sim.requests if r.path.startswith("/api/v2/audit_logs")]


def _check_days(account: dict[str, Any]) -> None:
    expected = _by_day()
    days = account["days"]
    assert len(days) == 60 and days[0]["day"] == SINCE.date().isoformat()
    assert {d["day"]: set(d["missing"]) for d in days if d["missing"]} == expected
    assert set(days[30]["missing"]) >= B_LAST  # day B (30 days after the first)
    assert all(d["at_zendesk"] == len(d["missing"]) for d in days)
    assert all(d["requests"] == 0 for d in days if d["day"] not in expected)


def test_empty_days_cost_no_request_and_each_day_gets_its_records(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, sim = _setup(tmp_path, migrated_url, make_sim)
    result = _reconcile(path)
    assert result.returncode == ExitCode.FINDINGS, result.stderr
    account = json.loads(result.stdout)["accounts"][0]
    requests = _audit_requests(sim)
    assert len(requests) <= PAGES + 1  # the pages, not the sixty days
    assert account["requests"] == len(requests) == sum(d["requests"] for d in account["days"])
    _check_days(account)


def _saved_then_resumed(
    path: Path, sim: SimulatedZendesk, fault: Fault, code: ExitCode
) -> dict[str, Any]:
    """A run that ``fault`` stops on page 4, while day B (its last second split by page 3's
    end) is open; then a run that resumes it. The resumed account."""
    sim.inject(fault)
    failed = _reconcile(path)
    assert failed.returncode == code, failed.stderr
    one_error_line(failed)
    sim.clear_faults()
    sim.clear_log()
    resumed = _reconcile(path)
    assert resumed.returncode == ExitCode.FINDINGS, resumed.stderr
    account: dict[str, Any] = json.loads(resumed.stdout)["accounts"][0]
    # Every day before B was proven read by B's first record and kept; B was not saved:
    # the one query of the resumed run starts at B, nothing finished is read again.
    assert account["days_resumed"] == 30
    starts = {r.query["filter[created_at][]"][0] for r in _audit_requests(sim)}
    assert starts == {format_time(B)}
    _check_days(account)
    return account


def test_a_failed_read_resumes_at_the_open_day_and_reads_nothing_finished(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, sim = _setup(tmp_path, migrated_url, make_sim)
    _saved_then_resumed(path, sim, Fault("status", status=401, skip=3), ExitCode.AUTH)


def test_a_hostile_answer_fails_loudly_and_marks_no_unread_day(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    # Page 4 comes newest first: refused before any of it is grouped, B left unsaved.
    path, sim = _setup(tmp_path, migrated_url, make_sim)
    hostile = Fault("descending", skip=3, times=-1)
    _saved_then_resumed(path, sim, hostile, ExitCode.UPSTREAM)
