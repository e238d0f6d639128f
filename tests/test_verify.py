"""``verify`` from the real command line after a real ``sync``: every kind of tampering
named by kind and id on each database; no false alarm on an untouched one."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import cli, one_error_line
from parts.packaging import units_with_real_binary
from parts.verify.signed import RECORDS, config, found, keygen, synced, verify
from support import audit_record, execute, recent

from etl.common.clock import utc_now
from etl.common.errors import ExitCode
from etl.records import chain
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import checkpoints, ledger, ledger_head
from etl.storage.schema.logs import audit_logs
from zendesk_sim import SimulatedZendesk


def some_ids(db_url: str, count: int) -> list[int]:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(audit_logs.c.id).order_by(audit_logs.c.id)).scalars())
    engine.dispose()
    return ids[10 : 10 + count]


def test_an_untouched_database_verifies(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    key, public = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    zendesk.add_records([audit_record(9_100_000_000_000 + i, recent(8)) for i in range(20)])
    assert cli(path, "sync").returncode == 0
    assert cli(path, "resync", "--since", "2000-01-01").returncode == 0  # nothing changes
    code, report = verify(path)
    assert code == 0, report
    # three checkpoints: each run that stored something (the resync its reject again)
    assert (
        report["summary"] == f"3/3 checkpoints valid, {RECORDS + 20} records verified, 0 findings"
    )
    # An auditor: the public key alone, not the signing key; the same verdict.
    text = cli(path, "verify", "--public-key", str(public)).stdout
    assert text.splitlines()[-1] == report["summary"]


def test_rows_changed_deleted_or_forged_are_named_by_id(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    key, _ = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    changed, deleted = some_ids(db_url, 2)
    engine = open_engine(db_url)
    with engine.connect() as conn:
        raw = conn.execute(
            sa.select(audit_logs.c.raw).where(audit_logs.c.id == changed)
        ).scalar_one()
    engine.dispose()
    forged = {**raw, "id": 5, "action": "destroy"}
    row: dict[str, Any] = {c.name: None for c in audit_logs.columns}
    row.update(account="acme", id=5, raw=forged, synced_at=recent(0), created_at=recent(60))
    execute(
        db_url,
        sa.update(audit_logs)
        .where(audit_logs.c.id == changed)
        .values(raw={**raw, "actor_name": "Nobody"}),
        sa.delete(audit_logs).where(audit_logs.c.id == deleted),
        sa.insert(audit_logs).values(row),
    )
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    assert found(report) == {
        ("modified", str(changed)),
        ("deleted", str(deleted)),
        ("inserted", "5"),
    }


def test_an_edited_or_truncated_ledger_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    key, _ = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    entry = ledger.c.entry
    execute(db_url, sa.update(ledger).where(entry == 20).values(record_hash=bytes(32)))
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    kinds = {(f["kind"], f["entry"]) for f in report["accounts"][0]["findings"]}
    assert ("chain broken", 20) in kinds
    # Cut the ledger's tail (and its head row with it): the checkpoint is ahead of it.
    execute(
        db_url,
        sa.update(ledger).where(entry == 20).values(record_hash=_original(db_url, 20)),
        sa.delete(ledger).where(entry > RECORDS - 10),
        sa.update(ledger_head).values(
            entries=RECORDS - 10, head=_entry_hash(db_url, RECORDS - 10).hex()
        ),
    )
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    named = {f["kind"] for f in report["accounts"][0]["findings"]}
    assert named == {"truncated", "inserted"}  # the rows whose entries went: no entry now


def _entry_hash(db_url: str, entry: int) -> bytes:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(ledger.c.entry_hash).where(ledger.c.entry == entry)
        ).scalar_one()
    engine.dispose()
    return bytes(value)


def _original(db_url: str, entry: int) -> bytes:
    """The record hash entry ``entry`` had: recomputed from its row."""
    engine = open_engine(db_url)
    with engine.connect() as conn:
        seq = conn.execute(
            sa.select(ledger.c.stored_seq).where(ledger.c.entry == entry)
        ).scalar_one()
        raw = conn.execute(
            sa.select(audit_logs.c.raw).where(audit_logs.c.stored_seq == seq)
        ).scalar_one()
    engine.dispose()
    return chain.record_hash(raw)


def test_rewriting_rows_ledger_and_checkpoints_together_is_caught_outside(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """A DBA who rewrites a row, recomputes the whole chain and replaces the database's
    checkpoints leaves a consistent database: the directory's signed copies catch it."""
    key, public = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    (changed,) = some_ids(db_url, 1)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        raw = conn.execute(
            sa.select(audit_logs.c.raw).where(audit_logs.c.id == changed)
        ).scalar_one()
        conn.execute(
            sa.update(audit_logs)
            .where(audit_logs.c.id == changed)
            .values(raw={**raw, "ip_address": "10.0.0.1"}, ip_address="10.0.0.1")
        )
        _rechain(conn)
        conn.execute(sa.delete(checkpoints))
    engine.dispose()
    # The database alone now looks consistent (no checkpoint left to contradict it)...
    alone = cli(path, "verify", "--checkpoints", str(tmp_path / "empty"))
    assert alone.returncode == ExitCode.CONFIG  # (a directory that does not exist: exit 2)
    (tmp_path / "empty").mkdir()
    code, report = verify(path, "--checkpoints", str(tmp_path / "empty"))
    assert code == 0 and found(report) == set()
    assert "not covered by a valid signed checkpoint" in report["accounts"][0]["notes"][0]
    # ...but not against the copies kept elsewhere.
    code, report = verify(path, "--public-key", str(public))
    assert code == ExitCode.FINDINGS
    assert {("chain broken", None), ("missing from the database", None)} <= found(report)


