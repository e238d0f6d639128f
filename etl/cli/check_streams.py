"""`check` for the streams other than the audit log: one request each, one line each."""

from __future__ import annotations

from etl.common.clock import format_time, utc_now
from etl.common.errors import ForbiddenError
from etl.common.settings import AUDIT_LOGS, AccountSettings
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
    params = [
        (stream.start_param, format_time(window.start)),
        (stream.end_param, format_time(window.end)),
        ("page[size]", "1"),
    ]
    where = f"account {account.name}: {stream.name}"
    try:
        body = client.get_json(stream.path, params)
    except ForbiddenError:
        return (
            f"{where}: NOT available: Zendesk answered 403 Forbidden ({stream.addon_hint}); "
            "sync skips this stream with a warning: remove it from [sync] streams or get the add-on"
        )
    records = body.get(stream.records_key)
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
