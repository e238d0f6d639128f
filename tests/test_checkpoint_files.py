"""A checkpoint's file, against kills: a run killed between a checkpoint's row and its file,
or while it writes the file, leaves no lasting finding (the next run writes the file; no
cut file is ever left under a checkpoint's name); only the job's own checkpoint is written
again, so a DBA's forged one never reaches the directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import run_cli
from parts.simulators import Simulators, history
from support import audit_record, recent
from test_verify_no_false_alarm import (
    ACCOUNT,
    assert_clean,
    keygen,
    ledger_config,
    sync,
    verify,
)

from etl.common.errors import ExitCode
from etl.integrity import note
from etl.integrity.checkpoint import directory_checkpoints
from etl.storage.engine import open_engine
from etl.storage.schema import checkpoints, ledger_head


def test_a_kill_between_a_checkpoints_row_and_its_file_is_mended_by_the_next_run(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    """The state such a kill leaves, made exactly: the newest file removed. The next run,
    with nothing new to store, writes it again; one with more to store too."""
    sim = make_sim(history(300, days=0.5, seed=1))
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    for more in (False, True):
        sync(path)
        newest = max(p for p, _ in directory_checkpoints(tmp_path / "checkpoints", ACCOUNT))
        newest.unlink()
        code, report = verify(path, "--public-key", str(public))
        assert code == ExitCode.FINDINGS
        assert [f["kind"] for f in report["findings"]] == ["missing from the external copy"]
        if more:
            sim.add_records([audit_record(8_100_000_000_000 + j, recent(8)) for j in range(5)])
        sync(path)
        assert newest.exists()
        assert_clean(path, public, len(sim.visible_records()))


class Killed(BaseException):
    """A SIGKILL's effect, in process: nothing after it runs."""


def test_a_kill_while_a_checkpoint_is_written_leaves_no_part_of_one(
    migrated_url: str, tmp_path: Path, make_sim: Simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped before its file is whole, a checkpoint leaves nothing under a checkpoint's
    name (a cut file would be a bad signature and a checkpoint missing from the database,
    for good); the next run writes it whole."""
    sim = make_sim(history(300, days=0.5, seed=3))
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    sync(path)
    sim.add_records([audit_record(8_300_000_000_000 + j, recent(8)) for j in range(5)])

    def killed(fd: int) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", killed)
        with pytest.raises(Killed):
            run_cli("--config", str(path), "sync")
    folder = tmp_path / "checkpoints"
    assert all(made.size > 0 for _, made in directory_checkpoints(folder, ACCOUNT))
    _, report = verify(path, "--public-key", str(public))
    assert [f["kind"] for f in report["findings"]] == ["missing from the external copy"]
    sync(path)
    assert_clean(path, public, len(sim.visible_records()))


def test_a_file_where_the_accounts_folder_goes_is_an_error_not_a_silent_skip(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    sim = make_sim(history(50, days=0.5, seed=6))
    key, _ = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    (tmp_path / "checkpoints" / ACCOUNT).write_text("not a folder")
    result = run_cli("--config", str(path), "sync")
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_a_forged_latest_checkpoint_is_not_copied_out(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    """Only the job's own checkpoint is written again: one a DBA put in the database (its
    head not on the chain, or not signed by the job's key) stays out of the directory."""
    sim = make_sim(history(300, days=0.5, seed=2))
    key, _ = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    sync(path)
    engine = open_engine(migrated_url)
    with engine.begin() as conn:
        size, head = conn.execute(sa.select(ledger_head.c.entries, ledger_head.c.head)).one()
        forged = note.make("x", int(size), bytes(32), ACCOUNT, recent(1))  # not the head
        unsigned = note.make("x", int(size), bytes.fromhex(head), ACCOUNT, recent(2))
        for made in (forged, unsigned):
            conn.execute(
                sa.insert(checkpoints).values(
                    account=ACCOUNT,
                    size=size,
                    head=made.head.hex(),
                    made_at=recent(1),
                    key_id=None,
                    note=made.text,
                )
            )
    engine.dispose()
    sync(path)  # the newest (unsigned, its head right) is not signed by the job's key
    copied = {made.text for _, made in directory_checkpoints(tmp_path / "checkpoints", ACCOUNT)}
    assert copied.isdisjoint({forged.text, unsigned.text})
