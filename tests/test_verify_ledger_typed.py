"""The edits of the ledger's own columns that SQLite keeps as another storage class
(``test_verify_storage.py``), on the servers with typed columns: each is refused by the
server, or stores a value of the column's type that ``verify`` finds as ``chain broken``
at its entry, never an internal error."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.verify.signed import synced, verify

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from zendesk_sim import SimulatedZendesk

pytestmark = pytest.mark.databases("postgresql", "mysql")

# Each on an entry of its own (its number, the edit): a real, a text, bytes not UTF-8, a
# text or a number in a hash.
EDITS = [
    (10, "entry = entry + 0.5"),
    (20, "entry = 'x'"),
    (30, "kind = X'FF'"),
    (40, "record_id = X'FF'"),
    (50, "stored_seq = stored_seq + 0.5"),
    (60, "stored_seq = 'x'"),
    (70, "record_hash = 'abc'"),
    (80, "record_hash = 1.5"),
    (90, "entry_hash = 'abc'"),
    (100, "kind = 'Q'"),  # a text, of a kind the job never writes
    (110, "kind = 'é'"),  # one character, not ASCII: the entry's bytes once crashed verify
]


def test_the_ledger_edits_sqlite_keeps_are_refused_or_found(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
) -> None:
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    taken = []
    for entry, edit in EDITS:
        try:
            with engine.begin() as conn:
                sql = f"UPDATE zendesk_audit_ledger SET {edit} WHERE entry = :entry"
                assert conn.execute(sa.text(sql), {"entry": entry}).rowcount == 1
            taken.append(entry)
        except sa.exc.DBAPIError:
            pass  # refused: the column's type
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE zendesk_audit_ledger_head SET entries = 'x'"))
        taken.append(-1)  # not expected: no server takes it
    except sa.exc.DBAPIError:
        pass
    engine.dispose()
    code, report = verify(path)
    (account,) = report["accounts"]
    broken = {f["entry"] for f in account["findings"] if f["kind"] == "chain broken"}
    assert code == ExitCode.FINDINGS
    assert taken and set(taken) <= broken, (taken, account["findings"])
