"""The access log under the ledger (issue 26): its stored versions and rejects chained by the
audit log's rules, in the transaction that stores them; ``verify`` counts and names them per
stream, and finds an access row changed, deleted or forged, by id, on each database."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from access_support import ACCESS_PATH, access_record
from parts.cli import cli
from parts.databases import skip_unless_mariadb
from support import audit_record, recent

from etl.common.errors import ExitCode
from etl.integrity import pages
from etl.integrity.mariadb import frames as mariadb_frames
from etl.integrity.mariadb import rows as mariadb_rows
from etl.integrity.reads import sql as shared
from etl.integrity.verify import VerifyOptions, verify_account
from etl.records import chain
from etl.records.access import parse_access_record
from etl.records.audit import parse_record
from etl.records.canonical import canonical_json
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import ledger
from etl.storage.schema.logs import access_logs, audit_logs
from etl.storage.upserts.access_logs import access_upsert
from etl.storage.upserts.audit_logs import row_upsert
from zendesk_sim import AccessSource, Fault, SimulatedZendesk, generate_records

AUDIT, ACCESS = 300, 400


@pytest.fixture
def zendesk() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    audit = generate_records(AUDIT, start=end - timedelta(days=2), end=end, seed=5)
    access = AccessSource(ACCESS, start=end - timedelta(days=2), end=end, seed=6)
    with SimulatedZendesk(audit, access_records=access) as sim:
        # one access record without its id: the access log's reject, chained too
        sim.inject(Fault("mangle", mangle="no_id", path=ACCESS_PATH, skip=1))
        yield sim


def synced(tmp_path: Path, sim: SimulatedZendesk, db_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
        # One reader: the mangled answer is the only one to carry that record (readers
        # meeting inside a page would read it again, whole, and store it after all).
        '[sync]\nstreams = ["audit_logs", "access_logs"]\nworkers = 1\n'
    )
    result = cli(path, "sync")
    assert result.returncode == 0, result.stderr
    return path


def verify(path: Path) -> tuple[int, dict[str, Any]]:
    result = cli(path, "verify", "--json")
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1) and result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def access_ids(db_url: str) -> list[str]:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(access_logs.c.id).order_by(access_logs.c.id)).scalars())
    engine.dispose()
    return ids


def test_both_streams_are_chained_and_verified_per_stream(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    path = synced(tmp_path, zendesk, db_url)
    stored = len(access_ids(db_url))
    assert stored == ACCESS - 1
    engine = open_engine(db_url)
    with engine.connect() as conn:
        kinds: dict[str, int] = dict(
            conn.execute(sa.select(ledger.c.kind, sa.func.count()).group_by(ledger.c.kind)).all()
        )
    engine.dispose()
    assert kinds == {chain.ROW: AUDIT + stored, chain.REJECT: 1}
    # An access record changed at Zendesk: its new version is chained; nothing is a finding.
    first = access_ids(db_url)[0]
    zendesk.add_access_records([access_record(first, recent(60), summary="Viewed again")])
    assert cli(path, "resync", "--stream", "access_logs", "--since", "2000-01-01").returncode == 0
    stored = len(access_ids(db_url))  # the rejected one too: sent whole this time
    code, report = verify(path)
    assert code == ExitCode.OK, report
    (account,) = report["accounts"]
    assert account["streams"] == {
        "access_logs": {"records_verified": stored, "findings": 0},
        "audit_logs": {"records_verified": AUDIT, "findings": 0},
    }
    assert report["summary"].endswith(f"{AUDIT + stored} records verified, 0 findings")
    text = cli(path, "verify").stdout.splitlines()
    assert f"account acme: stream access_logs: {stored} records, 0 findings" in text
    assert f"account acme: stream audit_logs: {AUDIT} records, 0 findings" in text


def test_an_access_rows_raw_is_stored_as_the_audit_logs_is(migrated_url: str) -> None:
    """The same JSON, stored by both logs' upserts (keys unsorted, non-ASCII, a nested
    value): both keep the same text, on every database; on SQLite and MariaDB the record's
    canonical text, which verify hashes without parsing."""
    at = "2026-01-02T03:04:05Z"
    sent = {"timestamp": at, "id": 42, "created_at": at, "zeta": "é\u2028", "action": "update",
            "graphql": {"q": "x", "a": [2, 1.5]}}  # fmt: skip
    audit = parse_record(sent, "acme", recent(0))
    access = parse_access_record(sent, "acme", recent(0))
    assert isinstance(audit, dict) and isinstance(access, dict)
    engine = open_engine(migrated_url)
    as_text = sa.cast(audit_logs.c.raw, sa.Text), sa.cast(access_logs.c.raw, sa.Text)
    with engine.begin() as conn:
        row_upsert(conn.dialect)(conn, "acme", {42: {**audit, "stored_seq": 1}})
        access_upsert(conn.dialect)(conn, "acme", {"42": {**access, "stored_seq": 2}})
        audit_text = conn.execute(sa.select(as_text[0])).scalar_one()
        access_text = conn.execute(sa.select(as_text[1])).scalar_one()
        # stored again unchanged: not rewritten (the text compares equal as it is)
        assert access_upsert(conn.dialect)(conn, "acme", {"42": {**access, "stored_seq": 3}}) == (
            0,
            0,
        )
    engine.dispose()
    assert access_text == audit_text
    if engine.dialect.name != "postgresql":  # jsonb keeps its own text
        assert access_text == canonical_json(sent)


def test_access_rows_changed_deleted_or_forged_are_named_by_id(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    path = synced(tmp_path, zendesk, db_url)
    if not db_url.startswith("postgresql"):
        # Each access row's stored text is the very text its ledger entry hashed (verify
        # needs no parsing), though the records come with their keys unsorted.
        engine = open_engine(db_url)
        with engine.connect() as conn:
            texts = conn.execute(
                sa.select(sa.cast(access_logs.c.raw, sa.Text), ledger.c.record_hash).join(
                    ledger, ledger.c.stored_seq == access_logs.c.stored_seq
                )
            ).all()
        engine.dispose()
        assert len(texts) == ACCESS - 1
        assert all(hashlib.sha256(text.encode()).digest() == bytes(h) for text, h in texts)
    changed, deleted = access_ids(db_url)[10:12]
    engine = open_engine(db_url)
    with engine.connect() as conn:
        row = dict(
            conn.execute(sa.select(access_logs).where(access_logs.c.id == changed)).one()._mapping
        )
    engine.dispose()
    raw = row["raw"] if isinstance(row["raw"], dict) else json.loads(row["raw"])
    forged = {**row, "id": "01FORGED", "raw": {**raw, "id": "01FORGED"}, "stored_seq": 10**12}
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.update(access_logs)
            .where(access_logs.c.id == changed)
            .values(raw={**raw, "ip_address": "203.0.113.9"})
        )
        conn.execute(sa.delete(access_logs).where(access_logs.c.id == deleted))
        conn.execute(sa.insert(access_logs).values(forged))
    engine.dispose()
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    (account,) = report["accounts"]
    assert {(f["kind"], f["record_id"], f["stream"]) for f in account["findings"]} == {
        ("modified", changed, "access_logs"),
        ("deleted", deleted, "access_logs"),
        ("inserted", "01FORGED", "access_logs"),
    }
    assert account["streams"]["access_logs"]["findings"] == 3
    assert account["streams"]["audit_logs"] == {"records_verified": AUDIT, "findings": 0}
    lines = cli(path, "verify").stdout.splitlines()
    assert any(
        line.startswith(f"INVALID: modified: account acme, stream access_logs, record {changed},")
        for line in lines
    ), lines


def test_the_first_access_row_deleted_is_the_access_logs_though_an_audit_row_precedes_it(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """Its neighbour before it is the audit log's last row (the transaction before), but an
    id that is no integer cannot be the audit log's: the finding is counted where it is."""
    path = synced(tmp_path, zendesk, db_url)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        first = conn.execute(
            sa.select(access_logs.c.id).order_by(access_logs.c.stored_seq).limit(1)
        ).scalar_one()
        top_audit = conn.execute(sa.select(sa.func.max(audit_logs.c.stored_seq))).scalar_one()
        seq = conn.execute(sa.select(access_logs.c.stored_seq).where(access_logs.c.id == first))
        assert seq.scalar_one() > top_audit  # the access log's rows follow the audit log's
        conn.execute(sa.delete(access_logs).where(access_logs.c.id == first))
    engine.dispose()
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    (account,) = report["accounts"]
    assert [(f["kind"], f["record_id"], f["stream"]) for f in account["findings"]] == [
        ("deleted", first, "access_logs")
    ]
    assert account["streams"]["audit_logs"] == {"records_verified": AUDIT, "findings": 0}
    assert account["streams"]["access_logs"]["findings"] == 1


