"""The scope of a watermark: the filters and ``start_time`` it was read with.

A watermark says "everything up to here is stored" only for the records the run asked
for. Read with ``action = "create"``, it says nothing about updates: if the filters (or
``start_time``) change, the history must be read again for the new set. The scope is
kept in ``zendesk_audit_sync_state.scope`` as canonical JSON (the config makes filter
values canonical: sorted, integers and addresses normalised), so the same set always
compares equal.

Rows from before schema revision 0003 have no scope (NULL): they are adopted as the
current configuration's without a re-read. Nothing recorded which filters they were
read with; most installations never changed them, and a full re-read of every account
on upgrade would cost hours for nothing. After a filter change made *before* the
upgrade, run ``resync --since`` once.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from etl.common.clock import format_time
from etl.common.settings import FILTER_KEYS, AccountSettings
from etl.storage.store import Store

log = logging.getLogger(__name__)


def describe(account: AccountSettings) -> str:
    """The account's scope as canonical JSON: equal text, equal scope."""
    sync = account.sync
    filters = {key: list(sync.filters[key]) for key in FILTER_KEYS if key in sync.filters}
    start = format_time(sync.start_time) if sync.start_time else None
    return json.dumps({"filters": filters, "start_time": start}, separators=(",", ":"))


def settle(account: AccountSettings, store: Store) -> tuple[bool, datetime | None]:
    """Make the stored scope the configuration's; whether the history must be read again,
    and the watermark for the configured scope (read with the scope in one statement, the
    first a run makes; None after a restart). The caller holds the account's lock.

    A changed scope drops the watermark and any unfinished backfill plan at once (upserts
    make reading records again harmless); a missing one is adopted.
    """
    wanted = describe(account)
    exists, recorded, watermark = store.scope_and_watermark(account.name)
    if recorded == wanted:
        return False, watermark
    restart = exists and recorded is not None
    if restart:
        log.warning(
            "account %s: filters or start_time changed (%s, was %s): reading the history "
            "again for the new set from %s",
            account.name, wanted, recorded,
            format_time(account.sync.start_time) if account.sync.start_time else "the start",
        )  # fmt: skip
    store.set_scope(account.name, wanted, restart=restart)
    return restart, None if restart else watermark