def _rechain(conn: sa.Connection) -> None:
    """What a careful attacker does: every record hash and entry hash recomputed."""
    rows = {
        seq: raw for seq, raw in conn.execute(sa.select(audit_logs.c.stored_seq, audit_logs.c.raw))
    }
    previous = chain.genesis("acme")
    entries = conn.execute(sa.select(ledger).order_by(ledger.c.entry)).mappings().all()
    for e in entries:
        record = bytes(e["record_hash"])
        if e["kind"] == chain.ROW and e["stored_seq"] in rows:
            record = chain.record_hash(rows[e["stored_seq"]])
        previous = chain.entry_hash(
            previous, e["entry"], e["kind"], e["stored_seq"], e["record_id"], record
        )
        conn.execute(
            sa.update(ledger)
            .where(ledger.c.entry == e["entry"])
            .values(record_hash=record, entry_hash=previous)
        )
    conn.execute(sa.update(ledger_head).values(head=previous.hex()))


def test_a_forged_signature_and_a_rotated_key(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    old, old_public = keygen(tmp_path, "old.key")
    path = synced(tmp_path, zendesk, db_url, old)
    new, new_public = keygen(tmp_path, "new.key")
    config(tmp_path, zendesk, db_url, new)  # rotated: the new key signs from now on
    zendesk.add_records([audit_record(9_200_000_000_000 + i, recent(8)) for i in range(5)])
    assert cli(path, "sync").returncode == 0
    both = ("--public-key", str(old_public), "--public-key", str(new_public))
    code, report = verify(path, *both)
    assert code == 0, report
    assert report["summary"].startswith("2/2 checkpoints valid")
    # Without the old public key, the old checkpoint cannot be trusted: said, exit 1.
    code, report = verify(path, "--public-key", str(new_public))
    assert code == ExitCode.FINDINGS
    assert found(report) == {("bad signature", None)}
    # A signature changed in the database (and its copy): named.
    engine = open_engine(db_url)
    with engine.begin() as conn:
        text = (
            conn.execute(sa.select(checkpoints.c.note).order_by(checkpoints.c.id)).scalars().first()
        )
        assert text is not None
        forged = (
            text.replace("\n\n— zendesk-audit-etl ", "\n\n— zendesk-audit-etl A")[:-6] + "AAAA\n"
        )
        conn.execute(sa.update(checkpoints).where(checkpoints.c.note == text).values(note=forged))
    engine.dispose()
    for copy in (tmp_path / "checkpoints").rglob("*.checkpoint"):
        if copy.read_text() == text:
            copy.write_text(forged)
    code, report = verify(path, *both)
    assert code == ExitCode.FINDINGS
    assert found(report) == {("bad signature", None)}


def test_without_a_key_the_chain_is_kept_and_the_range_said_unsigned(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    path = synced(tmp_path, zendesk, db_url, None)
    result = cli(path, "verify")
    assert result.returncode == 0, result.stderr
    assert "unsigned" in result.stdout
    (changed,) = some_ids(db_url, 1)
    execute(
        db_url, sa.update(audit_logs).where(audit_logs.c.id == changed).values(raw={"id": changed})
    )
    code, report = verify(path)
    assert code == ExitCode.FINDINGS and found(report) == {("modified", str(changed))}


def test_a_reject_changed_or_deleted_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    from etl.storage.schema.state import audit_rejects

    path = synced(tmp_path, zendesk, db_url, None)
    execute(db_url, sa.update(audit_rejects).values(reason="fine"))
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    assert found(report) == {("inserted", "9000000000001"), ("deleted", "9000000000001")}


def test_a_note_written_on_a_record_or_reject_entry_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """No hash covers an entry's ``note`` (the adoption's note is its record hash): the job
    writes one only on the adoption entry, so a note anywhere else is an edit."""
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.connect() as conn:
        reject = conn.execute(
            sa.select(sa.func.min(ledger.c.entry)).where(ledger.c.kind == chain.REJECT)
        ).scalar_one()
    engine.dispose()
    assert reject is not None
    note = "adopted: the history before this entry was not chained"
    execute(db_url, sa.update(ledger).where(ledger.c.entry.in_([20, reject])).values(note=note))
    code, report = verify(path)
    assert code == ExitCode.FINDINGS
    findings = {(f["kind"], f["entry"], f["detail"]) for f in report["accounts"][0]["findings"]}
    assert findings == {
        ("chain broken", number, f"entry {number}: a note the job never writes")
        for number in (20, reject)
    }


def test_usage_errors_exit_2(tmp_path: Path, db_url: str, zendesk: SimulatedZendesk) -> None:
    path = synced(tmp_path, zendesk, db_url, None)
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    result = cli(path, "verify", "--public-key", str(bad))
    assert result.returncode == ExitCode.CONFIG
    assert "not an Ed25519 public key" in one_error_line(result)
    key = tmp_path / "k"
    assert cli(None, "keygen", str(key)).returncode == 0
    assert key.stat().st_mode & 0o777 == 0o600
    again = cli(None, "keygen", str(key))
    assert again.returncode == ExitCode.CONFIG and "never overwritten" in one_error_line(again)


def test_status_and_metrics_show_the_last_checkpoint_and_verify(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    key, _ = keygen(tmp_path, "ledger.key")
    path = config(tmp_path, zendesk, db_url, key)
    prom = tmp_path / "etl.prom"
    with path.open("a") as out:
        out.write(f'[monitoring]\nmetrics_file = "{prom}"\n')
    assert cli(path, "sync").returncode == 0
    before = json.loads(cli(path, "status", "--json").stdout)[0]["ledger"]
    entries = before["entries"]  # the rows, and the reject (once or more: it is reread)
    assert before["last_verify"] is None and entries > RECORDS
    assert before["last_checkpoint"]["entries"] == entries
    assert before["last_checkpoint"]["key_id"] is not None
    assert verify(path)[0] == 0
    (changed,) = some_ids(db_url, 1)
    execute(db_url, sa.update(audit_logs).where(audit_logs.c.id == changed).values(raw={}))
    assert verify(path)[0] == ExitCode.FINDINGS
    after = json.loads(cli(path, "status", "--json").stdout)[0]["ledger"]
    assert after["last_verify"]["findings"] == 1 and after["last_clean_verify"] is not None
    assert "last verify" in cli(path, "status").stdout
    assert cli(path, "sync").returncode == 0  # the metrics file is written by sync
    text = prom.read_text()
    assert 'zendesk_audit_etl_last_verify_findings{account="acme"} 1' in text
    assert f'zendesk_audit_etl_ledger_entries{{account="acme"}} {entries}' in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_verify_units_pass_systemd_analyze(tmp_path: Path) -> None:
    folder = units_with_real_binary(tmp_path)
    units = ("zendesk-audit-etl-verify.service", "zendesk-audit-etl-verify.timer")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(folder / u) for u in units)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""
    assert " verify --public-key " in (folder / units[0]).read_text()


def test_since_checks_only_the_entries_from_there(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    key, _ = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, db_url, key)
    early, late = some_ids(db_url, 1)[0], some_ids(db_url, 500)[-1]
    engine = open_engine(db_url)
    with engine.connect() as conn:
        query = sa.select(ledger.c.record_id, ledger.c.entry)
        entry_of = {record_id: entry for record_id, entry in conn.execute(query)}
    engine.dispose()
    assert entry_of[str(early)] < entry_of[str(late)]
    for record_id in (early, late):
        execute(db_url, sa.update(audit_logs).where(audit_logs.c.id == record_id).values(raw={}))
    code, report = verify(path, "--since", str(entry_of[str(late)]))
    assert code == ExitCode.FINDINGS and found(report) == {("modified", str(late))}
    code, report = verify(path, "--since", "2000-01-01T00:00:00Z")  # a time: all of it
    assert found(report) == {("modified", str(early)), ("modified", str(late))}
    # A time earlier the same day: SQLite compares the stored text, so an entry's time
    # written in another form than the bound one (a space, not a T) would fall before it.
    an_hour_ago = (utc_now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, report = verify(path, "--since", an_hour_ago)
    assert found(report) == {("modified", str(early)), ("modified", str(late))}
    bad = cli(path, "verify", "--since", "yesterday-ish")
    assert bad.returncode == ExitCode.CONFIG


def test_a_signing_key_others_can_read_is_refused_and_one_in_the_environment_signs(
    tmp_path: Path, sqlite_url: str, zendesk: SimulatedZendesk
) -> None:
    key, public = keygen(tmp_path, "ledger.key")
    key.chmod(0o644)
    path = config(tmp_path, zendesk, sqlite_url, key)
    refused = cli(path, "sync")
    assert refused.returncode == ExitCode.CONFIG
    assert f"chmod 600 {key}" in one_error_line(refused)
    assert "BEGIN" not in refused.stderr  # the key never shows
    config(tmp_path, zendesk, sqlite_url, None)
    with path.open("a") as out:
        out.write('signing_key_env = "LEDGER_KEY"\n')
    signed = cli(path, "sync", env={"LEDGER_KEY": key.read_text()})
    assert signed.returncode == 0, signed.stderr
    code, report = verify(path, "--public-key", str(public))
    assert code == 0 and report["summary"].startswith("1/1 checkpoints valid"), report


def test_each_export_into_a_file_appends_a_signed_manifest(
    tmp_path: Path, sqlite_url: str, zendesk: SimulatedZendesk
) -> None:
    import base64
    import hashlib

    from etl.integrity.keys import parse_public_key
    from etl.integrity.manifest import HEADER

    key, public = keygen(tmp_path, "ledger.key")
    path = synced(tmp_path, zendesk, sqlite_url, key)
    out = tmp_path / "siem.jsonl"
    assert cli(path, "export", "--consumer", "siem", "--output", str(out)).returncode == 0
    zendesk.add_records([audit_record(9_400_000_000_000 + i, recent(8)) for i in range(3)])
    assert cli(path, "sync").returncode == 0
    assert cli(path, "export", "--consumer", "siem", "--output", str(out)).returncode == 0
    data, verifier = out.read_bytes(), parse_public_key(public.read_text(), "test")
    ranges = []
    text = (tmp_path / "siem.jsonl.manifest").read_text()
    entries = [HEADER + part for part in text.split(HEADER)[1:]]
    assert len(entries) == 2
    for entry in entries:
        body, _, signature = entry.partition("\n\n")
        fields = dict(line.split(" ", 1) for line in body.splitlines()[1:])
        start, end = map(int, fields["bytes"].split("-"))
        ranges.append((start, end))
        assert hashlib.sha256(data[start:end]).hexdigest() == fields["sha256"]
        stamp = base64.b64decode(signature.split(" ")[2])
        assert stamp[:4].hex() == verifier.id
        assert verifier.verifies(stamp[4:], (body + "\n").encode())
    assert ranges[0][0] == 0 and ranges[0][1] == ranges[1][0] and ranges[1][1] == len(data)
