"""The scope of a watermark: the Zendesk host, the filters and ``start_time`` it was read with.

A watermark says "everything up to here is stored" only for the records the run asked
for. Read with ``action = "create"``, it says nothing about updates: if the filters (or
``start_time``) change, the history must be read again for the new set. The scope is
kept in ``zendesk_audit_sync_state.scope`` as canonical JSON (the config makes filter
values canonical: sorted, integers and addresses normalised), so the same set always
compares equal. The host is in it because a watermark read from one Zendesk account
says nothing about another's: an account whose ``base_url`` moves to another host under
the same name would otherwise start the new host's reading at the old one's watermark and
never read what came before.

Rows from before schema revision 0003 have no scope (NULL): they are adopted as the
current configuration's without a re-read. Nothing recorded which filters they were
read with; most installations never changed them, and a full re-read of every account
on upgrade would cost hours for nothing. After a filter change made *before* the
upgrade, run ``resync --since`` once. Likewise a scope recorded before the host was part
of it is adopted when the rest is equal.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from etl.common.clock import format_time
from etl.common.settings import FILTER_KEYS, AccountSettings
from etl.common.urls import zendesk_host
from etl.storage.store import Store

log = logging.getLogger(__name__)


def describe(account: AccountSettings) -> str:
    """The account's scope as canonical JSON: equal text, equal scope."""
    sync = account.sync
    filters = {key: list(sync.filters[key]) for key in FILTER_KEYS if key in sync.filters}
    start = format_time(sync.start_time) if sync.start_time else None
    described = {"filters": filters, "host": zendesk_host(account.zendesk.base_url)}
    return json.dumps({**described, "start_time": start}, separators=(",", ":"))


def same(recorded: str | None, wanted: str) -> bool:
    """Whether the recorded scope is the wanted one; one recorded before the host was part
    of the scope is, when all else is equal (most installations never moved host)."""
    if recorded == wanted:
        return True
    try:
        old = json.loads(recorded) if recorded is not None else None
    except ValueError:
        return False
    if not isinstance(old, dict) or "host" in old:
        return False
    new = json.loads(wanted)
    new.pop("host")
    return bool(old == new)


def warn_if_moved(account: str, recorded: str | None, wanted: str) -> bool:
    """One line when the recorded scope names another host than the wanted one, whose
    history is then read again; the rows read from the old host stay under this account."""
    try:
        old = json.loads(recorded) if recorded is not None else None
    except ValueError:
        return False
    if not isinstance(old, dict) or not isinstance(old.get("host"), str):
        return False
    new = json.loads(wanted)["host"]
    if old["host"] == new:
        return False
    log.warning(
        "account %s: base_url's host changed (%s, was %s): reading the history again from "
        "the new host; the rows read from %s stay under this account's name (if it is "
        "another Zendesk account, give it an account name of its own)",
        account, new, old["host"], old["host"],
    )  # fmt: skip
    return True


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
    restart = exists and recorded is not None and not same(recorded, wanted)
    if restart and not warn_if_moved(account.name, recorded, wanted):
        log.warning(
            "account %s: filters or start_time changed (%s, was %s): reading the history "
            "again for the new set from %s",
            account.name, wanted, recorded,
            format_time(account.sync.start_time) if account.sync.start_time else "the start",
        )  # fmt: skip
    store.set_scope(account.name, wanted, restart=restart)
    return restart, None if restart else watermark
