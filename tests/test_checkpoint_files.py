"""A checkpoint's file, against kills: a run killed between a checkpoint's row and its file,
or while it writes the file, leaves no lasting finding (the next run writes the file; no
cut file is ever left under a checkpoint's name); only the job's own checkpoint is written
again, so a DBA's forged one never reaches the directory."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import CLI_ENV, ROOT, run_cli
from parts.configs import write_config
from parts.simulators import Simulators, history
from parts.verify.verdict import ACCOUNT, assert_clean, keygen, ledger_config, sync, verify
from support import audit_record, recent

from etl.common.errors import ExitCode
from etl.integrity import external, note
from etl.integrity.checkpoint import directory_checkpoints
from etl.integrity.checkpoint_files import TEMPORARY, file_path, has_whole, write_file
from etl.integrity.note import Checkpoint
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import checkpoints, ledger_head


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


def test_a_directory_set_after_the_first_runs_is_not_missing_their_checkpoints(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    """The newcomer's order: sync first (the README), then a key and a checkpoint directory
    (INTEGRITY.md). The checkpoint made before the directory was set is not in it: verify
    took it for a finding, exit 1 on every run for good. Now a note; a file of the
    directory's own removed is still a finding."""
    sim = make_sim(history(300, days=0.5, seed=9))
    sync(write_config(tmp_path, migrated_url, sim.url))  # no [ledger]: unsigned, no directory
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    sync(path)
    code, report = verify(path, "--public-key", str(public))
    assert (code, report["findings"]) == (ExitCode.OK, []), report
    (note_,) = report["notes"]
    assert note_.startswith("1 checkpoint made before the first one in ") and note_.endswith(
        ": not expected there"
    )
    sim.add_records([audit_record(8_400_000_000_000 + j, recent(8)) for j in range(5)])
    sync(path)
    newest = max(p for p, _ in directory_checkpoints(tmp_path / "checkpoints", ACCOUNT))
    newest.unlink()
    code, report = verify(path, "--public-key", str(public))
    assert code == ExitCode.FINDINGS
    assert [f["kind"] for f in report["findings"]] == ["missing from the external copy"]


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


# -- file systems without hard links (some NFS and bucket mounts), or that keep every file --

