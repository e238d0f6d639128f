"""``reconcile``: is the stored copy of a period complete? Zendesk read again, day by day.

Exit 0 when every day matches, 1 when any differs (``ExitCode.FINDINGS``), 2 on a usage or
config error; an API or database failure keeps its documented code (3, 4, 6; 130 on a
signal), and the days finished before it are kept for the next run of the same period.
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from etl.cli.arguments import utc_time
from etl.cli.shared import load_settings, migrate_hint
from etl.cli.signals import signals_set
from etl.common.clock import format_time, iso, utc_now
from etl.common.errors import ConfigError, ExitCode, InterruptedRun
from etl.common.settings import AUDIT_LOGS, AccountSettings
from etl.common.version import VERSION

if TYPE_CHECKING:
    from collections.abc import Iterator

    from etl.integrity.reconcile import AccountReconcile, Period, Source
    from etl.storage.store import Store
    from etl.zendesk.pagination import JsonGetter


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
    from etl.sync.job import open_store, select_accounts
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
        planned = [(a, _periods(store, a, args.since, args.until)) for a in accounts]
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
        f"{who}: zendesk-audit-etl {VERSION}, filters "
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


def _periods(
    store: Store, account: AccountSettings, since: datetime, until: datetime | None
) -> list[Period]:
    """One period per log the account copies: the audit log's, then the access log's."""
    return [_period(store, account, name, since, until) for name in account.sync.streams]


def _period(
    store: Store, account: AccountSettings, stream: str, since: datetime, until: datetime | None
) -> Period:
    """The period of one log: from ``since`` (not before ``start_time``, nor before what
    Zendesk keeps of the access log) to ``until``, by default the log's watermark (what
    the copy claims to hold), never past now minus lag."""
    from etl.integrity.reconcile import AUDIT, Period
    from etl.storage.streams import StreamStore
    from etl.sync import scope
    from etl.sync.streams import STREAMS, describe_scope

    sync, notes = account.sync, []
    if stream == AUDIT_LOGS:
        source, described = AUDIT, scope.describe(account)
        watermark, (_, recorded) = store.watermark(account.name), store.scope(account.name)
    else:
        log = STREAMS[stream]
        state = StreamStore(store, log.name, log.table)
        source, described = _stream_source(stream), describe_scope(account)
        watermark, (_, recorded) = state.watermark(account.name), state.scope(account.name)
        kept = log.retention or timedelta(0)
        oldest = (utc_now() - kept).replace(microsecond=0) + timedelta(seconds=1)
        if log.retention is not None and since < oldest:
            notes.append(f"starts at {format_time(oldest)}: Zendesk keeps {stream} that long")
            since = oldest
    if until is None:
        if watermark is None:
            raise ConfigError(
                f"account {account.name}: {stream} has not been synced yet (no watermark): "
                "give --until"
            )
        until = watermark
    latest = utc_now() - sync.lag
    if until > latest:
        notes.append(f"--until {format_time(until)} moved back to now minus lag")
        until = latest
    if sync.start_time and since < sync.start_time:
        notes.append(f"starts at start_time {format_time(sync.start_time)}, not before")
        since = sync.start_time
    since, until = since.replace(microsecond=0), until.replace(microsecond=0)
    if since > until:
        raise ConfigError(
            f"account {account.name}: nothing to reconcile: {format_time(since)} is after "
            f"{format_time(until)}"
        )
    fields: dict[str, Any] = {
        "filters": {}, **json.loads(described),
        "recorded": None if recorded is None else json.loads(recorded),
        "watermark": iso(watermark), "notes": notes,
    }  # fmt: skip
    return Period(account, since, until, fields, described, source)


def _stream_source(name: str) -> Source:
    """Another log as reconcile reads it, from its ``etl.sync.logs.Stream``: the same
    query and page checks as its sync."""
    from etl.integrity.reconcile import Source
    from etl.sync.logs import STREAMS
    from etl.zendesk.pagination import iter_pages

    log = STREAMS[name]

    def pages(
        client: JsonGetter, account: AccountSettings, start: datetime, end: datetime
    ) -> Iterator[list[Any]]:
        for page in iter_pages(client, log.query(start, end, account), log.api):
            yield page.records

    # Its rows share the account's store sequence and ledger (one chain for both logs).
    return Source(name, pages, log.parse, log.table, log.time_field, ledgered=True)
