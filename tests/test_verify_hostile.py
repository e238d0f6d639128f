"""``verify`` against what an attacker can put in its way, not only what a careless hand
leaves: a row whose ``raw`` is no JSON record is a finding named as such, never a
traceback."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from parts.databases import kind_of
from parts.verify.signed import found, keygen, synced, verify

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.schema.logs import audit_logs
from zendesk_sim import SimulatedZendesk


def _two_ids(db_url: str) -> list[int]:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        ids = conn.execute(sa.select(audit_logs.c.id).order_by(audit_logs.c.id)).scalars()
        chosen = list(ids)[20:22]
    engine.dispose()
    return chosen


def _set_raw(db_url: str, record_id: int, text: str) -> None:
    """``raw`` set to ``text`` as the database takes it (PostgreSQL's jsonb parses it)."""
    value = "CAST(:text AS jsonb)" if kind_of(db_url) == "postgresql" else ":text"
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE zendesk_audit_logs SET raw = {value} WHERE id = :id"),
            {"text": text, "id": record_id},
        )
    engine.dispose()


def test_a_row_whose_raw_is_no_json_record_is_modified_not_an_internal_error(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """A number past a double's range is JSON every database takes (PostgreSQL keeps its
    digits); SQLite takes any text. verify parsed both with orjson alone and stopped with
    an internal error (exit 1, no report): now each is a row that differs."""
    key, _ = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    huge, garbled = _two_ids(db_url)
    _set_raw(db_url, huge, f'{{"id":{huge},"action":"update","x":1e400}}')
    expected = {("modified", str(huge))}
    if kind_of(db_url) == "sqlite":
        _set_raw(db_url, garbled, '{"id": not json')
        expected.add(("modified", str(garbled)))
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    assert found(report) == expected
