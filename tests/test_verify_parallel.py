"""``verify --jobs N``: the ledger walked in spans by several processes finds what one walk
finds, in the same order, with the same report: on an untouched store whose records have
versions in several spans, and with every kind of tampering, at the seams between spans
too (a row, a row number, an entry's hash, the chain broken just before a seam).

Spans are made small here (``MIN_SPAN``) so that a few hundred entries take three."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import sqlalchemy as sa
from parts.verify.spans import (  # noqa: F401 (autouse here: the spans made small)
    first_span,
    seams,
    seq_row,
    small_spans,
)
from support import execute, one_row

from etl.integrity.findings import AccountReport
from etl.integrity.keys import PublicKey
from etl.integrity.parallel import piece, split
from etl.integrity.parallel.crew import Crew, Task
from etl.integrity.parallel.piece import Span
from etl.integrity.verify import VerifyOptions, verify_account
from etl.records import chain
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import ledger
from etl.storage.schema.logs import audit_logs
from etl.storage.schema.state import audit_rejects

FORGED = 9_500_000_000_000  # ids above every stored one: sorted after them


def _verify(
    db_url: str, keys: list[PublicKey], jobs: int, options: VerifyOptions | None = None
) -> AccountReport:
    engine = open_engine(db_url)
    crew = Crew(db_url, jobs - 1) if jobs > 1 else None
    try:
        return verify_account(engine, "acme", options or VerifyOptions(public_keys=keys), crew)
    finally:
        if crew is not None:
            crew.close()
        engine.dispose()


def _both(
    db_url: str,
    keys: list[PublicKey],
    monkeypatch: pytest.MonkeyPatch,
    options: VerifyOptions | None = None,
) -> list[tuple[str, str | None, int | None]]:
    """The findings of one walk, asserted the same (order, wording, report) as three
    processes', whose own process walked only the first span (no fallback to one walk)."""
    three = _three(db_url, keys, monkeypatch, options)
    return [(f.kind, f.record_id, f.entry) for f in three.findings]


def _three(
    db_url: str,
    keys: list[PublicKey],
    monkeypatch: pytest.MonkeyPatch,
    options: VerifyOptions | None = None,
) -> AccountReport:
    """``_both``'s comparison; the report of the three processes' walk, for a test to ask
    more of it (without starting another two processes to walk again)."""
    one = _verify(db_url, keys, 1, options)
    walked = _spy_walks(monkeypatch)
    three = _verify(db_url, keys, 3, options)
    assert len(walked) == 1 and walked[0].upto is not None, walked
    assert three.findings == one.findings
    assert three.fields() == one.fields() and three.notes == one.notes
    return three


def _spy_walks(monkeypatch: pytest.MonkeyPatch) -> list[Span]:
    """The spans the verify's own process walks from now on."""
    walked: list[Span] = []

    def spy(conn: sa.Connection, account: str, span: Span) -> Any:
        walked.append(span)
        return piece.walk(conn, account, span)

    monkeypatch.setattr("etl.integrity.parallel.split.walk", spy)
    return walked


def _entry(db_url: str, entry: int) -> dict[str, Any]:
    return one_row(db_url, ledger.c.entry, entry)


