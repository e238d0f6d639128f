"""`check` and `list`: talk to Zendesk (and the database) without syncing anything."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from etl.common.clock import format_time, utc_now
from etl.common.errors import ConfigError, RequestRejectedError, SchemaError
from etl.common.redact import redact_url
from etl.common.settings import AccountSettings, Credentials, Settings
from etl.storage import migrate
from etl.storage.engine import check_connection, open_engine
from etl.sync.window import HISTORY_START, Window, plan_window, zendesk_now
from etl.zendesk.client import ZendeskClient
from etl.zendesk.pagination import Page, audit_log_params, iter_pages
from etl.zendesk.server_clock import SKEW_WARNING, describe_skew

# A person is waiting: give up on an unreachable Zendesk sooner than a cron run would.
INTERACTIVE_RETRY_BUDGET = 15.0


def interactive_client(account: AccountSettings) -> ZendeskClient:
    budget = min(account.zendesk.retry_budget, INTERACTIVE_RETRY_BUDGET)
    return ZendeskClient(replace(account.zendesk, retry_budget=budget))


def auth_method(credentials: Credentials) -> str:
    if credentials.client_id:
        return "OAuth client credentials"
    if credentials.oauth_token:
        return "OAuth access token"
    if credentials.api_token:
        return "API token (deprecated by Zendesk: stops working on 2027-04-30)"
    return "email and password"


def check_database(settings: Settings, *, migrate_hint: str) -> tuple[str, SchemaError | None]:
    """The database's line, and the error ``sync`` would stop on if the schema is not current."""
    auto = settings.database.auto_migrate
    try:  # check only looks: it makes no SQLite file
        engine = open_engine(settings.database.url, create=False)
    except SchemaError as exc:
        missing = SchemaError(f"{exc}; {migrate_hint}")
        upgrade = " (sync will upgrade it)" if auto else ""
        return f"database: schema NOT current{upgrade}: {missing}", missing
    problem: SchemaError | None = None
    try:
        check_connection(engine)
        try:
            migrate.ensure_current(engine, auto_migrate=False, migrate_hint=migrate_hint)
            schema = f"schema at revision {migrate.current_revision(engine)} (current)"
        except SchemaError as exc:
            problem = exc
            schema = f"schema NOT current{' (sync will upgrade it)' if auto else ''}: {exc}"
    finally:
        engine.dispose()
    url = engine.url.render_as_string(hide_password=True)
    return f"database: reachable ({url}); {schema}", problem


def check_account(account: AccountSettings) -> str:
    """One authenticated request: the newest audit record, which also proves access."""
    with interactive_client(account) as client:
        try:
            window, page = _newest(account, client)
        except RequestRejectedError:
            # Refused as too recent by a host clock ahead of Zendesk's: its Date tells.
            if client.server_clock.server_now() is None:
                raise
            window, page = _newest(account, client)
        skew = client.server_clock.skew()
    newest = page.records[0] if page.records else None
    found = (
        f"newest audit record {newest.get('created_at')} (id {newest.get('id')})"
        if isinstance(newest, dict)
        else "the audit log is empty"
    )
    return (
        f"account {account.name}: OK at {redact_url(account.zendesk.base_url)} with "
        f"{auth_method(account.zendesk.credentials)}; {found}; "
        f"a first sync would read {window.start:%Y-%m-%d} .. {window.end:%Y-%m-%dT%H:%M:%SZ}"
        f"{_clock_note(skew)}"
    )


def _newest(account: AccountSettings, client: ZendeskClient) -> tuple[Window, Page]:
    window = plan_window(None, account, zendesk_now(client, utc_now()))
    params = audit_log_params(window.start, window.end, {}, sort="-created_at", page_size=1)
    return window, next(iter_pages(client, params))


def _clock_note(skew: timedelta | None) -> str:
    if skew is None or abs(skew) <= SKEW_WARNING:
        return ""
    return (
        f"; WARNING: the host clock is {describe_skew(skew)} Zendesk's "
        "(windows end by Zendesk's time; fix NTP)"
    )


@dataclass(frozen=True)
class ListWindow:
    """What ``list`` reads, and the note that says where it ends when that is not asked."""

    start: datetime
    end: datetime
    note: str | None


def list_window(
    account: AccountSettings, since: datetime | None, until: datetime | None, now: datetime
) -> ListWindow:
    """The window of ``list``: up to now - lag unless ``--until`` says otherwise (Zendesk
    refuses an end newer than about a minute ago; the lag is what ``sync`` reads up to).
    A decision the output states: a change made a minute ago is not "missing"."""
    latest = plan_window(None, account, now).end
    note = None
    if until is None or until > latest:
        asked = "" if until is None else f"--until {format_time(until)} is too recent; "
        note = (
            f"note: {asked}listing records created up to {format_time(latest)} (now - lag of "
            f"{_duration(account.sync.lag)}, as sync reads; Zendesk refuses a newer end); "
            "newer ones appear within the lag, or pass an earlier --until"
        )
        until = latest
    start = since or HISTORY_START
    if start > until:
        raise ConfigError(
            f"--since {format_time(start)} is after the end of the window, {format_time(until)}; "
            "times are YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"
        )
    return ListWindow(start, until, note)


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def list_records(
    account: AccountSettings,
    window: ListWindow,
    *,
    filters: Mapping[str, Sequence[str]],
    descending: bool,
    limit: int,
) -> Iterator[dict[str, Any]]:
    """Records straight from the API as each page comes (newest first unless
    ``descending`` is False): ``list | head -1`` waits for one page, not the period."""
    params = audit_log_params(
        window.start,
        window.end,
        filters,
        sort="-created_at" if descending else "created_at",
        page_size=min(limit, account.zendesk.page_size),
    )
    with interactive_client(account) as client:
        records = (r for page in iter_pages(client, params) for r in page.records)
        yield from (r for r in islice(records, limit) if isinstance(r, dict))
