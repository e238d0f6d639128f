"""`check` and `status` for the streams other than the audit log (etl.sync.streams).

``check``: one request a stream, one line, a 403 (the access log's add-on missing)
explained rather than raised. ``status``: a block, a JSON entry and ``--max-lag`` per
account and stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from etl.cli.metrics import PREFIX, _escape, _number
from etl.cli.report import human_duration
from etl.common.clock import iso, utc_now
from etl.common.errors import ForbiddenError
from etl.common.settings import AUDIT_LOGS, AccountSettings
from etl.storage.store import Store
from etl.storage.streams import StreamStatus, StreamStore
from etl.sync.streams import STREAMS, Stream, plan
from etl.sync.window import zendesk_now
from etl.zendesk.client import ZendeskClient


def check_streams(account: AccountSettings, client: ZendeskClient) -> list[str]:
    """A line per stream turned on besides the audit log; a 403 is explained, not raised."""
    return [
        _check(STREAMS[name], account, client)
        for name in account.sync.streams
        if name != AUDIT_LOGS
    ]


def _check(stream: Stream, account: AccountSettings, client: ZendeskClient) -> str:
    window = plan(stream, None, account, zendesk_now(client, utc_now()))
    params = [*stream.api.window(window.start, window.end), ("page[size]", "1")]
    where = f"account {account.name}: {stream.name}"
    try:
        body = client.get_json(stream.api.path, params)
    except ForbiddenError:
        return (
            f"{where}: NOT available: Zendesk answered 403 Forbidden ({stream.addon_hint}); "
            "sync skips this stream with a warning: remove it from [sync] streams or get the add-on"
        )
    records = body.get(stream.api.records_key)
    first = records[0] if isinstance(records, list) and records else None
    found = (
        f"a record at {first.get(stream.time_field)} (id {first.get('id')})"
        if isinstance(first, dict)
        else "no record in the last 90 days"
    )
    return (
        f"{where}: OK; {found}; a first sync would read "
        f"{window.start:%Y-%m-%d} .. {window.end:%Y-%m-%dT%H:%M:%SZ} (Zendesk keeps 90 days)"
    )


def stream_statuses(store: Store, accounts: Sequence[AccountSettings]) -> list[StreamStatus]:
    """One entry per account and stream turned on besides the audit log."""
    found = []
    for account in accounts:
        for name in account.sync.streams:
            if name != AUDIT_LOGS:
                stream = STREAMS[name]
                found.append(StreamStore(store, name, stream.table).status(account.name))
    return found


def _behind(status: StreamStatus, now: datetime) -> timedelta | None:
    return now - status.watermark if status.watermark else None


def stale_streams(statuses: Sequence[StreamStatus], now: datetime, max_lag: timedelta) -> list[str]:
    """``account/stream`` of each stream never synced or older than ``max_lag``."""
    stale = []
    for status in statuses:
        behind = _behind(status, now)
        if behind is None or behind > max_lag:
            stale.append(f"{status.account}/{status.stream}")
    return stale


def stream_json(status: StreamStatus, now: datetime) -> dict[str, Any]:
    behind = _behind(status, now)
    last = status.last_run
    return {
        "watermark": iso(status.watermark),
        "lag_seconds": int(behind.total_seconds()) if behind is not None else None,
        "rows": status.rows,
        "rejects": status.rejects,
        "last_success_at": iso(status.last_success_at),
        "last_failure_at": iso(status.last_failure_at),
        "last_failure_error": status.last_failure_error,
        "last_run_status": last.status if last else None,
    }


def stream_text(status: StreamStatus, now: datetime) -> str:
    behind = _behind(status, now)
    freshness = (
        f"{iso(status.watermark)} ({human_duration(behind)} behind now)"
        if behind is not None
        else "never synced"
    )
    failure = (
        f"{iso(status.last_failure_at)}: {status.last_failure_error}"
        if status.last_failure_at
        else "none"
    )
    return "\n".join(
        [
            f"account {status.account}, {status.stream}",
            f"  watermark     {freshness}",
            f"  rows          {status.rows:,}",
            f"  rejects       {status.rejects:,}",
            f"  last success  {iso(status.last_success_at) or 'never'}",
            f"  last failure  {failure}",
        ]
    )


# name -> help text; gauges labelled by account and stream, beside the audit log's series
STREAM_HELP = {
    "stream_last_success_timestamp_seconds": "A stream's last success (Unix time; 0: never).",
    "stream_lag_seconds": "How far a stream's stored data is behind now (-1: never synced).",
    "stream_rows": "A stream's records stored.",
    "stream_rejects": "A stream's records that could not be stored.",
}


def stream_metrics(statuses: Sequence[StreamStatus], now: datetime) -> str:
    """Prometheus text for the streams besides the audit log (etl.cli.metrics's format)."""
    lines: list[str] = []
    for name, help_text in STREAM_HELP.items():
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
        for status in statuses:
            behind = _behind(status, now)
            success = status.last_success_at
            value = {
                "stream_last_success_timestamp_seconds": success.timestamp() if success else 0,
                "stream_lag_seconds": behind.total_seconds() if behind is not None else -1,
                "stream_rows": status.rows,
                "stream_rejects": status.rejects,
            }[name]
            label = f'{{account="{_escape(status.account)}",stream="{status.stream}"}}'
            lines.append(f"{PREFIX}_{name}{label} {_number(value)}")
    return "\n".join(lines) + "\n"