def test_an_untouched_store_verifies_the_same_in_three_processes(
    db_url: str, stored: list[PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(audit_logs)).scalar_one()
        entries = conn.execute(
            sa.select(sa.func.count()).select_from(ledger).where(ledger.c.kind == chain.ROW)
        ).scalar_one()
    engine.dispose()
    assert entries > rows  # versions since superseded, waiting for a row across the seams
    three = _three(db_url, stored, monkeypatch)
    assert three.findings == []
    assert three.checkpoints_valid == 3


def test_this_process_walks_more_entries_than_a_worker(
    db_url: str, stored: list[PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker starts its walk later (its spawn and imports): this process's span is the
    longer by ``OWN_EXTRA`` entries (here 40, of a few hundred), the workers' alike."""
    monkeypatch.setattr(split, "OWN_EXTRA", 40)
    engine = open_engine(db_url)
    with engine.connect() as conn:
        spans = split.plan(conn, "acme", first_span(), 3)
        last = conn.execute(sa.select(sa.func.max(ledger.c.entry))).scalar_one()
    engine.dispose()
    ends = [span.after for span in spans[1:]] + [last]
    sizes = [end - span.after for span, end in zip(spans, ends, strict=True)]
    assert len(sizes) == 3
    # a seam moves to the next row entry with a stored_seq past the last seam's: a few
    assert abs(sizes[1] - sizes[2]) <= 10
    assert 30 <= sizes[0] - max(sizes[1:]) <= 50


def test_tampering_at_the_seams_is_found_the_same(
    db_url: str, stored: list[PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, first_seq), (second, second_seq) = seams(db_url)
    at_seam = seq_row(db_url, first_seq)  # the first row of the second span
    before = _entry(db_url, second - 1)  # the last entry of the second span
    assert before["kind"] == chain.ROW
    last_row = seq_row(db_url, before["stored_seq"])
    forged = {**at_seam, "id": FORGED, "raw": {**at_seam["raw"], "id": FORGED}}
    loose = {**forged, "id": FORGED + 1, "stored_seq": None, "raw": {"id": FORGED + 1}}
    execute(
        db_url,
        sa.update(audit_logs)
        .where(audit_logs.c.id == at_seam["id"])
        .values(raw={**at_seam["raw"], "actor_name": "Nobody"}),
        sa.delete(audit_logs).where(audit_logs.c.id == last_row["id"]),
        # a row sharing the last number before the third span's: left over by the second
        sa.insert(audit_logs).values({**forged, "stored_seq": second_seq - 1}),
        sa.insert(audit_logs).values(loose),
        sa.update(audit_rejects).values(reason="fine"),
    )
    found = _both(db_url, stored, monkeypatch)
    assert ("modified", str(at_seam["id"]), first) in found
    assert ("deleted", str(last_row["id"]), second - 1) in found
    assert ("inserted", str(FORGED), None) in found
    assert ("inserted", str(FORGED + 1), None) in found


def test_a_chain_broken_at_and_before_the_seams_is_found_the_same(
    db_url: str, stored: list[PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry before a seam with a wrong stored hash (the next entry's, computed from
    it, breaks too; the true chain goes on, the checkpoints after it still reached), a
    record hash changed just before the other (the true chain differs from there: the
    checkpoints after it are not reached), and an entry gone mid-span."""
    (first, _), (second, _) = seams(db_url)
    middle = (first + second) // 2
    execute(
        db_url,
        sa.update(ledger).where(ledger.c.entry == second - 1).values(entry_hash=bytes(32)),
    )
    found = _both(db_url, stored, monkeypatch)
    assert [kind for kind, _, _ in found] == ["chain broken"] * 2
    assert {entry for _, _, entry in found} == {second - 1, second}
    execute(
        db_url,
        sa.update(ledger).where(ledger.c.entry == first - 1).values(record_hash=bytes(32)),
        sa.delete(ledger).where(ledger.c.entry == middle),
    )
    found = _both(db_url, stored, monkeypatch)
    assert ("chain broken", None, middle + 1) in found  # entries missing
    assert sum(kind == "chain broken" and entry is not None for kind, _, entry in found) >= 5


@pytest.mark.databases("sqlite")
def test_sqlite_ledger_columns_of_another_storage_class_are_found_the_same(
    db_url: str, stored: list[PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BLOB ``record_id`` before the first seam breaks the true chain there: the
    checkpoints after it are chained on (``merge``) past a real ``entry`` mid-span, at its
    place, and a BLOB ``record_id`` at the second seam, shown as text: as one walk does."""
    (first, _), (second, _) = seams(db_url)
    middle = (first + second) // 2
    edit = "UPDATE zendesk_audit_ledger SET {} WHERE entry = {}"
    execute(
        db_url,
        sa.text(edit.format("record_id = CAST(record_id AS BLOB)", first - 1)),
        sa.text(edit.format("entry = entry + 0.5", middle)),
        sa.text(edit.format("record_id = CAST(record_id AS BLOB)", second)),  # a row entry
    )
    found = _both(db_url, stored, monkeypatch)
    broken = {entry for kind, _, entry in found if kind == "chain broken"}
    assert broken >= {first - 1, middle, second}


def test_superseded_records_deleted_across_spans_keep_their_order(
    db_url: str, stored: list[PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record whose first version is in the first span and whose row is in the last,
    deleted: found deleted where one walk finds it, in its order among the others."""
    engine = open_engine(db_url)
    with engine.connect() as conn:
        versions = conn.execute(
            sa.select(ledger.c.record_id)
            .where(ledger.c.kind == chain.ROW)
            .group_by(ledger.c.record_id)
            .having(sa.func.count() > 1)
        ).scalars()
        changed = sorted(int(record_id) for record_id in versions)
        plain = conn.execute(
            sa.select(audit_logs.c.id).where(audit_logs.c.id.not_in(changed)).limit(3)
        ).scalars()
        gone = [*changed[:3], *plain]
    engine.dispose()
    execute(db_url, sa.delete(audit_logs).where(audit_logs.c.id.in_(gone)))
    found = _both(db_url, stored, monkeypatch)
    assert {record_id for _, record_id, _ in found} == {str(record_id) for record_id in gone}
    assert {kind for kind, _, _ in found} == {"deleted"}


def test_since_and_stale_snapshots(
    db_url: str, stored: list[PublicKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """From an entry on, in spans; and a worker whose snapshot is not the verify's (its
    head differs) walks nothing: the verify walks its span itself, finding the same."""
    (first, first_seq), _ = seams(db_url)
    row = seq_row(db_url, first_seq)
    execute(db_url, sa.update(audit_logs).where(audit_logs.c.id == row["id"]).values(raw={}))
    since = VerifyOptions(public_keys=stored, since_entry=first // 2)
    assert _both(db_url, stored, monkeypatch, since) == [("modified", str(row["id"]), first)]
    monkeypatch.undo()
    monkeypatch.setattr(split, "MIN_SPAN", 100)
    one = _verify(db_url, stored, 1)
    stale = functools.partial(Task, head=(0, "a head no worker sees"), exported=None)
    monkeypatch.setattr(
        "etl.integrity.parallel.split.Task", lambda account, _, __, span: stale(account, span=span)
    )
    walked = _spy_walks(monkeypatch)
    three = _verify(db_url, stored, 3)
    assert len(walked) == 3 and three.findings == one.findings
    assert three.fields() == one.fields()
