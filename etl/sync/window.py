"""The window a run reads: from the watermark (less the overlap) to ``now - lag``, where
"now" is what both the host clock and Zendesk's ``Date`` agree has passed.

See docs/ARCHITECTURE.md, "The watermark", and README, "How it stays correct".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Literal, TypeVar

from etl.common.clock import iso
from etl.common.errors import ConfigError, RequestRejectedError
from etl.common.settings import AccountSettings
from etl.storage.store import Store
from etl.sync import scope
from etl.zendesk.client import ZendeskClient

log = logging.getLogger(__name__)
T = TypeVar("T")

# Before Zendesk existed: where the first run starts when no start_time is configured.
HISTORY_START = datetime(2007, 1, 1, tzinfo=UTC)
# Window bounds may be exclusive (undocumented): always re-read the watermark's own second.
BOUND_SLACK = timedelta(seconds=1)
# Date has whole seconds: a window end this close to Zendesk's time is rounding, not skew.
DATE_ROUNDING = timedelta(seconds=2)


class Unread(Enum):
    """A watermark the caller has not read (None is a real one: no watermark yet)."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD
# The watermark a caller read, under the account's lock and with no write since, or UNREAD.
Known = datetime | None | Literal[Unread.UNREAD]


@dataclass(frozen=True)
class Window:
    """The created_at range a run reads, from ``start`` to ``end``."""

    start: datetime
    end: datetime


def reread_from(position: datetime, account: AccountSettings) -> datetime:
    """Where reading resumes after ``position``: the overlap (records that appear late)
    and the position's own second (bounds may be exclusive) are read again."""
    return position - account.sync.overlap - BOUND_SLACK


def plan_window(
    watermark: datetime | None,
    account: AccountSettings,
    now: datetime,
    kept: timedelta | None = None,
) -> Window:
    """``now`` is the time both the host and Zendesk agree has passed (``zendesk_now``);
    ``kept``: how far back Zendesk keeps the log (a first run starts there, never before)."""
    sync = account.sync
    end = (now - sync.lag).replace(microsecond=0)
    if watermark is None:
        start = sync.start_time or HISTORY_START
    else:
        start = reread_from(watermark, account)
        if sync.start_time:
            start = max(start, sync.start_time)
    if kept is not None:
        start = max(start, oldest_kept(now, kept))
    return Window(start=min(start, end), end=end)


def oldest_kept(now: datetime, kept: timedelta) -> datetime:
    """The oldest second a log Zendesk keeps for ``kept`` still holds whole."""
    return (now - kept).replace(microsecond=0) + BOUND_SLACK


def resync_window(
    account: AccountSettings,
    client: ZendeskClient,
    host_now: datetime,
    since: datetime,
    until: datetime | None,
) -> Window:
    """The window ``resync --since --until`` re-reads: never past ``now - lag``."""
    latest = latest_end(account, client, host_now)
    end = min(until, latest) if until else latest
    if since >= end:
        raise ConfigError(
            f"nothing to re-read: --since {iso(since)} is not before {iso(end)} "
            "(--until, or now minus lag)"
        )
    return Window(since, end)


def zendesk_now(client: ZendeskClient, host_now: datetime) -> datetime:
    """``min(host, Zendesk)``, once a response has told Zendesk's time (``server_clock``)."""
    server = client.server_clock.server_now()
    return host_now if server is None else min(host_now, server)


def latest_end(account: AccountSettings, client: ZendeskClient, host_now: datetime) -> datetime:
    """The latest a window may end now: ``now - lag`` by both clocks."""
    return plan_window(None, account, zendesk_now(client, host_now)).end


def repair_future_watermark(
    account: AccountSettings, store: Store, end: datetime, known: Known = UNREAD
) -> bool:
    """A watermark past the window's end (a fast host clock, old code) would skip every
    record written since it was set: move it back to the newest record stored, which the
    run that set it had surely read up to (or drop it, with nothing stored). ``known``:
    the watermark as the caller last read it, which spares reading it again."""
    watermark = store.watermark(account.name) if known is UNREAD else known
    if watermark is None or watermark <= end:
        return False
    newest = store.newest_created_at(account.name)
    repaired = min(newest, end) if newest is not None else None
    log.warning(
        "account %s: the watermark %s is in the future (now - lag is %s by Zendesk's clock): "
        "moved back to %s so that records written since are read",
        account.name, iso(watermark), iso(end), iso(repaired),
    )  # fmt: skip
    if repaired is None:
        store.set_scope(account.name, scope.describe(account), restart=True)
    else:
        store.set_watermark(account.name, repaired, allow_backwards=True)
    return True


def by_zendesk_time(
    plan: Callable[[], Window],
    read: Callable[[Window], T],
    account: AccountSettings,
    client: ZendeskClient,
    now: Callable[[], datetime],
) -> T:
    """Read the planned window. The first response tells Zendesk's time: a window it
    refused (as too recent) because the host clock is fast is planned again, once."""
    window = plan()
    try:
        return read(window)
    except RequestRejectedError:
        # Date has whole seconds: a gap of a second or two is its rounding, not a skew.
        if window.end - latest_end(account, client, now()) <= DATE_ROUNDING:
            raise
        return read(plan())
