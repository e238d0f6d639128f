"""``verify`` on SQLite, whose columns hold whatever a DBA writes in them, of any storage
class: a BLOB, a text that is not UTF-8, a number in a text column, a text in an integer
column or in a JSON one. Each is a finding naming the record (and the column, for one
derived from ``raw``), verify going on to the other rows; never an internal error.
``raw`` stored as a BLOB of its own bytes is ``modified`` too: SQL's JSON functions do
not read it as the record."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from access_support import access_record
from parts.cli import run_cli
from support import audit_record, recent

from etl.common.errors import ExitCode
from zendesk_sim import SimulatedZendesk

pytestmark = pytest.mark.databases("sqlite")

AUDIT_ID, ACCESS_ID, REPLACED_ID = 6_100_000_000_003, "01JGRAPHQL", 6_100_000_000_009
REJECT_ID = 9_000_000_000_001


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A synced store of both logs (its folder), copied by each test (``_edited``)."""
    folder = tmp_path_factory.mktemp("storage")
    at = recent(60 * 5)
    audit = [audit_record(6_100_000_000_000 + i, at + timedelta(seconds=i)) for i in range(6)]
    access = [access_record(f"01JA{i:03d}", at + timedelta(seconds=i)) for i in range(4)]
    audit.append(audit_record(REPLACED_ID, at, action="\ufffd"))  # as the writer replaces
    audit.append(audit_record(REJECT_ID, at, action="x" * 300))  # too long: a reject
    access.append(access_record(ACCESS_ID, at, graphql={"a": [1, 2]}))
    with SimulatedZendesk(audit, access_records=access) as sim:
        path = folder / "config.toml"
        path.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
            f'[database]\nurl = "sqlite:///{folder / "audit.db"}"\nauto_migrate = true\n'
            '[sync]\nstreams = ["audit_logs", "access_logs"]\nworkers = 1\n'
        )
        path.chmod(0o600)
        result = run_cli("--config", str(path), "--quiet", "sync")
        assert result.returncode == 0, result.stderr
    yield folder


def _edited(store: Path, tmp_path: Path, *statements: str) -> Path:
    """A copy of ``store`` with ``statements`` run on its database: its config's path."""
    config = (store / "config.toml").read_text().replace(str(store), str(tmp_path))
    (tmp_path / "config.toml").write_text(config)
    (tmp_path / "config.toml").chmod(0o600)
    with (
        sqlite3.connect(store / "audit.db") as source,
        sqlite3.connect(tmp_path / "audit.db") as copy,
    ):
        source.backup(copy)
        for statement in statements:
            assert copy.execute(statement).rowcount == 1, statement
    return tmp_path / "config.toml"


