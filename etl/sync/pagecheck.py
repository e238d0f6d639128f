"""A backfill reader's own check of every answer: in order, inside the window it asked for.

A slice's checkpoint is only as good as the answers behind it: one record dated 2099, a
page in the wrong order, or a server that ignores ``filter[created_at]`` would otherwise
mark a slice read that is not (issue 23). So, whatever ``etl.zendesk.pagination`` checks
too, every answer a reader gets must have each record's ``created_at`` within the query's
``[start, end]`` and in the query's order (ascending, or descending for a downward
reader), continuing from the previous page; for the access log the same of ``timestamp``
(the log's ``LogApi`` says which list and field), all to the second, as the bounds are
sent. An answer that does not is a corrupt answer
(``CorruptResponseError``): it runs inside the client's retry loop (``get_json(check=)``),
so it is retried, and when it persists the run stops with exit 4 and nothing it showed is
stored or checkpointed. Records without a usable ``created_at`` are not judged here: they
become rejects, which prove nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from etl.common.clock import iso
from etl.common.errors import CorruptResponseError
from etl.zendesk.pagination import JsonGetter
from etl.zendesk.promises import AUDIT_LOGS_API, LogApi


class WindowCheck:
    """A ``JsonGetter`` over ``client`` that refuses answers outside ``start..end`` or out
    of order; one per query (it remembers where the previous page ended)."""

    def __init__(
        self,
        client: JsonGetter,
        start: datetime,
        end: datetime,
        down: bool,
        api: LogApi = AUDIT_LOGS_API,
    ) -> None:
        self._client = client
        # Whole seconds, as the bounds are sent (etl.zendesk.promises.LogApi.window).
        self.start, self.end = start.replace(microsecond=0), end.replace(microsecond=0)
        self.down, self.api = down, api
        self._last: datetime | None = None  # the previous page's last created_at
        self._pages = 0

    def use(self, client: JsonGetter) -> None:
        """Go on with ``client``: a query a reader left is resumed by another fetcher."""
        self._client = client

    @property
    def base_url(self) -> str:
        return self._client.base_url

    def get_json(
        self,
        url: str,
        params: Sequence[tuple[str, str]] | None = None,
        check: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        last: list[datetime | None] = [self._last]

        def checked(body: dict[str, Any]) -> None:
            if check is not None:
                check(body)  # the shape first: audit_logs is a list once it passes
            last[0] = self._judge(body.get(self.api.records_key))

        body = self._client.get_json(url, params, check=checked)
        self._pages += 1
        self._last = last[0]
        return body

    def _judge(self, records: object) -> datetime | None:
        """The last created_at of ``records``, or CorruptResponseError."""
        previous = self._last
        if not isinstance(records, list):
            return previous
        where = f"page {self._pages + 1} of {iso(self.start)}..{iso(self.end)}"
        field = self.api.time_field
        for record in records:
            created = self.api.time_of(record)
            if created is None:
                continue
            if not self.start <= created <= self.end:
                raise CorruptResponseError(
                    f"{where}: a record of {field} {iso(created)} lies outside the window "
                    f"asked for ({self.api.start_param} not honoured)"
                )
            if previous is not None and (created > previous if self.down else created < previous):
                order = "descending" if self.down else "ascending"
                raise CorruptResponseError(
                    f"{where}: records are not in {order} {field} order "
                    f"({iso(previous)} then {iso(created)})"
                )
            previous = created
        return previous
