"""The access log's row upsert (``access_upsert``), for ``StreamStore``
(``etl.storage.streams``).

It works as the audit log's on SQLite and MySQL, on every dialect: the batch's existing
``(id, raw)`` pairs are read first, in the same transaction, and only new or changed rows
are sent with the dialect's own upsert, so an unchanged row is never rewritten and the
counts are exact. Through SQLAlchemy Core: the access log has no straight-to-driver path
yet. ``raw`` is written as the row's JSON text, as the audit log's upserts write it
(``etl.storage.upserts.audit_logs.raw_as_text``), so both logs keep the same text for the
same record: its canonical text, which verify hashes without parsing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from etl.storage.limits import RowUpsert, byte_batches, max_packet
from etl.storage.schema.coltypes import MYSQL_DIALECTS, dialect_insert
from etl.storage.schema.logs import access_logs
from etl.storage.upserts.audit_logs import changed, raw_as_text, with_raw_text

_ID_CHUNK = 500  # ids per "which of these exist?" query
_MISSING = object()


def _upsert_statement(dialect: str) -> sa.Executable:
    """INSERT, or on the key update every other column (only changed rows are sent)."""
    table = access_logs
    key = [c for c in table.primary_key]
    # raw as the row's JSON text, as the audit log's upserts write it (the JSON type would
    # serialize the record again, keys unsorted: not the text the ledger hashed).
    ins = dialect_insert(dialect, table).values(raw=raw_as_text(dialect))
    others = [c.name for c in table.columns if c not in key]
    if dialect in MYSQL_DIALECTS:
        statement: sa.Executable = ins.on_duplicate_key_update(
            [(name, ins.inserted[name]) for name in others]
        )
    else:
        statement = ins.on_conflict_do_update(
            index_elements=key, set_={name: ins.excluded[name] for name in others}
        )
    return statement


def access_upsert(dialect: Dialect) -> RowUpsert:
    """The access table's upsert for ``dialect``; it says (inserted, updated)."""
    name = dialect.name
    if name not in ("sqlite", "postgresql", *MYSQL_DIALECTS):
        raise ValueError(f"unsupported dialect {name!r}")
    statement = _upsert_statement(name)
    # raw as its stored text, so ``upserts.changed`` (the audit log's test) can compare it.
    existing = sa.select(access_logs.c.id, sa.cast(access_logs.c.raw, sa.Text)).where(
        access_logs.c.account == sa.bindparam("account"),
        access_logs.c.id.in_(sa.bindparam("ids", expanding=True)),
    )

    def upsert(
        conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
    ) -> tuple[int, int]:
        ids = sorted(rows)
        stored: dict[Any, Any] = {}
        for at in range(0, len(ids), _ID_CHUNK):
            chunk = ids[at : at + _ID_CHUNK]
            for record_id, raw in conn.execute(existing, {"account": account, "ids": chunk}):
                stored[record_id] = raw
        sent: list[Mapping[str, Any]] = []
        inserted = 0
        for record_id, row in rows.items():
            old = stored.get(record_id, _MISSING)
            if old is _MISSING:
                inserted += 1
            elif not changed(old, row):  # canonical text, not Python's 1 == True == 1.0
                continue
            sent.append(with_raw_text(row))
        if sent:
            _write(conn, statement, sent)
        return inserted, len(sent) - inserted

    return upsert


def _write(conn: Connection, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]) -> None:
    packet = max_packet(conn)
    # On MySQL each statement well under the server's packet: a larger one closes the
    # connection.
    for batch in [rows] if packet is None else byte_batches(rows, packet // 2):
        conn.execute(statement, list(batch))