def test_the_first_audit_row_of_a_later_run_deleted_is_the_audit_logs_though_access_rows_precede_it(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """A run writes the audit log, then the access log: the next run's first audit row
    has the access log's last row as its neighbour, but its id is an integer."""
    path = synced(tmp_path, zendesk, db_url)
    zendesk.add_records([audit_record(9_000_000 + n, recent(8)) for n in range(3)])
    assert cli(path, "sync").returncode == 0
    engine = open_engine(db_url)
    with engine.begin() as conn:
        top_access = conn.execute(sa.select(sa.func.max(access_logs.c.stored_seq))).scalar_one()
        first = conn.execute(
            sa.select(audit_logs.c.id)
            .where(audit_logs.c.stored_seq > top_access)
            .order_by(audit_logs.c.stored_seq)
            .limit(1)
        ).scalar_one()
        conn.execute(sa.delete(audit_logs).where(audit_logs.c.id == first))
    engine.dispose()
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    (account,) = report["accounts"]
    assert [(f["kind"], f["record_id"], f["stream"]) for f in account["findings"]] == [
        ("deleted", str(first), "audit_logs")
    ]
    assert account["streams"]["access_logs"]["findings"] == 0


@pytest.mark.databases("mysql")  # MariaDB's reading; a MySQL server there: skipped below
def test_mariadb_reads_access_pages_as_two_values_though_their_ids_are_text(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The access log's ids are text (any text: spaces, non-ASCII): its pages are read by
    the two aggregates too, never row by row (made to fail here), in pages of 7, and an
    access row changed, deleted or forged with such an id is still named by id."""
    skip_unless_mariadb(db_url, "MariaDB's read of a page as one value")
    synced(tmp_path, zendesk, db_url)
    engine = open_engine(db_url)
    changed, deleted = access_ids(db_url)[20:22]
    with engine.begin() as conn:
        row = dict(
            conn.execute(sa.select(access_logs).where(access_logs.c.id == changed)).one()._mapping
        )
        raw = json.loads(row["raw"]) if isinstance(row["raw"], str) else row["raw"]
        odd = "a b é 9"  # a space splits numbers; é is two bytes
        conn.execute(
            sa.update(access_logs)
            .where(access_logs.c.id == changed)
            .values(raw={**raw, "ip_address": "203.0.113.9"})
        )
        conn.execute(sa.delete(access_logs).where(access_logs.c.id == deleted))
        conn.execute(
            sa.insert(access_logs).values(
                {**row, "id": odd, "raw": {**raw, "id": odd}, "stored_seq": 10**12}
            )
        )
    engine.dispose()
    real = pages.mariadb_page

    def rows_only_as_two_values(value: str, query: str, plain: str, decode: Any) -> Any:
        page = pages._Aggregated("SELECT no_such_column")  # the page in one query: fails
        page.plain, page.decode = "SELECT no_such_column", real(value, query, plain, decode).decode
        return page

    monkeypatch.setattr(mariadb_rows, "mariadb_page", rows_only_as_two_values)
    monkeypatch.setattr(shared, "PAGE", 7)
    monkeypatch.setattr(shared, "MARIADB_PAGE", 7)
    engine = open_engine(db_url)
    try:
        report = verify_account(engine, "acme", VerifyOptions())
    finally:
        engine.dispose()
    assert {(f.kind, f.record_id, f.stream) for f in report.findings} == {
        ("modified", changed, "access_logs"),
        ("deleted", deleted, "access_logs"),
        ("inserted", odd, "access_logs"),
    }
    assert report.records == AUDIT + ACCESS - 2  # stored (one rejected), one deleted


def test_frames_with_text_ids_read_any_id_and_text_by_their_lengths() -> None:
    # each row: its id's bytes, its raw; the derived columns' arrays (etl.integrity.checks.
    # derived) all in one JSON array, the rows' in the same order
    parts = [(5, "b é", b'{"a":"1 2"}', ["x"]), (2, "", b"", []), (5, "a", b"x", [1])]
    heads = " ".join(f"{s} {len(i.encode())} {len(t)}" for s, i, t, _ in parts)
    data = b"".join(i.encode() + t for _, i, t, _ in parts)
    arrays = b'[["x"],[],[1]]'
    decode = mariadb_frames.frames("access_logs", text_ids=True)
    assert decode(heads, data, arrays) == sorted(
        (s, i, t, "access_logs", d) for s, i, t, d in parts
    )
    for cut_heads, cut_data, cut_arrays in (
        (heads, data[:-1], arrays),
        (heads[:-2], data, arrays),
        (heads, data + b"x", arrays),
        (heads, data, b'[["x"],[]]'),  # an array short
        (heads, data, b'[["x"],[],[1]'),  # cut
    ):
        with pytest.raises(ValueError):
            decode(cut_heads, cut_data, cut_arrays)
    with pytest.raises(ValueError):  # an id that is not UTF-8
        decode("1 1 0", b"\xff", b"[[]]")
