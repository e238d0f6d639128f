"""The logs an account may copy, each described once for every way of reading it.

A ``Stream`` is a log by parameters: its API (``etl.zendesk.promises.LogApi``: path,
list key, time field, how a window and an order are asked), its table and parser, how
long Zendesk keeps it. The sequential read and the parallel backfill (``etl.sync.account``,
``etl.sync.backfill``) take one, so the audit log and the access log are read by the same
code, held to the same promises. See docs/ACCESS_LOGS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from etl.common.settings import AUDIT_LOGS as AUDIT_LOGS_NAME
from etl.common.settings import AccountSettings
from etl.records.access import parse_access_record
from etl.records.audit import Reject, parse_record
from etl.storage.schema.logs import access_logs, audit_logs
from etl.zendesk.pagination import audit_log_params, log_params
from etl.zendesk.promises import ACCESS_LOGS_API, AUDIT_LOGS_API, LogApi

Parser = Callable[[object, str, datetime], "dict[str, Any] | Reject"]


@dataclass(frozen=True)
class Stream:
    """A log the job syncs: its API, its table, and how a record becomes a row."""

    name: str  # as in [sync] streams
    api: LogApi
    table: sa.Table
    parse: Parser
    retention: timedelta | None = None  # how far back Zendesk keeps it: where a first run starts
    addon_hint: str = ""  # set: a 403 skips the stream with this warning, not a failure

    @property
    def time_field(self) -> str:
        return self.api.time_field

    def query(
        self, start: datetime, end: datetime, account: AccountSettings, *, descending: bool = False
    ) -> list[tuple[str, str]]:
        """The parameters that read ``start..end`` (the audit log's with its filters)."""
        size = account.zendesk.page_size
        if self.name == AUDIT_LOGS_NAME:
            sort = "-created_at" if descending else "created_at"
            return audit_log_params(start, end, account.sync.filters, sort=sort, page_size=size)
        return log_params(self.api, start, end, descending=descending, page_size=size)

    def split(
        self, records: Iterable[Any], account: str, synced_at: datetime
    ) -> tuple[list[dict[str, Any]], list[Reject]]:
        """A page's records as storable rows, and the rejects among them."""
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for raw in records:
            parsed = self.parse(raw, account, synced_at)
            if isinstance(parsed, Reject):
                rejects.append(parsed)
            else:
                rows.append(parsed)
        return rows, rejects


AUDIT_LOGS = Stream(AUDIT_LOGS_NAME, AUDIT_LOGS_API, audit_logs, parse_record)
ACCESS_LOGS = Stream(
    "access_logs",
    ACCESS_LOGS_API,
    access_logs,
    parse_access_record,
    retention=timedelta(days=90),
    addon_hint="the access log needs Zendesk's Advanced Data Privacy and Protection add-on",
)
STREAMS = {ACCESS_LOGS.name: ACCESS_LOGS}  # the streams besides the audit log
