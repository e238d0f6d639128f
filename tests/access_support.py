"""Helpers for the access-log tests: records, the stored table, and its comparison."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from support import zendesk_time

from etl.storage.engine import open_engine

ACCESS_PATH = "/api/v2/access_logs"


def access_record(record_id: str, at: datetime, **fields: Any) -> dict[str, Any]:
    """An access record as the webhook's example shows one (``user_id`` a string)."""
    base: dict[str, Any] = {
        "id": record_id,
        "timestamp": zendesk_time(at),
        "user_id": "6596848315901",
        "ip_address": "192.168.1.100",
        "method": "GET",
        "url": "/api/v2/tickets.json?page=1",
        "status": 200,
        "authorization_type": "bearer",
        "client": "Zendesk/1.0",
        "referer": None,
        "bytes_sent": 1234,
        "category": "ticket",
        "summary": "Listed tickets",
        "origin_service": "support",
        "graphql": None,
    }
    base.update(fields)
    return base


def access_rows(db_url: str, account: str = "acme") -> list[dict[str, Any]]:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            table = sa.Table("zendesk_access_logs", sa.MetaData(), autoload_with=conn)
            result = conn.execute(sa.select(table).where(table.c.account == account))
            rows = [dict(r._mapping) for r in result]
    finally:
        engine.dispose()
    for row in rows:
        for name in ("raw", "graphql"):
            if isinstance(row[name], str):  # JSON comes back decoded on most drivers
                row[name] = json.loads(row[name])
    return rows


def count_access_rows(engine: sa.Engine) -> int:
    """Rows committed in the access table so far (0 before the schema exists)."""
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT COUNT(*) FROM zendesk_access_logs")).scalar_one()
            )
    except sa.exc.DBAPIError:
        return 0


def assert_access_matches(
    db_url: str, expected: Iterable[Mapping[str, Any]], account: str = "acme"
) -> None:
    """Every expected record exactly once, as sent, and nothing else."""
    rows = access_rows(db_url, account)
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "duplicate ids stored"
    want = {str(r["id"]): r for r in expected}
    missing, extra = sorted(set(want) - set(by_id)), sorted(set(by_id) - set(want))
    assert not missing, f"{len(missing)} records missing, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} unexpected records, e.g. {extra[:5]}"
    for record_id, record in want.items():
        row = by_id[record_id]
        assert row["raw"] == dict(record), record_id
        stamp = row["timestamp"]
        stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
        assert zendesk_time(stamp) == record["timestamp"], record_id
        user = record["user_id"]  # a string or an integer in the API; text in the table
        assert row["user_id"] == (None if user is None else str(user)), record_id
        assert row["url"] == record["url"], record_id
