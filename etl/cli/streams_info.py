"""`check` and `status` for the streams other than the audit log (etl.sync.streams).

``check``: one request a stream, one line, a 403 (the access log's add-on missing)
explained rather than raised. ``status``: a block, a JSON entry and ``--max-lag`` per
account and stream, rendered as the audit log's are (``etl.cli.report``); their metrics
are ``etl.cli.metrics.render_streams``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from etl.cli.report import freshness_json, holdings_lines, is_stale, watermark_line
from etl.cli.terminal import printable
from etl.common.clock import utc_now
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


def stale_streams(statuses: Sequence[StreamStatus], now: datetime, max_lag: timedelta) -> list[str]:
    """``account/stream`` of each stream never synced or older than ``max_lag``."""
    return [f"{s.account}/{s.stream}" for s in statuses if is_stale(s, now, max_lag)]


def stream_json(status: StreamStatus, now: datetime) -> dict[str, Any]:
    last = status.last_run
    return {**freshness_json(status, now), "last_run_status": last.status if last else None}


def stream_text(status: StreamStatus, now: datetime) -> str:
    return "\n".join(
        [
            f"account {printable(status.account)}, {status.stream}",
            watermark_line(status, now),
            *holdings_lines(status),
        ]
    )
