"""``verify``'s pages on PostgreSQL come as psycopg's binary results (a hash's 32 bytes as
they are, not hexadecimal both ways) and a row's ``raw`` text as its bytes: the same values
the ledger and the rows hold, and tampering with an entry or a row still found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from parts.verify.signed import synced

from etl.integrity import pages, streams
from etl.integrity.reads import rows as row_reads
from etl.integrity.reads import sql as shared
from etl.integrity.verify import VerifyOptions, verify_account
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import ledger
from etl.storage.schema.logs import audit_logs
from zendesk_sim import SimulatedZendesk

pytestmark = pytest.mark.databases("postgresql")


def test_the_ledger_read_in_binary_is_the_ledger_stored(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    synced(tmp_path, zendesk, db_url, None)
    formats: list[bool] = []
    cursor = psycopg.Connection.cursor

    def spied(self: psycopg.Connection[Any], *args: Any, **kwargs: Any) -> Any:
        formats.append(bool(kwargs.get("binary")))
        return cursor(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "cursor", spied)
    monkeypatch.setattr(shared, "PAGE", 7)  # many pages, and windows
    engine = open_engine(db_url)
    names = ("entry", "kind", "record_id", "stored_seq", "record_hash", "entry_hash", "note")
    with engine.connect() as conn, conn.begin():
        query = sa.select(*(ledger.c[name] for name in names)).order_by(ledger.c.entry)
        stored = [tuple(row) for row in conn.execute(query.where(ledger.c.account == "acme"))]
        formats.clear()
        with pages.prefetching(conn):
            read = list(streams.entries(conn, "acme", 0))
            rows = list(row_reads.rows(conn, "acme", -(2**63)))
    engine.dispose()
    assert len(stored) > 20 and read == stored
    assert [type(value) for value in read[0][:6]] == [int, str, str, int, bytes, bytes]
    assert [row[:2] for row in rows] == [(e[3], int(e[2])) for e in stored if e[1] == "R"]
    assert all(type(row[2]) is bytes and row[3] == "audit_logs" for row in rows)
    assert formats and all(formats)  # every page's cursor a binary one


def test_an_altered_hash_or_row_is_still_found(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
) -> None:
    synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.update(ledger).where(ledger.c.entry == 5).values(entry_hash=bytes(32)))
        row_id = conn.execute(
            sa.select(audit_logs.c.id).order_by(audit_logs.c.stored_seq).offset(9)
        ).scalar()
        conn.execute(
            sa.update(audit_logs)
            .where(audit_logs.c.id == row_id)
            .values(raw=sa.cast(sa.literal('{"id": 1, "é": "\\u0001"}'), audit_logs.c.raw.type))
        )
    report = verify_account(engine, "acme", VerifyOptions())
    engine.dispose()
    found = {(f.kind, f.entry) for f in report.findings}
    assert ("chain broken", 5) in found
    assert [f.record_id for f in report.findings if f.kind == "modified"] == [str(row_id)]
