"""What ``verify`` reads, each a stream of keyset pages (flat memory, however large the
table): the ledger by entry, the rows by ``stored_seq`` with ``raw`` as text, the rejects.

``raw`` is read as text and parsed here (orjson; the json module for a record holding a
float, since orjson reads an integer past 64 bits as a float): the JSON type's own
parsing costs more than the rest of a row's check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.records.canonical import canonical_json
from etl.storage.schema import audit_logs, audit_rejects, ledger, ledger_head

PAGE = 20_000
_PLAIN = frozenset({str, int, bool, type(None)})
_loads, _dumps, _SORTED = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256


class Entry(NamedTuple):
    entry: int
    kind: str
    record_id: str | None
    stored_seq: int | None
    record_hash: bytes
    entry_hash: bytes
    note: str | None


class StoredRow(NamedTuple):
    seq: int
    id: int
    raw: str


def parse_raw(text: str) -> Any:
    """A row's ``raw`` text as ``json.loads`` would give it (exact integers)."""
    value = orjson.loads(text)
    if type(value) is dict and _PLAIN.issuperset(map(type, value.values())):
        return value
    return json.loads(text)


def raw_digest(text: str | bytes) -> bytes:
    """SHA-256 of the canonical form of a row's ``raw`` text (``record_hash`` of what it
    parses to): orjson both ways for a record of plain values, the usual one."""
    value = _loads(text)
    if type(value) is dict and _PLAIN.issuperset(map(type, value.values())):
        return _sha256(_dumps(value, option=_SORTED)).digest()
    return _sha256(canonical_json(json.loads(text)).encode()).digest()


def entries(conn: Connection, account: str, after: int) -> Iterator[Entry]:
    columns = [ledger.c[name] for name in Entry._fields]
    while True:
        page = conn.execute(
            sa.select(*columns)
            .where(ledger.c.account == account, ledger.c.entry > after)
            .order_by(ledger.c.entry)
            .limit(PAGE)
        ).all()
        for row in page:
            yield Entry(*row)
        if len(page) < PAGE:
            return
        after = page[-1][0]


def rows(conn: Connection, account: str, from_seq: int) -> Iterator[StoredRow]:
    """The account's numbered rows from ``from_seq`` on, by ``stored_seq`` (ties by id)."""
    raw = sa.cast(audit_logs.c.raw, sa.Text)
    seq, record_id = audit_logs.c.stored_seq, audit_logs.c.id
    after: tuple[int, int] | None = None
    while True:
        # seq >= the last one seen, less what was seen at it: one range of the index, and a
        # number two rows share (only tampering does that) is not lost between pages.
        where = [audit_logs.c.account == account, seq >= (from_seq if after is None else after[0])]
        if after is not None:
            where.append(sa.not_(sa.and_(seq == after[0], record_id <= after[1])))
        page = conn.execute(
            sa.select(seq, record_id, raw).where(*where).order_by(seq, record_id).limit(PAGE)
        ).all()
        for row in page:
            yield StoredRow(*row)
        if len(page) < PAGE:
            return
        after = (page[-1][0], page[-1][1])


def unnumbered_rows(conn: Connection, account: str) -> list[int]:
    """Ids of the account's rows without a ``stored_seq`` (the store always gives one)."""
    return list(
        conn.execute(
            sa.select(audit_logs.c.id).where(
                audit_logs.c.account == account, audit_logs.c.stored_seq.is_(None)
            )
        ).scalars()
    )


def rejects(conn: Connection, account: str) -> Iterator[tuple[str | None, str, str]]:
    after = 0
    table = audit_rejects
    while True:
        page = conn.execute(
            sa.select(table.c.id, table.c.record_id, table.c.reason, table.c.raw)
            .where(table.c.account == account, table.c.id > after)
            .order_by(table.c.id)
            .limit(PAGE)
        ).all()
        for _, record_id, reason, raw in page:
            yield record_id, reason, raw
        if len(page) < PAGE:
            return
        after = page[-1][0]


def head(conn: Connection, account: str) -> tuple[int, str] | None:
    row = conn.execute(
        sa.select(ledger_head.c.entries, ledger_head.c.head).where(ledger_head.c.account == account)
    ).first()
    return None if row is None else (int(row[0]), row[1])


def entry_hash_of(conn: Connection, account: str, entry: int) -> bytes | None:
    return conn.execute(
        sa.select(ledger.c.entry_hash).where(ledger.c.account == account, ledger.c.entry == entry)
    ).scalar()


def first_entry_since(conn: Connection, account: str, moment: datetime) -> int:
    """The number of the account's first entry written at or after ``moment`` (or past the
    last when none was)."""
    found = conn.execute(
        sa.select(sa.func.min(ledger.c.entry)).where(
            ledger.c.account == account, ledger.c.written_at >= moment
        )
    ).scalar()
    if found is not None:
        return int(found)
    last = conn.execute(
        sa.select(sa.func.max(ledger.c.entry)).where(ledger.c.account == account)
    ).scalar()
    return int(last or 0) + 1


def first_seq_from(conn: Connection, account: str, entry: int) -> int | None:
    """The ``stored_seq`` of the first row entry at or after ``entry``."""
    return conn.execute(
        sa.select(sa.func.min(ledger.c.stored_seq)).where(
            ledger.c.account == account, ledger.c.entry >= entry, ledger.c.kind == "R"
        )
    ).scalar()


def ledger_accounts(conn: Connection) -> list[str]:
    names = set(conn.execute(sa.select(ledger_head.c.account)).scalars())
    names.update(conn.execute(sa.select(audit_logs.c.account).distinct()).scalars())
    return sorted(names)
