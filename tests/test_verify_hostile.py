"""``verify`` against what an attacker can put in its way, not only what a careless hand
leaves: a row whose ``raw`` is no JSON record, files in the checkpoint directory that are
no checkpoint (a FIFO, ``/dev/zero``, a huge file, digits ``int`` refuses): each is a
finding named as such, never a traceback, a hang or memory filled; the job's own
checkpoint writes are not held up by them either."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import CLI_ENV, ROOT
from parts.databases import kind_of
from parts.verify.signed import found, keygen, synced, verify
from support import audit_record, recent

from etl.common.errors import ExitCode
from etl.integrity import note
from etl.records.canonical import canonical_json
from etl.storage.engine import open_engine
from etl.storage.schema.logs import audit_logs
from zendesk_sim import SimulatedZendesk

SCRIPT = Path(sys.executable).with_name("zendesk-audit-etl")
# The memory a command run here may map: ample for one, far less than /dev/zero offers.
MEMORY = 1536 * 1024 * 1024


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


def test_a_raw_nested_past_what_orjson_writes_is_modified_not_an_internal_error(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """orjson reads 300 levels of nesting but writes at most 254: the parse shared with
    the derived columns' check raised its encode error out of verify. MariaDB refuses such
    a text (its JSON keeps 32 levels), so there the row cannot be edited so."""
    key, _ = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    deep, _ = _two_ids(db_url)
    text = f'{{"id":{deep},"action":"update","x":' + "[" * 300 + "]" * 300 + "}"
    if kind_of(db_url) == "mysql":  # the attack cannot be made: the row stays as it was
        with pytest.raises(sa.exc.DBAPIError):
            _set_raw(db_url, deep, text)
        code, _ = verify(path)
        assert code == ExitCode.OK
        return
    _set_raw(db_url, deep, text)
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    assert found(report) == {("modified", str(deep))}


# How each database's SQL reads a member of ``raw``.
_ACTION = {
    "sqlite": "json_extract(raw, '$.action')",
    "mysql": "JSON_VALUE(raw, '$.action')",
    "postgresql": "raw->>'action'",
}


def test_a_raw_that_repeats_a_key_is_modified_where_sql_reads_its_first_value(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """SQLite and MariaDB keep ``raw`` as written, and their JSON functions read a
    repeated key's first value, while a parser (so the record hash) keeps the last: a row
    that reads as another action in SQL verified clean. PostgreSQL's jsonb keeps one
    value, the last: the record is unchanged there, in SQL too."""
    key, _ = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    changed, _ = _two_ids(db_url)
    engine = open_engine(db_url)
    with engine.connect() as conn:
        raw = conn.execute(sa.select(audit_logs.c.raw).where(audit_logs.c.id == changed))
        record = raw.scalar_one()
    engine.dispose()
    _set_raw(db_url, changed, '{"action":"forged",' + canonical_json(record)[1:])
    kind = kind_of(db_url)
    engine = open_engine(db_url)
    with engine.connect() as conn:
        read = conn.execute(
            sa.text(f"SELECT {_ACTION[kind]} FROM zendesk_audit_logs WHERE id = :id"),
            {"id": changed},
        ).scalar_one()
    engine.dispose()
    code, report = verify(path)
    if kind == "postgresql":
        assert read == record["action"] and code == 0
    else:
        assert read == "forged"
        assert code == ExitCode.FINDINGS and found(report) == {("modified", str(changed))}
        (finding,) = report["accounts"][0]["findings"]
        assert "repeats a key" in finding["detail"]


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _command(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command in a new process, its memory capped, given two minutes."""
    return subprocess.run(
        [str(SCRIPT), "--config", str(config), *args],
        env=CLI_ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited,
    )


def test_files_that_are_no_checkpoint_are_named_without_a_hang_or_memory_filled(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    key, public = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    folder = tmp_path / "checkpoints" / "acme"
    (last,) = sorted(folder.glob("*.checkpoint"))
    lines = last.read_text().split("\n")
    lines[1] = "\N{SUPERSCRIPT TWO}"  # a digit to str.isdigit, not to int
    (folder / "000000000002-a.checkpoint").write_text("\n".join(lines))
    os.mkfifo(folder / "000000000003-b.checkpoint")  # opened, it waits for a writer
    (folder / "000000000004-c.checkpoint").symlink_to("/dev/zero")  # endless
    with open(folder / "000000000005-d.checkpoint", "wb") as huge:
        huge.truncate(4 * MEMORY)  # sparse: no disk taken, more than the memory allowed
    os.mkfifo(folder / ".checkpoint.partial")  # where the next checkpoint is written first
    zendesk.add_records([audit_record(9_300_000_000_000 + i, recent(8)) for i in range(5)])
    synced_again = _command(path, "sync")
    assert synced_again.returncode == 0, synced_again.stderr
    result = _command(path, "verify", "--public-key", str(public))
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.returncode == ExitCode.FINDINGS, result.stderr
    findings = [line for line in result.stdout.splitlines() if line.startswith("INVALID")]
    # Each of the four: not a checkpoint, and not one of the database's; the sync's new
    # checkpoint was written whole beside them (none missing from the external copy).
    assert sorted(line.split(":")[1].strip() for line in findings) == [
        *["bad signature"] * 4,
        *["missing from the database"] * 4,
    ]
    for name in ("2-a", "3-b", "4-c", "5-d"):  # each named by its file, in both findings
        assert sum(f"00000000000{name}.checkpoint" in line for line in findings) == 2
    assert result.stdout.splitlines()[-1].startswith("2/6 checkpoints valid")


# A checkpoint's text, then what an edit of one line makes of it: none parses.
_MADE = note.make(
    "acme.zendesk.com", 15, bytes(range(32)), "acme", datetime(2026, 12, 5, tzinfo=UTC)
)
_BODY = _MADE.text.split("\n")


def _edited(line: int, value: str) -> str:
    return "\n".join([*_BODY[:line], value, *_BODY[line + 1 :]])


@pytest.mark.parametrize(
    "text",
    [
        _edited(1, "\N{SUPERSCRIPT TWO}"),  # int() refuses it: was a ValueError
        _edited(1, "\N{ARABIC-INDIC DIGIT ONE}\N{ARABIC-INDIC DIGIT FIVE}"),  # int() takes it
        _edited(1, "9" * 5000),  # more digits than int() converts: was a ValueError
        _edited(1, "015"),  # not as written: a second text for the same signed body
        _edited(2, "\N{LATIN SMALL LETTER E WITH ACUTE}" * 44),  # not ASCII: was a ValueError
        _edited(4, "time 2026-12-05T00:00:00Z/../../x"),  # a time is what format_time writes
        _edited(4, "time yesterday"),
        _MADE.text + "\n\N{EM DASH} zendesk-audit-etl \N{LATIN SMALL LETTER E WITH ACUTE}\n",
    ],
    ids=["superscript", "arabic", "long", "leading-zero", "head", "time-path", "time", "sig"],
)
def test_a_checkpoint_text_not_as_written_does_not_parse(text: str) -> None:
    assert note.parse(_MADE.text) == _MADE
    assert note.parse(text) is None
