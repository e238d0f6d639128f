"""The raw ceiling: how fast each database takes the same rows with nothing else in the way.

``fetch_rows`` reads every record from the simulator once (untimed) and turns each into
the row the job would store (``etl.records.audit.parse_record``). The timed part is only the
database work: batched ``INSERT ... ON CONFLICT DO UPDATE`` of 1,000 rows per
transaction into a fresh schema created by ``etl.storage.migrate.upgrade``, with the driver's
parameters (JSON text, timestamps) prepared beforehand.

* SQLite: the stdlib driver, WAL and ``synchronous = NORMAL`` (the job's own pragmas),
  ``executemany`` of one upsert per transaction.
* PostgreSQL: psycopg 3, per transaction ``COPY`` into a temporary table, then one
  ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.

``core_upsert`` is a second, looser reference (reported, no target): the same rows as
the job has them (``raw`` a dict, times as datetimes) upserted through SQLAlchemy Core,
``executemany`` of the dialect's ``INSERT ... ON CONFLICT DO UPDATE`` per 1,000-row
transaction, so SQLAlchemy's per-row parameter conversion is timed too: what a plain
hand-written SQLAlchemy loader spends on the database side.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import requests
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from benchkit.databases import psycopg_conninfo
from benchkit.support import ACCOUNT, OAUTH_TOKEN
from etl.records.audit import RAW_JSON, parse_record
from etl.storage.engine import open_engine
from etl.storage.migrate import upgrade
from etl.storage.schema.coltypes import UTCDateTime, sqlite_time
from etl.storage.schema.logs import audit_logs

BATCH = 1000
COLUMNS = [column.name for column in audit_logs.columns]
_UPDATED = [name for name in COLUMNS if name not in ("account", "id")]
_SET = ", ".join(f"{name} = excluded.{name}" for name in _UPDATED)
_COLUMN_LIST = ", ".join(COLUMNS)


def fetch_rows(base_url: str) -> list[dict[str, Any]]:
    """Every record of the simulator, ascending, as the job's rows (not timed)."""
    synced_at = datetime.now(UTC)
    end = synced_at - timedelta(minutes=5)
    rows: list[dict[str, Any]] = []
    params: list[tuple[str, str]] | None = [
        ("filter[created_at][]", "2007-01-01T00:00:00Z"),
        ("filter[created_at][]", end.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("sort", "created_at"),
        ("page[size]", "100"),
    ]
    url = f"{base_url}/api/v2/audit_logs"
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {OAUTH_TOKEN}"
        while True:
            response = session.get(url, params=params, timeout=60)
            response.raise_for_status()
            body = response.json()
            for raw in body["audit_logs"]:
                row = parse_record(raw, ACCOUNT, synced_at)
                if not isinstance(row, dict):
                    raise RuntimeError(f"the simulator sent an unstorable record: {row}")
                row["stored_seq"] = len(rows) + 1  # the number the job reserves (storage.sequence)
                rows.append(row)
            if not body["meta"]["has_more"]:
                return rows
            url, params = body["links"]["next"], None


def _batches(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _create_schema(url: str) -> None:
    engine = open_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def sqlite_ceiling(url: str, rows: Sequence[dict[str, Any]]) -> float:
    """Seconds to upsert ``rows`` into the fresh SQLite database ``url``."""
    _create_schema(url)
    path = url.removeprefix("sqlite:///")
    fsp = {c.name: c.type.fsp for c in audit_logs.columns if isinstance(c.type, UTCDateTime)}

    params = [
        tuple(
            _json(row[name])
            if name == "raw"
            else sqlite_time(row[name], fsp[name])
            if isinstance(row[name], datetime)
            else row[name]
            for name in COLUMNS
        )
        for row in rows
    ]
    statement = (
        f"INSERT INTO zendesk_audit_logs ({_COLUMN_LIST}) "
        f"VALUES ({', '.join('?' for _ in COLUMNS)}) "
        f"ON CONFLICT (account, id) DO UPDATE SET {_SET} "
        "WHERE zendesk_audit_logs.raw IS NOT excluded.raw"
    )
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        started = time.perf_counter()
        for batch in _batches(params):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(statement, batch)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        stored = conn.execute("SELECT count(*) FROM zendesk_audit_logs").fetchone()[0]
    finally:
        conn.close()
    if stored != len({row["id"] for row in rows}):
        raise RuntimeError(f"the SQLite ceiling stored {stored} rows of {len(rows)}")
    return elapsed


def postgres_ceiling(url: str, rows: Sequence[dict[str, Any]]) -> float:
    """Seconds to upsert ``rows`` into the fresh PostgreSQL database ``url``."""
    _create_schema(url)
    params = [tuple(_json(row[n]) if n == "raw" else row[n] for n in COLUMNS) for row in rows]
    upsert = (
        f"INSERT INTO zendesk_audit_logs ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM bench_stage "
        f"ON CONFLICT (account, id) DO UPDATE SET {_SET} "
        "WHERE zendesk_audit_logs.raw IS DISTINCT FROM excluded.raw"
    )
    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        conn.execute(
            "CREATE TEMPORARY TABLE bench_stage (LIKE zendesk_audit_logs) ON COMMIT DELETE ROWS"
        )
        started = time.perf_counter()
        for batch in _batches(params):
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(f"COPY bench_stage ({_COLUMN_LIST}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                cursor.execute(upsert)
        elapsed = time.perf_counter() - started
        stored_row = conn.execute("SELECT count(*) FROM zendesk_audit_logs").fetchone()
    stored = stored_row[0] if stored_row else 0
    if stored != len({row["id"] for row in rows}):
        raise RuntimeError(f"the PostgreSQL ceiling stored {stored} rows of {len(rows)}")
    return elapsed


def core_upsert(url: str, rows: Sequence[dict[str, Any]]) -> float:
    """Seconds to upsert ``rows`` into the fresh database ``url`` through SQLAlchemy Core."""
    _create_schema(url)
    engine = open_engine(url)
    try:
        dialect = sqlite if engine.dialect.name == "sqlite" else postgresql
        insert = dialect.insert(audit_logs)
        statement = insert.on_conflict_do_update(
            index_elements=[audit_logs.c.account, audit_logs.c.id],
            set_={name: insert.excluded[name] for name in _UPDATED},
            where=audit_logs.c.raw.is_distinct_from(insert.excluded.raw),
        )
        plain = [{k: v for k, v in row.items() if k != RAW_JSON} for row in rows]
        started = time.perf_counter()
        for batch in _batches(plain):
            with engine.begin() as conn:
                conn.execute(statement, batch)
        elapsed = time.perf_counter() - started
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(audit_logs)).scalar_one()
    finally:
        engine.dispose()
    if stored != len({row["id"] for row in rows}):
        raise RuntimeError(f"the Core upsert stored {stored} rows of {len(rows)}")
    return elapsed
