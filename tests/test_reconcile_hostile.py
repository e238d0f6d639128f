"""``reconcile`` against a server that breaks a promise the paginator lets through, in
process with a hand-made server, on each database: a record sent twice in a day with other
content differs whatever is stored (neither version is proven), and a query that ends on a
full page with no cursor to ask past it proves nothing after it: the run fails, the open day
is not saved. A same-content repeat and a full last page confirmed by an empty one still
match."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support import audit_record, sim_account

from etl.common.errors import CorruptResponseError
from etl.integrity import reconcile_days
from etl.integrity.reconcile import Period, reconcile_account
from etl.records.audit import parse_record
from etl.storage.engine import open_engine
from etl.storage.schema.logs import audit_logs

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FIRST = TODAY - timedelta(days=5)  # the period: three whole days from here
PAGE_SIZE = 3
LAST = {"audit_logs": [], "meta": {"has_more": False}}


class _Stats:
    requests = 0


class _Server:
    """A client that serves ``pages`` in turn (then empty last pages), each through the
    paginator's check, as the job's client does."""

    base_url = "https://acme.zendesk.invalid"

    def __init__(self, pages: list[dict[str, Any]]) -> None:
        self.pages, self.stats = pages, _Stats()

    def get_json(self, url: str, params: Any = None, check: Any = None) -> dict[str, Any]:
        self.stats.requests += 1
        body = self.pages.pop(0) if self.pages else LAST
        if check is not None:
            check(body)
        return body


def _page(records: list[dict[str, Any]], cursor: str | None = None) -> dict[str, Any]:
    return {"audit_logs": records, "meta": {"has_more": False, "after_cursor": cursor}}


def _record(number: int, day: int = 0, **fields: Any) -> dict[str, Any]:
    moment = FIRST + timedelta(days=day, hours=9, seconds=number)
    return audit_record(9_700_000_000_000 + number, moment, **fields)


@pytest.fixture
def engine(migrated_url: str) -> Iterator[sa.Engine]:
    engine = open_engine(migrated_url)
    yield engine
    engine.dispose()


def _store(engine: sa.Engine, raws: list[dict[str, Any]]) -> None:
    rows = []
    for seq, raw in enumerate(raws, start=1):
        row = parse_record(raw, "acme", TODAY)
        assert isinstance(row, dict)
        rows.append({c.name: row.get(c.name) for c in audit_logs.columns} | {"stored_seq": seq})
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_logs), rows)


def _period() -> Period:
    account = sim_account("https://acme.zendesk.invalid", page_size=PAGE_SIZE)
    until = FIRST + timedelta(days=3) - timedelta(seconds=1)
    return Period(account, FIRST, until, {"filters": {}}, "{}")


def _reconcile(engine: sa.Engine, pages: list[dict[str, Any]]) -> Any:
    server = _Server(pages)
    return reconcile_account(engine, server, _period(), server.stats)  # type: ignore[arg-type]


def test_a_record_sent_twice_with_other_content_differs_whatever_is_stored(
    engine: sa.Engine,
) -> None:
    one = _record(1)
    other = {**_record(2), "created_at": one["created_at"]}  # one second: ties in order
    edited = {**one, "actor_name": "Somebody else"}
    as_text = {**other, "id": str(other["id"])}  # the same id, as a string: another content
    third = _record(3)  # a page of repeats alone is refused (``promises.check_repeat``)
    _store(engine, [edited, other, third])  # the last version of each, as a sync keeps
    more = {"has_more": True, "after_cursor": "c1"}
    first = {"audit_logs": [one, other, edited, as_text], "meta": more}
    report = _reconcile(engine, [first, _page([other, third])])
    day = report.days[0]
    assert (day.at_zendesk, day.stored, day.missing, day.extra) == (3, 3, [], [])
    assert day.differ == [one["id"], other["id"]] and not report.matches
    reconcile_days.forget(engine, "acme", _period().key)
    # The same content twice (a page repeated) is one record, and matches.
    twice = {"audit_logs": [edited, edited], "meta": more}
    report = _reconcile(engine, [twice, _page([other, third])])
    assert report.matches and report.days[0].at_zendesk == 3


def test_a_full_last_page_without_a_cursor_proves_nothing_after_it(engine: sa.Engine) -> None:
    # A sync fooled by the same answer stored just as much: only the paginator's belief
    # would make the rest of the second day, and the third, match.
    records = [_record(1)] + [_record(n, day=1) for n in range(2, 7)]
    _store(engine, records)
    first = {"audit_logs": records[:3], "meta": {"has_more": True, "after_cursor": "c1"}}
    with pytest.raises(CorruptResponseError, match="full page says it is the last"):
        _reconcile(engine, [first, _page(records[3:])])
    saved = reconcile_days.finished_days(engine, "acme", _period().key, "{}")
    assert list(saved) == [FIRST.date().isoformat()]  # the open day and after: not saved
    # With a cursor, the paginator asks past a full page: a shorter answer proves the end.
    # (a full page that says it is the last has its cursor asked: two more came)
    report = _reconcile(engine, [_page(records[1:4], "c2"), _page(records[4:])])
    assert report.matches and report.resumed == 1 and len(report.days) == 3
