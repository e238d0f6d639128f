"""Checkpoints of an account's ledger: made (signed when a key is configured), kept in the
database and written as one small file each into the checkpoint directory; and read back
from both for ``verify``.

Order: the database row commits first, then the file is written. So a file without its
row can only mean the row was deleted (``verify`` says so), and a row without its file
that the directory lost or never got it (a failed write is an error of the run). A run
killed between the two leaves the latest row without its file: the next run writes it
(when it is this job's: its head on the stored chain, signed by the job's key if any),
so the kill is no lasting finding.
A checkpoint is made only when the ledger grew or the key changed since the last one.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.clock import utc_now
from etl.common.errors import ConfigError
from etl.integrity import note
from etl.integrity.keys import SigningKey
from etl.integrity.note import Checkpoint
from etl.storage.engine import database_errors, for_writing
from etl.storage.schema import checkpoints, ledger, ledger_head

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
SUFFIX = ".checkpoint"


@dataclass(frozen=True)
class CheckpointTarget:
    """Where and how an account's checkpoints are made."""

    origin: str  # the checkpoint's first line: the account's Zendesk host
    key: SigningKey | None
    directory: Path | None


def account_directory(directory: Path, account: str) -> Path:
    """The account's folder in the checkpoint directory (its name made safe for a path)."""
    return directory / _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", account)


def make_checkpoint(
    engine: Engine,
    account: str,
    target: CheckpointTarget,
    now: Callable[[], datetime] = utc_now,
) -> Checkpoint | None:
    """A new checkpoint of ``account``'s ledger, or None when it has no entry or nothing
    changed since the last one."""
    key_id = target.key.public.id if target.key else None
    with database_errors(engine, "making a ledger checkpoint"), for_writing(engine).begin() as conn:
        head = conn.execute(
            sa.select(ledger_head.c.entries, ledger_head.c.head).where(
                ledger_head.c.account == account
            )
        ).first()
        if head is None or head[0] == 0:
            return None
        last = conn.execute(
            sa.select(checkpoints.c.size, checkpoints.c.key_id, checkpoints.c.note)
            .where(checkpoints.c.account == account)
            .order_by(checkpoints.c.id.desc())
            .limit(1)
        ).first()
        if last is not None and target.directory is not None:
            _complete(conn, account, target, last[2])
        if last is not None and last[0] == head[0] and last[1] == key_id:
            return None
        at = now()
        size, digest = int(head[0]), bytes.fromhex(head[1])
        unsigned = note.make(target.origin, size, digest, account, at)
        signed = None
        if target.key is not None:
            signed = (target.key.public.id, target.key.sign(unsigned.body))
        made = note.make(target.origin, size, digest, account, at, signed)
        conn.execute(
            sa.insert(checkpoints).values(
                account=account,
                size=size,
                head=digest.hex(),
                made_at=at,
                key_id=key_id,
                note=made.text,
            )
        )
    if target.directory is not None:
        _write(account_directory(target.directory, account), made)
    log.info(
        "account %s: ledger checkpoint at entry %d (%s)",
        account,
        size,
        f"signed by key {key_id}" if key_id else "unsigned",
    )
    return made


def _complete(conn: Connection, account: str, target: CheckpointTarget, text: str) -> None:
    """Write the latest checkpoint's file if the directory lacks it (a run killed after
    the row's commit): only one of this job's, so the directory gets nothing forged."""
    assert target.directory is not None
    made = note.parse(text)
    if made is None or made.account != account or made.size <= 0:
        return
    folder = account_directory(target.directory, account)
    if _path(folder, made).exists():
        return
    key = target.key
    if made.key_id != (key.public.id if key else None):
        return  # made with another key, or none: not this job's to copy
    if key is not None and not (made.signature and key.public.verifies(made.signature, made.body)):
        return
    stored = conn.execute(
        sa.select(ledger.c.entry_hash).where(
            ledger.c.account == account, ledger.c.entry == made.size
        )
    ).scalar()
    if stored is not None and bytes(stored) == made.head:
        log.info("account %s: the checkpoint at entry %d written again", account, made.size)
        _write(folder, made)


def _path(folder: Path, made: Checkpoint) -> Path:
    stamp = made.time.replace("-", "").replace(":", "")
    return folder / f"{made.size:012d}-{stamp}{SUFFIX}"


def _write(folder: Path, made: Checkpoint) -> None:
    """One new file, never over another: ``<size>-<time>.checkpoint``, synced to disk.

    Written whole under a temporary name, then linked to its own: a run killed while
    writing leaves no part of a checkpoint under a checkpoint's name (a cut file would be
    a lasting finding), only a ``.partial`` file that verify does not read. Where the file
    system has no hard links (some bucket mounts), the file is written directly."""
    path = _path(folder, made)
    partial = folder / f".{path.name}.{os.getpid()}.partial"
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file by that name: not "written already" below
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        _synced(partial, made.text, os.O_TRUNC)
        try:
            os.link(partial, path)
        except FileExistsError:
            pass  # the same size and second: written already
        except OSError:  # no hard links here
            _synced(path, made.text, os.O_EXCL)
        finally:
            _remove(partial)
    except FileExistsError:
        return  # the same size and second: written already
    except OSError as exc:
        raise ConfigError(
            f"ledger checkpoint_dir {folder}: cannot write {path.name}: {exc.strerror}; "
            "the checkpoint is in the database, verify will say it is missing from the directory"
        ) from None


def _synced(path: Path, text: str, flag: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flag, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _remove(partial: Path) -> None:
    try:
        partial.unlink(missing_ok=True)
    except OSError:  # a directory that keeps what is written (object lock): it stays
        log.debug("cannot remove %s", partial, exc_info=True)


def stored_checkpoints(conn: Connection, account: str) -> list[Checkpoint]:
    """The account's checkpoints as the database keeps them, oldest first (a row whose
    note does not parse comes back as a checkpoint of size -1, for verify to name)."""
    rows = conn.execute(
        sa.select(checkpoints.c.note)
        .where(checkpoints.c.account == account)
        .order_by(checkpoints.c.id)
    ).scalars()
    return [note.parse(text) or _unreadable(text, account) for text in rows]


def directory_checkpoints(directory: Path, account: str) -> Iterator[tuple[Path, Checkpoint]]:
    """The account's checkpoint files, by name (so by size, then time)."""
    folder = account_directory(directory, account)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        yield path, note.parse(text) or _unreadable(text, account)


def _unreadable(text: str, account: str) -> Checkpoint:
    return Checkpoint("", -1, b"", account, "", text=text)


class Checkpointer:
    """The checkpoints of a job's runs: one at the end of each account's run, and one
    every ``every`` while a long one commits (``due``)."""

    def __init__(
        self,
        engine: Engine,
        targets: dict[str, CheckpointTarget],
        every: float,
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._targets = targets
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}

    def make(self, account: str) -> Checkpoint | None:
        self._last[account] = self._clock()
        return make_checkpoint(self._engine, account, self._targets[account])

    def due(self, account: str) -> None:
        """Make one if the account's last is ``every`` old (the first commit starts the clock)."""
        started = self._last.setdefault(account, self._clock())
        if self._clock() - started >= self._every:
            self.make(account)
