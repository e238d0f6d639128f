"""A backfill reader's own check of every answer: in order, inside the window it asked for.

A slice's checkpoint is only as good as the answers behind it: one record dated 2099, a
page in the wrong order, or a server that ignores ``filter[created_at]`` would otherwise
mark a slice read that is not (issue 23). So, whatever ``etl.zendesk.pagination`` checks
too, every answer a reader gets must have each record's ``created_at`` within the query's
``[start, end]`` and in the query's order (ascending, or descending for a downward
reader), continuing from the previous page. An answer that does not is a corrupt answer
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
from etl.records.audit import parse_created_at
from etl.zendesk.pagination import JsonGetter


class WindowCheck:
    """A ``JsonGetter`` over ``client`` that refuses answers outside ``start..end`` or out
    of order; one per query (it remembers where the previous page ended)."""

    def __init__(self, client: JsonGetter, start: datetime, end: datetime, down: bool) -> None:
        self._client = client
        self.start, self.end, self.down = start, end, down
        self._last: datetime | None = None  # the previous page's last created_at
        self._pages = 0

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
            last[0] = self._judge(body.get("audit_logs"))

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
        for record in records:
            if not isinstance(record, dict):
                continue
            created = parse_created_at(record.get("created_at"))
            if created is None:
                continue
            if not self.start <= created <= self.end:
                raise CorruptResponseError(
                    f"{where}: a record created at {iso(created)} lies outside the window "
                    "asked for (filter[created_at] not honoured)"
                )
            if previous is not None and (created > previous if self.down else created < previous):
                order = "descending" if self.down else "ascending"
                raise CorruptResponseError(
                    f"{where}: records are not in {order} created_at order "
                    f"({iso(previous)} then {iso(created)})"
                )
            previous = created
        return previous