def _verify(config: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = run_cli("--config", str(config), "verify", "--json", *args)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.returncode in (ExitCode.OK, ExitCode.FINDINGS), result.stderr
    (account,) = json.loads(result.stdout)["accounts"]
    return result.returncode, account["findings"]


def test_the_untouched_store_has_no_finding(store: Path, tmp_path: Path) -> None:
    assert _verify(_edited(store, tmp_path)) == (ExitCode.OK, [])


AUDIT = f"UPDATE zendesk_audit_logs SET {{}} WHERE id = {AUDIT_ID}"
ACCESS = f"UPDATE zendesk_access_logs SET {{}} WHERE id = '{ACCESS_ID}'"
NOT_UTF8 = "CAST(X'FF' AS TEXT)"
SEQ_OF = "SELECT stored_seq FROM zendesk_audit_logs WHERE id = {}"


@pytest.mark.parametrize(
    ("edit", "column"),
    [
        (AUDIT.format("action = X'6162'"), "action"),  # a BLOB
        (AUDIT.format("action = CAST(action AS BLOB)"), "action"),  # its own bytes
        (AUDIT.format(f"action = {NOT_UTF8}"), "action"),
        # not UTF-8 where raw has U+FFFD (what a decoder's replacement would make of it)
        (AUDIT.format(f"action = {NOT_UTF8}").replace(str(AUDIT_ID), str(REPLACED_ID)), "action"),
        (AUDIT.format("action = 5"), "action"),  # a number in a text column
        (AUDIT.format("actor_id = 'x'"), "actor_id"),  # a text in an integer column
        (AUDIT.format("actor_id = X'01'"), "actor_id"),
        (AUDIT.format("created_at = CAST(created_at AS BLOB)"), "created_at"),
        (AUDIT.format(f"created_at = {NOT_UTF8}"), "created_at"),
        (ACCESS.format("status = CAST(status AS BLOB)"), "status"),
        (ACCESS.format("timestamp = X'00'"), "timestamp"),
        (ACCESS.format("graphql = 'not json'"), "graphql"),  # a JSON column's text
        (ACCESS.format("graphql = CAST(graphql AS BLOB)"), "graphql"),
        (ACCESS.format(f"graphql = {NOT_UTF8}"), "graphql"),
    ],
)
def test_a_derived_column_of_any_storage_class_is_found_by_id_and_column(
    store: Path, tmp_path: Path, edit: str, column: str
) -> None:
    code, findings = _verify(_edited(store, tmp_path, edit))
    record = edit.rsplit("= ", 1)[1].strip("'")
    assert code == ExitCode.FINDINGS
    assert [(f["kind"], f["record_id"]) for f in findings] == [("modified", record)], findings
    assert findings[0]["detail"].endswith(f": {column} differs from what its raw gives")


@pytest.mark.parametrize(
    "edit",
    [
        AUDIT.format("raw = CAST(raw AS BLOB)"),  # the same bytes, as a BLOB
        AUDIT.format("raw = 5"),
        ACCESS.format("raw = CAST(raw AS BLOB)"),
    ],
)
def test_raw_stored_as_other_than_text_is_modified(store: Path, tmp_path: Path, edit: str) -> None:
    code, findings = _verify(_edited(store, tmp_path, edit))
    record = str(AUDIT_ID) if "audit_logs" in edit else ACCESS_ID
    assert code == ExitCode.FINDINGS
    assert [(f["kind"], f["record_id"]) for f in findings] == [("modified", record)], findings
    assert "raw is not stored as text" in findings[0]["detail"]


@pytest.mark.parametrize("value", ["'x'", "X'01'", NOT_UTF8, "NULL"])
def test_a_stored_seq_that_is_no_number_is_an_inserted_row(
    store: Path, tmp_path: Path, value: str
) -> None:
    """Its row no entry numbers (``inserted``) and its entry without its row
    (``deleted``), the other rows verified."""
    code, findings = _verify(_edited(store, tmp_path, AUDIT.format(f"stored_seq = {value}")))
    assert code == ExitCode.FINDINGS
    assert [(f["kind"], f["record_id"]) for f in findings] == [
        ("inserted", str(AUDIT_ID)),
        ("deleted", str(AUDIT_ID)),
    ], findings
    assert "stored_seq" in findings[0]["detail"]


@pytest.mark.parametrize(
    ("edit", "record"),
    [
        (AUDIT.format("id = 5"), "5"),
        (AUDIT.format("id = 'x'"), "text 'x'"),  # an audit id that is no integer, named so
        (ACCESS.format("id = 'x'"), "x"),
        # another row's number: that row is still matched with its own entry
        (AUDIT.format(f"stored_seq = ({SEQ_OF.format(AUDIT_ID + 1)})"), str(AUDIT_ID)),
    ],
)
def test_a_row_under_another_id_or_number_is_one_finding_each(
    store: Path, tmp_path: Path, edit: str, record: str
) -> None:
    """The row is ``inserted`` once (it was reported twice: once at its own entry, once
    at the next), its entry's record ``deleted``."""
    code, findings = _verify(_edited(store, tmp_path, edit))
    gone = ACCESS_ID if "access_logs" in edit else str(AUDIT_ID)
    assert code == ExitCode.FINDINGS
    assert sorted((f["kind"], f["record_id"]) for f in findings) == [
        ("deleted", gone),
        ("inserted", record),
    ], findings


REJECT = "UPDATE zendesk_audit_rejects SET {}"


@pytest.mark.parametrize(
    "edit",
    [
        REJECT.format("raw = CAST(raw AS BLOB)"),  # its own bytes
        REJECT.format("raw = 5"),
        REJECT.format(f"reason = {NOT_UTF8}"),
        REJECT.format("reason = X'00'"),
        REJECT.format("record_id = CAST(record_id AS BLOB)"),
    ],
)
def test_a_reject_of_another_storage_class_matches_no_entry(
    store: Path, tmp_path: Path, edit: str
) -> None:
    """Read as text it would hash as its entry (or crash verify, as a BLOB did): it is
    an ``inserted`` reject and its entry's reject ``deleted``."""
    code, findings = _verify(_edited(store, tmp_path, edit))
    assert code == ExitCode.FINDINGS
    assert sorted(f["kind"] for f in findings) == ["deleted", "inserted"], findings
    assert ("deleted", str(REJECT_ID)) in {(f["kind"], f["record_id"]) for f in findings}


@pytest.mark.parametrize("value", ["'x'", "X'01'", "CAST(entries AS BLOB)"])
def test_a_head_row_count_that_is_no_number_does_not_match(
    store: Path, tmp_path: Path, value: str
) -> None:
    edit = f"UPDATE zendesk_audit_ledger_head SET entries = {value}"
    code, findings = _verify(_edited(store, tmp_path, edit))
    assert code == ExitCode.FINDINGS
    assert [(f["kind"], f["detail"]) for f in findings] == [
        ("chain broken", "the head row does not match the ledger")
    ], findings


LEDGER = f"UPDATE zendesk_audit_ledger SET {{}} WHERE record_id = '{AUDIT_ID}'"
ENTRY_OF = f"SELECT entry FROM zendesk_audit_ledger WHERE record_id = '{AUDIT_ID}'"


def _entry_of(store: Path) -> int:
    with sqlite3.connect(store / "audit.db") as db:
        (entry,) = db.execute(ENTRY_OF).fetchone()
    return int(entry)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ("entry = entry + 0.5", "its entry number is not stored as an integer"),  # a real
        ("kind = CAST(kind AS BLOB)", "its kind is not R, X or A"),
        ("kind = X'FF'", "its kind is not R, X or A"),
        (f"kind = {NOT_UTF8}", "its kind is not R, X or A"),
        ("record_id = CAST(record_id AS BLOB)", "its record_id is not stored as text"),
        ("stored_seq = stored_seq + 0.5", "its stored_seq is not an integer"),
        ("stored_seq = 'x'", "its stored_seq is not an integer"),
        ("stored_seq = CAST(stored_seq AS BLOB)", "its stored_seq is not an integer"),
        (f"stored_seq = {NOT_UTF8}", "its stored_seq is not an integer"),
        ("record_hash = hex(record_hash)", "its record_hash is not stored as bytes"),
        ("record_hash = CAST(record_hash AS TEXT)", "its record_hash is not stored as bytes"),
        ("record_hash = 1.5", "its record_hash is not stored as bytes"),
        ("entry_hash = hex(entry_hash)", "its entry_hash is not stored as bytes"),
        ("entry_hash = CAST(entry_hash AS TEXT)", "its entry_hash is not stored as bytes"),
        ("entry_hash = 1.5", "its entry_hash is not stored as bytes"),
        ("note = X'00'", "its note is not stored as text"),
        # a text that is not UTF-8 where SQL cannot tell it: the page read again as bytes
        (f"record_id = {NOT_UTF8}", "its record_id is not UTF-8 text"),
        (f"note = {NOT_UTF8}", "its note is not UTF-8 text"),
    ],
)
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_ledger_column_of_another_storage_class_is_its_entry_broken(
    store: Path, tmp_path: Path, edit: str, words: str, jobs: str
) -> None:
    """The entry is ``chain broken`` at its number, saying which column; what follows from
    it (its row no entry records, the next entry's link, a checkpoint after it) is found,
    and no more."""
    entry = _entry_of(store)
    config = _edited(store, tmp_path, LEDGER.format(edit))
    result = run_cli("--config", str(config), "verify", "--json", "--jobs", jobs)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.returncode == ExitCode.FINDINGS, result.stderr
    (account,) = json.loads(result.stdout)["accounts"]
    findings = account["findings"]
    named = [f for f in findings if f["detail"].startswith(f"entry {entry}: {words}")]
    assert [(f["kind"], f["entry"]) for f in named] == [("chain broken", entry)], [
        (f["kind"], f["entry"], f["record_id"], f["detail"]) for f in findings
    ]
    # nothing beyond this entry's and its row's: the rest is verified
    shown = [(f["kind"], f["entry"], f["record_id"], f["detail"]) for f in findings]
    near = {f["entry"] for f in findings if "checkpoint" not in f["detail"]}
    assert near <= {entry, entry + 1, None}, shown
    at = {f["record_id"] for f in findings if f["entry"] == entry}
    assert at <= {str(AUDIT_ID), "\ufffd"}, shown  # a text not UTF-8: shown with U+FFFD


