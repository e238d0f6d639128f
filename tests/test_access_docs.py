"""docs/ACCESS_LOGS.md's who-viewed queries, run as written on each database."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from access_support import access_record
from support import fresh_store

from etl.records.access import parse_access_record
from etl.records.audit import Reject
from etl.storage.streams import StreamStore
from etl.sync.streams import ACCESS_LOGS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "ACCESS_LOGS.md").read_text()
HEADINGS = {"postgresql": "PostgreSQL:", "sqlite": "SQLite:", "mysql": "MySQL / MariaDB:"}


def documented_query(dialect: str) -> str:
    heading = HEADINGS["mysql" if dialect in ("mysql", "mariadb") else dialect]
    found = re.search(re.escape(heading) + r"\s*```sql\n(.*?)```", DOC, re.S)
    assert found, f"no query for {heading}"
    return found.group(1)


def test_the_documented_who_viewed_query_answers_on_each_database(db_url: str) -> None:
    def at(day: int, hour: int = 12) -> datetime:
        return datetime(2026, 11, day, hour, tzinfo=UTC)

    records = [
        access_record("A", at(1, 0), user_id="1", url="/api/v2/tickets/7.json?include=users"),
        access_record("B", at(30, 23), user_id="2", url="/api/v2/tickets/7/comments.json"),
        access_record("C", at(15), user_id="3", url="/api/v2/tickets/70.json"),  # another ticket
        access_record("D", datetime(2026, 12, 1, tzinfo=UTC), user_id="4",  # December
                      url="/api/v2/tickets/7.json"),
        access_record("E", datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), user_id="5",
                      url="/api/v2/tickets/7.json"),
    ]  # fmt: skip
    store = fresh_store(db_url)
    try:
        state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
        run = store.start_run("acme", at(1), at(30), None, stream="access_logs")
        rows = [parse_access_record(r, "acme", at(30)) for r in records]
        assert not [r for r in rows if isinstance(r, Reject)]
        state.write_page("acme", run, rows, [], None)  # type: ignore[arg-type]
        with store.engine.connect() as conn:
            answer = conn.execute(sa.text(documented_query(store.engine.dialect.name))).all()
    finally:
        store.engine.dispose()
    assert [row.user_id for row in answer] == ["1", "2"]
