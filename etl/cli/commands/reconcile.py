"""``reconcile``: is the stored copy of a period complete? Zendesk read again, day by day.

Exit 0 when every day matches, 1 when any differs (``ExitCode.FINDINGS``), 2 on a usage or
config error; an API or database failure keeps its documented code (3, 4, 6; 130 on a
signal), and the days finished before it are kept for the next run of the same period.
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from etl.cli.arguments import utc_time
from etl.cli.gc_freeze import work_begins
from etl.cli.shared import load_settings, migrate_hint
from etl.cli.signals import signals_set
from etl.common.clock import format_time
from etl.common.errors import ConfigError, ExitCode, InterruptedRun
from etl.common.version import VERSION

if TYPE_CHECKING:
    from etl.integrity.reconcile_days import AccountReconcile


def reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since", type=utc_time, required=True, metavar="TIME",
        help="start of the period (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC)",
    )  # fmt: skip
    parser.add_argument(
        "--until", type=utc_time, metavar="TIME",
        help="end of the period, inclusive (default: each log's watermark, what the copy "
        "claims to hold)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON evidence")


def cmd_reconcile(args: argparse.Namespace) -> int:
    from etl.integrity.reconcile import reconcile_account
    from etl.integrity.reconcile_days import forget
    from etl.storage.store import open_store
    from etl.sync.job import select_accounts
    from etl.sync.periods import reconcile_periods
    from etl.zendesk.client import ZendeskClient

    settings = load_settings(args, require_credentials=args.account or True)
    accounts = select_accounts(settings, args.account)
    _check_order(args.since, args.until)
    stop = threading.Event()

    def stoppable_sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise InterruptedRun("stopped by a signal while waiting for the rate limit or a retry")

    reports: list[AccountReconcile] = []
    with signals_set(stop), open_store(settings, migrate_hint=migrate_hint(args)) as store:
        planned = [(a, reconcile_periods(store, a, args.since, args.until)) for a in accounts]
        work_begins()  # a budgeted read of days of pages: the collector on, as in sync
        for account, periods in planned:
            # One client an account: its logs share one rate budget, as in sync.
            with ZendeskClient(account.zendesk, sleep=stoppable_sleep, stop=stop) as client:
                reports += [
                    reconcile_account(store.engine, client, period, client.stats, stop=stop)
                    for period in periods
                ]
        _print(reports, json_output=args.json)
        for period in (period for _, periods in planned for period in periods):
            forget(store.engine, period.account.name, period.key)  # reported: next one afresh
    return int(ExitCode.OK if all(r.matches for r in reports) else ExitCode.FINDINGS)


def _print(reports: list[AccountReconcile], *, json_output: bool) -> None:
    """The report: every account's days (one line each) and summary, or one JSON document.
    An account that failed stops the command before this: the days of those before it
    stay saved, and the next run reports them without reading them again."""
    from etl.integrity.reconcile_days import COVERAGE

    if json_output:
        document = {
            "version": VERSION, "coverage": COVERAGE,
            "matches": all(r.matches for r in reports),
            "accounts": [r.fields() for r in reports],
        }  # fmt: skip
        print(json.dumps(document, indent=2))
        return
    for report in reports:
        _print_report(report)
    print(f"note: {COVERAGE}")


def _print_report(report: AccountReconcile) -> None:
    scope, who = report.scope, f"account {report.account} {report.stream}"
    print(
        f"{who}: zendesk-audit-etl {VERSION}, host {scope.get('host')}, filters "
        f"{json.dumps(scope['filters'], sort_keys=True)}, start_time {scope['start_time']}, "
        f"watermark {scope['watermark']}"
    )
    for day in report.days:
        print(f"{who}: {day.line()}")
    for note in scope.get("notes", ()):
        print(f"{who}: note: {note}")
    print(report.summary())


def _check_order(since: datetime, until: datetime | None) -> None:
    if until is not None and since > until:
        raise ConfigError(f"--since {format_time(since)} is after --until {format_time(until)}")