# A sync in a real process whose checkpoint files go through ``checkpoint_files`` with no
# hard links, killed (SIGKILL) at the moment that matters: just before the rename that
# publishes a file (``rename``), or, where renames fail too, half way through writing the
# file in place (``direct``).
_KILLED_SYNC = """
import errno, os, signal, sys
from etl.integrity import checkpoint_files as files

link, rename, write = os.link, os.rename, files._synced

def ours(name):
    return str(name).endswith(files.TEMPORARY)

def no_link(src, dst, **kwargs):
    if ours(src):
        raise OSError(errno.EPERM, "not on this file system")
    link(src, dst, **kwargs)

def killed_at_rename(src, dst, **kwargs):
    if ours(src):
        os.kill(os.getpid(), signal.SIGKILL)
    rename(src, dst, **kwargs)

def no_rename(src, dst, **kwargs):
    if ours(src):
        raise OSError(errno.EPERM, "not on this file system")
    rename(src, dst, **kwargs)

def half_then_killed(path, text, flag):
    if path.name.endswith(files.SUFFIX):
        write(path, text[: len(text) // 2], flag)
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, text, flag)

os.link = no_link
if sys.argv[1] == "rename":
    os.rename = killed_at_rename
else:
    os.rename = no_rename
    files._synced = half_then_killed
from etl.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def _killed_sync(tmp_path: Path, path: Path, moment: str) -> None:
    script = tmp_path / "killed_sync.py"
    script.write_text(_KILLED_SYNC)
    command = [sys.executable, str(script), moment, "--config", str(path), "--quiet", "sync"]
    result = subprocess.run(command, env=CLI_ENV, cwd=ROOT, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()


def _no_links(patch: pytest.MonkeyPatch, *, renames: bool) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "not on this file system")

    patch.setattr(os, "link", refused)
    if not renames:
        patch.setattr(os, "rename", refused)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("moment", ["rename", "direct"])
def test_without_hard_links_a_kill_while_publishing_leaves_no_lasting_finding(
    migrated_url: str,
    tmp_path: Path,
    make_sim: Simulators,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
) -> None:
    """Published by a rename, a file appears whole or not at all; written in place (no
    renames either), a cut copy is what it is: verify names only the checkpoint missing
    from the directory (no bad signature, nothing "missing from the database"), and the
    next run writes it whole, the cut copy replaced. The temporary file does not stay."""
    sim = make_sim(history(200, days=0.5, seed=11))
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    folder = tmp_path / "checkpoints" / ACCOUNT
    _killed_sync(tmp_path, path, moment)
    files = list(directory_checkpoints(tmp_path / "checkpoints", ACCOUNT))
    if moment == "direct":  # the cut copy is there, under the checkpoint's name
        ((cut, made),) = files
        assert cut.stat().st_size > 0 and made.signature is None  # (it parses: unsigned)
    else:  # killed with the file whole under the temporary name, not yet published
        assert files == [] and note.parse((folder / TEMPORARY).read_text()) is not None
    _, report = verify(path, "--public-key", str(public))
    assert [f["kind"] for f in report["findings"]] == ["missing from the external copy"]
    with monkeypatch.context() as patch:
        _no_links(patch, renames=moment == "rename")
        sync(path)  # mends the file
        assert_clean(path, public, len(sim.visible_records()))
        sim.add_records([audit_record(8_400_000_000_000 + j, recent(8)) for j in range(5)])
        sync(path)  # a new checkpoint: published the same way
    assert _hidden(folder) == []
    assert all(
        made.size > 0 for _, made in directory_checkpoints(tmp_path / "checkpoints", ACCOUNT)
    )
    assert_clean(path, public, len(sim.visible_records()))


def test_where_nothing_can_be_removed_one_temporary_file_stays_not_one_per_checkpoint(
    migrated_url: str, tmp_path: Path, make_sim: Simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append-only or WORM directory: files can be created, never removed nor renamed.
    The first write's temporary file stays; later writes find it done with, cannot remove
    it, and write their file in place instead of leaving another one each."""
    sim = make_sim(history(100, days=0.5, seed=12))
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    folder = tmp_path / "checkpoints" / ACCOUNT
    unlink, rename = os.unlink, os.rename

    def kept(name: object, *args: object, **kwargs: object) -> None:
        if str(name).startswith(str(folder)):
            raise PermissionError(errno.EPERM, "this directory keeps what is written")

    def refused_unlink(name: Any, *args: Any, **kwargs: Any) -> None:
        kept(name)
        unlink(name, *args, **kwargs)

    def refused_rename(name: Any, *args: Any, **kwargs: Any) -> None:
        kept(name)
        rename(name, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", refused_unlink)
        patch.setattr(os, "rename", refused_rename)
        for round in range(4):
            sim.add_records([audit_record(8_500_000_000_000 + 10 * round + j, recent(8))
                             for j in range(3)])  # fmt: skip
            sync(path)
    assert len(list(directory_checkpoints(tmp_path / "checkpoints", ACCOUNT))) == 4
    assert _hidden(folder) == [TEMPORARY]
    assert_clean(path, public, len(sim.visible_records()))


def test_a_checkpoint_written_while_verify_lists_the_directory_is_no_finding(
    migrated_url: str, tmp_path: Path, make_sim: Simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify lists the directory before its snapshot and again for what it lacks. A file
    read while it is written (a cut copy of a checkpoint it holds), a temporary file, and
    a checkpoint made after the snapshot (its file there when listed again, its row not in
    the snapshot) are no finding; the file completed while verify lists again is found."""
    sim = make_sim(history(200, days=0.5, seed=13))
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    sync(path)
    sim.add_records([audit_record(8_600_000_000_000 + j, recent(8)) for j in range(5)])
    sync(path)
    root = tmp_path / "checkpoints"
    (first, _), (newest, made) = directory_checkpoints(root, ACCOUNT)
    later = newest.read_text()  # a checkpoint "made after the snapshot": its row goes
    newest.unlink()
    engine = open_engine(migrated_url)
    with engine.begin() as conn:
        conn.execute(sa.delete(checkpoints).where(checkpoints.c.note == made.text))
    engine.dispose()
    whole = first.read_text()
    first.write_text(whole[: len(whole) // 2])  # being written when verify lists it
    (first.parent / TEMPORARY).write_text(whole[:10])
    relisted = []

    def listed(directory: Path | None, account: str) -> dict[str, Checkpoint]:
        relisted.append(directory)
        if len(relisted) == 2:  # listing again: the write finished, a new one was made
            first.write_text(whole)
            newest.write_text(later)
        return listing(directory, account)

    listing = external.listed
    with monkeypatch.context() as patch:
        patch.setattr(external, "listed", listed)
        code, report = verify(path, "--public-key", str(public))
    assert len(relisted) == 2
    assert (code, report["findings"]) == (ExitCode.OK, []), report
    # Still cut when listed again, it is the one finding: the checkpoint is not there whole.
    first.write_text(whole[: len(whole) // 2])
    newest.unlink()
    _, report = verify(path, "--public-key", str(public))
    assert [f["kind"] for f in report["findings"]] == ["missing from the external copy"]


def test_a_cut_copy_that_cannot_be_removed_gets_the_whole_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On storage that keeps every file, a cut copy (a kill while a file was written in
    place) stays: the checkpoint is written whole under its next name, found there, and
    the cut copy is not taken for a checkpoint."""
    made = note.make("acme.zendesk.com", 12, bytes(range(32)), ACCOUNT, recent(1))
    folder = tmp_path / ACCOUNT
    folder.mkdir()
    cut = file_path(folder, made)
    cut.write_text(made.text[:20])
    unlink = os.unlink

    def kept(name: Any, *args: Any, **kwargs: Any) -> None:
        if str(name).startswith(str(folder)):
            raise PermissionError(errno.EPERM, "this directory keeps what is written")
        unlink(name, *args, **kwargs)

    assert not has_whole(folder, made)
    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", kept)
        _no_links(patch, renames=False)
        write_file(folder, made)
        write_file(folder, made)  # found whole: nothing more written
    assert _hidden(folder) == [TEMPORARY]  # the first write's, kept
    assert sorted(p.name for p in folder.glob("0*")) == [
        cut.name.replace(".checkpoint", ".2.checkpoint"),
        cut.name,
    ]
    assert has_whole(folder, made)
    found = external.listed(tmp_path, ACCOUNT)
    assert len(found) == 2 and list(external.whole(found, [made])) == [made.text]


@pytest.mark.parametrize("links, renames", [(True, True), (False, True), (False, False)])
def test_a_published_checkpoint_has_its_directory_entry_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool, renames: bool
) -> None:
    """A file fsynced under its new name can still vanish on power loss until the folder's
    entry is synced too: however the file is published (link, rename, in place), the
    folder is synced after it, and the file is whole."""
    folder = tmp_path / "checkpoints"
    made = note.make("zendesk-audit-etl/acme", 42, b"\x01" * 32, "acme", datetime.now(UTC))
    synced: list[bool] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        fsync(fd)

    with monkeypatch.context() as patch:
        if not links:
            _no_links(patch, renames=renames)
        patch.setattr(os, "fsync", recorded)
        write_file(folder, made)
    assert file_path(folder, made).read_text() == made.text
    assert synced and synced[-1] is True, synced  # the folder, after the file
