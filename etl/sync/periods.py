"""The periods ``reconcile`` reads again: each log the account copies, from ``--since`` to
``--until`` (by default the log's watermark, what the copy claims to hold), clipped to what
the account's scope and Zendesk's retention allow, with a note for every clip. Here, not in
the command, because the scope and the logs' queries are the sync's own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from etl.common.clock import format_time, iso, utc_now
from etl.common.errors import ConfigError
from etl.common.settings import AUDIT_LOGS, AccountSettings
from etl.integrity.reconcile import AUDIT, Period, Source
from etl.storage.store import Store
from etl.storage.streams import StreamStore
from etl.sync import scope
from etl.sync.logs import STREAMS
from etl.sync.streams import describe_scope
from etl.zendesk.pagination import JsonGetter, iter_pages


def reconcile_periods(
    store: Store, account: AccountSettings, since: datetime, until: datetime | None
) -> list[Period]:
    """One period per log the account copies: the audit log's, then the access log's."""
    return [_log_period(store, account, name, since, until) for name in account.sync.streams]


def _log_period(
    store: Store, account: AccountSettings, stream: str, since: datetime, until: datetime | None
) -> Period:
    """The period of one log: from ``since`` (not before ``start_time``, nor before what
    Zendesk keeps of the access log) to ``until``, by default the log's watermark (what
    the copy claims to hold), never past now minus lag."""
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

    log = STREAMS[name]

    def pages(
        client: JsonGetter, account: AccountSettings, start: datetime, end: datetime
    ) -> Iterator[list[Any]]:
        for page in iter_pages(client, log.query(start, end, account), log.api):
            yield page.records

    # Its rows share the account's store sequence and ledger (one chain for both logs).
    return Source(name, pages, log.parse, log.table, log.time_field, ledgered=True,
                  time_of=log.api.time_of)  # fmt: skip