@pytest.mark.parametrize("value", ["'x'", "X'01'", NOT_UTF8])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_entry_number_that_is_no_number_is_a_missing_entry(
    store: Path, tmp_path: Path, value: str, jobs: str
) -> None:
    """Above every number in SQLite's order, no page reads it: its entry is missing."""
    entry = _entry_of(store)
    config = _edited(store, tmp_path, LEDGER.format(f"entry = {value}"))
    code, findings = _verify(config, "--jobs", jobs)
    assert code == ExitCode.FINDINGS
    assert ("chain broken", entry + 1, f"entries {entry} to {entry} are missing") in {
        (f["kind"], f["entry"], f["detail"]) for f in findings
    }, findings
    near = {f["entry"] for f in findings if "checkpoint" not in f["detail"]}
    assert near <= {entry + 1, None}, findings


def test_a_head_row_of_text_that_is_not_utf8_does_not_match(store: Path, tmp_path: Path) -> None:
    for column in ("entries", "head"):
        edit = f"UPDATE zendesk_audit_ledger_head SET {column} = {NOT_UTF8}"
        (tmp_path / column).mkdir()
        code, findings = _verify(_edited(store, tmp_path / column, edit))
        assert code == ExitCode.FINDINGS
        assert [(f["kind"], f["detail"]) for f in findings] == [
            ("chain broken", "the head row does not match the ledger")
        ], findings
